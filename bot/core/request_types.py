"""What a request is, as a value: its state, its approvals, what it deletes.

Plain frozen data, no database: the state machine that changes them is bot/state/requests.py;
replies, cards and notebooks read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal


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
class PurgePace:
    """How fast a purge's DELETEs go once approved, as planned: `write_rate` (source
    `config`), the registry's tier (`tier`; `lowest` when its SKU could not be read), or no
    cap (`none`, rate None)."""

    rate: float | None
    source: Literal["config", "tier", "lowest", "none"]
    tier: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "source": self.source, "tier": self.tier}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PurgePace:
        return cls(rate=data.get("rate"), source=data["source"], tier=data.get("tier"))


@dataclass(frozen=True)
class PurgeRequestSpec:
    """What a purge request was planned with and pins: its options (as `acr purge` words in
    ``describe``), what it deletes where, the first items, and its pace.

    Stored as JSON in `requests.spec` (bot/state/requests.py is the one writer and reader):
    :meth:`to_json` and :meth:`from_json` keep that format, including rows written before
    ``skips_listed`` (schema v6) and ``pace`` existed, which round-trip unchanged.
    """

    filters: tuple[str, ...]  # `REPO:REGEX`, as given
    ago_seconds: float | None
    keep: int
    untagged: bool
    describe: str  # the options as `acr purge` would be given them
    repositories: tuple[str, ...]  # those it deletes from, sorted
    counts: Mapping[str, Mapping[str, int]]  # per repository: tags, manifests, skipped
    items: int  # pinned items (tags or manifests)
    tags: int
    manifests: int  # untagged manifests
    skipped: int  # left out at planning
    first: tuple[str, ...]  # the first items' labels, for the card
    skips_listed: bool = False  # the skips are kept (`request N` lists them); False before v6
    pace: PurgePace | None = None  # None: planned before purges were paced
    freed_bytes: int | None = None  # unique blobs only what goes holds; None: not counted

    def to_json(self) -> dict[str, Any]:
        """The stored form (JSON-ready data), key for key as requests have always held it."""
        data: dict[str, Any] = {
            "filters": list(self.filters),
            "ago_seconds": self.ago_seconds,
            "keep": self.keep,
            "untagged": self.untagged,
            "describe": self.describe,
            "repositories": list(self.repositories),
            "counts": {r: dict(c) for r, c in self.counts.items()},
            "items": self.items,
            "tags": self.tags,
            "manifests": self.manifests,
            "skipped": self.skipped,
        }
        if self.skips_listed:
            data["skips_listed"] = True
        data["first"] = list(self.first)
        if self.pace is not None:
            data["pace"] = self.pace.to_json()
        if self.freed_bytes is not None:
            data["freed_bytes"] = self.freed_bytes
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PurgeRequestSpec:
        """A stored spec; a key every purge request has had since the first is required (a
        KeyError names it): a damaged row is an error, never a purge of "0 tags"."""
        pace = data.get("pace")
        return cls(
            filters=tuple(data["filters"]),
            ago_seconds=data["ago_seconds"],
            keep=data["keep"],
            untagged=data["untagged"],
            describe=data["describe"],
            repositories=tuple(data["repositories"]),
            counts=data["counts"],
            items=data["items"],
            tags=data["tags"],
            manifests=data["manifests"],
            skipped=data["skipped"],
            skips_listed=bool(data.get("skips_listed", False)),
            first=tuple(data["first"]),
            pace=None if pace is None else PurgePace.from_json(pace),
            freed_bytes=data.get("freed_bytes"),
        )


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
    spec: PurgeRequestSpec | None = None  # a purge's (always set); None for a deletion

    def __post_init__(self) -> None:
        # Readers tell a purge by its spec: a purge without one (or a deletion with one) is a
        # damaged row, refused here rather than shown as the other kind.
        if (self.kind == "purge") != (self.spec is not None):
            raise ValueError(f"request {self.id}: a purge has a spec and a deletion none")

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
            return f"purge {self.spec.describe if self.spec else ''}".strip()
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
            return self.spec.repositories
        return (self.repository,)


@dataclass(frozen=True)
class ApprovalResult:
    """What an approval led to: still waiting, or the request's final state."""

    request: DeletionRequest
    executed: bool
    withdrawn: tuple[str, ...] = ()  # earlier approvals that no longer counted
