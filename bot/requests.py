"""Deletion requests and their state machine.

    pending ──approve (quorum met)──> executing ──> done
       │                                  └──────> failed (reason kept; nothing half-done)
       ├──deny──> denied     ├──cancel──> cancelled     └──(ttl passes)──> expired

Every transition is one `BEGIN IMMEDIATE` transaction that also writes its audit row. The
pending → executing step is a compare-and-set on the state column, so when approvals race,
exactly one of them wins and runs the deletion, with no Python lock involved.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.audit import Audit
from bot.errors import Conflict, NotFound, PermissionDenied, UserError
from bot.store import Store

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class State(StrEnum):
    PENDING = "pending"
    EXECUTING = "executing"
    DONE = "done"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True)
class Approval:
    approver: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class DeletionRequest:
    id: int
    registry: str
    repository: str
    tag: str | None
    digest: str
    manifest: bool
    tags: tuple[str, ...]  # every tag that goes when this request executes
    requester: str
    reason: str
    created_at: datetime
    expires_at: datetime
    required: int
    state: State
    approvals: tuple[Approval, ...] = ()
    decided_by: str | None = None
    decision_reason: str | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def action(self) -> str:
        return "delete_manifest" if self.manifest else "delete"

    @property
    def image(self) -> str:
        ref = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{ref}@{self.digest}" if self.manifest or not self.tag else ref

    @property
    def target(self) -> str:
        return f"{self.registry}/{self.image}"


@dataclass(frozen=True)
class ApprovalResult:
    """What an approval led to: still waiting, or the request's final state."""

    request: DeletionRequest
    executed: bool


Executor = Callable[[DeletionRequest], None]
Authorizer = Callable[[DeletionRequest], None]


