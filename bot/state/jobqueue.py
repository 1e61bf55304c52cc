"""The durable job queue: what a user was acked for survives the worker that runs it.

The process that talks to Slack writes each job here *before* its ack goes out (one INSERT in
WAL mode; bench/ack_latency.py measures it) and rings the worker. The worker claims jobs,
runs them and marks them done in the same transaction as the command's audit row and its
reply (bot/state/outbox.py), so a job is either finished with its answer queued, or not finished
at all. A job whose worker died is run again by the next worker; one older than a Slack
response_url lives (30 minutes) is not run but apologised for.

The key is Slack's own delivery id (trigger_id, event_id, or a hash of the signed body):
inserting it twice is a no-op, which is what makes retries and replays harmless across
restarts. Keys are kept for a day, far longer than Slack's 5-minute replay window.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.state import leases, liveness
from bot.state.store import Store

KEEP_DONE = timedelta(days=1)
STALE = timedelta(minutes=30)  # a response_url's lifetime
FOREIGN_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class QueuedJob:
    key: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int  # runs started before this one (1 or more: its worker died mid-run)


def _now() -> datetime:
    return datetime.now(UTC)


class JobQueue:
    """Jobs in the `jobs` table. Its clock is the real one: a response_url expires in real
    time, whatever clock the requests run on."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = _now) -> None:
        self._store = store
        self._clock = clock

    def enqueue(self, key: str, kind: str, payload: dict[str, Any]) -> bool:
        """Record a job; False if that key was seen before (a retry or a replay).

        One statement, its own transaction (or the caller's): on PostgreSQL one round trip
        on the acking path instead of three (BEGIN, INSERT, COMMIT)."""
        cursor = self._store.db.execute(
            "insert into jobs (key, kind, payload, state, created_at) "
            "values (?, ?, ?, 'queued', ?) on conflict (key) do nothing",
            [key, kind, json.dumps(payload), self._clock().isoformat()],
        )
        return cursor.rowcount == 1

    @property
    def networked(self) -> bool:
        """Whether each write is a network round trip (PostgreSQL), not a local file's."""
        return self._store.engine == "postgresql"

    def probe(self) -> None:
        """Write one row and commit it: whether the database takes writes now (a lock held
        by another process, a full disk). It lands in the WAL like a job would."""
        with self._store.transaction() as db:
            db.execute(
                "insert into meta (key, value) values ('write_probe', ?) "
                "on conflict (key) do update set value = excluded.value",
                [self._clock().isoformat()],
            )

    def depth(self) -> int:
        """Jobs waiting for a worker (the acking side refuses new ones past a bound)."""
        return self._store.db.execute(
            "select count(*) from jobs where state = 'queued'"
        ).fetchone()[0]

    def claim(self, limit: int = 32) -> list[QueuedJob]:
        """Take up to ``limit`` queued jobs, oldest first, for this process. On PostgreSQL the
        rows are locked as they are read and rows another worker is claiming are skipped
        (`FOR UPDATE SKIP LOCKED`), so two replicas never take the same job."""
        owner, now = liveness.this_process(), self._clock().isoformat()
        with self._store.transaction() as db:
            rows = db.execute(
                "select key, kind, payload, created_at, attempts from jobs "
                "where state = 'queued' order by created_at, key limit ?" + self._store.skip_locked,
                [limit],
            ).fetchall()
            for row in rows:
                db.execute(
                    "update jobs set state = 'running', owner = ?, started_at = ?, "
                    "attempts = attempts + 1 where key = ?",
                    [owner, now, row[0]],
                )
        return [
            QueuedJob(
                key=key,
                kind=kind,
                payload=json.loads(payload),
                created_at=datetime.fromisoformat(created),
                attempts=attempts + 1,
            )
            for key, kind, payload, created, attempts in rows
        ]

    def finish(self, key: str, outcome: str = "done") -> None:
        """Mark a job done; call inside the transaction that records its effects. Its
        payload goes: only the key is kept (to recognise a replay), not the response_url
        (a capability: post as the bot) nor what the user typed."""
        with self._store.transaction() as db:
            db.execute(
                "update jobs set state = 'done', finished_at = ?, outcome = ?, payload = '{}' "
                "where key = ?",
                [self._clock().isoformat(), outcome, key],
            )

    def is_done(self, key: str) -> bool:
        row = self._store.db.execute("select state from jobs where key = ?", [key]).fetchone()
        return bool(row) and row[0] == "done"

    def requeue_orphans(self) -> int:
        """Put back the jobs whose worker died while running them; return how many."""
        now = self._clock()
        requeued = 0
        with self._store.transaction() as db:
            rows = db.execute(
                "select key, owner, started_at from jobs where state = 'running'"
            ).fetchall()
            for key, owner, started in rows:
                if owner is None:
                    dead = True
                elif liveness.on_this_host(owner):
                    dead = not liveness.alive(owner)
                else:  # another host: its heartbeat expired, or the job is very old
                    dead = (
                        started is None
                        or datetime.fromisoformat(started) + FOREIGN_LEASE < now
                        or leases.owner_gone(self._store, owner, now=now)
                    )
                if dead:
                    db.execute(
                        "update jobs set state = 'queued', owner = null where key = ? "
                        "and state = 'running'",
                        [key],
                    )
                    requeued += 1
        return requeued

    def prune(self) -> int:
        """Forget done jobs after a day (Slack replays only within 5 minutes)."""
        horizon = (self._clock() - KEEP_DONE).isoformat()
        with self._store.transaction() as db:
            return db.execute(
                "delete from jobs where state = 'done' and created_at < ?", [horizon]
            ).rowcount

    def counts(self) -> dict[str, int]:
        rows = self._store.db.execute("select state, count(*) from jobs group by state")
        return {state: n for state, n in rows}

    def too_old(self, job: QueuedJob) -> bool:
        return job.created_at + STALE < self._clock()
