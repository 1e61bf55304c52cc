"""The PostgreSQL engine: what differs from SQLite, in one place (psycopg 3 + psycopg_pool).

The modules above the store write SQLite-flavoured SQL with ``?`` placeholders (the store
contract, docs/architecture.md); this module translates it for psycopg (``?`` → ``%s``,
``:name`` → ``%(name)s``, a literal ``%`` doubled), maps the schema's DDL (``id INTEGER
PRIMARY KEY`` → an identity column, INTEGER → BIGINT, BLOB → BYTEA, no WITHOUT ROWID), keeps
the schema version in a table (PRAGMA user_version is SQLite's), and turns connection failures
into one line naming the fix.

Connections come from a pool, each in autocommit; ``transaction()`` pins one connection to
the thread for the transaction's length (READ COMMITTED: the callers that race take a row or
advisory lock, or compare-and-set). Every connection is checked when taken from the pool, so
after a server restart the next command gets a fresh connection rather than a dead one; a
connection that cannot be had within the store's busy timeout is `PoolTimeout`, which
bot/state/dbhealth.py answers as "the database server cannot be reached".

With ``database_auth = "azure"`` the password is an Entra ID token: each new connection asks
for it (`TokenPassword`), which is fetched again five minutes before it expires.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from bot.core.database import AZURE_SCOPE, ServerDatabase
from bot.core.errors import ConfigError

ENGINE = "postgresql"
VERSION_TABLE = "acrbot_schema"
POOL_SIZE = 10  # connections per process at most (docs/operations.md: sizing the pool)
REFRESH_BEFORE = 300.0  # seconds before a token expires that a new one is fetched
# A connection given back less than this long ago is lent again without a probe (a round trip
# less on every ack); an older one is probed first, so after a server restart the first
# commands do not meet dead connections. One that breaks in use is dropped by the pool.
FRESH = 2.0
# Every pool this process opened and has not closed (tests close them all between tests).
OPEN_POOLS: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()


def close_all() -> None:
    """Close every pool still open in this process (a test's teardown; process exit)."""
    for pool in list(OPEN_POOLS):
        pool.close()


class TokenCredential(Protocol):
    """What DefaultAzureCredential offers (azure.core.credentials.TokenCredential)."""

    def get_token(self, *scopes: str) -> Any: ...


class TokenPassword:
    """An Entra ID token as the password of each new connection, fetched again before it
    expires. A connection that is open keeps working after its token expires (the server
    checks it only at login), so only new connections need a fresh one."""

    def __init__(self, credential: TokenCredential, *, clock: Callable[[], float] = time.time):
        self._credential, self._clock = credential, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or self._expires - self._clock() < REFRESH_BEFORE:
                token = self._credential.get_token(AZURE_SCOPE)
                self._token, self._expires = token.token, float(token.expires_on)
            return self._token


# -- SQL translation -------------------------------------------------------------------------

# A quoted string or identifier, a comment, or a placeholder: what the translation walks over.
_TOKENS = re.compile(
    r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(--[^\n]*)|(\?)|(?<!:):([A-Za-z_]\w*)|(%)"""
)


def translate(sql: str, params: Any) -> str:
    """SQLite-flavoured SQL → psycopg's: ``?`` → ``%s``, ``:name`` → ``%(name)s`` (when the
    parameters are a mapping), a literal ``%`` → ``%%``; quoted text and comments untouched
    (psycopg reads ``%`` everywhere, so it is doubled in them too)."""
    return _translated(sql, isinstance(params, Mapping))


@functools.lru_cache(maxsize=2048)  # the same few hundred statements, on every ack
def _translated(sql: str, named: bool) -> str:

    def one(match: re.Match[str]) -> str:
        quoted, ident, comment, mark, name, percent = match.groups()
        if quoted is not None or comment is not None:
            return match.group(0).replace("%", "%%")
        if ident is not None:
            return ident.replace("%", "%%")
        if mark is not None:
            return "%s"
        if name is not None:
            return f"%({name})s" if named else match.group(0)
        return "%%" if percent else match.group(0)

    return _TOKENS.sub(one, sql)


_DDL = (
    (
        re.compile(r'(\bid\b|"id")\s+INTEGER\s+PRIMARY\s+KEY', re.I),
        r"\1 BIGINT GENERATED BY "
        "DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bWITHOUT\s+ROWID\b", re.I), ""),
)


def translate_ddl(statement: str) -> str:
    """A migration's DDL (written for SQLite, the store contract's types) for PostgreSQL.
    INTEGER becomes BIGINT everywhere: a size or a count never overflows at 2^31."""
    for pattern, replacement in _DDL:
        statement = pattern.sub(replacement, statement)
    return statement


# -- results and the database handle ---------------------------------------------------------


class Result:
    """What ``execute`` returns: the rows already fetched (the connection went back to the
    pool), with the cursor methods the store's callers use."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount
        self._at = 0

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgDatabase:
    """``store.db`` on PostgreSQL: ``execute``, ``query`` and ``executemany`` as on SQLite's
    handle (sqlite-utils' Database), inside the thread's transaction when there is one."""

    engine = ENGINE

    def __init__(self, engine: PgEngine) -> None:
        self._engine = engine

    def execute(self, sql: str, params: Any = None) -> Result:
        return self._run(sql, params, rows=tuple)

    def query(self, sql: str, params: Any = None) -> Iterator[dict[str, Any]]:
        yield from self._run(sql, params, rows=dict)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._engine.connection() as conn, conn.cursor() as cur:
            cur.executemany(translate(sql, rows[0]), rows)

    def ddl(self, statement: str) -> None:
        """One migration statement (no parameters: nothing to translate but the types)."""
        self._run(translate_ddl(statement), None, rows=tuple)

    def append_only(self, table: str) -> None:
        """Refuse UPDATE and DELETE on ``table`` (the audit): a trigger, as on SQLite."""
        self._run(
            "CREATE OR REPLACE FUNCTION acrbot_append_only() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'the audit is append-only'; END $$",
            None,
            rows=tuple,
        )
        for event in ("update", "delete"):
            self._run(
                f"CREATE TRIGGER {table}_no_{event} BEFORE {event.upper()} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION acrbot_append_only()",
                None,
                rows=tuple,
            )

    def _run(self, sql: str, params: Any, *, rows: type) -> Result:
        text = translate(sql, params) if params is not None else sql
        with self._engine.connection() as conn:
            factory = dict_row if rows is dict else None
            with conn.cursor(row_factory=factory) if factory else conn.cursor() as cur:
                cur.execute(text, params, prepare=False)
                fetched = cur.fetchall() if cur.description is not None else []
                return Result(fetched, cur.rowcount)


