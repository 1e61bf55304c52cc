"""Immutable facts about digests, cached across commands and restarts.

A digest names content: the manifest behind `sha256:…` (its media type, size, the config's
`created`, its platforms, the manifests an index references) can never change. Reading them
costs a registry round trip or two per image (manifest, then config blob), so a tag listing
would pay them on every command; kept here, a warm listing pays nothing for them.

What a *tag* points at is not a fact: it changes at any push. It is never stored here, and
nothing a deletion depends on is ever read from this cache.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.state.store import Store


@dataclass(frozen=True)
class DigestFacts:
    digest: str
    media_type: str | None = None
    size: int | None = None
    created: datetime | None = None
    platforms: tuple[str, ...] = ()
    references: tuple[str, ...] = ()  # the manifests an image index points at
    # The blobs the manifest itself holds as (digest, size): its own body, its config and
    # layers (an index: its body only; its children have facts of their own). None: read
    # before the bot kept them (`report` reads the manifest once more and fills them in).
    blobs: tuple[tuple[str, int], ...] | None = None


def merged(known: DigestFacts, more: DigestFacts) -> DigestFacts:
    """Facts only accumulate: what was known stays, what was not is filled in (a size read
    by one path, the blobs by another)."""
    return DigestFacts(
        digest=known.digest,
        media_type=known.media_type or more.media_type,
        size=known.size if known.size is not None else more.size,
        created=known.created or more.created,
        platforms=known.platforms or more.platforms,
        references=known.references or more.references,
        blobs=known.blobs if known.blobs is not None else more.blobs,
    )


class FactCache(Protocol):
    def get_many(self, registry: str, digests: Iterable[str]) -> dict[str, DigestFacts]: ...

    def put(self, registry: str, facts: DigestFacts) -> None: ...

    def put_many(self, registry: str, facts: Iterable[DigestFacts]) -> None: ...


class MemoryFacts:
    """The cache for a backend built without a database (tests, one-off scripts)."""

    def __init__(self) -> None:
        self._facts: dict[tuple[str, str], DigestFacts] = {}
        self._lock = threading.Lock()

    def get_many(self, registry: str, digests: Iterable[str]) -> dict[str, DigestFacts]:
        with self._lock:
            return {
                d: self._facts[(registry, d)] for d in set(digests) if (registry, d) in self._facts
            }

    def put_many(self, registry: str, facts: Iterable[DigestFacts]) -> None:
        for one in facts:
            self.put(registry, one)

    def put(self, registry: str, facts: DigestFacts) -> None:
        with self._lock:
            known = self._facts.get((registry, facts.digest))
            self._facts[(registry, facts.digest)] = facts if known is None else merged(known, facts)


class SqliteFacts:
    """The `digest_facts` table, keyed by registry name and digest."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get_many(self, registry: str, digests: Iterable[str]) -> dict[str, DigestFacts]:
        wanted = sorted(set(digests))
        found: dict[str, DigestFacts] = {}
        for i in range(0, len(wanted), 500):  # SQLite's bound-variable limit
            chunk = wanted[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._store.db.execute(
                "select digest, media_type, size, created, platforms, refs, blobs "
                f"from digest_facts where registry = ? and digest in ({marks})",
                [registry, *chunk],
            ).fetchall()
            for digest, media_type, size, created, platforms, refs, blobs in rows:
                found[digest] = DigestFacts(
                    digest=digest,
                    media_type=media_type,
                    size=size,
                    created=datetime.fromisoformat(created) if created else None,
                    platforms=tuple(json.loads(platforms or "[]")),
                    references=tuple(json.loads(refs or "[]")),
                    blobs=None if blobs is None else tuple((d, n) for d, n in json.loads(blobs)),
                )
        return found

    def put(self, registry: str, facts: DigestFacts) -> None:
        self.put_many(registry, [facts])

    def put_many(self, registry: str, facts: Iterable[DigestFacts]) -> None:
        """Insert, or fill in what a row did not know yet (see :func:`merged`): a batch in one
        transaction (a commit each cost a 2,000-tag report ~20 s of fsyncs)."""
        with self._store.transaction() as db:
            for one in facts:
                self._put(db, registry, one)

    @staticmethod
    def _put(db: Any, registry: str, facts: DigestFacts) -> None:
        db.execute(
            "insert into digest_facts "
            "(registry, digest, media_type, size, created, platforms, refs, blobs) "
            "values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (registry, digest) do update "
            "set media_type = coalesce(digest_facts.media_type, excluded.media_type), "
            "size = coalesce(digest_facts.size, excluded.size), "
            "created = coalesce(digest_facts.created, excluded.created), "
            "blobs = coalesce(digest_facts.blobs, excluded.blobs)",
            [
                registry,
                facts.digest,
                facts.media_type,
                facts.size,
                facts.created.isoformat() if facts.created else None,
                json.dumps(list(facts.platforms)),
                json.dumps(list(facts.references)),
                None if facts.blobs is None else json.dumps([list(b) for b in facts.blobs]),
            ],
        )
