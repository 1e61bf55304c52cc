"""A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8).

Started from a fixture on 127.0.0.1 and a free port with deletion enabled (optionally behind
htpasswd Basic auth), stopped by PID. Images are pushed with plain HTTP, each tag with its own
config so that tags get distinct digests unless a test asks for a shared one.

For volume, `add_tags` and `seed_images` write straight into the registry's filesystem storage
(`data/docker/registry/v2/...`: blobs, the repository's `_layers` and `_manifests` links), which
the running registry serves like pushed content (it keeps no cache of it with this config):
10,000 tags in ~1.2 s, 1,000 images in ~0.5 s on a quiet ext4 (0.25 s and 0.15 s on tmpfs, see
``in_memory``) instead of minutes of HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import bcrypt
import httpx

from tests.support.helpers import free_port, stop_by_pid

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Accept header that lets the registry answer any manifest kind as stored.
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

# distribution's own grammar (reference/regexp.go): refuse anything that could escape the tree.
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class SeededImage(NamedTuple):
    """One image written by `Distribution.seed_images` (``tag`` is None when left untagged)."""

    tag: str | None
    digest: str
    created: datetime


class Distribution:
    """docker-registry on 127.0.0.1 and a free port; config and htpasswd live under ``root``.

    Storage goes to ``root/data``, or with ``in_memory=True`` to a directory of its own on the
    /dev/shm tmpfs when there is one (removed when the object is collected or at exit, so a
    stop and start keeps the content). Writing 10,000 tags takes ~0.25 s there, against ~1.2 s
    on this machine's ext4 when it is quiet and 16–18 s while other test runs write to it;
    deleting a digest that carries 10,000 tags takes the registry ~0.9 s against ~4.5 s.
    """

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str] | None = None,
        delete: bool = True,
        in_memory: bool = False,
        notify: tuple[str, str] | None = None,
    ) -> None:
        """``notify``: (url, bearer secret) of a notifications endpoint (registry events)."""
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.users = users or {}
        self.delete = delete
        self.notify = notify
        self.proc: subprocess.Popen | None = None
        self.data = root / "data"
        if in_memory and os.path.isdir("/dev/shm"):
            self.data = Path(tempfile.mkdtemp(prefix="distribution-", dir="/dev/shm"))
            weakref.finalize(self, shutil.rmtree, self.data, ignore_errors=True)

    def start(self) -> Distribution:
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            lines = [
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}"
                for u, p in self.users.items()
            ]
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {self.root / 'htpasswd'}\n"
        (self.root / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage:\n  filesystem: {{rootdirectory: {self.data}}}\n"
            f"  delete: {{enabled: {'true' if self.delete else 'false'}}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}', secret: test-only}}\n"
            + auth
            + self._notifications()
        )
        # Its log goes to a file: it logs every 4xx at level error (~600 bytes each), and a
        # pipe nobody reads fills after ~100 of them and stalls every request from then on.
        with open(self.root / "registry.log", "ab") as log:
            self.proc = subprocess.Popen(
                [BINARY, "serve", str(self.root / "config.yml")],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.TransportError:
                time.sleep(0.02)
        self.stop()
        log = (self.root / "registry.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"docker-registry did not start on {self.url}: {log}")

    def stop(self) -> None:
        stop_by_pid(self.proc, timeout=5)

    def _notifications(self) -> str:
        if self.notify is None:
            return ""
        url, secret = self.notify
        return (
            "notifications:\n  endpoints:\n    - name: acrbot\n"
            f"      url: {url}\n"
            f'      headers: {{Authorization: ["Bearer {secret}"]}}\n'
            "      timeout: 3s\n      threshold: 3\n      backoff: 1s\n"
        )

    # -- pushing ---------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        auth = next(iter(self.users.items()), None)
        return httpx.Client(base_url=self.url, auth=auth, timeout=10)

    def push(
        self,
        repository: str,
        tag: str,
        *,
        label: str | None = None,
        created: str = "2024-01-01T00:00:00Z",
        layers: Sequence[bytes] | None = None,
    ) -> str:
        """Push a tiny image; the same ``label`` gives the same digest. Returns the digest.
        ``layers``: its layers (default: one made of its label), e.g. a base shared by
        several images and repositories."""
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {"Labels": {"t": label or f"{repository}:{tag}"}},
                "rootfs": {"type": "layers", "diff_ids": []},
            },
            sort_keys=True,
        ).encode()
        blobs = layers if layers is not None else [f"layer of {label or tag}".encode()]
        with self.client() as http:
            descriptors = [
                self._blob(http, repository, data, media)
                for data, media in (
                    (config, "application/vnd.oci.image.config.v1+json"),
                    *((layer, "application/vnd.oci.image.layer.v1.tar") for layer in blobs),
                )
            ]
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descriptors[0],
                    "layers": descriptors[1:],
                }
            ).encode()
            response = http.put(
                f"/v2/{repository}/manifests/{tag}",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            response.raise_for_status()
            return response.headers["Docker-Content-Digest"]

    @staticmethod
    def _blob(http: httpx.Client, repository: str, data: bytes, media: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = http.post(f"/v2/{repository}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["Location"]
        # Append digest= by hand: httpx's params= would replace the upload's _state query.
        separator = "&" if "?" in location else "?"
        http.put(
            f"{location}{separator}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        ).raise_for_status()
        return {"mediaType": media, "digest": digest, "size": len(data)}

    # -- writing straight into the storage -------------------------------------------------

    @property
    def storage(self) -> Path:
        """The filesystem driver's tree: ``blobs/`` and ``repositories/`` live under it."""
        return self.data / "docker" / "registry" / "v2"

    def add_tags(self, repository: str, tags: Iterable[str], digest: str) -> int:
        """Point every tag in ``tags`` at the manifest ``digest``, already in ``repository``.

        Writes the two links `PUT /v2/REPO/manifests/TAG` would (``_manifests/tags/TAG/current``
        and ``…/index/sha256/HEX``); an existing tag is moved. Returns the number of tags written.
        """
        hexdigest = _hex(digest)
        manifests = self._repository(repository) / "_manifests"
        if not (manifests / "revisions" / "sha256" / hexdigest / "link").is_file():
            raise ValueError(f"{repository}@{digest} is not in the registry: push it first")
        link = digest.encode()
        root = os.fspath(manifests / "tags")
        os.makedirs(root, exist_ok=True)
        written = 0
        for tag in tags:
            _write_tag(root, _checked(_TAG, tag, "tag"), hexdigest, link)
            written += 1
        return written

    def seed_images(
        self,
        repository: str,
        count: int,
        *,
        created: Callable[[int], datetime | str] | Sequence[datetime | str] | None = None,
        tag: Callable[[int], str | None] | Sequence[str | None] | None = None,
        platform: Callable[[int], tuple[str, str]] | None = None,
        media_type: str = OCI_MANIFEST,
    ) -> list[SeededImage]:
        """Write ``count`` distinct single-layer images into ``repository``, without HTTP.

        Image ``i`` gets config ``created`` = ``created(i)`` or ``created[i]`` (a datetime, naive
        read as UTC, or an RFC 3339 string; default 2024-01-01 plus ``i`` hours), tag ``tag(i)``
        or ``tag[i]`` (default ``t00000``…; None leaves it untagged) and ``platform(i)`` =
        ``(os, architecture)`` (default linux/amd64). ``media_type`` is OCI_MANIFEST or
        DOCKER_MANIFEST. A tagged image is byte-for-byte what ``push(repository, tag,
        created=…)`` would store (for an OCI linux/amd64 one), so its digest is the same.
        Returns ``[(tag, digest, created)]`` in order of ``i``.
        """
        config_type, layer_type = {
            OCI_MANIFEST: (OCI_CONFIG, OCI_LAYER),
            DOCKER_MANIFEST: (DOCKER_CONFIG, DOCKER_LAYER),
        }[media_type]
        repo = self._repository(repository)
        blobs = os.fspath(self.storage / "blobs" / "sha256")
        layers = os.fspath(repo / "_layers" / "sha256")
        revisions = os.fspath(repo / "_manifests" / "revisions" / "sha256")
        tags_root = os.fspath(repo / "_manifests" / "tags")
        for directory in (blobs, layers, revisions, tags_root):
            os.makedirs(directory, exist_ok=True)
        seeded = []
        for i in range(count):
            name = _nth(tag, i, f"t{i:05d}")
            if name is not None:
                _checked(_TAG, name, "tag")
            when, stamp = _timestamp(_nth(created, i, _EPOCH + timedelta(hours=i)))
            os_name, architecture = platform(i) if platform else ("linux", "amd64")
            label = f"{repository}:{name}" if name is not None else f"{repository}@{i}"
            config = json.dumps(
                {
                    "architecture": architecture,
                    "os": os_name,
                    "created": stamp,
                    "config": {"Labels": {"t": label}},
                    "rootfs": {"type": "layers", "diff_ids": []},
                },
                sort_keys=True,
            ).encode()
            layer = f"layer of {label if name is None else name}".encode()
            descriptors = []
            for data, media in ((config, config_type), (layer, layer_type)):
                hexdigest = _write_blob(blobs, data)
                _write_link(f"{layers}/{hexdigest}", f"sha256:{hexdigest}".encode())
                descriptors.append(
                    {"mediaType": media, "digest": f"sha256:{hexdigest}", "size": len(data)}
                )
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": media_type,
                    "config": descriptors[0],
                    "layers": descriptors[1:],
                }
            ).encode()
            hexdigest = _write_blob(blobs, manifest)
            link = f"sha256:{hexdigest}".encode()
            _write_link(f"{revisions}/{hexdigest}", link)
            if name is not None:
                _write_tag(tags_root, name, hexdigest, link)
            seeded.append(SeededImage(name, link.decode(), when))
        return seeded

    def push_index(
        self,
        repository: str,
        tag: str,
        child_digests: Iterable[str],
        *,
        platforms: Sequence[tuple[str, str]] | None = None,
        media_type: str = OCI_INDEX,
    ) -> str:
        """PUT an image index (OCI, or DOCKER_MANIFEST_LIST) of manifests already in
        ``repository`` as ``tag``, over HTTP. Each child's size and media type come from the
        registry, its platform from ``platforms[i]`` = ``(os, architecture)`` or else from its
        config blob. Returns the index's digest."""
        children = []
        with self.client() as http:
            for i, digest in enumerate(child_digests):
                response = http.get(
                    f"/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_ACCEPT}
                )
                response.raise_for_status()
                child = response.json()
                if platforms is not None:
                    os_name, architecture = platforms[i]
                else:
                    config = http.get(f"/v2/{repository}/blobs/{child['config']['digest']}")
                    config.raise_for_status()
                    os_name, architecture = config.json()["os"], config.json()["architecture"]
                children.append(
                    {
                        "mediaType": response.headers["Content-Type"].split(";")[0],
                        "digest": digest,
                        "size": len(response.content),
                        "platform": {"architecture": architecture, "os": os_name},
                    }
                )
            index = json.dumps(
                {"schemaVersion": 2, "mediaType": media_type, "manifests": children}
            ).encode()
            response = http.put(
                f"/v2/{repository}/manifests/{tag}",
                content=index,
                headers={"Content-Type": media_type},
            )
            response.raise_for_status()
            return response.headers["Docker-Content-Digest"]

    def _repository(self, repository: str) -> Path:
        return self.storage / "repositories" / _checked(_REPOSITORY, repository, "repository")


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def _hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


