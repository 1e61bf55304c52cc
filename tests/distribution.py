"""A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8).

Started from a fixture on 127.0.0.1 and a free port with deletion enabled (optionally behind
htpasswd Basic auth), stopped by PID. Images are pushed with plain HTTP, each tag with its own
config so that tags get distinct digests unless a test asks for a shared one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import bcrypt
import httpx

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_by_pid(proc: subprocess.Popen | None, *, timeout: float) -> None:
    """SIGTERM a server started by a fixture, then SIGKILL it if it lingers."""
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class Distribution:
    def __init__(
        self, root: Path, *, users: dict[str, str] | None = None, delete: bool = True
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.users = users or {}
        self.delete = delete
        self.proc: subprocess.Popen | None = None

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
            f"storage:\n  filesystem: {{rootdirectory: {self.root / 'data'}}}\n"
            f"  delete: {{enabled: {'true' if self.delete else 'false'}}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}', secret: test-only}}\n" + auth
        )
        self.proc = subprocess.Popen(
            [BINARY, "serve", str(self.root / "config.yml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.TransportError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"docker-registry did not start on {self.url}")

    def stop(self) -> None:
        stop_by_pid(self.proc, timeout=5)

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
    ) -> str:
        """Push a tiny image; the same ``label`` gives the same digest. Returns the digest."""
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
        layer = f"layer of {label or tag}".encode()
        with self.client() as http:
            descriptors = [
                self._blob(http, repository, data, media)
                for data, media in (
                    (config, "application/vnd.oci.image.config.v1+json"),
                    (layer, "application/vnd.oci.image.layer.v1.tar"),
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
