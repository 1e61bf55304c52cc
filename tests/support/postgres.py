"""A real PostgreSQL for tests: one cluster per test session, a fresh database per test.

Debian's postgresql 15 (/usr/lib/postgresql/15/bin). initdb and postgres refuse to run as
root, so on a root machine they run as the `postgres` user (`runuser`) in a temporary folder
that user owns; the server listens on 127.0.0.1 at a free port, its unix socket in that folder
(`-k`), and is stopped by its PID with SIGINT (a fast shutdown). Two roles: `postgres` (trust,
to create databases) and `acrbot` with a password, which tests connect as, so a password that
leaks shows up in the scans that look for it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin() -> Path:
    """ACRBOT_PG_BIN, or the newest Debian postgresql's binaries (15 on bookworm)."""
    if "ACRBOT_PG_BIN" in os.environ:
        return Path(os.environ["ACRBOT_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _bin()
USER = "acrbot"
PASSWORD = "pg-test-pw-7f3c9a1e"  # tests scan logs, errors and the database for it

_names = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return (BIN / "initdb").is_file()


class PostgresCluster:
    """initdb, start, create databases, stop (or stop/start again: a restart or an outage)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="acrbot-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.log = self.root / "server.log"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(PASSWORD)
            if self._as:
                shutil.chown(pwfile, "postgres")
            self._run(
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            # Password logins for everything but `postgres` over TCP (the fixture's own).
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\n"
                "host all postgres 127.0.0.1/32 trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
            )
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                *self._as,
                str(BIN / "postgres"),
                "-D",
                str(self.data),
                "-k",
                str(self.root),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            cwd=self.root,
        )
        self._wait_ready()
        if not getattr(self, "_seeded", False):
            self.sql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            self._seeded = True
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("postgres did not start in 30 s")

    def sql(self, statement: str, *, database: str = "postgres") -> None:
        """Run one statement as the superuser (psycopg, over TCP)."""
        import psycopg

        with psycopg.connect(self.admin_url(database), autocommit=True) as conn:
            conn.execute(statement)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The URL acrbot is configured with (no password: it comes from the environment)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database owned by the test role; its name."""
        name = f"t{os.getpid()}_{next(_names)}"
        self.sql(f"CREATE DATABASE {name} OWNER {USER} TEMPLATE template0")
        return name

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by its PID); waits for it to exit."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._postmaster_pid(), signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _postmaster_pid(self) -> int:
        """The server's PID: runuser forks it as its child, so read postmaster.pid."""
        assert self.process is not None
        pidfile = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().split()[0])
        return self.process.pid

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
