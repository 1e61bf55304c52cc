#!/usr/bin/env python3
"""acrbot-healthcheck: exit 0 if `acrbot serve` is healthy, 1 (with one line why) if not.

The image's HEALTHCHECK and the Kubernetes exec probe for Socket Mode run it; standard library
only, so it runs under any Python in the image.

- HTTP mode (SLACK_APP_TOKEN unset or empty, as `acrbot serve` decides): GET /healthz on the
  port and host `acrbot serve` was started with (its --port/--host, default 3000), which
  answers 200 only while the worker process is up.
- Socket Mode (SLACK_APP_TOKEN set): there is no HTTP server, so look at the processes: the
  `acrbot serve` process must be running (not stopped) and have a worker child that is
  running (not a zombie, not stopped). The front process restarts a dead worker within about
  a second, so a probe with a failure threshold of 3 only fails on a front that stopped
  restarting it. And Slack must have a connection to deliver to: the front writes its Socket
  Mode status every second to $TMPDIR/acrbot-socket-mode-PID.json (bot/slack/socket_mode.py);
  "no connection" when there has been none for more than NO_CONNECTION_GRACE seconds (a
  refresh overlaps connections, so it never gets there), when the front stopped for good
  (Socket Mode turned off for the app), or when the file is not being written (a stuck front).

Usage: acrbot-healthcheck [--pid PID]   (default: the `acrbot serve` process in this PID
namespace, which in the container is PID 1)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PROC = Path("/proc")
DEFAULT_PORT = 3000
TIMEOUT = 3.0
NO_CONNECTION_GRACE = 5.0  # seconds without a Socket Mode connection before it is unhealthy
STATUS_STALE = 10.0  # seconds: a status file older than this was left by a stuck front


def _argv(pid: int) -> list[str]:
    raw = (PROC / str(pid) / "cmdline").read_bytes()
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def serve_args(argv: list[str]) -> list[str] | None:
    """The arguments after `acrbot serve` in a command line, or None if it is not one."""
    for i, arg in enumerate(argv[:-1]):
        if os.path.basename(arg) == "acrbot" and argv[i + 1] == "serve":
            return argv[i + 2 :]
    return None


def find_serve() -> int | None:
    """The `acrbot serve` process (the lowest PID if there are several: PID 1 in a container)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if serve_args(_argv(int(entry.name))) is not None:
                found.append(int(entry.name))
        except OSError:  # it ended while we looked
            continue
    return min(found) if found else None


def option(args: list[str], name: str, default: str) -> str:
    """The value of ``--name V`` or ``--name=V`` in ``args`` (the last one wins, as argparse)."""
    value = default
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def check_http(args: list[str]) -> str | None:
    port = int(option(args, "--port", str(DEFAULT_PORT)))
    host = option(args, "--host", "127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    netloc = f"[{host}]" if ":" in host else host
    url = f"http://{netloc}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            if response.status == 200:
                return None
            return f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code} ({exc.read().decode(errors='replace').strip()})"
    except OSError as exc:
        return f"{url}: {exc}"


def _running(state: str) -> bool:
    """R, S, D (and I) are alive; Z (zombie), X (dead), T/t (stopped) are not."""
    return state[:1] not in ("Z", "X", "T", "t", "")


def check_socket_mode(pid: int) -> str | None:
    try:
        state = _status(pid).get("State", "")
    except OSError:
        return f"acrbot serve ({pid}) is gone"
    if not _running(state):
        return f"acrbot serve ({pid}) is not running: {state}"
    workers = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = _status(int(entry.name))
            if status.get("PPid") == str(pid) and any(
                "spawn_main" in a for a in _argv(int(entry.name))
            ):
                workers.append((int(entry.name), status.get("State", "")))
        except OSError:
            continue
    if not workers:
        return f"acrbot serve ({pid}) has no worker process"
    if not any(_running(state) for _, state in workers):
        return "the worker process is not running: " + ", ".join(f"{p} {s}" for p, s in workers)
    return check_connection(pid)


def status_path(pid: int) -> Path:
    """The file `acrbot serve` writes (bot/slack/service.py, socket_mode_status_path)."""
    return Path(tempfile.gettempdir()) / f"acrbot-socket-mode-{pid}.json"


def check_connection(pid: int, *, now: float | None = None) -> str | None:
    """None if Slack has had a Socket Mode connection to deliver to lately, else why not."""
    now = time.time() if now is None else now
    path = status_path(pid)
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return f"no Socket Mode connection yet ({path} not written)"
    except (OSError, ValueError) as exc:
        return f"no Socket Mode status: {path}: {exc}"
    if status.get("stopped"):
        return f"no connection: {status['stopped']}"
    written = now - float(status.get("written_wall") or 0)
    if written > STATUS_STALE:
        return f"no connection: the Socket Mode status was last written {written:.0f} s ago"
    down_since = status.get("down_since_wall")
    if down_since is not None and now - float(down_since) > NO_CONNECTION_GRACE:
        why = status.get("last_reason") or "not connected yet"
        return f"no connection to Slack for {now - float(down_since):.0f} s (last: {why})"
    return None


def check(pid: int | None = None, environ: dict[str, str] | None = None) -> str | None:
    """None if healthy, else why not."""
    env = os.environ if environ is None else environ
    pid = pid if pid is not None else find_serve()
    if pid is None:
        return "acrbot serve is not running"
    try:
        args = serve_args(_argv(pid))
    except OSError:
        return f"acrbot serve ({pid}) is gone"
    if args is None:
        return f"process {pid} is not acrbot serve"
    if env.get("SLACK_APP_TOKEN"):
        return check_socket_mode(pid)
    return check_http(args)


def main(argv: list[str]) -> int:
    pid = None
    if argv[:1] == ["--pid"] and len(argv) == 2 and argv[1].isdigit():
        pid = int(argv[1])
    elif argv:
        print("usage: acrbot-healthcheck [--pid PID]", file=sys.stderr)
        return 2
    problem = check(pid)
    if problem is None:
        print("ok")
        return 0
    print(f"unhealthy: {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