def _nth(source: Callable | Sequence | None, i: int, default: object) -> object:
    if source is None:
        return default
    return source(i) if callable(source) else source[i]


def _timestamp(value: datetime | str) -> tuple[datetime, str]:
    """An aware datetime and the RFC 3339 text written into the config (UTC, ``Z``)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    return when, when.isoformat().replace("+00:00", "Z")


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def _write_file(directory: str, name: str, data: bytes) -> None:
    """Write ``directory/name``, creating the directory (and its parents) on first use."""
    try:
        fd = os.open(f"{directory}/{name}", _CREATE, 0o644)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(f"{directory}/{name}", _CREATE, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_link(directory: str, digest: bytes) -> None:
    _write_file(directory, "link", digest)


def _write_tag(root: str, tag: str, hexdigest: str, link: bytes) -> None:
    """The two links of a tag, in the order distribution's tag store writes them."""
    base = f"{root}/{tag}"
    try:  # A new tag (the common case): five mkdirs, no lookups.
        for directory in ("", "/current", "/index", "/index/sha256", f"/index/sha256/{hexdigest}"):
            os.mkdir(base + directory)
    except FileExistsError:  # An existing tag: move it, keep its other index entries.
        pass
    _write_link(f"{base}/current", link)
    _write_link(f"{base}/index/sha256/{hexdigest}", link)


def _write_blob(blobs: str, data: bytes) -> str:
    """Store ``data`` content-addressed (``blobs/sha256/XX/HEX/data``); returns HEX."""
    hexdigest = hashlib.sha256(data).hexdigest()
    directory = f"{blobs}/{hexdigest[:2]}/{hexdigest}"
    if not os.path.exists(f"{directory}/data"):
        _write_file(directory, "data", data)
    return hexdigest
