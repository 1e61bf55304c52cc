"""`%acr` and `%%acr`: the bot as IPython magics, in the manner of jupysql's `%sql`.

    %acr tags baseimages/fedora                     a command; the result is the cell's output
    r = %acr show {repo}:{tag}                      {expr} and $name expand, as in any magic
    %acr --config acrbot.toml --user alice          options alone: this kernel's defaults
    %acr --user bob requests                        options then a command: this command only
    %%acr                                           one command a line; `#` lines are skipped;
    tags baseimages/fedora --top 5                  stops at the first that fails
    delete baseimages/fedora:24 --reason "{why}"

Options: ``--config FILE``, ``--user ID`` (a login name mapped by `[users]`, or an id),
``--debug`` (a failure raises, with the original traceback, instead of showing one line).
Defaults are traitlets, set with `%config` like jupysql's: ``%config Acr.user = "alice"``,
``%config Acr.config_file = "acrbot.toml"`` (``Acr.config = …`` works too), ``Acr.debug``.

The class is named ``Acr`` because `%config` addresses configurables by class name; it is not
bot.notebook.Acr, the Python API, which it uses (as ``Client``) to run every command.

Interpolation follows IPython: the magic's line is expanded by IPython itself (``{expr}``,
``$name``, ``$$`` for a dollar; a line that fails to expand is used as typed). IPython leaves a
cell magic's body alone, so each body line is expanded here the same way, with the same
formatter, in the user's namespace. Quote what may hold spaces: ``--reason "{why}"``.
"""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path
from typing import Any

from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    output_can_be_silenced,
)
from IPython.utils.text import DollarFormatter
from traitlets import Bool, Unicode
from traitlets.config import Config

from bot.app import build_dispatcher
from bot.core.config import load
from bot.core.errors import BotError
from bot.kernel.dispatch import NOTEBOOK, Dispatcher
from bot.notebook.client import Acr as Client
from bot.notebook.html import error_line
from bot.notebook.results import CommandFailed, Result, Results

_VALUED = ("config", "user")
_OPTION = re.compile(
    r"""\s*--(?P<name>config|user)(?:=|\s+)(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"']\S*)"""
    r"""|\s*--(?P<flag>debug)(?=\s|$)"""
)
_FORMATTER = DollarFormatter()


class MagicError:
    """A failure of the magic itself (a bad option, a bad config): one styled line."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"error: {self.message}"

    def _repr_html_(self) -> str:
        return error_line(self.message)


class Settings:
    """A confirmation that options alone changed this kernel's defaults."""

    def __init__(self, client: Client) -> None:
        who = client.login if client.login == client.user else f"{client.login} ({client.user})"
        self.text = f"%acr acts as {who} with {client.config.source}"

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f'<div style="opacity: 0.7"><code>{html.escape(self.text)}</code></div>'


