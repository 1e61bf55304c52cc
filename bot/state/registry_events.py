"""Registry events, durable: stored before the sender's 2xx, once per id, then processed.

The receiver (the acking process) records each event here in one transaction per body and
only then answers 2xx: a sender that gets no 2xx retries, and one that got it may forget.
Duplicates are normal (distribution retries in memory and may deliver twice; Event Grid is
at-least-once): the sender's id is the key, and a second insert is a no-op. The worker
claims queued events in arrival order, processes each (bot/kernel or handlers), and marks it
done in the transaction that records its effects (the audit row, the outbox messages), so an
event is processed once even when a worker dies mid-way (the next one takes it again).

Watch folds: the first event of a repository in a channel is posted at once; the following
ones within the window are counted here and summarised in one message when it closes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.registry_events import RegistryEvent
from bot.state import liveness
from bot.state.store import Store

KEEP = timedelta(days=30)  # `events` reads back this far
FOREIGN_LEASE = timedelta(minutes=10)
FOLD_LINES = 10  # lines a summary names before "and N more"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredEvent:
    event: RegistryEvent
    received_at: datetime
    registry: str | None = None  # the configured registry it was matched to, once processed
    outcome: dict[str, Any] | None = None


@dataclass(frozen=True)
class Fold:
    channel: str
    registry: str
    repository: str
    opened_at: datetime
    folded: int
    lines: tuple[str, ...]


class EventLog:
    def __init__(self, store: Store, *, clock: Callable[[], datetime] = _now) -> None:
        self._store = store
        self._clock = clock

    # -- the receiver ----------------------------------------------------------------------

    def record(self, events: Sequence[RegistryEvent]) -> int:
        """Store ``events`` (one transaction); return how many were new."""
        return self.record_bodies([events])[0]

    def record_bodies(self, bodies: Sequence[Sequence[RegistryEvent]]) -> list[int]:
        """Store the events of several bodies in one transaction (the receiver's group
        commit); return how many of each body's were new."""
        now = self._clock().isoformat()
        counts = []
        with self._store.transaction() as db:
            pos = 0
            for events in bodies:
                new = 0
                for event in events:
                    cursor = db.execute(
                        "insert into registry_events (id, pos, host, repository, action, tag, "
                        "digest, at, received_at, event, state) "
                        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued') "
                        "on conflict (id) do nothing",
                        [
                            event.id,
                            pos,
                            event.host,
                            event.repository,
                            event.action.value,
                            event.tag,
                            event.digest,
                            event.at.isoformat(),
                            now,
                            json.dumps(event.as_dict()),
                        ],
                    )
                    new += cursor.rowcount
                    pos += 1
                counts.append(new)
        return counts

    # -- the worker ------------------------------------------------------------------------

    def claim(self, limit: int = 100) -> list[StoredEvent]:
        """Take up to ``limit`` queued events, in arrival order, for this process."""
        owner, now = liveness.this_process(), self._clock().isoformat()
        with self._store.transaction() as db:
            rows = db.execute(
                "select id, event, received_at from registry_events where state = 'queued' "
                "order by received_at, pos limit ?",
                [limit],
            ).fetchall()
            for row in rows:
                db.execute(
                    "update registry_events set state = 'running', owner = ?, started_at = ? "
                    "where id = ? and state = 'queued'",
                    [owner, now, row[0]],
                )
        return [
            StoredEvent(RegistryEvent.from_dict(json.loads(e)), datetime.fromisoformat(r))
            for _, e, r in rows
        ]

    def finish(self, event_id: str, *, registry: str | None, outcome: dict[str, Any]) -> bool:
        """Mark an event done; join the transaction that records its effects. False if it was
        done already (another worker finished it: roll the effects back)."""
        with self._store.transaction() as db:
            cursor = db.execute(
                "update registry_events set state = 'done', registry = ?, outcome = ? "
                "where id = ? and state != 'done'",
                [registry, json.dumps(outcome), event_id],
            )
            return cursor.rowcount == 1

    def release(self, event_ids: list[str]) -> None:
        """Put events this process claimed back in the queue (processing them failed: the
        database was locked or full); the next pass takes them again."""
        with self._store.transaction() as db:
            for event_id in event_ids:
                db.execute(
                    "update registry_events set state = 'queued', owner = null "
                    "where id = ? and state = 'running'",
                    [event_id],
                )

    def requeue_orphans(self) -> int:
        """Put back the events whose worker died while processing them."""
        now = self._clock()
        requeued = 0
        with self._store.transaction() as db:
            rows = db.execute(
                "select id, owner, started_at from registry_events where state = 'running'"
            ).fetchall()
            for event_id, owner, started in rows:
                if owner is None:
                    dead = True
                elif liveness.on_this_host(owner):
                    dead = not liveness.alive(owner)
                else:
                    dead = started is None or datetime.fromisoformat(started) + FOREIGN_LEASE < now
                if dead:
                    requeued += db.execute(
                        "update registry_events set state = 'queued', owner = null "
                        "where id = ? and state = 'running'",
                        [event_id],
                    ).rowcount
        return requeued

    def depth(self) -> int:
        return self._store.db.execute(
            "select count(*) from registry_events where state != 'done'"
        ).fetchone()[0]

    def recent(self, *, repository: str | None = None, limit: int = 20) -> list[StoredEvent]:
        """The newest events first (processed or not), of one repository or all."""
        sql = "select event, received_at, registry, outcome from registry_events"
        params: list[Any] = []
        if repository is not None:
            sql += " where repository = ?"
            params.append(repository)
        sql += " order by received_at desc, pos desc limit ?"
        params.append(limit)
        return [
            StoredEvent(
                RegistryEvent.from_dict(json.loads(e)),
                datetime.fromisoformat(r),
                registry=g,
                outcome=json.loads(o) if o else None,
            )
            for e, r, g, o in self._store.db.execute(sql, params).fetchall()
        ]

    def prune(self) -> int:
        horizon = (self._clock() - KEEP).isoformat()
        with self._store.transaction() as db:
            return db.execute(
                "delete from registry_events where state = 'done' and received_at < ?", [horizon]
            ).rowcount

    # -- watch folds -----------------------------------------------------------------------

    def fold(self, *, channel: str, registry: str, repository: str, line: str) -> bool:
        """True: no fold is open for this repository in this channel, one opens now and the
        caller posts the event at once. False: the event was folded into the open one."""
        now = self._clock().isoformat()
        with self._store.transaction() as db:
            row = db.execute(
                "select folded, lines from watch_folds where channel = ? and registry = ? "
                "and repository = ?",
                [channel, registry, repository],
            ).fetchone()
            if row is None:
                db.execute(
                    "insert into watch_folds (channel, registry, repository, opened_at, "
                    "folded, lines) values (?, ?, ?, ?, 0, '[]')",
                    [channel, registry, repository, now],
                )
                return True
            lines = json.loads(row[1])
            if len(lines) < FOLD_LINES:
                lines.append(line)
            db.execute(
                "update watch_folds set folded = folded + 1, lines = ? where channel = ? "
                "and registry = ? and repository = ?",
                [json.dumps(lines), channel, registry, repository],
            )
            return False

    def due_folds(self, *, window: timedelta) -> list[Fold]:
        """Folds open for ``window`` or longer."""
        horizon = (self._clock() - window).isoformat()
        rows = self._store.db.execute(
            "select channel, registry, repository, opened_at, folded, lines from watch_folds "
            "where opened_at <= ?",
            [horizon],
        ).fetchall()
        return [
            Fold(c, g, r, datetime.fromisoformat(o), n, tuple(json.loads(lines)))
            for c, g, r, o, n, lines in rows
        ]

    def close_fold(self, fold: Fold) -> bool:
        """Close ``fold``; join the transaction that queues its summary. False if another
        worker closed it first."""
        with self._store.transaction() as db:
            return (
                db.execute(
                    "delete from watch_folds where channel = ? and registry = ? and "
                    "repository = ? and opened_at = ?",
                    [fold.channel, fold.registry, fold.repository, fold.opened_at.isoformat()],
                ).rowcount
                == 1
            )
