"""What each change of a request makes the bot say, as outbox entries (bot/state/outbox.py).

Listens to Requests (inside the transaction that makes the change) and records, per request
with a chat channel: its card (drawn from the current state at delivery), a thread line for
each approval, and the final outcome once in the thread and once to the requester. The keys
make each announcement happen once per destination, whoever gets there first.

Requests without a channel (console or notebook, and no `[slack] requests_channel`) have no
card and nobody to announce to, so nothing is recorded for them.
"""

from __future__ import annotations

from bot.core.request_types import Change, DeletionRequest, RequestEvent
from bot.state.outbox import Outbox

CARD = "card"
LINE = "line"
OUTCOME = "outcome"
HOME = "home"
HOMES = "homes"  # every owner who can act on a request: their App Home is drawn again
POST = "post"  # a line for a channel: payload {channel, text} (watch lines, alerts, break-glass)


def card_key(request_id: int) -> str:
    return f"card:{request_id}"


class Announcer:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def __call__(self, request: DeletionRequest, event: RequestEvent) -> None:
        if request.channel is None:
            return
        card = card_key(request.id)
        self.outbox.touch(card, CARD, {"request": request.id, "channel": request.channel})
        # The owners' App Home lists what waits for them: redraw it when that changes.
        self.outbox.touch(f"homes:{request.id}", HOMES, {"request": request.id})
        if event.change is Change.APPROVED:
            approver = event.who
            self.outbox.put(
                f"line:{request.id}:approved:{approver}",
                LINE,
                {"request": request.id, "approver": approver, "line": "approved"},
                after=card,
            )
        elif event.change is Change.VOID:
            who = event.who
            self.outbox.put(
                f"line:{request.id}:void:{who}:{len(request.approvals)}",
                LINE,
                {
                    "request": request.id,
                    "line": "text",
                    "text": f"{who}'s approval no longer counts: they no longer hold the role "
                    "that approved it. The request waits for another approval.",
                },
                after=card,
            )
        elif event.change is Change.FINAL:
            state = request.state.value
            self.outbox.put(
                f"outcome:{request.id}:{state}:thread",
                OUTCOME,
                {"request": request.id, "to": "thread"},
                after=card,
            )
            self.outbox.put(
                f"outcome:{request.id}:{state}:requester",
                OUTCOME,
                {"request": request.id, "to": "requester"},
            )
