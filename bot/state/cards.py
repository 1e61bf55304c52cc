"""Where each request's card lives on a chat surface (its channel and message ts).

What the card says, and every announcement about the request, goes through the outbox
(bot/state/outbox.py, bot/state/announce.py); this table only remembers where the card was
posted, so that updates and thread replies find it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.state.store import Store


@dataclass(frozen=True)
class Card:
    request_id: int
    channel: str
    ts: str
    announced: str | None


class Cards:
    def __init__(self, store: Store) -> None:
        self._store = store

    def save(self, request_id: int, *, channel: str, ts: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "insert into cards (request_id, channel, ts, announced) values (?, ?, ?, null) "
                "on conflict (request_id) do update set channel = excluded.channel, "
                "ts = excluded.ts, announced = null",
                [request_id, channel, ts],
            )

    def get(self, request_id: int) -> Card | None:
        rows = list(self._store.db.query("select * from cards where request_id = ?", [request_id]))
        return Card(**rows[0]) if rows else None

    def find(self, channel: str, ts: str) -> Card | None:
        rows = list(
            self._store.db.query("select * from cards where channel = ? and ts = ?", [channel, ts])
        )
        return Card(**rows[0]) if rows else None
