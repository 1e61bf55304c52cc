"""Whether the database can take a write now: locked by another process, or its disk full.

SQLite says so with an error code (SQLITE_BUSY / SQLITE_LOCKED after the busy timeout,
SQLITE_FULL when the disk is full); both are a state of the machine, not a bug of the command
that met them. So they are answered with one clear line (never a traceback per request),
logged once a minute while they last, shown on readiness and `/metrics`, and cleared by the
next write that goes through (a probe writes one row while a problem lasts, so the state
clears even when no command comes in).

PostgreSQL says the same with its own errors: a lock waited on past the store's budget
(lock_timeout) is LOCKED, a full disk FULL, and a server that cannot be reached (restarting,
failing over, a connection not had within the budget) UNREACHABLE: the pool reconnects by
itself, and nothing of the command was recorded (its transaction never committed).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime

from bot.core.errors import BotError

log = logging.getLogger(__name__)

LOCKED, FULL, UNREACHABLE = "locked", "full", "unreachable"
LOG_EVERY = 60.0  # seconds between two log lines about the same problem
# What each problem means for whoever reads it (the user, the log, readiness).
SAYS = {
    LOCKED: "the database is locked by another process",
    FULL: "the database's disk is full",
    UNREACHABLE: "the database server cannot be reached",
}


def problem_of(exc: BaseException) -> str | None:
    """LOCKED, FULL or UNREACHABLE when ``exc`` is the database saying so, else None."""
    if type(exc).__module__.split(".")[0] in ("psycopg", "psycopg_pool"):
        return _pg_problem(exc)
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        primary = code & 0xFF
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return LOCKED
        if primary == sqlite3.SQLITE_FULL:
            return FULL
        return None
    text = str(exc)
    if "database is locked" in text:
        return LOCKED
    if "database or disk is full" in text:
        return FULL
    return None


def _pg_problem(exc: BaseException) -> str | None:
    import psycopg
    import psycopg_pool

    # A row lock waited on past lock_timeout; a deadlock or serialization failure (the
    # server rolled one side back): another writer was in the way, as SQLITE_BUSY says.
    rolled_back = ("40001", "40P01")  # serialization_failure, deadlock_detected
    if isinstance(exc, psycopg.errors.LockNotAvailable) or (
        isinstance(exc, psycopg.Error) and exc.sqlstate in rolled_back
    ):
        return LOCKED
    if isinstance(exc, psycopg.errors.DiskFull):
        return FULL
    # Refused, reset, admin shutdown (57P01), starting up (57P03), no connection in time.
    unreachable = psycopg_pool.PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError
    if isinstance(exc, unreachable):
        return UNREACHABLE
    return None


class DatabaseUnavailable(BotError):
    """A write could not be made because of ``problem`` (LOCKED or FULL); try again later."""

    def __init__(self, problem: str) -> None:
        super().__init__(SAYS[problem])
        self.problem = problem


class DatabaseHealth:
    """The last problem seen by this process's writes, and when it began.

    ``failed`` and ``ok`` are called by whoever writes; ``problem`` is read by readiness and
    `/metrics` (no lock of SQLite's is taken to read it).
    """

    def __init__(self, *, log_every: float = LOG_EVERY) -> None:
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._since: datetime | None = None
        self._logged: dict[str, float] = {}
        self._log_every = log_every
        self.counts: dict[str, int] = dict.fromkeys(SAYS, 0)

    @property
    def problem(self) -> str | None:
        return self._problem

    @property
    def since(self) -> datetime | None:
        return self._since

    def failed(self, problem: str, *, doing: str = "record a command") -> None:
        """A write failed with ``problem``: remember it; log one line a minute at most."""
        now = time.monotonic()
        with self._lock:
            self.counts[problem] += 1
            if self._problem != problem:
                self._problem, self._since = problem, datetime.now(UTC)
            last = self._logged.get(problem)
            due = last is None or now - last >= self._log_every
            if due:
                self._logged[problem] = now
            count = self.counts[problem]
        if due:
            log.error(
                "cannot %s: %s (%s time(s) so far; next line about it in %.0f s)",
                doing,
                SAYS[problem],
                count,
                self._log_every,
                extra={"database_problem": problem},
            )

    def ok(self) -> None:
        """A write went through: whatever the problem was, it is over."""
        if self._problem is None:
            return
        with self._lock:
            problem, self._problem, self._since = self._problem, None, None
            self._logged.pop(problem, None)
        log.warning("the database takes writes again (it was: %s)", SAYS[problem])

    def guard(self, exc: BaseException, *, doing: str) -> bool:
        """If ``exc`` is a database problem, note it (one line a minute) and return True."""
        problem = problem_of(exc)
        if problem is None:
            return False
        self.failed(problem, doing=doing)
        return True


# One per process: every writer in it reports here, readiness and /metrics read it.
HEALTH = DatabaseHealth()
