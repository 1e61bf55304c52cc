"""`Acr`: the bot from Python, for notebooks and scripts alike (no IPython needed).

    acr = Acr(config="acrbot.toml", user="alice")
    acr("tags baseimages/fedora")                  # any command line, as typed in Slack
    acr.tags("baseimages/fedora", top=50)          # the same command, built from arguments
    request = acr.delete("baseimages/fedora:24", reason="EOL")
    acr.wait(request.data["id"], timeout=600)      # until approved (in Slack), denied, …

Every call is one command line handed to the Dispatcher, exactly as the console and Slack hand
theirs: the same grammar, the same role checks, the same audit row (naming the notebook door).
The methods only *build* command lines, from each command's own spec in bot/core/commands.py, so a
command added there (say `purge`) is a method here at once, with nothing to keep in step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.app import build_dispatcher, ship_audit
from bot.core import grammar
from bot.core.commands import COMMANDS, acting_user
from bot.core.config import Config, default_user, load
from bot.core.errors import ConfigError
from bot.core.redaction import REDACTOR
from bot.core.replies import Reply
from bot.core.request_types import DeletionRequest, State
from bot.kernel.dispatch import NOTEBOOK, Dispatcher
from bot.notebook.results import CommandFailed, Result, WaitTimeout
from bot.progress_bar import ProgressBar
from handlers.requests.reply import approval_text

UNDECIDED = (State.PENDING, State.EXECUTING)
CAPTURED_LOGGERS = ("bot", "handlers")


class Acr:
    """The bot for one configuration, acting as one user by default.

    ``config``: a path to acrbot.toml, a loaded :class:`bot.core.config.Config`, or None for the
    usual search ($ACRBOT_CONFIG, ./acrbot.toml, the demo's). ``user``: who is asking, as a
    login name or user id; without it, the config's `[notebook] user`, then $ACRBOT_USER, then
    the login name. A `[users]` alias maps the name to the id grants name, so alice here has
    exactly the roles alice has in Slack.

    A refused or failed command returns a Result with ``ok`` False (shown as one line);
    ``raise_errors=True`` raises :class:`CommandFailed` instead, for scripts that should stop.

    ``dispatcher``: an existing one to share (several users in one kernel share one database
    connection and registry clients), its config then being the config. Whatever door it was
    built for, commands sent from here are audited as the notebook's.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Config | None = None,
        user: str | None = None,
        *,
        raise_errors: bool = False,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        if dispatcher is not None:
            if config is not None and config is not dispatcher.ctx.config:
                raise ValueError("pass config or a dispatcher, not both")
            self.config = dispatcher.ctx.config
        else:
            self.config = config if isinstance(config, Config) else load(config)
        login = user or self.config.notebook_user or default_user()
        if not login:
            raise ConfigError(
                "no acting user: pass user=…, set [notebook] user in the configuration, or set "
                "ACRBOT_USER"
            )
        self.login = login
        # a group never acts (commands.acting_user): refused here, not at the first command
        self.user = acting_user(self.config.user_id(login), groups=self.config.groups)
        self.raise_errors = raise_errors
        self.dispatcher = dispatcher or build_dispatcher(self.config, door=NOTEBOOK)

    def __repr__(self) -> str:
        who = self.login if self.login == self.user else f"{self.login} ({self.user})"
        return f"Acr(config={self.config.source!r}, user={who!r})"

    # -- running commands ------------------------------------------------------------------

    def __call__(self, command: str, *, user: str | None = None) -> Result:
        """Run one command line, e.g. ``acr('delete repo:tag --reason "EOL"')``."""
        return self.run(command, user=user)

    def run(self, command: str, *, user: str | None = None) -> Result:
        """Run ``command`` as ``user`` (default: this client's user) through the Dispatcher."""
        acting = self.user if user is None else self.config.user_id(user)
        # Long registry scans show a bar under the cell, as in the console.
        bar = ProgressBar(draw=_watched())
        with _captured() as captured:
            try:
                reply = self.dispatcher.handle(command, user=acting, progress=bar, door=NOTEBOOK)
            finally:
                bar.close()
            ship_audit(self.dispatcher.ctx)  # as the console does: rows wait if it is down
        if reply.secret is not None:
            REDACTOR.add(reply.secret)
        result = Result(
            reply, command=command, user=acting, exception=captured.exception, log=captured.lines
        )
        return self._checked(result)

    def __getattr__(self, name: str) -> Callable[..., Result]:
        """``acr.tags(...)``, ``acr.delete(...)``: any command of the grammar, as a method."""
        if name.startswith("_") or name not in COMMANDS:
            raise AttributeError(f"{type(self).__name__!r} has no attribute or command {name!r}")

        def method(*args: Any, user: str | None = None, **options: Any) -> Result:
            return self.run(command_line(name, *args, **options), user=user)

        spec = COMMANDS[name]
        method.__name__ = name
        method.__doc__ = f"{spec.summary}.\n\nUsage: {spec.usage}\nExample: {spec.example}"
        return method

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *COMMANDS})

    # -- waiting for a decision ------------------------------------------------------------

    def wait(
        self, request_id: int | Result, *, timeout: float = 600.0, poll: float = 0.5
    ) -> Result:
        """Wait until request ``request_id`` (or the request a Result shows) is decided and
        carried out, or denied, cancelled, expired, failed.

        Approvals happen elsewhere (the Slack thread, a console), and the process that runs
        the deletion records the outcome in the shared database; this reads it every ``poll``
        seconds. The request is read through the `request ID` command at the start and the
        end (so the role check and the audit are the command's own); the polls in between
        only read its state. Returns the request as `request ID` shows it, ``ok`` when done;
        after ``timeout`` seconds, as it stands with ``ok`` False (``raise_errors``:
        :class:`WaitTimeout`, a TimeoutError; and CommandFailed if it ends other than done).
        """
        if isinstance(request_id, Result):
            if request_id.request is None:
                raise TypeError(f"that result shows no request: {request_id.text}")
            request_id = request_id.request.id
        command = f"request {int(request_id)}"
        first = self.run(command)
        if not first.ok or first.request is None:
            return first
        ctx = self.dispatcher.ctx
        deadline = time.monotonic() + timeout
        request = first.request
        while request.state in UNDECIDED and time.monotonic() < deadline:
            if request.state is State.PENDING and ctx.clock() >= request.expires_at:
                ctx.requests.expire_due()  # nobody else may be sweeping (no `acrbot serve`)
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
            request = ctx.requests.get(request.id)
        final = self.run(command) if request != first.request else first
        if not final.ok or final.request is None:
            return final
        request = final.request
        if request.state in UNDECIDED:
            text = (
                f"Request #{request.id} is still {request.state} after {timeout:g} s "
                f"({len(request.approvals)} of {request.required} approvals)."
            )
            result = self._result(replace(final.reply, text=text, ok=False), command)
            if self.raise_errors:
                raise WaitTimeout(result)
            return result
        reply = replace(final.reply, text=outcome_text(request), ok=request.state is State.DONE)
        return self._checked(self._result(reply, command))

    def _result(self, reply: Reply, command: str) -> Result:
        return Result(reply, command=command, user=self.user)

    def _checked(self, result: Result) -> Result:
        if not result.ok and self.raise_errors:
            raise CommandFailed(result) from result.exception
        return result


