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
    UNDO_FORCE = "undo_force"  # `undo --force`: re-pushed tags moved back to the snapshot's


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
class ForcedTag:
    """One tag a forced undo moves: from the digest it was re-pushed to (read when the request
    was filed) to the digest the deletion took (the snapshot's, request ``source`` item
    ``seq``). Execution re-reads the tag and skips it unless it still names ``from_digest``."""

    repository: str
    tag: str
    from_digest: str
    to_digest: str
    seq: int


@dataclass(frozen=True)
class ForceUndoSpec:
    """What an `undo ID --force` request pins: the request undone and each tag it moves.
    Stored as JSON in `requests.spec` (action `undo_force`)."""

    source: int
    items: tuple[ForcedTag, ...]

    @property
    def repositories(self) -> tuple[str, ...]:
        return tuple(sorted({i.repository for i in self.items}))

    def moves(self, *, shown: int) -> str:
        """`repo:tag sha256:abc… → sha256:def…` for the first ``shown`` tags (from the
        re-pushed digest to the snapshot's), then how many more."""
        from bot.core.formatting import short_digest

        text = "; ".join(
            f"{i.repository}:{i.tag} {short_digest(i.from_digest)} → {short_digest(i.to_digest)}"
            for i in self.items[:shown]
        )
        more = len(self.items) - shown
        return text + (f" (+{more:,} more)" if more > 0 else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "items": [
                {
                    "repository": i.repository,
                    "tag": i.tag,
                    "from": i.from_digest,
                    "to": i.to_digest,
                    "seq": i.seq,
                }
                for i in self.items
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForceUndoSpec:
        """A stored spec; a missing key is a KeyError (a damaged row), never "no tags"."""
        return cls(
            source=int(data["source"]),
            items=tuple(
                ForcedTag(
                    repository=i["repository"],
                    tag=i["tag"],
                    from_digest=i["from"],
                    to_digest=i["to"],
                    seq=int(i["seq"]),
                )
                for i in data["items"]
            ),
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
    forced: ForceUndoSpec | None = None  # an `undo --force` request's (kind "undo_force")

    def __post_init__(self) -> None:
        # Readers tell a purge by its spec: a purge without one (or a deletion with one) is a
        # damaged row, refused here rather than shown as the other kind.
        if (self.kind == "purge") != (self.spec is not None):
            raise ValueError(f"request {self.id}: a purge has a spec and a deletion none")
        if (self.kind == "undo_force") != (self.forced is not None):
            raise ValueError(f"request {self.id}: a forced undo has its tags, and only it")

    @property
    def action(self) -> Action:
        if self.kind == "purge":
            return Action.PURGE
        if self.kind == "undo_force":
            return Action.UNDO_FORCE
        return Action.DELETE_MANIFEST if self.manifest else Action.DELETE

    @property
    def is_purge(self) -> bool:
        return self.kind == "purge"

    @property
    def image(self) -> str:
        if self.is_purge:
            return f"purge {self.spec.describe if self.spec else ''}".strip()
        if self.forced is not None:
            n = len(self.forced.items)
            return f"undo --force of #{self.forced.source}: {n} tag{'s' if n != 1 else ''}"
        ref = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{ref}@{self.digest}" if self.manifest or not self.tag else ref

    @property
    def target(self) -> str:
        if self.is_purge or self.forced is not None:
            return f"{self.registry}: {self.image}"
        return f"{self.registry}/{self.image}"

    @property
    def repositories(self) -> tuple[str, ...]:
        """The repositories it deletes from (a purge may span several)."""
        if self.is_purge and self.spec:
            return self.spec.repositories
        if self.forced is not None:
            return self.forced.repositories
        return (self.repository,)


@dataclass(frozen=True)
class ApprovalResult:
    """What an approval led to: still waiting, or the request's final state."""

    request: DeletionRequest
    executed: bool
    withdrawn: tuple[str, ...] = ()  # earlier approvals that no longer counted
