"""What handlers return: plain data that a renderer turns into console text or Block Kit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.requests import DeletionRequest


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


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

    def as_json(self) -> dict[str, Any]:
        """The reply for scripts: never includes ``secret`` unless asked by the renderer."""
        return {"ok": self.ok, "text": self.text, "data": self.data}


def error(message: str) -> Reply:
    return Reply(text=message, ok=False, data={"error": message})
