"""Taking the snapshot `undo` restores from, just before a deletion leaves.

Read from the registry (never from a cache) right before the DELETE: the exact bytes of the
manifest that goes and, for an image index, of each child it names (children first), so
that `undo` can put them back byte for byte. A manifest that cannot be read is an error: the
deletion is refused rather than made without a way back (the caller reports it).
"""

from __future__ import annotations

import json
from datetime import timedelta

from bot.core.errors import NotFound, RegistryError
from bot.core.registry import INDEX_TYPES, ManifestBytes, Registry
from bot.core.request_types import Clock
from bot.state.snapshots import Snapshot


def take_snapshot(
    registry: Registry,
    *,
    request_id: int,
    seq: int,
    repository: str,
    digest: str,
    tags: tuple[str, ...],
    manifest_deleted: bool,
    window: timedelta,
    clock: Clock,
) -> Snapshot:
    """The snapshot of one deletion: the manifest ``digest`` (with an index's children) and
    the ``tags`` it removes. NotFound when the manifest is already gone."""
    top = registry.manifest_bytes(repository, digest)
    children: list[ManifestBytes] = []
    if top.media_type in INDEX_TYPES:
        try:
            entries = json.loads(top.data).get("manifests") or []
        except ValueError:
            raise RegistryError(
                f"{registry.name}: the image index {repository}@{digest} is not JSON; "
                "nothing was deleted"
            ) from None
        for entry in entries:
            child = entry.get("digest") if isinstance(entry, dict) else None
            if not isinstance(child, str):
                continue
            try:
                children.append(registry.manifest_bytes(repository, child))
            except NotFound:
                continue  # already absent: nothing of it to keep
    now = clock()
    return Snapshot(
        request_id=request_id,
        seq=seq,
        registry=registry.name,
        repository=repository,
        digest=digest,
        tags=tags,
        manifest_deleted=manifest_deleted,
        manifests=(*children, top),
        taken_at=now,
        expires_at=now + window,
    )
