"""Which process owns a piece of work, and whether that process is still alive.

Work that a crash can interrupt (a deletion being executed, a job being run) records its
owner as `host:pid:start`, the start being the process's start time from /proc, so a pid the
kernel has reused for another program does not pass for the owner. Another process on the same
host can then tell a dead owner from a busy one; an owner on another host (the pod before a
redeploy) is judged by how long ago it started the work instead.
"""

from __future__ import annotations

import os
import socket
from functools import cache


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 on; the command name (field 2) may hold spaces, so the
    fields are counted from its closing parenthesis."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else "0"  # field 22: start time


@cache
def _host() -> str:
    return socket.gethostname()


def this_process() -> str:
    """This process's owner id (recomputed per call: a forked child is another owner)."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{_start_time(pid)}"


def on_this_host(owner: str) -> bool:
    return owner.rsplit(":", 2)[0] == _host()


def alive(owner: str) -> bool:
    """Whether the process named by ``owner`` still runs; True when it cannot be told (another
    host): the caller then falls back on the age of the work."""
    try:
        host, pid_text, start = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != _host():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    fields = _stat(pid)
    if fields is None:
        return start == "0"  # no /proc here: the pid's existence is all we know
    if fields[0] in ("Z", "X"):  # died, not yet reaped by its parent
        return False
    return start == "0" or fields[19] == start
