"""Previous/Next buttons for paged listings, with all their state in the button itself.

A click re-runs the listing's command from the cursor the button carries, as the user who
clicked (so it is authorized like a typed command), and answers that user only: it replaces
the message in place when that message was the clicker's own ephemeral one, and is a new
ephemeral message otherwise. The value comes back from the client, so the worker runs it only
if it is a listing (bot/core/commands.py LISTINGS). Nothing is kept in the worker's memory, so a
page link survives restarts; the only limit is Slack's 2,000 characters for a button value,
so the trail of earlier cursors behind "Previous" is trimmed from its oldest end (Previous
then returns to the first page).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.core.replies import Paging

MAX_VALUE = 2000  # Slack's limit for a button value


@dataclass(frozen=True)
class PageState:
    """What a Previous/Next button carries: the command to run, and the way back."""

    command: str
    back: list[str | None] = field(default_factory=list)  # cursors of the pages before
    public: bool = False
    offset: int = 0  # for a long table without a cursor: the first row to show

    def encode(self) -> str:
        back = list(self.back)
        while True:
            data = {"c": self.command, "b": back, "p": int(self.public)}
            if self.offset:
                data["o"] = self.offset
            value = json.dumps(data)
            if len(value) <= MAX_VALUE or not back:
                return value
            back.pop(0)

    @classmethod
    def decode(cls, value: str) -> PageState | None:
        try:
            data: Any = json.loads(value)
            command, back = data["c"], data.get("b", [])
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(command, str) or not isinstance(back, list):
            return None
        offset = data.get("o", 0)
        return cls(
            command=command,
            back=[b if isinstance(b, str) else None for b in back],
            public=bool(data.get("p")),
            offset=offset if isinstance(offset, int) and offset >= 0 else 0,
        )


def neighbours(
    paging: Paging, *, back: list[str | None], public: bool
) -> tuple[PageState | None, PageState | None]:
    """The states behind Previous and Next for a page shown after ``back``'s cursors."""
    previous = None
    if paging.after is not None:
        earlier = back[-1] if back else None
        previous = PageState(paging.command_after(earlier), back[:-1], public)
    following = None
    if paging.next_after is not None:
        following = PageState(
            paging.command_after(paging.next_after), [*back, paging.after], public
        )
    return previous, following
