"""What a request is, as a value: its state, its approvals, what it deletes.

Plain frozen data, no database: the state machine that changes them is bot/state/requests.py;
replies, cards and notebooks read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What a request does once approved: the key of the executor table (handlers/requests/
    decide.py) and the quorum's name in [approvals] (`required_for`)."""

    DELETE = "delete"
    DELETE_MANIFEST = "delete_manifest"
    PURGE = "purge"


Clock = Callable[[], datetime]


class Change(StrEnum):
    """What happened to a request, as its listeners are told (bot/state/requests.py)."""

    CREATED = "created"
    APPROVED = "approved"  # one approval recorded (`who` approved)
    VOID = "void"  # an earlier approval no longer counts (`who` lost the role)
    FINAL = "final"  # it reached a final state: done, failed, denied, cancelled, expired


@dataclass(frozen=True)
class RequestEvent:
    change: Change
    who: str | None = None  # the approver, for APPROVED and VOID


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
    note: str | None = None  # e.g. "found already deleted when resuming after a restart"
    origin: str | None = None  # the job that created it (its idempotency key)
    channel: str | None = None  # where its card lives (Slack), if anywhere
    kind: str = ""  # "purge" for a purge; "" for a deletion (see action)
    spec: dict[str, Any] | None = None  # a purge: its options and item counts

    @property
    def action(self) -> Action:
        if self.kind == "purge":
            return Action.PURGE
        return Action.DELETE_MANIFEST if self.manifest else Action.DELETE

    @property
    def is_purge(self) -> bool:
        return self.kind == "purge"

    @property
    def image(self) -> str:
        if self.is_purge:
            return f"purge {self.spec.get('describe', '') if self.spec else ''}".strip()
        ref = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{ref}@{self.digest}" if self.manifest or not self.tag else ref

    @property
    def target(self) -> str:
        if self.is_purge:
            return f"{self.registry}: {self.image}"
        return f"{self.registry}/{self.image}"

    @property
    def repositories(self) -> tuple[str, ...]:
        """The repositories it deletes from (a purge may span several)."""
        if self.is_purge and self.spec:
            return tuple(self.spec.get("repositories", ()))
        return (self.repository,)


@dataclass(frozen=True)
class ApprovalResult:
    """What an approval led to: still waiting, or the request's final state."""

    request: DeletionRequest
    executed: bool
    withdrawn: tuple[str, ...] = ()  # earlier approvals that no longer counted
