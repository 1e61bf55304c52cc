"""Requests a crash left in `executing`: who owns them, whether a DELETE may still land, and
finishing them by reading the registry (never by re-sending blindly).

`Recovery` is a part of :class:`bot.state.requests.Requests` (a mixin: the same object, the
same transactions); it lives here so that the state machine and its recovery each read on
their own. The executing process writes itself down as the owner (bot/state/liveness.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.core.request_types import Clock, DeletionRequest, State
from bot.state import leases, liveness
from bot.state.audit import Audit
from bot.state.snapshots import Snapshot, record
from bot.state.store import Store, from_iso, iso

if TYPE_CHECKING:
    Executor = Callable[[DeletionRequest], str | None]

UNKNOWN_GRACE = timedelta(seconds=45)  # an unanswered DELETE may still land meanwhile
FOREIGN_LEASE = timedelta(minutes=10)  # an owner on another host is presumed dead after this


class Recovery:
    _store: Store
    _audit: Audit
    _clock: Clock
    get: Callable[[int], DeletionRequest]
    _execute: Callable[[int, Executor], DeletionRequest]
    _finish: Callable[..., None]

    def _release(
        self, request: DeletionRequest, why: str, *, grace: timedelta = UNKNOWN_GRACE
    ) -> None:
        """The registry did not answer the write: keep `executing`, with no owner, until the
        grace period has passed; then :meth:`recover` reads the registry and finishes it."""
        now = self._clock()
        with self._store.transaction() as db:
            db.execute(
                "update requests set exec_owner = null, exec_retry_after = ? where id = ?",
                [iso(now + grace), request.id],
            )
            self._audit.append(
                actor="acrbot",
                action="request.unknown",
                target=request.target,
                request_id=request.id,
                outcome="executing",
                error=why,
                at=now,
            )

    def writing(
        self,
        request_id: int,
        *,
        grace: timedelta = UNKNOWN_GRACE,
        snapshot: Snapshot | None = None,
    ) -> int | None:
        """The DELETE is about to go out: until ``grace`` has passed, a crash leaves its
        outcome unknown (it may land after the crash), so recovery must not re-send it.

        Returns None once marked. Two approved requests may name one image: if another one's
        DELETE of it may be in flight (marked, not finished, its grace not over), nothing is
        marked and that request's id is returned, so the caller waits for it and checks the
        registry again instead of sending a second DELETE of the same digest.

        ``snapshot`` (what `undo` needs) is written in the transaction that marks it."""
        now = self._clock()
        with self._store.transaction() as db:
            # Replicas on PostgreSQL: two requests on one image must not both see "nobody
            # else is deleting it" and both mark themselves (a no-op on SQLite).
            self._store.serialize("request marks")
            other = db.execute(
                "select o.id from requests r join requests o on o.id != r.id "
                "and o.state = r.state and o.registry = r.registry "
                "and o.repository = r.repository and o.digest = r.digest "
                "where r.id = ? and r.state = ? and o.exec_retry_after > ? limit 1",
                [request_id, State.EXECUTING.value, iso(now)],
            ).fetchone()
            if other is not None:
                return int(other[0])
            db.execute(
                "update requests set exec_retry_after = ? where id = ? and state = ?",
                [iso(now + grace), request_id, State.EXECUTING.value],
            )
            if snapshot is not None:
                record(db, snapshot)  # undo's snapshot: in the transaction marking the DELETE
        return None

    # -- recovery --------------------------------------------------------------------------

    def stale(self) -> list[tuple[DeletionRequest, str | None, bool]]:
        """Requests in `executing` that nobody is executing any more (the owner died, or a
        write went unanswered and its grace period is over), with the owner judged stale."""
        now = self._clock()
        found = []
        rows = self._store.db.execute(
            "select id, exec_owner, exec_started_at, exec_retry_after from requests "
            "where state = ?",
            [State.EXECUTING.value],
        ).fetchall()
        for request_id, owner, started, retry_after in rows:
            in_doubt = retry_after is not None and from_iso(retry_after) > now
            if owner is None:
                due = not in_doubt
            elif liveness.on_this_host(owner):
                due = not liveness.alive(owner)
            else:  # another host: its heartbeat expired, or the work is very old
                due = (
                    started is None
                    or from_iso(started) + FOREIGN_LEASE <= now
                    or leases.owner_gone(self._store, owner, now=now)
                )
            if due:
                found.append((self.get(request_id), owner, in_doubt))
        return found

    def recover(
        self,
        reconcile: Executor,
        landed: Callable[[DeletionRequest], str | None] = lambda request: None,
    ) -> list[DeletionRequest]:
        """Finish every stale `executing` request with ``reconcile`` (which reads the registry
        and finishes the job or raises); return those this process finished or released.
        A dead owner's DELETE that may still land is not re-sent: ``landed`` (a read) finishes
        it if it is done, else it waits for the grace period like an unanswered one."""
        handled = []
        for request, stale_owner, in_doubt in self.stale():
            now = self._clock()
            with self._store.transaction() as db:
                claimed = db.execute(
                    "update requests set exec_owner = ?, exec_started_at = ? "
                    "where id = ? and state = ? and exec_owner is not distinct from ?",
                    [
                        liveness.this_process(),
                        iso(now),
                        request.id,
                        State.EXECUTING.value,
                        stale_owner,  # unchanged since judged stale, or someone else has it
                    ],
                ).rowcount
            if claimed != 1:
                continue  # another process got there first
            if in_doubt:
                note = landed(request)
                if note is None:
                    with self._store.transaction() as db:
                        db.execute(
                            "update requests set exec_owner = null where id = ?", [request.id]
                        )
                    continue
                self._finish(request, State.DONE, now, decided_by="acrbot", note=note)
                handled.append(self.get(request.id))
                continue
            self._audit.append(
                actor="acrbot",
                action="request.recover",
                target=request.target,
                request_id=request.id,
                outcome="executing",
                at=now,
            )
            handled.append(self._execute(request.id, reconcile))
        return handled
