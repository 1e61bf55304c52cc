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
from typing import Protocol

from bot.state.store import Store


@dataclass(frozen=True)
class DigestFacts:
    digest: str
    media_type: str | None = None
    size: int | None = None
    created: datetime | None = None
    platforms: tuple[str, ...] = ()
    references: tuple[str, ...] = ()  # the manifests an image index points at


class FactCache(Protocol):
    def get_many(self, registry: str, digests: Iterable[str]) -> dict[str, DigestFacts]: ...

    def put(self, registry: str, facts: DigestFacts) -> None: ...


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

    def put(self, registry: str, facts: DigestFacts) -> None:
        with self._lock:
            self._facts[(registry, facts.digest)] = facts


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
                "select digest, media_type, size, created, platforms, refs from digest_facts "
                f"where registry = ? and digest in ({marks})",
                [registry, *chunk],
            ).fetchall()
            for digest, media_type, size, created, platforms, refs in rows:
                found[digest] = DigestFacts(
                    digest=digest,
                    media_type=media_type,
                    size=size,
                    created=datetime.fromisoformat(created) if created else None,
                    platforms=tuple(json.loads(platforms or "[]")),
                    references=tuple(json.loads(refs or "[]")),
                )
        return found

    def put(self, registry: str, facts: DigestFacts) -> None:
        with self._store.transaction() as db:
            db.execute(
                "insert into digest_facts "
                "(registry, digest, media_type, size, created, platforms, refs) "
                "values (?, ?, ?, ?, ?, ?, ?) on conflict (registry, digest) do nothing",
                [
                    registry,
                    facts.digest,
                    facts.media_type,
                    facts.size,
                    facts.created.isoformat() if facts.created else None,
                    json.dumps(list(facts.platforms)),
                    json.dumps(list(facts.references)),
                ],
            )
