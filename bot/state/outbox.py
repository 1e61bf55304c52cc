"""The outbox: everything the bot must tell someone, recorded before it is said.

A request's card, the lines in its thread, the outcome sent to its requester, the reply to a
command: each is a row here, written in the same transaction as the change it reports (a
request decided, a job finished), and delivered by a transport (bot/slack/delivery.py) that
retries until the destination has it, honouring Retry-After. So a message that could not be
posted (429, 500, Slack down, the bot restarting) is posted later; an outcome is announced
once per destination, and a failing destination does not hold up the others.

Rows are keyed: `card:12`, `outcome:12:done:thread`, `reply:<job>`. Writing a key twice is a
no-op, which is what makes announcing exactly once hold when two paths race (the approval that
finished a request, and the sweep). A card is the exception: it shows the request's current
state, so touching it again marks it pending again (the latest state is what gets drawn).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.state import leases, liveness
from bot.state.store import Store

KEEP_SENT = timedelta(days=7)
CLAIM_LEASE = timedelta(seconds=60)  # > the Slack clients' timeouts (30 s, response_url 10 s)


def _without_url(payload: dict[str, Any]) -> str:
    """A delivered (or abandoned) item keeps no URL: a Slack response_url lets whoever holds
    it post as the bot for 30 minutes, and the row is kept a week. The payload is the one the
    item was claimed with (the update below only lands while its version is unchanged)."""
    return json.dumps({k: v for k, v in payload.items() if k != "url"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Item:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    after_key: str | None
    version: int
    owner: str | None = None  # who claimed it last (None: nobody, or released)


class Outbox:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = _now,
        owner: Callable[[], str] = liveness.this_process,
    ) -> None:
        self._store = store
        self._clock = clock
        self._owner = owner  # this deliverer's id (a callable: a forked child is another one)
        self.on_put: Callable[[], None] | None = None  # wakes a deliverer in this process

    def put(
        self, key: str, kind: str, payload: dict[str, Any], *, after: str | None = None
    ) -> bool:
        """Record a message to deliver, once per key; join the caller's transaction."""
        now = self._clock().isoformat()
        with self._store.transaction() as db:
            cursor = db.execute(
                "insert into outbox (key, kind, payload, state, next_at, created_at, "
                "after_key) values (?, ?, ?, 'pending', ?, ?, ?) on conflict (key) do nothing",
                [key, kind, json.dumps(payload), now, now, after],
            )
        self._wake()
        return cursor.rowcount == 1

    def _wake(self) -> None:
        if self.on_put is not None:
            self._store.after_commit(self.on_put)

    def touch(
        self, key: str, kind: str, payload: dict[str, Any], *, after: str | None = None
    ) -> None:
        """Record, or mark pending again, an item that shows current state (a card)."""
        now = self._clock().isoformat()
        with self._store.transaction() as db:
            db.execute(
                "insert into outbox (key, kind, payload, state, next_at, created_at, after_key) "
                "values (?, ?, ?, 'pending', ?, ?, ?) on conflict(key) do update set "
                "version = outbox.version + 1, payload = excluded.payload, next_at = case "
                "when outbox.state = 'pending' then outbox.next_at else excluded.next_at end, "
                "state = 'pending'",
                [key, kind, json.dumps(payload), now, now, after],
            )
        self._wake()

    def due(self, limit: int = 50, *, kinds: tuple[str, ...] | None = None) -> list[Item]:
        """Pending items whose time has come, oldest first; an item waits for its `after`,
        and one claimed by a live deliverer is left to it.
        ``kinds``: only those (what can still be delivered while the others are held)."""
        only = f"and o.kind in ({', '.join('?' * len(kinds))}) " if kinds else ""
        now = self._clock()
        rows = self._store.db.execute(
            "select o.id, o.key, o.kind, o.payload, o.attempts, o.created_at, o.after_key, "
            "o.version, o.owner, o.claimed_at "
            "from outbox o left join outbox a on a.key = o.after_key "
            "where o.state = 'pending' and o.next_at <= ? "
            "and (o.after_key is null or a.state is null or a.state != 'pending') "
            f"{only}order by o.id limit ?",
            [now.isoformat(), *(kinds or ()), limit],
        ).fetchall()
        return [
            Item(
                id=row[0],
                key=row[1],
                kind=row[2],
                payload=json.loads(row[3]),
                attempts=row[4],
                created_at=datetime.fromisoformat(row[5]),
                after_key=row[6],
                version=row[7],
                owner=row[8],
            )
            for row in rows
            if row[8] is None or self._abandoned(row[8], row[9], now)
        ]

    def _abandoned(self, owner: str, claimed_at: str | None, now: datetime) -> bool:
        """Its claim has outlived CLAIM_LEASE, or its owner is gone: dead on this host, or on
        another whose heartbeat lease expired (a replica lost: taken over in 20 s, not 60)."""
        if claimed_at is None or datetime.fromisoformat(claimed_at) + CLAIM_LEASE < now:
            return True
        return leases.owner_gone(self._store, owner, now=now)

    def state_of(self, key: str) -> str | None:
        row = self._store.db.execute("select state from outbox where key = ?", [key]).fetchone()
        return row[0] if row else None

    def claim(self, item: Item) -> bool:
        """Take the row for one attempt (and count it) unless another deliverer took it
        since `due` read it; False: leave it."""
        with self._store.transaction() as db:
            return (
                db.execute(
                    "update outbox set attempts = attempts + 1, owner = ?, claimed_at = ? "
                    "where id = ? and state = 'pending' and coalesce(owner, '') = ?",
                    [self._owner(), self._clock().isoformat(), item.id, item.owner or ""],
                ).rowcount
                == 1
            )

    def sent(self, item: Item) -> None:
        """Delivered. A card touched again meanwhile stays pending (it is drawn once more)."""
        with self._store.transaction() as db:
            db.execute("update outbox set owner = null where id = ?", [item.id])
            db.execute(
                "update outbox set state = 'sent', sent_at = ?, error = null, payload = ? "
                "where id = ? and version = ?",
                [self._clock().isoformat(), _without_url(item.payload), item.id, item.version],
            )

    def retry(self, item: Item, *, after: float, error: str) -> None:
        at = (self._clock() + timedelta(seconds=after)).isoformat()
        with self._store.transaction() as db:
            db.execute(
                "update outbox set next_at = ?, error = ?, owner = null "
                "where id = ? and state = 'pending'",
                [at, error, item.id],
            )

    def fail(self, item: Item, error: str) -> None:
        with self._store.transaction() as db:
            db.execute("update outbox set owner = null where id = ?", [item.id])
            db.execute(
                "update outbox set state = 'failed', error = ?, payload = ? "
                "where id = ? and version = ?",
                [error, _without_url(item.payload), item.id, item.version],
            )

    # -- held: the destination refuses our credentials (a revoked token) ------------------

    def hold(self, error: str) -> None:
        """Stop delivering: the destination refuses the bot itself (a revoked or invalid
        token), which no retry of one message can fix. Rows stay pending, none is failed;
        the first hold's time is kept. Recorded in the database so that the other process
        (readiness, `/metrics`) and `acrbot doctor` can say so."""
        with self._store.transaction() as db:
            row = db.execute("select value from meta where key = 'outbox_hold'").fetchone()
            since = json.loads(row[0])["since"] if row else self._clock().isoformat()
            db.execute(
                "insert into meta (key, value) values ('outbox_hold', ?) "
                "on conflict (key) do update set value = excluded.value",
                [json.dumps({"error": error, "since": since})],
            )

    def release(self) -> None:
        with self._store.transaction() as db:
            db.execute("delete from meta where key = 'outbox_hold'")

    def held(self) -> dict[str, str] | None:
        """``{"error": …, "since": …}`` while delivery is held, else None."""
        row = self._store.db.execute("select value from meta where key = 'outbox_hold'").fetchone()
        return json.loads(row[0]) if row else None

    def failed(self) -> int:
        """Rows given up on (kept for a week, like sent ones)."""
        return self._store.db.execute(
            "select count(*) from outbox where state = 'failed'"
        ).fetchone()[0]

    def pending(self) -> int:
        return self._store.db.execute(
            "select count(*) from outbox where state = 'pending'"
        ).fetchone()[0]

    def prune(self) -> int:
        horizon = (self._clock() - KEEP_SENT).isoformat()
        with self._store.transaction() as db:
            return db.execute(
                "delete from outbox where state != 'pending' and created_at < ?", [horizon]
            ).rowcount
