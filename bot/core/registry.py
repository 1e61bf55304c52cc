"""The registry contract the core owns: one Protocol every backend implements, and its data.

Handlers call only this Protocol, so the same command works on an OCI image layout on disk,
any distribution registry, or Azure Container Registry (the backends live in
handlers/registries/). Backends raise bot.core.errors UserErrors (NotFound, Unsupported, Conflict,
RegistryError) with messages that name the registry.

Listings are pages, not lists: a repository may hold 10,000 CI tags, and a chat answer shows
25 of them. :meth:`Registry.list_tags` returns one page plus the total and a cursor (the last
name shown: every backend can continue after a name, ACR and distribution through `last=`).
What a digest *is* never changes, so backends cache those facts (bot/state/facts.py); which digest a
tag points at changes at any push, so nothing a deletion depends on is ever cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Protocol, runtime_checkable

from bot.core.errors import Unsupported


@dataclass(frozen=True)
class Activity:
    """What a long operation is doing, so that its progress says so: `resolving 2,003 tags`
    rather than a bare count (a bar labelled "working" tells nobody anything)."""

    verb: str
    noun: str

    def describe(self, total: int) -> str:
        return f"{self.verb} {total:,} {self.noun}"


RESOLVING_TAGS = Activity("resolving", "tags")  # distribution: one HEAD per tag
READING_MANIFESTS = Activity("reading", "manifests")  # `report`: what each image holds
DELETING = Activity("deleting", "tags and manifests")  # a purge being carried out
WORKING = Activity("working through", "items")  # a reporter that did not say


class Progress(Protocol):
    """Reports progress of a long scan: (items done, items in all, what they are). Transports
    turn it into a "still working" note (Slack) or a progress bar (console, notebook)."""

    def __call__(self, done: int, total: int, /, what: Activity = WORKING) -> None: ...


def no_progress(done: int, total: int, /, what: Activity = WORKING) -> None:
    """The default reporter: nobody is watching."""


class Order(StrEnum):
    TIME_DESC = "time_desc"
    TIME_ASC = "time_asc"
    NAME = "name"

    @property
    def by_time(self) -> bool:
        return self is not Order.NAME


_RUNS = re.compile(r"(\d+)")


@lru_cache(maxsize=100_000)
def natural_key(name: str) -> tuple[list[object], str]:
    """Sort key that puts v10 after v9: digit runs compare as numbers.

    `re.split` with a capturing group alternates text and digits, so equal positions always
    hold the same type, and a shorter list that is a prefix sorts first (`v` before `v1`); the
    name itself breaks ties (`v01` vs `v1`) outside the list, where it cannot meet a number
    (`["v", "v"]` against `["v", 1, ""]` raised TypeError). The parts are a list: building it
    in place is a third faster, which counts on 10,000 tags; and cached, since the same tag
    names come back at every listing. Callers never mutate the key.
    """
    parts: list[object] = list(_RUNS.split(name.lower()))
    parts[1::2] = map(int, parts[1::2])  # type: ignore[call-overload]
    return parts, name


def page_of_names(
    names: list[str], *, page_size: int, after: str | None, pattern: str | None
) -> tuple[list[str], int, str | None]:
    """One page of names already in natural order: (page, total matching, next cursor).

    Works on plain names so that a 10,000-tag listing costs one sort and one slice, not
    10,000 objects (bench/tags.py).
    """
    from bisect import bisect_right
    from fnmatch import filter as fnfilter

    if pattern:
        names = fnfilter(names, pattern)
    start = 0
    if after is not None:
        start = bisect_right(names, natural_key(after), key=natural_key)
    shown = names[start : start + page_size]
    more = start + page_size < len(names)
    return shown, len(names), shown[-1] if more and shown else None


@dataclass(frozen=True)
class TagInfo:
    """A tag and whatever the backend knows about it (None where it does not)."""

    name: str
    digest: str
    created: datetime | None = None
    updated: datetime | None = None
    size: int | None = None
    locked: bool = False

    @property
    def when(self) -> datetime | None:
        """The time a purge or a time order compares: last update, else creation."""
        return self.updated or self.created


@dataclass(frozen=True)
class TagPage:
    """One page of a repository's tags, in the order asked for.

    ``total`` counts every tag matching the filter when ``exact``; otherwise it is a lower
    bound ("at least"), for backends that cannot count a filtered listing cheaply. ``after`` is
    the cursor for the next page (the last name on this one), None on the last page.
    """

    tags: tuple[TagInfo, ...]
    total: int
    exact: bool = True
    after: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageInfo:
    """A manifest's facts (what the digest is), and whether the manifest itself is locked.

    Which tags point at it is a separate, possibly expensive question: :meth:`Registry.tags_on`.
    """

    repository: str
    digest: str
    media_type: str | None = None
    size: int | None = None
    created: datetime | None = None
    updated: datetime | None = None
    manifest_locked: bool = False
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestBytes:
    """A manifest exactly as the registry stored it: what `undo` puts back byte for byte
    (a re-serialised manifest would have another digest)."""

    digest: str
    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ManifestInfo:
    """A manifest of a repository, tagged or not (for `purge --untagged`)."""

    digest: str
    tags: tuple[str, ...] = ()
    when: datetime | None = None  # last update (ACR) or creation time
    locked: bool = False
    media_type: str | None = None
    references: tuple[str, ...] = ()  # the manifests an index points at
    subject: str | None = None  # a referrer's subject (signature, SBOM): never purged


@dataclass(frozen=True)
class Contents:
    """What one manifest holds in the registry's storage: ``blobs`` are (digest, size) of
    its own body, its config and its layers (an index: its body only); ``references`` the
    manifests an index points at, which hold their own."""

    digest: str
    blobs: tuple[tuple[str, int], ...]
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quota:
    """What a registry's plan includes and uses (ACR: ARM's listUsages, `Size`, in bytes)."""

    used: int
    included: int

    @property
    def share(self) -> float:
        return self.used / self.included if self.included else 0.0


def held_blobs(parts: list[object]) -> tuple[tuple[str, int], ...]:
    """(digest, size) of each well-formed descriptor among a manifest's config and layers; a
    foreign layer without a digest or a size is not held by this registry."""
    from bot.core.references import DIGEST_RE

    return tuple(
        (p["digest"], p["size"])
        for p in parts
        if isinstance(p, dict)
        and isinstance(p.get("digest"), str)
        and DIGEST_RE.fullmatch(p["digest"])
        and isinstance(p.get("size"), int)
        and p["size"] >= 0
    )


INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


LIMIT_MARGIN = 0.9  # share of a registry's documented limits the bot allows itself


@dataclass(frozen=True)
class Limits:
    """A registry's documented request limits (ACR: by SKU), and whether they were read."""

    tier: str  # "Standard"
    reads_per_minute: int
    writes_per_minute: int
    known: bool = True  # False: the tier could not be read; these are the lowest tier's
    why_unknown: str = ""

    @property
    def read_rate(self) -> float:
        """Reads a second the bot allows itself: the limit less a safety margin."""
        return self.reads_per_minute * LIMIT_MARGIN / 60

    @property
    def write_rate(self) -> float:
        """Writes (DELETE, PATCH) a second the bot allows itself."""
        return self.writes_per_minute * LIMIT_MARGIN / 60