@magics_class
class Acr(Magics):
    """The `%acr` line and cell magics; their defaults are `%config Acr.…` traits."""

    user = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Who %acr acts as: a login name mapped by the config's [users], or a user id. "
        "Default: the config's [notebook] user, then $ACRBOT_USER, then the login name.",
    )
    config_file = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The acrbot.toml %acr uses. Default: $ACRBOT_CONFIG, ./acrbot.toml, then the "
        "demo's .acrbot-demo/acrbot.toml. `%config Acr.config = ...` sets it too.",
    )
    debug = Bool(
        False,
        config=True,
        help="Raise failures with their traceback instead of showing one line.",
    )

    def __init__(self, shell: Any) -> None:
        super().__init__(shell=shell)  # also adds us to shell.configurables, for %config
        self._dispatchers: dict[str, Dispatcher] = {}

    def update_config(self, config: Config) -> None:
        """`%config Acr.config = "FILE"` means ``config_file``: traitlets keeps ``config`` for
        the Config object every Configurable carries, so it cannot be a trait of ours.

        Renamed in place: `%config` builds this Config for the one statement and hands it to
        the shell too, whose config is what a reloaded extension starts from."""
        if "Acr" in config and "config" in config["Acr"]:
            config["Acr"]["config_file"] = config["Acr"].pop("config")
        super().update_config(config)

    @output_can_be_silenced
    @needs_local_scope
    @line_cell_magic
    def acr(
        self, line: str, cell: str | None = None, local_ns: dict[str, Any] | None = None
    ) -> Any:
        """Run acr-chatops commands: `%acr COMMAND` or a `%%acr` cell of commands, a line each.

        Options before the command: --config FILE, --user ID, --debug. Options alone set this
        kernel's defaults. See `help` for the commands you may run.
        """
        try:
            options, first = parse_options(line)
        except ValueError as exc:
            return self._failed(str(exc), debug=self.debug)
        debug = options.get("debug", False) or self.debug
        commands = [first] if first else []
        if cell is not None:
            namespace = {**self.shell.user_ns, **(local_ns or {})}
            commands += [
                expand(text, namespace)
                for text in (raw.strip() for raw in cell.splitlines())
                if text and not text.startswith("#")
            ]
        if not commands and cell is None:
            return self._set_defaults(options, debug=debug)
        try:
            client = self._client(options.get("config") or self.config_file, options.get("user"))
        except BotError as exc:
            return self._failed(str(exc), debug=debug, cause=exc)
        if cell is None:
            return self._checked(client.run(commands[0]), debug=debug)
        results = Results()
        for command in commands:
            results.append(self._checked(client.run(command), debug=debug))
            if not results[-1].ok:
                results.not_run = commands[len(results) :]  # a failure stops the cell
                break
        return results[0] if len(results) == 1 and not results.not_run else results

    # -- helpers ---------------------------------------------------------------------------

    def _client(self, config: str | None, user: str | None) -> Client:
        """A client acting as ``user`` (else the defaults). One Dispatcher per configuration
        file is kept for the kernel's life: one database connection and one client per
        registry, as the console keeps them; clients are cheap views on it."""
        key = str(Path(config).expanduser().resolve()) if config else ""
        if key not in self._dispatchers:
            self._dispatchers[key] = build_dispatcher(load(key or None), door=NOTEBOOK)
        return Client(user=user or self.user, dispatcher=self._dispatchers[key])

    def _set_defaults(self, options: dict[str, Any], *, debug: bool) -> Any:
        """`%acr --config FILE --user ID`: remember them, once the file loads and a user is
        known."""
        try:
            client = self._client(options.get("config") or self.config_file, options.get("user"))
        except BotError as exc:
            return self._failed(str(exc), debug=debug, cause=exc)
        if "config" in options:
            self.config_file = options["config"]
        if "user" in options:
            self.user = options["user"]
        if "debug" in options:
            self.debug = True
        return Settings(client)

    @staticmethod
    def _checked(result: Result, *, debug: bool) -> Result:
        if debug and not result.ok:
            raise CommandFailed(result) from result.exception
        return result

    @staticmethod
    def _failed(message: str, *, debug: bool, cause: BaseException | None = None) -> MagicError:
        if debug:
            raise BotError(message) from cause
        return MagicError(message)


def parse_options(line: str) -> tuple[dict[str, Any], str]:
    """Split `%acr`'s own options off the front of ``line``; the rest is the command, as typed
    (the bot's grammar does its own quoting, so it gets the text, not re-joined words)."""
    options: dict[str, Any] = {}
    rest = line
    while True:
        match = _OPTION.match(rest)
        if match is None:
            break
        if match["flag"]:
            options["debug"] = True
        else:
            value = match["value"]
            options[match["name"]] = shlex.split(value)[0] if value[0] in "\"'" else value
        rest = rest[match.end() :]
    rest = rest.strip()
    word = rest.split(maxsplit=1)[0] if rest else ""
    if word in (f"--{name}" for name in _VALUED):
        raise ValueError(f"%acr: {word} needs a value")
    return options, rest


def expand(text: str, namespace: dict[str, Any]) -> str:
    """Expand ``{expr}`` and ``$name`` in ``text`` as IPython expands a magic's line; a line
    that does not expand is used as typed (as IPython does)."""
    try:
        return _FORMATTER.vformat(text, args=[], kwargs=namespace)
    except Exception:
        return text


def register(shell: Any) -> Acr:
    magics = Acr(shell)
    shell.register_magics(magics)
    return magics


def unregister(shell: Any) -> None:
    for configurable in [c for c in shell.configurables if isinstance(c, Acr)]:
        shell.configurables.remove(configurable)
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("acr", None)
