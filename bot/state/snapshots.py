"""Snapshots for `undo`: what each deletion took, kept for `[undo] window`, and what `undo`
did with it.

Before a DELETE or an untag leaves, the bot records the exact bytes and media type of every
manifest that goes (an image index with its children, children first) and the tags it removes,
in the same transaction that marks the deletion as being sent (`PurgeItems.sending`,
`Requests.writing`): a deletion that may have happened always has its snapshot. The manifests
are framed (digest, media type, length, bytes) and zlib-compressed: ~0.4 KB an image
(bench/undo.py). The sweep prunes them after the window; `undo_windows` remembers when each
request's window closes, so that `undo` can say so after the snapshots are gone.

`undo` moves each snapshot from no state to `restoring` (claimed, compare-and-set, before its
first PUT) and then to `restored`, `skipped`, `lost` (its layers are gone) or `failed`, with
one audit row; a crash leaves `restoring`, which the next `undo` settles by reading the
registry (handlers/requests/undo.py), so each PUT is sent once.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.core.redaction import redact_urls
from bot.core.registry import ManifestBytes
from bot.core.request_types import Clock
from bot.state import liveness
from bot.state.audit import Audit
from bot.state.store import Store, from_iso, iso, sqlite_utils

RESTORING = "restoring"
RESTORED, SKIPPED, LOST, FAILED = "restored", "skipped", "lost", "failed"
UNDO_FINAL = (RESTORED, SKIPPED, LOST, FAILED)


@dataclass(frozen=True)
class Snapshot:
    """What one deletion took (a purge item, or a whole `delete` request as seq 0)."""

    request_id: int
    seq: int
    registry: str
    repository: str
    digest: str
    tags: tuple[str, ...]  # the tags the deletion removed
    manifest_deleted: bool  # the manifest went too (not only tags)
    manifests: tuple[ManifestBytes, ...]  # children first; the deleted manifest last
    taken_at: datetime
    expires_at: datetime
    undo_state: str | None = None
    undo_detail: str | None = None
    undo_owner: str | None = None
    undo_by: str | None = None  # who ran the undo that claimed it

    @property
    def manifest(self) -> ManifestBytes:
        return self.manifests[-1]

    def labels(self) -> list[str]:
        """What `undo --only REGEX` is searched in: `repo:tag` for each tag, `repo@digest`."""
        return [f"{self.repository}:{t}" for t in self.tags] + [f"{self.repository}@{self.digest}"]


def encode(manifests: Iterable[ManifestBytes]) -> tuple[bytes, int]:
    """The manifests framed byte for byte and compressed; and the size before compression."""
    raw = b"".join(
        f"{m.digest}\n{m.media_type}\n{len(m.data)}\n".encode() + m.data for m in manifests
    )
    return zlib.compress(raw, 6), len(raw)


def decode(blob: bytes) -> tuple[ManifestBytes, ...]:
    raw = zlib.decompress(blob)
    found, at = [], 0
    while at < len(raw):
        digest_end = raw.index(b"\n", at)
        type_end = raw.index(b"\n", digest_end + 1)
        size_end = raw.index(b"\n", type_end + 1)
        size = int(raw[type_end + 1 : size_end])
        data = raw[size_end + 1 : size_end + 1 + size]
        found.append(
            ManifestBytes(
                digest=raw[at:digest_end].decode(),
                media_type=raw[digest_end + 1 : type_end].decode(),
                data=data,
            )
        )
        at = size_end + 1 + size
    return tuple(found)


def record(db: sqlite_utils.Database, snapshot: Snapshot) -> None:
    """Write ``snapshot`` inside the caller's transaction (the one that marks the deletion as
    being sent). A retry of the same deletion (a 429, a resume) keeps the first snapshot."""
    blob, raw = encode(snapshot.manifests)
    db.execute(
        "INSERT INTO undo_snapshots (request_id, seq, registry, repository, digest, tags, "
        "manifest_deleted, data, raw_bytes, stored_bytes, taken_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, seq) DO NOTHING",
        [
            snapshot.request_id,
            snapshot.seq,
            snapshot.registry,
            snapshot.repository,
            snapshot.digest,
            json.dumps(list(snapshot.tags)),
            1 if snapshot.manifest_deleted else 0,
            blob,
            raw,
            len(blob),
            iso(snapshot.taken_at),
            iso(snapshot.expires_at),
        ],
    )
    db.execute(
        "INSERT INTO undo_windows (request_id, expires_at) VALUES (?, ?) "
        "ON CONFLICT (request_id) DO UPDATE SET expires_at = excluded.expires_at "
        "WHERE undo_windows.expires_at < excluded.expires_at",
        [snapshot.request_id, iso(snapshot.expires_at)],
    )


@dataclass(frozen=True)
class Usage:
    """What the snapshots cost: shown by `acrbot doctor`."""

    snapshots: int
    raw_bytes: int
    stored_bytes: int


class Snapshots:
    def __init__(self, store: Store, audit: Audit, *, clock: Clock) -> None:
        self._store, self._audit, self._clock = store, audit, clock

    def for_request(self, request_id: int) -> list[Snapshot]:
        rows = self._store.db.execute(
            "SELECT request_id, seq, registry, repository, digest, tags, manifest_deleted, "
            "data, taken_at, expires_at, undo_state, undo_detail, undo_owner, undo_by "
            "FROM undo_snapshots WHERE request_id = ? ORDER BY seq",
            [request_id],
        ).fetchall()
        return [_snapshot(row) for row in rows]

    def window_closes(self, request_id: int) -> datetime | None:
        """When the request's undo window closes (closed), if it ever took a snapshot."""
        row = self._store.db.execute(
            "SELECT expires_at FROM undo_windows WHERE request_id = ?", [request_id]
        ).fetchone()
        return from_iso(row[0]) if row else None

    def claim(self, snapshot: Snapshot, *, by: str) -> bool:
        """Take the snapshot for this process before its first PUT (compare-and-set on the
        state and owner read): a row nobody took, one a dead process left `restoring`, or
        one whose undo failed (tried again). False: another undo has it."""
        me = liveness.this_process()
        with self._store.transaction() as db:
            if snapshot.undo_state is None:
                changed = db.execute(
                    "UPDATE undo_snapshots SET undo_state = ?, undo_owner = ?, undo_by = ? "
                    "WHERE request_id = ? AND seq = ? AND undo_state IS NULL",
                    [RESTORING, me, by, snapshot.request_id, snapshot.seq],
                ).rowcount
            else:
                changed = db.execute(
                    "UPDATE undo_snapshots SET undo_state = ?, undo_owner = ?, undo_by = ? "
                    "WHERE request_id = ? AND seq = ? AND undo_state = ? AND undo_owner = ?",
                    [
                        RESTORING,
                        me,
                        by,
                        snapshot.request_id,
                        snapshot.seq,
                        snapshot.undo_state,
                        snapshot.undo_owner,
                    ],
                ).rowcount
        return changed == 1

    @staticmethod
    def abandoned(snapshot: Snapshot) -> bool:
        """A `restoring` row whose owner died (a crash mid-undo): the next undo settles it.
        A live owner, this process included (another thread), is still at it."""
        owner = snapshot.undo_owner
        return snapshot.undo_state == RESTORING and owner is not None and not liveness.alive(owner)

    def abandoned_requests(self) -> list[int]:
        """Requests with an undo item left `restoring` (read; the caller checks the owner)."""
        rows = self._store.db.execute(
            "SELECT DISTINCT request_id FROM undo_snapshots WHERE undo_state = ? "
            "ORDER BY request_id",
            [RESTORING],
        ).fetchall()
        return [int(r[0]) for r in rows]

    def settle(
        self, snapshot: Snapshot, state: str, *, detail: str | None, by: str, target: str
    ) -> None:
        """The item's final undo state and its one audit row, in one transaction."""
        now = self._clock()
        detail = redact_urls(detail) if detail else detail
        with self._store.transaction() as db:
            db.execute(
                "UPDATE undo_snapshots SET undo_state = ?, undo_detail = ?, undo_by = ?, "
                "undone_at = ? WHERE request_id = ? AND seq = ?",
                [state, detail, by, iso(now), snapshot.request_id, snapshot.seq],
            )
            self._audit.append(
                actor=by,
                action="undo.item",
                target=target,
                request_id=snapshot.request_id,
                outcome=state,
                error=detail,
                at=now,
            )

    def counts(self, request_id: int) -> Counter[str]:
        rows = self._store.db.execute(
            "SELECT undo_state, count(*) FROM undo_snapshots WHERE request_id = ? "
            "GROUP BY undo_state",
            [request_id],
        ).fetchall()
        return Counter({state or "": n for state, n in rows})

    def prune(self) -> int:
        """Forget the snapshots whose window has closed (the sweep); return how many."""
        with self._store.transaction() as db:
            return db.execute(
                "DELETE FROM undo_snapshots WHERE expires_at <= ?", [iso(self._clock())]
            ).rowcount

    def usage(self) -> Usage:
        return usage(self._store)


def usage(store: Store) -> Usage:
    """How many snapshots are kept and their bytes (one query; `acrbot doctor`)."""
    row = store.db.execute(
        "SELECT count(*), coalesce(sum(raw_bytes), 0), coalesce(sum(stored_bytes), 0) "
        "FROM undo_snapshots"
    ).fetchone()
    return Usage(snapshots=int(row[0]), raw_bytes=int(row[1]), stored_bytes=int(row[2]))


def _snapshot(row: tuple) -> Snapshot:
    (request_id, seq, registry, repository, digest, tags, deleted, data, taken, expires) = row[:10]
    return Snapshot(
        request_id=request_id,
        seq=seq,
        registry=registry,
        repository=repository,
        digest=digest,
        tags=tuple(json.loads(tags)),
        manifest_deleted=bool(deleted),
        manifests=decode(bytes(data)),
        taken_at=from_iso(taken),
        expires_at=from_iso(expires),
        undo_state=row[10],
        undo_detail=row[11],
        undo_owner=row[12],
        undo_by=row[13],
    )