class Requests:
    def __init__(self, store: Store, audit: Audit, *, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    # -- reading ---------------------------------------------------------------------------

    def get(self, request_id: int) -> DeletionRequest:
        rows = list(self._store.db.query("select * from requests where id = ?", [request_id]))
        if not rows:
            raise NotFound(f"there is no request #{request_id}")
        return self._load(rows[0])

    def list(
        self,
        *,
        states: Iterable[State] | None = None,
        requester: str | None = None,
        limit: int = 200,
    ) -> list[DeletionRequest]:
        where, params = [], []
        if states is not None:
            states = list(states)
            where.append(f"state in ({', '.join('?' for _ in states)})")
            params.extend(s.value for s in states)
        if requester is not None:
            where.append("requester = ?")
            params.append(requester)
        sql = "select * from requests"
        if where:
            sql += " where " + " and ".join(where)
        rows = self._store.db.query(sql + " order by id desc limit ?", [*params, limit])
        return [self._load(row) for row in rows]

    def pending_like(
        self,
        *,
        registry: str,
        repository: str,
        tag: str | None,
        digest: str,
        manifest: bool,
    ) -> int | None:
        """The id of a pending request for exactly this deletion, if there is one."""
        row = self._store.db.execute(
            "select id from requests where state = ? and registry = ? and repository = ? "
            "and digest = ? and tag is ? and manifest = ? order by id limit 1",
            [State.PENDING.value, registry, repository, digest, tag, int(manifest)],
        ).fetchone()
        return row[0] if row else None

    # -- transitions -----------------------------------------------------------------------

    def create(
        self,
        *,
        registry: str,
        repository: str,
        tag: str | None,
        digest: str,
        manifest: bool,
        tags: Iterable[str],
        requester: str,
        reason: str,
        ttl: timedelta,
        required: int,
    ) -> DeletionRequest:
        now = self._clock()
        with self._store.transaction() as db:
            row_id = (
                db["requests"]
                .insert(
                    {
                        "action": "delete_manifest" if manifest else "delete",
                        "registry": registry,
                        "repository": repository,
                        "tag": tag,
                        "digest": digest,
                        "manifest": int(manifest),
                        "tags": json.dumps(sorted(tags)),
                        "requester": requester,
                        "reason": reason,
                        "created_at": _iso(now),
                        "expires_at": _iso(now + ttl),
                        "required": required,
                        "state": State.PENDING.value,
                    }
                )
                .last_pk
            )
            request = self.get(row_id)
            self._audit.append(
                actor=requester,
                action="request.create",
                target=request.target,
                request_id=row_id,
                outcome="pending",
                at=now,
            )
        return request

    def approve(
        self,
        request_id: int,
        *,
        approver: str,
        reason: str | None,
        authorize: Authorizer,
        execute: Executor,
    ) -> ApprovalResult:
        """Record one approval; when it completes the quorum, run ``execute`` exactly once."""
        now = self._clock()
        self._expire_if_due(request_id, now)
        won = False
        with self._store.transaction() as db:
            request = self._pending(request_id, now)
            if request.requester == approver:
                raise PermissionDenied(
                    f"you cannot approve request #{request_id}: you made it (separation of duties)"
                )
            authorize(request)
            if any(a.approver == approver for a in request.approvals):
                raise Conflict(
                    f"you already approved request #{request_id} "
                    f"({len(request.approvals)} of {request.required} approvals)"
                )
            db["approvals"].insert(
                {
                    "request_id": request_id,
                    "approver": approver,
                    "reason": reason,
                    "created_at": _iso(now),
                }
            )
            count = len(request.approvals) + 1
            self._audit.append(
                actor=approver,
                action="request.approve",
                target=request.target,
                request_id=request_id,
                outcome=f"{count}/{request.required}",
                at=now,
            )
            if count >= request.required:
                cursor = db.execute(
                    "update requests set state = ? where id = ? and state = ?",
                    [State.EXECUTING.value, request_id, State.PENDING.value],
                )
                won = cursor.rowcount == 1
        if not won:
            return ApprovalResult(request=self.get(request_id), executed=False)
        return ApprovalResult(request=self._execute(request_id, execute), executed=True)

    def deny(
        self,
        request_id: int,
        *,
        user: str,
        reason: str,
        authorize: Authorizer,
    ) -> DeletionRequest:
        now = self._clock()
        self._expire_if_due(request_id, now)
        with self._store.transaction():
            request = self._pending(request_id, now)
            if request.requester == user:
                raise PermissionDenied(
                    f"you cannot deny request #{request_id}: you made it; use `cancel {request_id}`"
                )
            authorize(request)
            self._finish(request, State.DENIED, now, decided_by=user, decision_reason=reason)
        return self.get(request_id)

    def cancel(self, request_id: int, *, user: str) -> DeletionRequest:
        now = self._clock()
        self._expire_if_due(request_id, now)
        with self._store.transaction():
            request = self._pending(request_id, now)
            if request.requester != user:
                raise PermissionDenied(
                    f"only {request.requester}, who made request #{request_id}, can cancel it"
                )
            self._finish(request, State.CANCELLED, now, decided_by=user)
        return self.get(request_id)

    def expire_due(self) -> list[DeletionRequest]:
        """Mark every pending request past its expiry as expired; return them (newly expired)."""
        now = self._clock()
        with self._store.transaction() as db:
            rows = list(
                db.query(
                    "select id from requests where state = ? and expires_at <= ?",
                    [State.PENDING.value, _iso(now)],
                )
            )
            for row in rows:
                self._finish(self.get(row["id"]), State.EXPIRED, now, decided_by="acrbot")
        return [self.get(row["id"]) for row in rows]

    # -- internals -------------------------------------------------------------------------

    def _pending(self, request_id: int, now: datetime) -> DeletionRequest:
        """The request if it can still be decided; otherwise a Conflict saying why not.

        Called inside a transaction. An overdue request is refused here even if the sweep has
        not marked it yet; :meth:`_expire_if_due` marks it before the transaction starts.
        """
        request = self.get(request_id)
        if request.state is State.PENDING and request.expires_at <= now:
            raise Conflict(
                f"request #{request_id} expired at "
                f"{request.expires_at:%Y-%m-%d %H:%M} UTC; it cannot change now"
            )
        if request.state is not State.PENDING:
            raise Conflict(f"request #{request_id} is {_describe(request)}; it cannot change now")
        return request

    def _expire_if_due(self, request_id: int, now: datetime) -> None:
        """Mark an overdue pending request expired, in its own transaction."""
        with self._store.transaction():
            request = self.get(request_id)
            if request.state is State.PENDING and request.expires_at <= now:
                self._finish(request, State.EXPIRED, now, decided_by="acrbot")

    def _finish(
        self,
        request: DeletionRequest,
        state: State,
        now: datetime,
        *,
        decided_by: str | None = None,
        decision_reason: str | None = None,
        error: str | None = None,
    ) -> None:
        with self._store.transaction() as db:
            db["requests"].update(
                request.id,
                {
                    "state": state.value,
                    "finished_at": _iso(now),
                    **({"decided_by": decided_by} if decided_by else {}),
                    **({"decision_reason": decision_reason} if decision_reason else {}),
                    **({"error": error} if error else {}),
                },
            )
            self._audit.append(
                actor=decided_by or request.requester,
                action=f"request.{state.value}",
                target=request.target,
                request_id=request.id,
                outcome=state.value,
                error=error,
                at=now,
            )

    def _execute(self, request_id: int, execute: Executor) -> DeletionRequest:
        request = self.get(request_id)
        try:
            execute(request)
        except UserError as exc:
            self._finish(request, State.FAILED, self._clock(), decided_by="acrbot", error=str(exc))
        except Exception:
            log.exception("executing request #%s failed", request_id)
            self._finish(
                request,
                State.FAILED,
                self._clock(),
                decided_by="acrbot",
                error="internal error while deleting; nothing was reported as deleted",
            )
            raise
        else:
            self._finish(request, State.DONE, self._clock(), decided_by="acrbot")
        return self.get(request_id)

    def _load(self, row: dict) -> DeletionRequest:
        approvals = tuple(
            Approval(approver=a["approver"], reason=a["reason"], at=_dt(a["created_at"]))
            for a in self._store.db.query(
                "select * from approvals where request_id = ? order by created_at, approver",
                [row["id"]],
            )
        )
        return DeletionRequest(
            id=row["id"],
            registry=row["registry"],
            repository=row["repository"],
            tag=row["tag"],
            digest=row["digest"],
            manifest=bool(row["manifest"]),
            tags=tuple(json.loads(row["tags"] or "[]")),
            requester=row["requester"],
            reason=row["reason"],
            created_at=_dt(row["created_at"]),
            expires_at=_dt(row["expires_at"]),
            required=row["required"],
            state=State(row["state"]),
            approvals=approvals,
            decided_by=row["decided_by"],
            decision_reason=row["decision_reason"],
            error=row["error"],
            finished_at=_dt(row["finished_at"]) if row["finished_at"] else None,
        )


def _describe(request: DeletionRequest) -> str:
    if request.state is State.EXPIRED:
        return f"expired (at {request.expires_at:%Y-%m-%d %H:%M} UTC)"
    if request.state in (State.DENIED, State.CANCELLED) and request.decided_by:
        return f"{request.state.value} by {request.decided_by}"
    return request.state.value


def _iso(value: datetime) -> str:
    """UTC, fixed format: stored times compare correctly as strings."""
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)
