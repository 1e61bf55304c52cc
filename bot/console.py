"""A line-oriented chat on stdin/stdout with the same grammar and rules as Slack.

Piped input works too, so a script of commands can be replayed (`acrbot console < demo.txt`).
Lines starting with `:` talk to the console itself: `:as USER` switches the acting user,
`:quit` leaves. When input is not a terminal each command is echoed, so the output reads like
the chat it was. Users are named by login (alice); a `[users]` alias in the config maps the
name to the id grants use (U0123ALICE), so the console acts with exactly that person's roles.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TextIO

from bot.core.commands import acting_user, canonical_id
from bot.core.errors import UserError
from bot.core.render_text import render, terminal_width
from bot.kernel.dispatch import Dispatcher
from bot.progress_bar import ProgressBar

CONSOLE_HELP = (
    "Console commands: `:as USER` act as another user, `:whoami`, `:quit`. "
    "Anything else is a bot command; try `help`."
)


def run_console(
    dispatcher: Dispatcher,
    *,
    user: str,
    stdin: TextIO,
    stdout: TextIO,
    interactive: bool,
    after: Callable[[], None] | None = None,
) -> int:
    """Read commands until EOF or `:quit`; return the number of failed commands."""
    failures = 0
    as_id = dispatcher.ctx.config.user_id
    groups = dispatcher.ctx.config.groups
    acting_user(as_id(user), groups=groups)  # a group never acts: refused before any prompt
    if interactive:
        print(f"acr-chatops console — acting as {_who(user, as_id)}. {CONSOLE_HELP}", file=stdout)
    while True:
        if interactive:
            print(f"{user}> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            if interactive:
                print(file=stdout)
            return failures
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not interactive:
            print(f"{user}> {line}", file=stdout)
        if line.startswith(":"):
            word, _, rest = line[1:].partition(" ")
            if word in ("q", "quit", "exit"):
                return failures
            if word == "as" and rest.strip():
                try:
                    words = shlex.split(rest)  # `:as "bob"` is bob, not "bob" with quotes
                    name = canonical_id(" ".join(words).removeprefix("@"))
                    acting_user(as_id(name), groups=groups)  # groups never act
                    user = name
                except (ValueError, UserError) as exc:
                    print(f"error: {exc}", file=stdout)
                    continue
                print(f"(now acting as {_who(user, as_id)})", file=stdout)
            elif word == "whoami":
                print(f"(acting as {_who(user, as_id)})", file=stdout)
            else:
                print(CONSOLE_HELP, file=stdout)
            continue
        bar = ProgressBar()
        try:
            reply = dispatcher.handle(line, user=as_id(user), progress=bar)
        finally:
            bar.close()
        if not reply.ok:
            failures += 1
        print(render(reply, width=terminal_width()), file=stdout, flush=True)
        if after is not None:
            after()


def _who(name: str, as_id: Callable[[str], str]) -> str:
    """`alice`, or `alice (U0123ALICE)` when a [users] alias maps the name."""
    user_id = as_id(name)
    return name if user_id == name else f"{name} ({user_id})"
