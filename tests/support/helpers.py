"""The small helpers every kind of test needs, written once: ports, polling, stopping a process,
and `acrbot serve` as a real process (HTTP mode, against the fake Slack Web API).

Test modules import from here and from the fakes beside it (tests/support/), never from each
other; bench/ imports the same helpers. Fixtures live in tests/support/fixtures.py (loaded by
tests/conftest.py for every test).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it; bind to it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (bound and closed: connections are refused)."""
    return free_port()


def wait_until(predicate: Any, timeout: float = 20.0, *, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_by_pid(proc: subprocess.Popen | None, *, timeout: float) -> None:
    """SIGTERM a server started by a fixture, then SIGKILL it if it lingers."""
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


# -- `acrbot serve` as a real process ---------------------------------------------------------


def serve_env(config: Path, fake_slack: Any) -> dict[str, str]:
    """The environment to serve ``config`` over HTTP against the fake Slack Web API."""
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s3",
        "SLACK_API_URL": fake_slack.api_url,
        "ACRBOT_CONFIG": str(config),
    }
    env.pop("SLACK_APP_TOKEN", None)
    return env


def demo_env(tmp_path: Path, fake_slack: Any) -> dict[str, str]:
    """The demo's config and registry in tmp_path, and the environment to serve them."""
    subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--dir", str(tmp_path)],
        input="",
        text=True,
        check=True,
        capture_output=True,
    )
    return serve_env(tmp_path / "acrbot.toml", fake_slack)


def health(port: int) -> int:
    """The status of ``GET /healthz`` (raises OSError while nothing listens)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    conn.request("GET", "/healthz")
    return conn.getresponse().status


def spawn_serve(
    env: dict[str, str], *args: str, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen:
    """`acrbot serve ARGS` started, not waited for (see `wait_healthy`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", *args],
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_healthy(port: int, proc: subprocess.Popen, *, timeout: float = 30) -> None:
    """Wait for /healthz to say ok; a service that never does is killed and its stderr shown."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if health(port) == 200:
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.communicate()[1])


def start_serve(
    env: dict[str, str], *args: str, stdout: int = subprocess.PIPE
) -> tuple[int, subprocess.Popen]:
    """`acrbot serve` (HTTP) on a free port, once /healthz says ok: (port, process)."""
    port = free_port()
    proc = spawn_serve(env, "--port", str(port), *args, stdout=stdout)
    wait_healthy(port, proc, timeout=20)
    return port, proc


def worker_of(pid: int) -> int:
    """The worker process `acrbot serve` started (not multiprocessing's resource tracker)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status and "spawn_main" in cmdline:
            return int(entry.name)
    raise AssertionError(f"no worker process under {pid}")


def stored_bytes(store: Any) -> bytes:
    """Everything the database holds, to scan for a secret: a SQLite file's bytes (and its
    -wal/-shm, free pages included), or every row of every table on PostgreSQL (a store's
    connection is closed after: call it at the end of a test)."""
    if store.engine == "sqlite":
        store.close()
        return b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))
    from bot.state.store import Store

    reader = Store(store.target, readonly=True)  # ``store`` may be closed already
    try:
        tables = reader.db.execute(
            "select table_name from information_schema.tables where table_schema = current_schema()"
        ).fetchall()
        rows = [reader.db.execute(f"select * from {name}").fetchall() for (name,) in tables]
    finally:
        reader.close()
    return repr(rows).encode()
