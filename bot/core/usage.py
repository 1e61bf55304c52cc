"""Storage accounting: what a registry holds, counted once per unique blob.

A registry stores each blob once however many manifests, tags and repositories use it: ten
images on one base layer hold that layer once. Summing image sizes (what `az acr` and the
Portal's per-image sizes invite) counts it ten times, and a purge's "frees 40 GB" built that
way is fiction. Here every figure is a sum over unique blob digests:

- a repository's bytes: the blobs its manifests hold (each manifest's own body, config and
  layers; an index's children and a signature's or SBOM's blobs with the image they belong
  to), each once;
- the registry's bytes: the same over every repository, each blob once (``shared`` says how
  much the per-repository figures count twice because repositories share layers);
- tagged / stale / untagged: each blob falls in exactly one: *tagged* when an image with a
  tag pushed within the stale window holds it, else *stale* when only tagged images older
  than that hold it, else *untagged* (only manifests without a tag hold it: what
  `purge --untagged` frees);
- what a purge frees: the blobs held by what goes and by nothing that stays.

Pure: the handler (handlers/report.py) reads the registry and feeds this module one
repository at a time, so memory holds one repository's manifests plus one entry per unique
blob of the registry, never every manifest at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from bot.core.registry import Contents, Quota


class Kind(IntEnum):
    """Which share of the storage a blob is in; a higher value wins when images disagree."""

    UNTAGGED = 0
    STALE = 1
    TAGGED = 2


@dataclass(frozen=True)
class Held:
    """One manifest a repository holds, as the report sees it."""

    digest: str
    tags: int  # how many tags point at it (0: untagged)
    when: datetime | None  # last push (ACR) or build time (distribution, layouts)
    subject: str | None = None  # a signature's or SBOM's image: its blobs count with it


@dataclass(frozen=True)
class RepoUsage:
    """One repository's line of the report (data; each door renders it)."""

    repository: str
    tags: int
    manifests: int
    untagged: int  # manifests with no tag, that no index or image of this repository uses
    bytes: int
    tagged_bytes: int
    stale_bytes: int
    untagged_bytes: int
    newest: datetime | None
    oldest: datetime | None


@dataclass(frozen=True)
class UsageReport:
    registry: str
    stale_days: int
    repositories: tuple[RepoUsage, ...]  # biggest first
    bytes: int  # every unique blob once
    tagged_bytes: int
    stale_bytes: int
    untagged_bytes: int
    repo_bytes: int  # the sum of the repositories' figures
    untagged_listed: bool  # False: the registry cannot list manifests without tags
    quota: Quota | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (repository, why it was not measured)
    unread: int = 0  # manifests listed but gone when read (deleted meanwhile): not counted
    quota_unknown: bool = False  # the registry has a plan (ACR) whose usage could not be read

    @property
    def shared_bytes(self) -> int:
        """Bytes the per-repository figures count more than once (layers shared between
        repositories), counted once in :attr:`bytes`."""
        return self.repo_bytes - self.bytes

    @property
    def tags(self) -> int:
        return sum(r.tags for r in self.repositories)

    @property
    def manifests(self) -> int:
        return sum(r.manifests for r in self.repositories)

    @property
    def untagged(self) -> int:
        return sum(r.untagged for r in self.repositories)


def closures(held: Iterable[Held], contents: Mapping[str, Contents]) -> dict[str, dict[str, int]]:
    """For each manifest, every blob it holds with its size: its own, and those of the
    manifests it references (an index's children), recursively, from ``contents``."""
    memo: dict[str, dict[str, int]] = {}

    def blobs_of(digest: str, seen: frozenset[str]) -> dict[str, int]:
        if digest in memo:
            return memo[digest]
        found: dict[str, int] = {}
        inside = contents.get(digest)
        if inside is not None:
            found.update(inside.blobs)
            for child in inside.references:
                if child not in seen:  # a cycle in malformed content ends here
                    found.update(blobs_of(child, seen | {digest}))
        memo[digest] = found
        return found

    return {h.digest: blobs_of(h.digest, frozenset()) for h in held}