def command_line(name: str, *args: Any, **options: Any) -> str:
    """The command line for ``name`` called with Python arguments, by the command's spec.

    Positional arguments fill the command's positionals in order; keywords name any parameter
    (``top=50``, ``reason="EOL"``). A flag takes True (present) or False/None (absent); None
    leaves any option out; a list repeats an option that may be given several times. Values are
    quoted, so a reason with spaces or quotes arrives as one word. Whether the arguments make
    sense is the grammar's business: it answers with the same message as in chat.
    """
    spec = COMMANDS.get(name)
    if spec is None:
        raise AttributeError(f"no command {name!r}; known: {', '.join(COMMANDS)}")
    positionals = spec.positionals
    if len(args) > len(positionals):
        wanted = " ".join(p.metavar for p in positionals) or "no arguments"
        raise TypeError(f"{name}() takes {wanted} positionally, not {len(args)} arguments")
    values: dict[str, Any] = {p.name: value for p, value in zip(positionals, args, strict=False)}
    params = {p.name: p for p in spec.params}
    for key, value in options.items():
        if key not in params:
            raise TypeError(
                f"{name}() got an unexpected keyword argument {key!r} "
                f"(known: {', '.join(params) or 'none'})"
            )
        if key in values:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        values[key] = value
    words = [name]
    missing = None
    for param in positionals:
        value = values.get(param.name)
        if value is None:
            missing = param
            continue
        if missing is not None:
            raise TypeError(f"{name}(): {param.name} given without {missing.name} before it")
        words.append(_word(value))
    for param in spec.options:
        value = values.get(param.name)
        if value is None or value is False:
            continue
        if not param.takes_value:
            if value is not True:
                raise TypeError(f"{name}(): {param.name} is a flag: pass True or False")
            words.append(param.flag or "")
        elif isinstance(value, list | tuple):
            for item in value:
                words += [param.flag or "", _word(item)]
        else:
            words += [param.flag or "", _word(value)]
    return shlex.join(words)


def _word(value: Any) -> str:
    """One argument as the grammar will read it: it turns curly quotes straight before
    splitting, so do that first, or a quoted ’ would close the quoting around it."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a command argument")
    text = str(value) if not isinstance(value, Path) else value.as_posix()
    return text.translate(grammar._SMART_QUOTES)


def outcome_text(request: DeletionRequest) -> str:
    """What happened to a decided request, in one line (as the console says it)."""
    if request.state in (State.DONE, State.FAILED, State.EXECUTING):
        return approval_text(request)
    if request.state is State.EXPIRED:
        return (
            f"Request #{request.id} expired with {len(request.approvals)} of "
            f"{request.required} approvals; nothing was deleted."
        )
    text = f"Request #{request.id} {request.state}"
    if request.decided_by:
        text += f" by {request.decided_by}"
    if request.decision_reason:
        text += f": {request.decision_reason}"
    return text + "."


class _Capture(logging.Handler):
    """Keeps what the bot logs during one command, instead of printing it.

    Without a handler Python prints records through its last-resort handler, traceback and
    all, right under the cell; the Dispatcher has already turned the failure into one line
    with a reference id. The exception is kept for `--debug` / ``raise_errors``.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(REDACTOR)
        self.lines: list[str] = []
        self.exception: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            self.exception = record.exc_info[1]


def _watched() -> bool:
    """Whether a person watches this process's stderr: a terminal, or a Jupyter cell (not a
    terminal, but its output is shown as it comes). A script's captured stderr gets no bar."""
    if sys.stderr.isatty():
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


@contextlib.contextmanager
def _captured() -> Iterator[_Capture]:
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
    for logger in loggers:
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger in loggers:
            logger.removeHandler(capture)
