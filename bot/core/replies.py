"""What handlers return: plain data that a renderer turns into console text or Block Kit."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from bot.core.request_types import DeletionRequest


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Paging:
    """Where a paged listing stands, as commands: nothing about it is kept in memory.

    ``command`` reproduces the listing without `--after`; the page shown started after
    ``after`` (None: the first page) and the next one starts after ``next_after`` (None: this
    was the last). A transport re-runs ``command_after(…)`` as the clicking user, so a page
    link survives restarts and is authorized like the typed command.
    """

    command: str
    after: str | None = None
    next_after: str | None = None

    def command_after(self, cursor: str | None) -> str:
        return f"{self.command} --after {shlex.quote(cursor)}" if cursor else self.command

    def hint(self) -> str | None:
        """The next page as a command to type (console, notebook)."""
        if self.next_after is None:
            return None
        return f"Next page: `{self.command_after(self.next_after)}`"


@dataclass(frozen=True)
class Reply:
    """One answer to one command.

    ``secret`` is shown only to the caller, once (console: printed; Slack: ephemeral), and is
    never part of ``data``, the audit or a log line. ``request`` lets Slack draw a card.
    """

    text: str
    ok: bool = True
    fields: tuple[tuple[str, str], ...] = ()
    table: Table | None = None
    notes: tuple[str, ...] = ()
    request: DeletionRequest | None = None
    secret: str | None = field(default=None, repr=False)
    data: Any = None
    paging: Paging | None = None
    # For renderers with markup (Slack): the principal ids the text names (drawn as mentions)
    # and literal strings to show as code (role scopes such as `reader on */*`, which mrkdwn
    # would otherwise read as bold). Plain text ignores both.
    people: tuple[str, ...] = ()
    spans: tuple[str, ...] = ()
    # Data a door may draw as a picture (`report`: a bot.core.usage.UsageReport; Slack
    # uploads it as a PNG, notebooks plot it); the text and table say the same in words.
    chart: Any = None

    def as_json(self) -> dict[str, Any]:
        """The reply for scripts: never includes ``secret`` unless asked by the renderer."""
        return {"ok": self.ok, "text": self.text, "data": self.data}


def error(message: str) -> Reply:
    return Reply(text=message, ok=False, data={"error": message})