@dataclass(frozen=True)
class AdminStatus:
    enabled: bool
    username: str | None = None


@dataclass(frozen=True)
class NewPassword:
    """A regenerated admin password. ``value`` is a secret: never log, audit or post it."""

    name: str
    username: str
    value: str = field(repr=False)
    vault_secret: str | None = None  # "name (version v)" when stored in Key Vault instead
    # Key Vault was configured but did not take it (why): ``value`` is then shown, once.
    vault_error: str | None = None


@runtime_checkable
class Registry(Protocol):
    """What acr-chatops needs from a registry."""

    name: str
    kind: str
    login_server: str | None
    can_untag: bool
    has_dates: bool  # listings carry push/update times (ACR) or creation times (layouts)
    can_list_manifests: bool  # untagged manifests can be found (acr, oci-layout)
    can_lock: bool  # tags and manifests can be locked against deletion or overwrite
    write_grace: float  # seconds after which an unanswered DELETE has landed or never will

    def repositories(self) -> list[str]:
        """Every repository name, sorted; fetched in large server pages, never one by one."""
        ...

    def list_tags(
        self,
        repository: str,
        *,
        order: Order,
        page_size: int,
        after: str | None = None,
        pattern: str | None = None,
        digest: str | None = None,
        progress: Progress = no_progress,
    ) -> TagPage:
        """One page of tags (matching the glob ``pattern``, or only those on ``digest``),
        continuing after tag ``after``."""
        ...

    def all_tags(self, repository: str, *, progress: Progress = no_progress) -> list[TagInfo]:
        """Every tag with its digest and dates (for purge and time orders on `oci`)."""
        ...

    def resolve(self, repository: str, tag: str) -> str:
        """The digest ``tag`` points at now, read from the registry (never cached)."""
        ...

    def image(self, repository: str, reference: str) -> ImageInfo: ...

    def tags_on(
        self, repository: str, digest: str, *, progress: Progress = no_progress
    ) -> tuple[TagInfo, ...]:
        """Every tag pointing at ``digest`` now, sorted by name, with its lock."""
        ...

    def tag_locked(self, repository: str, tag: str) -> bool:
        """Whether ``tag`` may not be deleted: one cheap lookup, not a repository listing."""
        ...

    def tag(self, repository: str, tag: str) -> TagInfo:
        """``tag`` as it is now (its digest and lock) in one read, never from a cache: what
        a deletion checks before its DELETE. NotFound when there is no such tag."""
        ...

    def manifests(self, repository: str) -> list[ManifestInfo]:
        """Every manifest with its tags (Unsupported where the registry cannot list them)."""
        ...

    def references(self, repository: str, digests: list[str]) -> dict[str, tuple[str, ...]]:
        """For each of ``digests`` that is an image index: the manifests it references."""
        ...

    def contents(
        self, repository: str, digests: list[str], *, progress: Progress = no_progress
    ) -> dict[str, Contents]:
        """What each manifest holds, for `report` and what a purge frees: from the digest
        facts cache where known (a manifest's content never changes), else read once.
        A digest gone since it was listed is left out."""
        ...

    def referrers(self, repository: str, digest: str) -> tuple[str, ...]:
        """Artifacts attached to ``digest`` (signatures, SBOMs: the OCI 1.1 referrers API),
        where the registry can tell; () where it cannot."""
        ...

    def untag(self, repository: str, tag: str) -> None: ...

    def delete_manifest(self, repository: str, digest: str) -> None: ...

    def manifest_bytes(self, repository: str, digest: str) -> ManifestBytes:
        """The manifest ``digest`` exactly as stored (checked against its digest), for the
        snapshot taken before a deletion. NotFound when it is not there."""
        ...

    def put_manifest(self, repository: str, reference: str, manifest: ManifestBytes) -> str:
        """PUT ``manifest`` under ``reference`` (its digest, or a tag: a re-tag); return the
        digest the registry says it stored. LayersGone when blobs it names are gone."""
        ...

    def restore_deleted(self, repository: str, digest: str, *, tag: str | None) -> bool:
        """Bring a soft-deleted manifest back (ACR's soft delete), with ``tag``; False when
        the registry holds no deleted copy of it (soft delete off, or purged since)."""
        ...

    def set_lock(
        self, repository: str, reference: str, *, delete: bool | None, write: bool | None
    ) -> None:
        """Lock (True) or unlock (False) a tag or, for a digest, a manifest; None: unchanged.
        Unsupported where the registry has no locks."""
        ...

    def storage_quota(self) -> Quota | None:
        """The plan's included storage and its use (ACR), for `report`; None where the
        registry has no plan to compare with (distribution, layouts) or it cannot be read."""
        ...

    def limits(self) -> Limits | None:
        """The documented request limits a purge and scans are paced to (ACR: its SKU's,
        read from ARM once); None where the registry documents none."""
        ...

    def admin_status(self) -> AdminStatus: ...

    def set_admin(self, *, enabled: bool) -> AdminStatus: ...

    def regenerate_password(self, which: str) -> NewPassword: ...