# -- the engine ------------------------------------------------------------------------------


class PgEngine:
    """A pool of connections to one database, and the thread's transaction."""

    def __init__(
        self,
        target: ServerDatabase,
        *,
        busy_timeout: float,
        readonly: bool = False,
        credential: TokenCredential | None = None,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.target = target
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._password: Callable[[], str | None]
        if target.auth == "azure":
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self._password = TokenPassword(credential)
        else:
            self._password = lambda: target.password
        self._readonly = readonly
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self.check()  # one direct connection first: its error names the problem exactly
        self.pool = ConnectionPool(
            target.url,
            kwargs=self._kwargs,
            min_size=1,
            max_size=pool_size,
            timeout=busy_timeout,
            check=self._check,
            reset=self._returned,
            open=True,
            name="acrbot",
        )
        OPEN_POOLS.add(self.pool)
        self.db = PgDatabase(self)

    def _kwargs(self) -> dict[str, Any]:
        """Each new connection's parameters (a fresh token with database_auth = "azure").

        lock_timeout: a write that waits on another's row lock longer than the store's budget
        fails (LockNotAvailable → "busy, try again"), as SQLite's busy timeout does.
        tcp_user_timeout: a server that vanished (failover, a network cut) fails the statement
        within the budget instead of leaving it waiting on TCP for minutes."""
        budget = int(self.busy_timeout * 1000)
        options = f"-c lock_timeout={budget}"
        if self._readonly:
            options += " -c default_transaction_read_only=on"
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "options": options,
            "connect_timeout": max(2, round(self.busy_timeout)),
            "tcp_user_timeout": budget,
            "keepalives": 1,
            "keepalives_idle": 30,
            "application_name": "acrbot",
        }
        password = self._password()
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def _returned(self, conn: psycopg.Connection[Any]) -> None:
        self._used[conn] = time.monotonic()

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        if time.monotonic() - self._used.get(conn, 0.0) >= FRESH:
            ConnectionPool.check_connection(conn)

    def set_busy_timeout(self, seconds: float) -> None:
        self.busy_timeout = seconds
        self.pool.timeout = seconds
        self.pool.drain()  # the next connections carry the new lock_timeout

    def check(self) -> None:
        """Connect once, outside the pool; ConfigError naming the problem and its fix."""
        try:
            psycopg.connect(self.target.url, **self._kwargs()).close()
        except psycopg.Error as exc:
            raise connect_error(self.target, exc) from None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The thread's transaction's connection, or one from the pool for one statement."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.pool.connection() as conn:
            yield conn

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def transaction(self, *, snapshot: bool = False) -> Iterator[PgDatabase]:
        if self.in_transaction:
            yield self.db
            return
        with self.pool.connection() as conn:
            self._local.conn, self._local.after = conn, []
            try:
                with conn.transaction():
                    if snapshot:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield self.db
            finally:
                self._local.conn = None
                callbacks, self._local.after = self._local.after, []
        if not snapshot:
            for callback in callbacks:
                callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        pending = getattr(self._local, "after", None)
        if self.in_transaction and pending is not None:
            pending.append(callback)
        else:
            callback()

    def serialize(self, name: str) -> None:
        """Wait for, then hold until this transaction ends, the lock called ``name``."""
        if not self.in_transaction:
            raise RuntimeError("serialize() outside a transaction holds nothing")
        self.db.execute("select pg_advisory_xact_lock(hashtext(?))", [name])

    def schema_version(self) -> int:
        self.db.ddl(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
        row = self.db.execute(f"select max(version) from {VERSION_TABLE}").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def read_version(self) -> int | None:
        """The schema version without creating anything (None: no acrbot schema here)."""
        row = self.db.execute("select to_regclass(?)", [VERSION_TABLE]).fetchone()
        if row is None or row[0] is None:
            return None
        row = self.db.execute(f"select max(version) from {VERSION_TABLE}").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def set_schema_version(self, version: int) -> None:
        self.db.execute(f"delete from {VERSION_TABLE}")
        self.db.execute(f"insert into {VERSION_TABLE} (version) values (?)", [version])

    def close(self) -> None:
        self.pool.close()


def connect_error(target: ServerDatabase, exc: BaseException) -> ConfigError:
    """One line: what went wrong connecting to ``target``, and the fix. Never the password
    (libpq's messages do not carry it; they are still cut to their first line)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    where = target.where
    if "password authentication failed" in low or "no password supplied" in low:
        fix = (
            "the Entra ID token was refused: check that the URL's user is the token's identity"
            if target.auth == "azure"
            else f"check the password in ${target.password_env}"
            if target.password_env
            else "set database_password_env to a variable holding the password"
        )
        return ConfigError(f"database {where}: password refused ({text}); {fix}")
    if "does not exist" in low and "database" in low:
        return ConfigError(
            f"database {where}: {text}; create it (CREATE DATABASE …) or fix the `database` URL"
        )
    if "role" in low and "does not exist" in low:
        return ConfigError(f"database {where}: {text}; fix the user in the `database` URL")
    if any(s in low for s in ("connection refused", "could not translate", "timeout", "no route")):
        return ConfigError(
            f"database {where}: cannot reach the server ({text}); check the host and port in "
            "the `database` URL and that PostgreSQL is running"
        )
    return ConfigError(f"database {where}: {text}")
