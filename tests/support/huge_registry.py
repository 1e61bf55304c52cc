"""A distribution-API stand-in with a repository of millions of tags, for memory tests.

    with HugeRegistry(tags=5_000_000) as registry:   # http://127.0.0.1:FREE_PORT
        registry.url, registry.body_bytes             # ~52 MB of tags/list for 5 million tags

docker-registry cannot hold 5 million tags in reasonable time; this answers what the bot asks
for a tag listing, generated on the fly and never held in memory (the test process stays
small, so a measured child is the bot, not the server): `GET /v2/REPO/tags/list` streams
`{"name": REPO, "tags": ["t0", "t1", …]}` as chunked HTTP, as distribution 2.8 does (every tag
in one body, `n` ignored, no Link). Every tag points at one small OCI image: HEAD and GET of
`/v2/REPO/manifests/REF`, GET of its config blob; `/referrers/` answers 404 as distribution
does. ``repository`` is the only repository; anything else is 404 NAME_UNKNOWN.

`prepare()` writes a config and database for it, and `run()` runs one bot command as an
`acrbot run` process and reads its peak RSS (VmHWM, read by the process at exit) and CPU time
(os.wait4).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHUNK_TAGS = 20_000

CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z"}
).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": CONFIG_DIGEST,
            "size": len(CONFIG),
        },
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class HugeRegistry:
    def __init__(
        self, *, tags: int, repository: str = "huge/app", break_after: int | None = None
    ) -> None:
        """``break_after``: close the connection once that many bytes of the tag list went
        out (a registry or proxy dying mid-answer)."""
        self.tags, self.repository, self.break_after = tags, repository, break_after
        self.listings = 0  # tags/list requests answered (fully or not)
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    @property
    def body_bytes(self) -> int:
        """The size of the tags/list body (generated once more and counted: ~1 s for 5 M)."""
        return sum(len(chunk) for chunk in self.chunks())

    def start(self) -> HugeRegistry:
        handler = type("Handler", (_Handler,), {"registry": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HugeRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chunks(self):
        """The tags/list body, CHUNK_TAGS names at a time."""
        yield (json.dumps({"name": self.repository})[:-1] + ', "tags": [').encode()
        for start in range(0, self.tags, CHUNK_TAGS):
            names = (f'"t{i}"' for i in range(start, min(start + CHUNK_TAGS, self.tags)))
            yield ((", " if start else "") + ", ".join(names)).encode()
        yield b"]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    registry: HugeRegistry

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        prefix = f"/v2/{self.registry.repository}/"
        if path == "/v2/":
            return self._send(200, b"{}", "application/json", head=head)
        if not path.startswith(prefix):
            return self._error(404, "NAME_UNKNOWN", head=head)
        rest = path[len(prefix) :]
        if rest == "tags/list" and not head:
            return self._stream_tags()
        if rest.startswith("manifests/"):
            reference = rest[len("manifests/") :]
            if reference.startswith("sha256:") and reference != MANIFEST_DIGEST:
                return self._error(404, "MANIFEST_UNKNOWN", head=head)
            return self._send(200, MANIFEST, OCI_MANIFEST, head=head, digest=MANIFEST_DIGEST)
        if rest == f"blobs/{CONFIG_DIGEST}":
            return self._send(
                200, CONFIG, "application/octet-stream", head=head, digest=CONFIG_DIGEST
            )
        return self._error(404, "NOT_FOUND", head=head)

    def _stream_tags(self) -> None:
        self.registry.listings += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            for chunk in self.registry.chunks():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if self.registry.break_after is not None and sent >= self.registry.break_after:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading: that is allowed

    def _send(
        self, status: int, body: bytes, media: str, *, head: bool, digest: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, *, head: bool) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self._send(status, body, "application/json", head=head)


# -- the bot as a process, measured ---------------------------------------------------------


# The peak is read by the process itself at exit from /proc/self/status (VmHWM, the high-water
# mark of its own address space): the kernel's ru_maxrss is not usable here, since a child
# inherits its parent's high-water mark through fork and exec (a 140 MiB pytest parent made
# every `acrbot run` child report at least 140 MiB).
LAUNCH = """
import atexit, runpy, sys

target = sys.argv.pop(1)

def peak():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    with open(target, "w") as out:
        out.write(line.split()[1])

atexit.register(peak)
sys.argv[0] = "acrbot"
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""


def run(code: Path, config: Path, command: str) -> dict[str, object]:
    """One `acrbot run` process: its peak RSS (MiB), CPU seconds, wall seconds, the first line
    of its answer."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        argv = ["run", "--config", str(config), "--user", "U1", command]
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, peak.name, *argv],
            cwd=code,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        output = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak_kib = int(peak.read() or 0)
    return {
        "command": command,
        "peak_mib": peak_kib / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": time.monotonic() - started,
        "answer": next(
            (line for line in output.splitlines() if line.strip() and "working:" not in line),
            "(nothing)",
        ),
    }


def prepare(directory: Path, url: str, code: Path) -> Path:
    """An acrbot.toml for ``url`` (one `oci` registry, "dist"), its database, U1 a contributor."""
    config = directory / "acrbot.toml"
    config.write_text(
        f'database = "acrbot.db"\n\n[[registry]]\nname = "dist"\ntype = "oci"\nurl = "{url}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(code)}
    for args in (("init",), ("roles", "grant", "U1", "contributor")):
        subprocess.run(
            [sys.executable, "-m", "bot", *args, "--config", str(config)],
            cwd=code,
            env=env,
            check=True,
            capture_output=True,
        )
    return config