class NoLocks:
    """Mixin for backends without locks or a manifest listing (the distribution API)."""

    name: str
    kind: str
    can_lock = False
    can_list_manifests = False

    def set_lock(
        self, repository: str, reference: str, *, delete: bool | None, write: bool | None
    ) -> None:
        raise Unsupported(
            f"{self.name} ({self.kind}) has no locks: the distribution API cannot protect a "
            "tag; lock it in the registry's own UI, if it has one"
        )

    def manifests(self, repository: str) -> list[ManifestInfo]:
        raise Unsupported(
            f"{self.name} ({self.kind}) cannot list manifests without tags (the distribution "
            "API lists only tags), so `--untagged` is not possible here"
        )


class NoSoftDelete:
    """Mixin for backends without a recycle bin (distribution, layouts): nothing to restore
    from, so `undo` puts the snapshot back instead."""

    def restore_deleted(self, repository: str, digest: str, *, tag: str | None) -> bool:
        return False


class NoAdminUser:
    """Mixin for backends without an admin user or credentials to rotate."""

    name: str
    kind: str
    has_admin = False

    def _no_admin(self) -> Unsupported:
        return Unsupported(f"{self.name} ({self.kind}) has no admin user or credentials to manage")

    def admin_status(self) -> AdminStatus:
        raise self._no_admin()

    def set_admin(self, *, enabled: bool) -> AdminStatus:
        raise self._no_admin()

    def regenerate_password(self, which: str) -> NewPassword:
        raise self._no_admin()


