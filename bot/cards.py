"""Where each request's card lives on a chat surface, and which outcome it has announced.

The announced state works as an outbox: a final state (done, denied, expired, …) that the
card has not announced yet is announced by whoever gets there first — the action that caused
it or the periodic sweep — so an outcome reached while the bot was down is still announced
after a restart, and never twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.requests import State
from bot.store import Store

FINAL = (State.DONE, State.DENIED, State.CANCELLED, State.EXPIRED, State.FAILED)


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
            db["cards"].insert(
                {"request_id": request_id, "channel": channel, "ts": ts, "announced": None},
                replace=True,
            )

    def get(self, request_id: int) -> Card | None:
        rows = list(self._store.db["cards"].rows_where("request_id = ?", [request_id]))
        return Card(**rows[0]) if rows else None

    def find(self, channel: str, ts: str) -> Card | None:
        rows = list(self._store.db["cards"].rows_where("channel = ? and ts = ?", [channel, ts]))
        return Card(**rows[0]) if rows else None

    def claim_announcement(self, request_id: int, state: State) -> bool:
        """True for exactly one caller per (request, final state): that caller announces it."""
        with self._store.transaction() as db:
            cursor = db.execute(
                "update cards set announced = ? where request_id = ? "
                "and (announced is null or announced != ?)",
                [state.value, request_id, state.value],
            )
            return cursor.rowcount == 1

    def release_announcement(self, request_id: int) -> None:
        """Undo a claim whose announcement could not be posted, so the sweep tries again."""
        with self._store.transaction() as db:
            db.execute("update cards set announced = null where request_id = ?", [request_id])

    def unannounced(self) -> list[int]:
        """Requests with a card whose final state has not been announced yet."""
        marks = ", ".join("?" for _ in FINAL)
        rows = self._store.db.query(
            "select c.request_id from cards c join requests r on r.id = c.request_id "
            f"where r.state in ({marks}) and (c.announced is null or c.announced != r.state) "
            "order by c.request_id",
            [s.value for s in FINAL],
        )
        return [row["request_id"] for row in rows]


class Deliveries:
    """Keys of deliveries already handled, so a retried or replayed one runs only once."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def first_time(self, key: str, *, now: datetime) -> bool:
        with self._store.transaction() as db:
            cursor = db.execute(
                "insert or ignore into deliveries (key, at) values (?, ?)",
                [key, now.isoformat(timespec="seconds")],
            )
            return cursor.rowcount == 1

    def prune(self, *, older_than: datetime) -> int:
        with self._store.transaction() as db:
            return db.execute(
                "delete from deliveries where at < ?", [older_than.isoformat(timespec="seconds")]
            ).rowcount

    @staticmethod
    def horizon(now: datetime) -> datetime:
        return now - timedelta(days=1)
