"""The embedded `oci-layout` backend: one OCI image layout per repository, on local disk.

The layout is what `skopeo copy … oci:DIR/REPO:TAG` writes: `DIR/REPO/oci-layout`,
`index.json` and `blobs/sha256/…`. Tags are the `org.opencontainers.image.ref.name`
annotations of the descriptors in `index.json`. Untag and manifest delete rewrite `index.json`
with write-then-rename under a lock file, so a crash or a concurrent writer never leaves a
corrupt or half-written index.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.core.errors import Conflict, LayersGone, NotFound, UsageError
from bot.core.references import DIGEST_RE, REPOSITORY_RE, shorten
from bot.core.registry import (
    Contents,
    ImageInfo,
    ManifestBytes,
    ManifestInfo,
    NoAdminUser,
    NoSoftDelete,
    Order,
    Progress,
    TagInfo,
    TagPage,
    held_blobs,
    natural_key,
    no_progress,
    page_of,
)

REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
LOCKED = "dev.acr-chatops.locked"  # our own annotation: "true" marks a tag that must not go
WRITE_LOCKED = "dev.acr-chatops.write-locked"  # "true": the tag must not be overwritten
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
LOCK_FILE = ".acrbot.lock"
MAX_JSON_BLOB = 4 * 1024 * 1024  # the manifest limit of distribution and ACR
GC_GRACE = 60.0  # seconds a new blob is safe from gc (a writer may not have referenced it yet)


class OciLayoutRegistry(NoSoftDelete, NoAdminUser):
    """A directory of OCI image layouts, one per repository (nested for `team/app`)."""

    kind = "oci-layout"
    can_untag = True
    has_dates = True  # the config's `created` (or the descriptor's annotation)
    can_list_manifests = True
    can_lock = True
    write_grace = 0.0  # local files: a write has happened or not when the call returns

    def __init__(self, name: str, root: Path, *, login_server: str | None = None) -> None:
        self.name = name
        self.root = Path(root)
        self.login_server = login_server

    # -- reading ---------------------------------------------------------------------------

    def repositories(self) -> list[str]:
        if not self.root.is_dir():
            raise NotFound(f"{self.name}: the layout directory {self.root} does not exist")
        found = []
        for marker in self.root.rglob("oci-layout"):
            name = marker.parent.relative_to(self.root).as_posix()
            if REPOSITORY_RE.fullmatch(name):
                found.append(name)
        return sorted(found)

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
        """One page, from one read of index.json (a layout has no server to page for us)."""
        return page_of(
            self.all_tags(repository),
            order=order,
            page_size=page_size,
            after=after,
            pattern=pattern,
            digest=digest,
        )

    def all_tags(self, repository: str, *, progress: Progress = no_progress) -> list[TagInfo]:
        index = self._read_index(repository)
        details: dict[str, tuple[datetime | None, int | None]] = {}
        result = []
        for desc in index["manifests"]:
            tag = _tag_of(desc)
            if tag is None:
                continue
            if desc["digest"] not in details:
                details[desc["digest"]] = self._details(repository, desc)
            created, size = details[desc["digest"]]
            result.append(
                TagInfo(
                    name=tag,
                    digest=desc["digest"],
                    created=created,
                    size=size,
                    locked=_locked(desc),
                )
            )
        return result

    def resolve(self, repository: str, tag: str) -> str:
        for desc in self._read_index(repository)["manifests"]:
            if _tag_of(desc) == tag:
                return desc["digest"]
        raise NotFound(f"{self.name}: {repository} has no tag `{tag}`")

    def image(self, repository: str, reference: str) -> ImageInfo:
        digest = (
            reference if DIGEST_RE.fullmatch(reference) else self.resolve(repository, reference)
        )
        descs = [d for d in self._read_index(repository)["manifests"] if d["digest"] == digest]
        if not descs:
            raise NotFound(f"{self.name}: {repository} has no manifest {digest}")
        created, size = self._details(repository, descs[0])
        return ImageInfo(
            repository=repository,
            digest=digest,
            media_type=descs[0].get("mediaType"),
            size=size,
            created=created,
        )

    def tags_on(
        self, repository: str, digest: str, *, progress: Progress = no_progress
    ) -> tuple[TagInfo, ...]:
        descs = [d for d in self._read_index(repository)["manifests"] if d["digest"] == digest]
        tags = [
            TagInfo(name=t, digest=digest, locked=_locked(d)) for d in descs if (t := _tag_of(d))
        ]
        return tuple(sorted(tags, key=lambda t: natural_key(t.name)))

    def tag_locked(self, repository: str, tag: str) -> bool:
        return self.tag(repository, tag).locked

    def storage_quota(self) -> None:
        return None  # no plan: the registry's storage is its operators' disk

    def limits(self) -> None:
        return None  # files on disk: nothing to pace

    def tag(self, repository: str, tag: str) -> TagInfo:
        hits = [d for d in self._read_index(repository)["manifests"] if _tag_of(d) == tag]
        if not hits:
            raise NotFound(f"{self.name}: {repository} has no tag `{tag}`")
        return TagInfo(name=tag, digest=hits[0]["digest"], locked=any(_locked(d) for d in hits))

    # -- writing ---------------------------------------------------------------------------

    def untag(self, repository: str, tag: str) -> None:
        """Remove one tag; the manifest stays (untagged) when no other tag points at it."""
        with self._rewrite(repository) as index:
            manifests = index["manifests"]
            hits = [d for d in manifests if _tag_of(d) == tag]
            if not hits:
                raise NotFound(f"{self.name}: {repository} has no tag `{tag}`")
            if any(_locked(d) for d in hits):
                raise Conflict(f"{self.name}: {repository}:{tag} is locked")
            digest = hits[0]["digest"]
            rest = [d for d in manifests if _tag_of(d) != tag]
            if not any(d["digest"] == digest for d in rest):
                untagged = {k: v for k, v in hits[0].items() if k != "annotations"}
                notes = {
                    k: v
                    for k, v in hits[0].get("annotations", {}).items()
                    if k not in (REF_NAME, LOCKED, WRITE_LOCKED)
                }
                if notes:
                    untagged["annotations"] = notes
                rest.append(untagged)
            index["manifests"] = rest

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Remove the manifest and every tag on it, then its blob if nothing else needs it."""
        with self._rewrite(repository) as index:
            hits = [d for d in index["manifests"] if d["digest"] == digest]
            if not hits:
                raise NotFound(f"{self.name}: {repository} has no manifest {digest}")
            locked = sorted(t for d in hits if (t := _tag_of(d)) and _locked(d))
            if locked:
                raise Conflict(f"{self.name}: {repository} tag(s) {', '.join(locked)} are locked")
            index["manifests"] = [d for d in index["manifests"] if d["digest"] != digest]
        # The deletion has happened; a gc that cannot read every manifest left (Conflict)
        # removes nothing, and the blobs wait for a later gc rather than fail this answer.
        with contextlib.suppress(Conflict):
            self.gc(repository, deleted=digest)

    def manifest_bytes(self, repository: str, digest: str) -> ManifestBytes:
        """The manifest blob as stored (checked against its digest), if index.json lists it."""
        if not any(d["digest"] == digest for d in self._read_index(repository)["manifests"]):
            raise NotFound(f"{self.name}: {repository} has no manifest {digest}")
        body = self._manifest_body(repository, digest)  # present, its digest, an object
        data = self._blob_path(repository, digest).read_bytes()
        media_type = body.get("mediaType") or (INDEX_TYPE if "manifests" in body else MANIFEST_TYPE)
        return ManifestBytes(digest=digest, media_type=media_type, data=data)

    def put_manifest(self, repository: str, reference: str, manifest: ManifestBytes) -> str:
        """Write the manifest blob and its index.json entry back (tagged ``reference`` unless
        that is the digest). Every blob it names must still be in the layout (the deletion's
        gc removes those no other image shares): else LayersGone, nothing written."""
        body = json.loads(manifest.data)
        named = [body.get("config"), *(body.get("layers") or []), *(body.get("manifests") or [])]
        for desc in named:
            if (
                isinstance(desc, dict)
                and "digest" in desc
                and not self._blob_path(repository, desc["digest"]).is_file()
            ):
                raise LayersGone(
                    f"{self.name}: {repository}@{manifest.digest} names "
                    f"{desc['digest'][:19]}…, which the layout no longer has (its gc "
                    "removed it)"
                )
        written = self._write_blob(repository, manifest.media_type, manifest.data)
        if written["digest"] != manifest.digest:
            raise Conflict(f"{self.name}: the snapshot of {manifest.digest} does not match it")
        tag = None if reference == manifest.digest else reference
        with self._rewrite(repository) as index:
            entries = index["manifests"]
            if tag is not None:
                if any(_tag_of(d) == tag and d["digest"] != manifest.digest for d in entries):
                    raise Conflict(f"{self.name}: {repository}:{tag} names another image")
                if any(_tag_of(d) == tag for d in entries):
                    return manifest.digest
                # the untagged entry of this digest becomes the tagged one
                entries[:] = [
                    d for d in entries if not (d["digest"] == manifest.digest and not _tag_of(d))
                ]
                entries.append({**written, "annotations": {REF_NAME: tag}})
            elif not any(d["digest"] == manifest.digest for d in entries):
                entries.append(written)
        return manifest.digest

    def gc(
        self, repository: str, *, grace: float = GC_GRACE, deleted: str | None = None
    ) -> list[str]:
        """Remove the blobs no remaining manifest or index references; return their digests.

        Walks index.json and every manifest and index it reaches (configs, layers, children,
        a referrer's subject is not followed: it is not owned). A blob younger than ``grace``
        seconds is kept: a writer (skopeo copy) may not have referenced it yet; the manifest
        just ``deleted`` goes at once, unless something still references it. A manifest that
        cannot be read (missing, not JSON, not its digest) raises Conflict and removes nothing:
        what it references is unknown, so no blob is provably unused.
        """
        import time

        root = self._repo_path(repository)
        with open(root / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index(repository)
            keep: set[str] = set()
            todo = [d["digest"] for d in index["manifests"] if isinstance(d.get("digest"), str)]
            while todo:  # manifests and indexes: read; their configs and layers: kept
                digest = todo.pop()
                if digest in keep:
                    continue
                keep.add(digest)
                body = self._manifest_body(repository, digest)
                leaves = [body.get("config"), *(body.get("layers") or [])]
                for leaf in leaves:
                    if isinstance(leaf, dict) and "digest" in leaf:
                        self._blob_path(repository, leaf["digest"])  # a valid digest, or Conflict
                        keep.add(leaf["digest"])
                todo += _children(body)
            removed = []
            now = time.time()
            for blob in (root / "blobs" / "sha256").glob("*"):
                digest = f"sha256:{blob.name}"
                if digest in keep or (digest != deleted and now - blob.stat().st_mtime < grace):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    blob.unlink()
                    removed.append(digest)
            return removed

    def set_lock(
        self, repository: str, reference: str, *, delete: bool | None, write: bool | None
    ) -> None:
        """Lock or unlock a tag, or every descriptor of a digest (annotations of ours), as
        `az acr repository update --delete-enabled/--write-enabled` does."""
        by_digest = DIGEST_RE.fullmatch(reference) is not None
        with self._rewrite(repository) as index:
            hits = [
                d
                for d in index["manifests"]
                if (d["digest"] == reference if by_digest else _tag_of(d) == reference)
            ]
            if not hits:
                missing = f"no manifest {reference}" if by_digest else f"no tag `{reference}`"
                raise NotFound(f"{self.name}: {repository} has {missing}")
            for desc in hits:
                notes = desc.setdefault("annotations", {})
                for key, value in ((LOCKED, delete), (WRITE_LOCKED, write)):
                    if value is True:
                        notes[key] = "true"
                    elif value is False:
                        notes.pop(key, None)
                if not notes:
                    desc.pop("annotations")

    def references(self, repository: str, digests: list[str]) -> dict[str, tuple[str, ...]]:
        found = {}
        for digest in set(digests):
            children = _children(self._manifest_body(repository, digest))
            if children:
                found[digest] = children
        return found

    def contents(
        self, repository: str, digests: list[str], *, progress: Progress = no_progress
    ) -> dict[str, Contents]:
        """Read from the layout's blobs (checked against their digests)."""
        found = {}
        for digest in dict.fromkeys(digests):
            body = self._manifest_body(repository, digest)
            own = self._blob_path(repository, digest).stat().st_size
            parts = [] if "manifests" in body else [body.get("config"), *(body.get("layers") or [])]
            blobs = ((digest, own), *held_blobs(parts))
            found[digest] = Contents(digest=digest, blobs=tuple(blobs), references=_children(body))
        return found

    def referrers(self, repository: str, digest: str) -> tuple[str, ...]:
        return tuple(m.digest for m in self.manifests(repository) if m.subject == digest)

    def manifests(self, repository: str) -> list[ManifestInfo]:
        """Every manifest of the layout with its tags, read from index.json and the blobs."""
        index = self._read_index(repository)
        by_digest: dict[str, list[dict[str, Any]]] = {}
        for desc in index["manifests"]:
            by_digest.setdefault(desc["digest"], []).append(desc)
        found = []
        for digest, descs in by_digest.items():
            created, _ = self._details(repository, descs[0])
            body = self._manifest_body(repository, digest)
            subject = body.get("subject") if isinstance(body.get("subject"), dict) else None
            found.append(
                ManifestInfo(
                    digest=digest,
                    tags=tuple(sorted((t for d in descs if (t := _tag_of(d))), key=natural_key)),
                    when=created,
                    locked=any(_locked(d) for d in descs),
                    media_type=descs[0].get("mediaType") or body.get("mediaType"),
                    references=_children(body),
                    subject=subject.get("digest") if subject else None,
                )
            )
        return found

    def push(
        self,
        repository: str,
        tag: str,
        *,
        config: dict[str, Any],
        layers: list[bytes],
    ) -> str:
        """Write an image (config + gzip layers) and point ``tag`` at it; return its digest.

        Used by the demo and tests to seed a layout, like `skopeo copy` would.
        """
        path = self._repo_path(repository, must_exist=False)
        path.mkdir(parents=True, exist_ok=True)
        layout = path / "oci-layout"
        if not layout.exists():
            layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
            (path / "index.json").write_text(
                json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []})
            )
        config_desc = self._write_blob(repository, CONFIG_TYPE, _canonical(config))
        layer_descs = [self._write_blob(repository, LAYER_TYPE, layer) for layer in layers]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config_desc,
            "layers": layer_descs,
        }
        manifest_desc = self._write_blob(repository, MANIFEST_TYPE, _canonical(manifest))
        self._point(repository, tag, manifest_desc)
        return manifest_desc["digest"]

    def push_index(self, repository: str, tag: str, children: list[str]) -> str:
        """Write an image index over manifests already in the repository and tag it (the
        demo and tests' multi-arch image); return its digest."""
        index = self._read_index(repository)
        descs = []
        for child in children:
            found = [d for d in index["manifests"] if d["digest"] == child]
            if not found:
                raise NotFound(f"{self.name}: {repository} has no manifest {child}")
            descs.append({k: v for k, v in found[0].items() if k != "annotations"})
        body = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": descs}
        desc = self._write_blob(repository, INDEX_TYPE, _canonical(body))
        self._point(repository, tag, desc)
        return desc["digest"]

    def add_tag(self, repository: str, tag: str, digest: str) -> None:
        """Point ``tag`` at a manifest already in the repository (like `docker tag` + push)."""
        descs = [d for d in self._read_index(repository)["manifests"] if d["digest"] == digest]
        if not descs:
            raise NotFound(f"{self.name}: {repository} has no manifest {digest}")
        self._point(repository, tag, {k: v for k, v in descs[0].items() if k != "annotations"})

    def _point(self, repository: str, tag: str, manifest_desc: dict[str, Any]) -> None:
        with self._rewrite(repository) as index:
            kept = [d for d in index["manifests"] if _tag_of(d) != tag]
            kept = [d for d in kept if _tag_of(d) or d["digest"] != manifest_desc["digest"]]
            kept.append({**manifest_desc, "annotations": {REF_NAME: tag}})
            index["manifests"] = kept

    # -- internals -------------------------------------------------------------------------

    def _repo_path(self, repository: str, *, must_exist: bool = True) -> Path:
        if not REPOSITORY_RE.fullmatch(repository):
            raise UsageError(f"`{repository}` is not a valid repository name")
        path = self.root / repository
        if must_exist and not (path / "oci-layout").is_file():
            raise NotFound(f"{self.name}: no repository `{repository}`")
        return path

    def _blob_path(self, repository: str, digest: object) -> Path:
        """Where ``digest``'s blob lives. The digest comes from index.json or a manifest, i.e.
        from whoever wrote the layout: it must be a digest before it becomes a path, or
        `sha256:/dev/zero` reads a device and `sha256:../../x` leaves the layout."""
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise Conflict(
                f"{self.name}: {repository} refers to `{shorten(str(digest))}`, not a valid"
                " OCI digest (expected sha256:<64 hex> or sha512:<128 hex>)"
            )
        algorithm, encoded = digest.split(":", 1)
        return self._repo_path(repository) / "blobs" / algorithm / encoded

    def _read_index(self, repository: str) -> dict[str, Any]:
        path = self._repo_path(repository) / "index.json"
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise Conflict(f"{self.name}: {repository}/index.json is unreadable") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise Conflict(f"{self.name}: {repository}/index.json is not an OCI image index")
        for desc in index["manifests"]:
            digest = desc.get("digest") if isinstance(desc, dict) else None
            if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
                raise Conflict(
                    f"{self.name}: {repository}/index.json names `{shorten(str(digest))}`, not a"
                    " valid OCI digest (expected sha256:<64 hex> or sha512:<128 hex>)"
                )
        return index

    @contextlib.contextmanager
    def _rewrite(self, repository: str) -> Iterator[dict[str, Any]]:
        """Lock, read index.json, let the caller change it, write it back atomically."""
        path = self._repo_path(repository)
        with open(path / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index(repository)
            yield index
            _atomic_write(path / "index.json", json.dumps(index, indent=2).encode())

    def _write_blob(self, repository: str, media_type: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self._repo_path(repository) / "blobs" / "sha256" / digest.split(":")[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            _atomic_write(target, data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def _manifest_body(self, repository: str, digest: str) -> dict[str, Any]:
        """A manifest or index blob the safety checks read (what an index uses, what gc may
        remove): present, its sha256 the digest, a JSON object whose `manifests` (if any) are
        descriptors; else Conflict naming it. Never "no children"."""
        what = f"{self.name}: {repository}'s manifest {digest}"
        if not DIGEST_RE.fullmatch(digest):
            raise Conflict(f"{what} is not a valid digest; nothing was changed")
        try:  # a regular file of at most MAX_JSON_BLOB bytes only (no FIFO, device, huge file)
            with open(self._blob_path(repository, digest), "rb", opener=_open_regular) as f:
                data = f.read(MAX_JSON_BLOB + 1)
        except OSError as exc:
            reason = "missing" if isinstance(exc, FileNotFoundError) else "unreadable"
            raise Conflict(f"{what} is {reason} in the layout; nothing was changed") from None
        algorithm, expected = digest.split(":", 1)
        if hashlib.new(algorithm, data).hexdigest() != expected:
            raise Conflict(f"{what} does not match its digest (corrupt blob); nothing was changed")
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Conflict(f"{what} is not a JSON object; nothing was changed")
        manifests = body.get("manifests")
        if manifests is not None and (
            not isinstance(manifests, list)
            or not all(
                isinstance(m, dict)
                and isinstance(m.get("digest"), str)
                and DIGEST_RE.fullmatch(m["digest"])
                for m in manifests
            )
        ):
            raise Conflict(f"{what} has a malformed `manifests` list; nothing was changed")
        return body

    def _read_json_blob(self, repository: str, digest: str) -> dict[str, Any] | None:
        """A manifest, index or config blob; None when absent or unreadable. An invalid digest
        raises (see `_blob_path`); only a regular file of at most MAX_JSON_BLOB bytes is read,
        so a planted FIFO, device or huge file cannot hang the bot or exhaust its memory."""
        path = self._blob_path(repository, digest)
        try:
            with open(path, "rb", opener=_open_regular) as f:
                data = json.loads(f.read(MAX_JSON_BLOB + 1))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _details(self, repository: str, desc: dict[str, Any]) -> tuple[datetime | None, int | None]:
        """Creation time and total size (manifest + config + layers), where readable."""
        created = _parse_time(desc.get("annotations", {}).get(CREATED))
        manifest = self._read_json_blob(repository, desc["digest"])
        if manifest is None:
            return created, desc.get("size")
        parts = [manifest.get("config", {}), *manifest.get("layers", [])]
        size = desc.get("size", 0) + sum(p.get("size", 0) for p in parts if isinstance(p, dict))
        config_desc = manifest.get("config")
        if created is None and isinstance(config_desc, dict) and "digest" in config_desc:
            config = self._read_json_blob(repository, config_desc["digest"])
            created = _parse_time((config or {}).get("created"))
        return created, size


def _open_regular(path: str, flags: int) -> int:
    """An `open` opener that refuses anything but a regular file (no FIFO, device, socket) and
    blocks on none: O_NONBLOCK keeps a FIFO's open from waiting for a writer."""
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JSON_BLOB:
            raise OSError(f"{path} is not a regular file of at most {MAX_JSON_BLOB} bytes")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _children(body: dict[str, Any]) -> tuple[str, ...]:
    """The digests an index lists (checked by _manifest_body)."""
    return tuple(m["digest"] for m in body.get("manifests") or [])


def _tag_of(desc: dict[str, Any]) -> str | None:
    return desc.get("annotations", {}).get(REF_NAME)


def _locked(desc: dict[str, Any]) -> bool:
    """Locked against deletion or overwrite: either keeps a tag from being deleted."""
    notes = desc.get("annotations", {})
    return notes.get(LOCKED) == "true" or notes.get(WRITE_LOCKED) == "true"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import (os.umask can only be read by setting it)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    The new file keeps the old one's mode and owner (mkstemp makes it 0600, which would lock
    other users' tools, such as skopeo, out of the layout); a new file gets the usual
    0666 & ~umask.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        try:
            old = os.stat(path)
        except FileNotFoundError:
            os.fchmod(fd, 0o666 & ~_UMASK)
        else:
            os.fchmod(fd, old.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.fchown(fd, old.st_uid, old.st_gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_layer(files: dict[str, bytes]) -> bytes:
    """A reproducible gzip'd tar layer holding ``files`` (fixed mtimes, so fixed digests)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)