def page_of(
    tags: list[TagInfo],
    *,
    order: Order,
    page_size: int,
    after: str | None,
    pattern: str | None,
    digest: str | None = None,
    notes: tuple[str, ...] = (),
) -> TagPage:
    """Sort, filter and cut a complete in-memory listing (layouts, and time orders on `oci`).

    ``after`` names the last tag of the previous page; if that tag has gone meanwhile, the
    page continues from where it would have sorted (name order) or from the start.
    """
    from fnmatch import fnmatchcase

    if pattern:
        tags = [t for t in tags if fnmatchcase(t.name, pattern)]
    if digest:
        tags = [t for t in tags if t.digest == digest]
    ordered = sort_tags(tags, order)
    start = 0
    if after is not None:
        names = [t.name for t in ordered]
        if after in names:
            start = names.index(after) + 1
        elif order is Order.NAME:
            key = natural_key(after)
            start = next(
                (i for i, t in enumerate(ordered) if natural_key(t.name) > key), len(names)
            )
    shown = tuple(ordered[start : start + page_size])
    more = start + page_size < len(ordered)
    return TagPage(
        tags=shown,
        total=len(ordered),
        after=shown[-1].name if more and shown else None,
        notes=notes,
    )


def sort_tags(tags: list[TagInfo], order: Order) -> list[TagInfo]:
    """Natural name order, or newest/oldest first (undated tags last either way)."""
    if order is Order.NAME:
        return sorted(tags, key=lambda t: natural_key(t.name))
    dated = sorted(
        (t for t in tags if t.when is not None),
        key=lambda t: (t.when, natural_key(t.name)),
    )
    undated = sorted((t for t in tags if t.when is None), key=lambda t: natural_key(t.name))
    if order is Order.TIME_DESC:
        dated.reverse()  # newest first; ties in reverse name order (`latest` before `3.20`)
    return dated + undated