@dataclass
class Accounts:
    """Adds repositories up one at a time; :meth:`report` gives the totals."""

    registry: str
    stale_before: datetime
    stale_days: int
    untagged_listed: bool = True
    _rows: list[RepoUsage] = field(default_factory=list)
    _blobs: dict[str, tuple[int, Kind]] = field(default_factory=dict)
    _skipped: list[tuple[str, str]] = field(default_factory=list)
    _unread: int = 0

    def add(
        self, repository: str, held: Iterable[Held], contents: Mapping[str, Contents]
    ) -> RepoUsage:
        """Account for one repository: its manifests (``held``) and what each holds."""
        images = list(held)
        self._unread += sum(1 for h in images if h.digest not in contents)
        closure = closures(images, contents)
        used = {child for c in contents.values() for child in c.references}
        # A referrer's blobs (a signature, an SBOM) go with the image it is about.
        by_subject: dict[str, list[str]] = {}
        for image in images:
            if image.subject is not None and image.subject in closure:
                by_subject.setdefault(image.subject, []).append(image.digest)
        kinds: dict[str, tuple[int, Kind]] = {}
        for image in images:
            if image.subject is not None and image.subject in closure:
                continue  # counted with its subject
            if image.tags == 0:
                kind = Kind.UNTAGGED
            elif image.when is not None and image.when < self.stale_before:
                kind = Kind.STALE
            else:
                kind = Kind.TAGGED  # a time unknown is never called stale
            blobs = dict(closure[image.digest])
            for referrer in by_subject.get(image.digest, ()):
                blobs.update(closure[referrer])
            for digest, size in blobs.items():
                known = kinds.get(digest)
                if known is None or known[1] < kind:
                    kinds[digest] = (size, kind)
        shares = {k: 0 for k in Kind}
        for size, kind in kinds.values():
            shares[kind] += size
        for digest, (size, kind) in kinds.items():
            known = self._blobs.get(digest)
            if known is None or known[1] < kind:
                self._blobs[digest] = (size, kind)
        times = [h.when for h in images if h.when is not None and h.tags]
        row = RepoUsage(
            repository=repository,
            tags=sum(h.tags for h in images),
            manifests=len(images),
            untagged=sum(
                1 for h in images if not h.tags and h.digest not in used and h.subject is None
            ),
            bytes=sum(shares.values()),
            tagged_bytes=shares[Kind.TAGGED],
            stale_bytes=shares[Kind.STALE],
            untagged_bytes=shares[Kind.UNTAGGED],
            newest=max(times, default=None),
            oldest=min(times, default=None),
        )
        self._rows.append(row)
        return row

    def skip(self, repository: str, why: str) -> None:
        """A repository that could not be measured: the report names it, never drops it."""
        self._skipped.append((repository, why))

    def report(self, *, quota: Quota | None = None, quota_unknown: bool = False) -> UsageReport:
        shares = {k: 0 for k in Kind}
        for size, kind in self._blobs.values():
            shares[kind] += size
        return UsageReport(
            registry=self.registry,
            stale_days=self.stale_days,
            repositories=tuple(sorted(self._rows, key=lambda r: (-r.bytes, r.repository))),
            bytes=sum(shares.values()),
            tagged_bytes=shares[Kind.TAGGED],
            stale_bytes=shares[Kind.STALE],
            untagged_bytes=shares[Kind.UNTAGGED],
            repo_bytes=sum(r.bytes for r in self._rows),
            untagged_listed=self.untagged_listed,
            quota=quota,
            skipped=tuple(self._skipped),
            unread=self._unread,
            quota_unknown=quota_unknown,
        )


def freed_bytes(
    going: Iterable[str], staying: Iterable[str], contents: Mapping[str, Contents]
) -> int:
    """What deleting the manifests ``going`` frees: the blobs they hold (with an index's
    children) that none of ``staying`` holds, each counted once."""
    going, staying = list(going), list(staying)
    held = closures([Held(d, 0, None) for d in going + staying], contents)
    kept: set[str] = set()
    for digest in staying:
        kept.update(held[digest])
    freed: dict[str, int] = {}
    for digest in going:
        freed.update((b, n) for b, n in held[digest].items() if b not in kept)
    return sum(freed.values())


CHART_BARS = 20  # repositories drawn; the rest are one bar, "N others"


def chart_rows(report: UsageReport, *, bars: int = CHART_BARS) -> list[dict[str, object]]:
    """The chart's data, biggest first: one row per repository (tagged, stale, untagged
    bytes), the rest summed into one. Small (JSON-ready): it is what the Slack outbox keeps,
    the PNG is drawn from it when it is sent."""
    rows: list[dict[str, object]] = [
        {
            "repository": r.repository,
            "tagged": r.tagged_bytes,
            "stale": r.stale_bytes,
            "untagged": r.untagged_bytes,
        }
        for r in report.repositories[:bars]
    ]
    rest = report.repositories[bars:]
    if rest:
        rows.append(
            {
                "repository": f"{len(rest):,} others",
                "tagged": sum(r.tagged_bytes for r in rest),
                "stale": sum(r.stale_bytes for r in rest),
                "untagged": sum(r.untagged_bytes for r in rest),
            }
        )
    return rows
