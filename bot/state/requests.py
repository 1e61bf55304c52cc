"""Deletion requests and their state machine.

    pending ──approve (quorum met)──> executing ──> done
       │                                  └──────> failed (reason kept; nothing half-done)
       ├──deny──> denied     ├──cancel──> cancelled     └──(ttl passes)──> expired

Every transition is one `BEGIN IMMEDIATE` transaction that also writes its audit row. The
pending → executing step is a compare-and-set on the state column, so when approvals race,
exactly one of them wins and runs the deletion, with no Python lock involved.

`executing` is a state a crash can leave behind. The executing process writes itself down as
the owner (bot/state/liveness.py); :meth:`Requests.recover` finds requests whose owner died (or
whose DELETE went unanswered, after a grace period), and finishes them by reading the registry, not
by re-sending blindly (handlers/requests/delete.py: `reconcile_delete`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.core.errors import Conflict, NotFound, OutcomeUnknown, PermissionDenied, UserError
from bot.core.redaction import redact_urls
from bot.core.request_types import (
    Approval,
    ApprovalResult,
    Change,
    Clock,
    DeletionRequest,
    ForceUndoSpec,
    PurgeRequestSpec,
    RequestEvent,
    State,
)
from bot.state import liveness
from bot.state.audit import Audit
from bot.state.purges import pin_items
from bot.state.recovery import Recovery
from bot.state.store import Store, from_iso, iso

log = logging.getLogger(__name__)


Executor = Callable[[DeletionRequest], str | None]  # returns a note for the outcome, if any
Authorizer = Callable[[DeletionRequest], None]
# Told of every change, inside the transaction that makes it (so an outbox entry and the
# change commit together).
Listener = Callable[[DeletionRequest, RequestEvent], None]
# The policy rules' say once the quorum is met (handlers/requests/rules_gate.py): given the
# request and who its counted approvals are from, True to execute now, False to hold it
# (a freeze; an approver the rule names still missing). Raising refuses the approval.
Ready = Callable[[DeletionRequest, tuple[str, ...]], bool]


class Requests(Recovery):
    """The state machine: create, approve, deny, cancel, expire; recovery is the Recovery
    mixin (bot/state/recovery.py)."""

    def __init__(self, store: Store, audit: Audit, *, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self.listeners: list[Listener] = []

    def _tell(self, request_id: int, event: RequestEvent) -> None:
        if self.listeners:
            request = self.get(request_id)
            for listener in self.listeners:
                listener(request, event)

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
            "and digest = ? and tag is not distinct from ? and manifest = ? order by id limit 1",
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
        origin: str | None = None,
        channel: str | None = None,
    ) -> DeletionRequest:
        """Record a pending request. ``origin`` (the job that asks) makes this idempotent: the
        same job run again after a crash gets the request it created the first time."""
        now = self._clock()
        with self._store.transaction() as db:
            if (found := self._by_origin(origin)) is not None:
                return found
            row_id = self._insert_pending(
                db,
                {
                    "action": "delete_manifest" if manifest else "delete",
                    "registry": registry,
                    "repository": repository,
                    "tag": tag,
                    "digest": digest,
                    "manifest": int(manifest),
                    "tags": json.dumps(sorted(tags)),
                },
                now=now,
                ttl=ttl,
                requester=requester,
                reason=reason,
                required=required,
                origin=origin,
                channel=channel,
            )
            return self._created(row_id, requester, now)

    def create_purge(
        self,
        *,
        registry: str,
        items: list[dict[str, Any]],
        spec: PurgeRequestSpec,
        requester: str,
        reason: str,
        ttl: timedelta,
        required: int,
        origin: str | None = None,
        channel: str | None = None,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> DeletionRequest:
        """Record a purge request pinning every item (repository, tag, digest) exactly; the
        request's digest is a hash of that list, so the card can show what was pinned.
        ``skipped``: (item, reason) for what planning left out, kept for `request N` (not
        pinned: nothing is done to them)."""
        import hashlib

        now = self._clock()
        pin = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
        with self._store.transaction() as db:
            if (found := self._by_origin(origin)) is not None:
                return found
            row_id = self._insert_pending(
                db,
                {
                    "action": "purge",
                    "registry": registry,
                    "repository": ", ".join(spec.repositories)[:200] or "-",
                    "tag": None,
                    "digest": f"sha256:{pin}",
                    "manifest": 0,
                    "tags": "[]",
                    "spec": json.dumps(spec.to_json()),
                },
                now=now,
                ttl=ttl,
                requester=requester,
                reason=reason,
                required=required,
                origin=origin,
                channel=channel,
            )
            pin_items(db, row_id, items, skipped)
            return self._created(
                row_id, requester, now, note=f"{len(items)} items pinned (sha256:{pin[:12]})"
            )

    def create_forced_undo(
        self,
        *,
        registry: str,
        spec: ForceUndoSpec,
        requester: str,
        reason: str,
        ttl: timedelta,
        required: int,
        origin: str | None = None,
        channel: str | None = None,
    ) -> DeletionRequest:
        """Record an `undo --force` request pinning each tag and the digests it moves from and
        to (handlers/requests/undo_force.py); the request's digest is a hash of that list."""
        import hashlib

        now = self._clock()
        data = spec.to_json()
        pin = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        with self._store.transaction() as db:
            if (found := self._by_origin(origin)) is not None:
                return found
            row_id = self._insert_pending(
                db,
                {
                    "action": "undo_force",
                    "registry": registry,
                    "repository": ", ".join(spec.repositories)[:200] or "-",
                    "tag": None,
                    "digest": f"sha256:{pin}",
                    "manifest": 0,
                    "tags": json.dumps([f"{i.repository}:{i.tag}" for i in spec.items]),
                    "spec": json.dumps(data),
                },
                now=now,
                ttl=ttl,
                requester=requester,
                reason=reason,
                required=required,
                origin=origin,
                channel=channel,
            )
            return self._created(
                row_id,
                requester,
                now,
                note=f"{len(spec.items)} tags pinned, undoing #{spec.source} (sha256:{pin[:12]})",
            )

    def _by_origin(self, origin: str | None) -> DeletionRequest | None:
        """The request the job ``origin`` already created (a re-run after a crash), if any."""
        if origin is None:
            return None
        found = self._store.db.execute(
            "select id from requests where origin = ?", [origin]
        ).fetchone()
        return self.get(found[0]) if found else None

    def _insert_pending(
        self,
        db: Any,
        fields: dict[str, Any],
        *,
        now: datetime,
        ttl: timedelta,
        requester: str,
        reason: str,
        required: int,
        origin: str | None,
        channel: str | None,
    ) -> int:
        """Insert a pending request: what it deletes (``fields``) and what every request has."""
        row = {
            **fields,
            "requester": requester,
            "reason": reason,
            "created_at": iso(now),
            "expires_at": iso(now + ttl),
            "required": required,
            "state": State.PENDING.value,
            "origin": origin,
            "channel": channel,
        }
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        sql = f"insert into requests ({columns}) values ({marks}) returning id"
        return int(db.execute(sql, list(row.values())).fetchone()[0])

    def _created(
        self, row_id: int, requester: str, now: datetime, *, note: str | None = None
    ) -> DeletionRequest:
        """Audit and announce a request just inserted (inside its transaction)."""
        request = self.get(row_id)
        self._audit.append(
            actor=requester,
            action="request.create",
            target=request.target,
            request_id=row_id,
            outcome="pending",
            error=note,
            at=now,
        )
        self._tell(row_id, RequestEvent(Change.CREATED))
        return request

    def approve(
        self,
        request_id: int,
        *,
        approver: str,
        reason: str | None,
        authorize: Authorizer,
        execute: Executor,
        origin: str | None = None,
        still_counts: Callable[[str], bool] | None = None,
        ready: Ready | None = None,
    ) -> ApprovalResult:
        """Record one approval; when it completes the quorum, run ``execute`` exactly once.

        The same ``origin`` (a job run again after a crash) finds its approval recorded and
        gets the request as it stands, instead of "you already approved". Before the quorum
        is counted, every earlier approval must still be backed by a current role
        (``still_counts``): one whose approver lost the role is withdrawn (audited, and
        announced) and the request waits for another.
        """
        now = self._clock()
        if origin is not None and self._approved_by_origin(request_id, approver, origin):
            return ApprovalResult(request=self.get(request_id), executed=False)
        self._expire_if_due(request_id, now)
        won = False
        with self._store.transaction() as db:
            request = self._pending(request_id, now)
            self._may_approve(request, approver, authorize)
            db.execute(
                "insert into approvals (request_id, approver, reason, created_at, origin) "
                "values (?, ?, ?, ?, ?)",
                [request_id, approver, reason, iso(now), origin],
            )
            void = self._withdraw_void(db, request, still_counts, now)
            count = len(request.approvals) - len(void) + 1
            self._audit.append(
                actor=approver,
                action="request.approve",
                target=request.target,
                request_id=request_id,
                outcome=f"{count}/{request.required}",
                at=now,
            )
            counted = (*(a.approver for a in request.approvals if a.approver not in void), approver)
            if count >= request.required and (ready is None or ready(request, counted)):
                won = self._claim_execution(db, request_id, now)
            if not won:
                self._tell(request_id, RequestEvent(Change.APPROVED, approver))
        if not won:
            return ApprovalResult(
                request=self.get(request_id), executed=False, withdrawn=tuple(void)
            )
        return ApprovalResult(
            request=self._execute(request_id, execute), executed=True, withdrawn=tuple(void)
        )

    def run_now(
        self,
        request_id: int,
        *,
        execute: Executor,
        ready: Callable[[DeletionRequest], bool],
        before: Callable[[DeletionRequest], None] | None = None,
        audit: tuple[str, str, str] | None = None,
    ) -> DeletionRequest | None:
        """Claim a pending request for execution and run it through the one execution path
        approvals use, if ``ready`` says so now (checked inside the claim's transaction): a
        request held by a freeze once it is over, or a break-glass. ``before`` writes what
        must commit with the claim (a break-glass's review); ``audit`` is (actor, action,
        outcome) for the row that says why it ran. None when it was not run (not ready, no
        longer pending, or expired)."""
        now = self._clock()
        self._expire_if_due(request_id, now)
        with self._store.transaction() as db:
            request = self.get(request_id)
            if request.state is not State.PENDING or request.expires_at <= now:
                return None
            if not ready(request):
                return None
            if before is not None:
                before(request)
            if audit is not None:
                actor, action, outcome = audit
                self._audit.append(
                    actor=actor,
                    action=action,
                    target=request.target,
                    request_id=request_id,
                    outcome=outcome,
                    at=now,
                )
            if not self._claim_execution(db, request_id, now):
                return None
        return self._execute(request_id, execute)

    def _approved_by_origin(self, request_id: int, approver: str, origin: str) -> bool:
        """Whether this job (run again after a crash) already recorded this approval."""
        row = self._store.db.execute(
            "select 1 from approvals where request_id = ? and approver = ? and origin = ?",
            [request_id, approver, origin],
        ).fetchone()
        return row is not None

    @staticmethod
    def _may_approve(request: DeletionRequest, approver: str, authorize: Authorizer) -> None:
        """Separation of duties, the approver's role now, and one approval per person."""
        if request.requester == approver:
            raise PermissionDenied(
                f"you cannot approve request #{request.id}: you made it (separation of duties)"
            )
        authorize(request)
        if any(a.approver == approver for a in request.approvals):
            raise Conflict(
                f"you already approved request #{request.id} "
                f"({len(request.approvals)} of {request.required} approvals)"
            )

    def _withdraw_void(
        self,
        db: Any,
        request: DeletionRequest,
        still_counts: Callable[[str], bool] | None,
        now: datetime,
    ) -> list[str]:
        """Withdraw (audited, announced) every earlier approval whose approver lost the role;
        inside the approval's transaction. Returns who they were."""
        void = [
            a.approver
            for a in request.approvals
            if still_counts is not None and not still_counts(a.approver)
        ]
        for who in void:
            db.execute(
                "delete from approvals where request_id = ? and approver = ?",
                [request.id, who],
            )
            self._audit.append(
                actor="acrbot",
                action="request.approval_void",
                target=request.target,
                request_id=request.id,
                outcome="withdrawn",
                error=f"{who} no longer holds the role that approved it",
                at=now,
            )
            self._tell(request.id, RequestEvent(Change.VOID, who))
        return void

    def _claim_execution(self, db: Any, request_id: int, now: datetime) -> bool:
        """pending -> executing, owned by this process: a compare-and-set, so when approvals
        race exactly one of them wins (inside the approval's transaction)."""
        cursor = db.execute(
            "update requests set state = ?, exec_owner = ?, exec_started_at = ? "
            "where id = ? and state = ?",
            [
                State.EXECUTING.value,
                liveness.this_process(),
                iso(now),
                request_id,
                State.PENDING.value,
            ],
        )
        return cursor.rowcount == 1

    def deny(
        self,
        request_id: int,
        *,
        user: str,
        reason: str,
        authorize: Authorizer,
        origin: str | None = None,
    ) -> DeletionRequest:
        now = self._clock()
        if self._decided_by(request_id, origin):
            return self.get(request_id)
        self._expire_if_due(request_id, now)
        with self._store.transaction():
            request = self._pending(request_id, now)
            if request.requester == user:
                raise PermissionDenied(
                    f"you cannot deny request #{request_id}: you made it; use `cancel {request_id}`"
                )
            authorize(request)
            self._finish(
                request,
                State.DENIED,
                now,
                decided_by=user,
                decision_reason=reason,
                decided_origin=origin,
            )
        return self.get(request_id)

    def cancel(self, request_id: int, *, user: str, origin: str | None = None) -> DeletionRequest:
        now = self._clock()
        if self._decided_by(request_id, origin):
            return self.get(request_id)
        self._expire_if_due(request_id, now)
        with self._store.transaction():
            request = self._pending(request_id, now)
            if request.requester != user:
                raise PermissionDenied(
                    f"only {request.requester}, who made request #{request_id}, can cancel it"
                )
            self._finish(request, State.CANCELLED, now, decided_by=user, decided_origin=origin)
        return self.get(request_id)

    def _decided_by(self, request_id: int, origin: str | None) -> bool:
        """Whether the job ``origin`` already decided this request (a re-run after a crash)."""
        if origin is None:
            return False
        row = self._store.db.execute(
            "select 1 from requests where id = ? and decided_origin = ?", [request_id, origin]
        ).fetchone()
        return row is not None

    def expire_due(self) -> list[DeletionRequest]:
        """Mark every pending request past its expiry as expired; return them (newly expired)."""
        now = self._clock()
        with self._store.transaction() as db:
            rows = list(
                db.query(
                    "select id from requests where state = ? and expires_at <= ?",
                    [State.PENDING.value, iso(now)],
                )
            )
            expired = []
            for row in rows:
                self._store.serialize(f"request {row['id']}")
                request = self.get(row["id"])  # again, under its lock: still pending?
                if request.state is State.PENDING and request.expires_at <= now:
                    self._finish(request, State.EXPIRED, now, decided_by="acrbot")
                    expired.append(row["id"])
        return [self.get(request_id) for request_id in expired]

    # -- internals -------------------------------------------------------------------------

    def _pending(self, request_id: int, now: datetime) -> DeletionRequest:
        """The request if it can still be decided; otherwise a Conflict saying why not.

        Called inside a transaction. An overdue request is refused here even if the sweep has
        not marked it yet; :meth:`_expire_if_due` marks it before the transaction starts.
        Holds the request's lock until the transaction ends (PostgreSQL: two replicas
        approving at once count each other's approval; SQLite's writers are serial anyway).
        """
        self._store.serialize(f"request {request_id}")
        request = self.get(request_id)
        if request.state is State.PENDING and request.expires_at <= now:
            raise Conflict(
                f"request #{request_id} expired at "
                f"{request.expires_at:%Y-%m-%d %H:%M} UTC; it cannot change now"
            )
        if request.state is not State.PENDING:
            raise Conflict(f"request #{request_id} {_state_phrase(request)}; it cannot change now")
        return request

    def _expire_if_due(self, request_id: int, now: datetime) -> None:
        """Mark an overdue pending request expired, in its own transaction."""
        with self._store.transaction():
            self._store.serialize(f"request {request_id}")
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
        note: str | None = None,
        decided_origin: str | None = None,
    ) -> None:
        changes = {
            "state": state.value,
            "finished_at": iso(now),
            **({"decided_by": decided_by} if decided_by else {}),
            **({"decision_reason": decision_reason} if decision_reason else {}),
            **({"error": error} if error else {}),
            **({"note": note} if note else {}),
            **({"decided_origin": decided_origin} if decided_origin else {}),
            "exec_owner": None,
        }
        with self._store.transaction() as db:
            # Compare-and-set on the state the caller read: a request finishes once.
            changed = db.execute(
                f"update requests set {', '.join(f'{c} = ?' for c in changes)} "
                "where id = ? and state = ?",
                [*changes.values(), request.id, request.state.value],
            ).rowcount
            if changed != 1:
                raise Conflict(f"request #{request.id} changed meanwhile; look at it again")
            self._audit.append(
                actor=decided_by or request.requester,
                action=f"request.{state.value}",
                target=request.target,
                request_id=request.id,
                outcome=state.value,
                error=error or note,
                at=now,
            )
            self._tell(request.id, RequestEvent(Change.FINAL))

    def _execute(self, request_id: int, execute: Executor) -> DeletionRequest:
        request = self.get(request_id)
        try:
            note = execute(request)
        except OutcomeUnknown as exc:
            self._release(request, redact_urls(str(exc)), grace=timedelta(seconds=exc.grace))
        except UserError as exc:
            why = redact_urls(str(exc))  # the audit is permanent: no URL's password in it
            self._finish(request, State.FAILED, self._clock(), decided_by="acrbot", error=why)
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
            self._finish(request, State.DONE, self._clock(), decided_by="acrbot", note=note)
        return self.get(request_id)

    def _load(self, row: dict) -> DeletionRequest:
        approvals = tuple(
            Approval(approver=a["approver"], reason=a["reason"], at=from_iso(a["created_at"]))
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
            created_at=from_iso(row["created_at"]),
            expires_at=from_iso(row["expires_at"]),
            required=row["required"],
            state=State(row["state"]),
            approvals=approvals,
            decided_by=row["decided_by"],
            decision_reason=row["decision_reason"],
            error=row["error"],
            finished_at=from_iso(row["finished_at"]) if row["finished_at"] else None,
            note=row.get("note"),
            origin=row.get("origin"),
            channel=row.get("channel"),
            kind=row["action"] if row["action"] in ("purge", "undo_force") else "",
            spec=(
                PurgeRequestSpec.from_json(json.loads(row["spec"]))
                if row.get("spec") and row["action"] == "purge"
                else None
            ),
            forced=(
                ForceUndoSpec.from_json(json.loads(row["spec"]))
                if row["action"] == "undo_force"
                else None
            ),
        )


def _state_phrase(request: DeletionRequest) -> str:
    """`has expired (at …)`, `was denied by bob`, `has failed`, `is done`: said as a person
    would."""
    if request.state is State.EXPIRED:
        return f"has expired (at {request.expires_at:%Y-%m-%d %H:%M} UTC)"
    if request.state in (State.DENIED, State.CANCELLED) and request.decided_by:
        return f"was {request.state.value} by {request.decided_by}"
    if request.state is State.FAILED:
        return "has failed"
    if request.state is State.EXECUTING:
        return "is being carried out"
    return f"is {request.state.value}"
