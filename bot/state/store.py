"""The database: connections, transactions and versioned schema migrations, on two engines.

One SQLite file (the default) or one PostgreSQL database holds grants, requests, approvals,
jobs, the outbox and the audit. The modules above write one dialect (the store contract in
docs/architecture.md: `?` placeholders, ON CONFLICT, RETURNING, no PRAGMA); what differs
between the engines lives here (SQLite) and in bot/state/engine_pg.py (PostgreSQL).

SQLite: each thread gets its own connection (SQLite connections are not for sharing); writers
serialize through `BEGIN IMMEDIATE`, which is what makes approvals that race each other
execute a request exactly once. PostgreSQL: a pool; transactions are READ COMMITTED, so
callers that race serialize explicitly (`serialize(name)`, a no-op on SQLite), claim rows with
`skip_locked`, or compare-and-set.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bot.core.database import ServerDatabase, is_server_url
from bot.core.errors import ConfigError

if TYPE_CHECKING:
    from bot.state.engine_pg import PgEngine, TokenCredential


def _sqlite_utils_without_pandas() -> ModuleType:
    """Import sqlite_utils without letting it import pandas and numpy.

    sqlite_utils/db.py imports both at import time, when they are installed (the notebook
    extra), only to map their scalar types to column types (COLUMN_TYPE_MAPPING); we never
    store pandas or numpy values. That import cost ~0.4 s of CPU on every `acrbot run`. A
    ``None`` entry in sys.modules makes an import raise ImportError (the import system's
    documented switch), which sqlite_utils reads as "not installed"; the entries are removed
    right after, so pandas imports normally later (the notebook's to_df). Delete this when
    sqlite-utils imports pandas lazily. When pandas or numpy is already imported (a notebook
    imported it first), nothing is blocked: it costs nothing then.
    """
    if "sqlite_utils" in sys.modules:
        return sys.modules["sqlite_utils"]
    blocked = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("sqlite_utils")
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


sqlite_utils = _sqlite_utils_without_pandas()


def iso(value: datetime) -> str:
    """A time as stored: UTC, fixed format, so stored times compare correctly as strings."""
    return value.astimezone(UTC).isoformat(timespec="seconds")


def from_iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _v1(db: Any) -> None:
    # Written by sqlite-utils' table API in earlier releases; the same DDL, as text, so that
    # both engines run it (bot/state/engine_pg.py maps the types) and SQLite gets the schema
    # it always had.
    _script(
        db,
        """
        CREATE TABLE "grants" (
           "id" INTEGER PRIMARY KEY,
           "principal" TEXT NOT NULL,
           "role" TEXT NOT NULL,
           "registry" TEXT NOT NULL,
           "repositories" TEXT NOT NULL,
           "granted_by" TEXT,
           "granted_at" TEXT
        );
        CREATE UNIQUE INDEX "idx_grants_principal_role_registry_repositories"
            ON "grants" ("principal", "role", "registry", "repositories");
        CREATE TABLE "requests" (
           "id" INTEGER PRIMARY KEY,
           "action" TEXT NOT NULL,
           "registry" TEXT NOT NULL,
           "repository" TEXT NOT NULL,
           "tag" TEXT,
           "digest" TEXT NOT NULL,
           "manifest" INTEGER,
           "tags" TEXT,
           "requester" TEXT NOT NULL,
           "reason" TEXT,
           "created_at" TEXT,
           "expires_at" TEXT,
           "required" INTEGER,
           "state" TEXT NOT NULL,
           "decided_by" TEXT,
           "decision_reason" TEXT,
           "error" TEXT,
           "finished_at" TEXT
        );
        CREATE INDEX "idx_requests_state_expires_at"
            ON "requests" ("state", "expires_at");
        CREATE TABLE "approvals" (
           "request_id" INTEGER REFERENCES "requests"("id"),
           "approver" TEXT,
           "reason" TEXT,
           "created_at" TEXT,
           PRIMARY KEY ("request_id", "approver")
        );
        CREATE TABLE "audit" (
           "id" INTEGER PRIMARY KEY,
           "ts" TEXT NOT NULL,
           "actor" TEXT NOT NULL,
           "action" TEXT NOT NULL,
           "target" TEXT,
           "request_id" INTEGER,
           "outcome" TEXT NOT NULL,
           "error" TEXT,
           "prev_hash" TEXT NOT NULL,
           "hash" TEXT NOT NULL
        );
        CREATE INDEX "idx_audit_actor"
            ON "audit" ("actor");
        CREATE INDEX "idx_audit_request_id"
            ON "audit" ("request_id");
        CREATE TABLE "meta" (
           "key" TEXT PRIMARY KEY,
           "value" TEXT
        )
        """,
    )
    # Append-only: refuse edits through SQL. `audit verify` still catches edits made by
    # someone who drops these triggers, through the hash chain.
    db.append_only("audit")


def _v2(db: Any) -> None:
    """Chat surfaces: where each request's card lives, and deliveries already handled."""
    _script(
        db,
        """
        CREATE TABLE "cards" (
           "request_id" INTEGER PRIMARY KEY REFERENCES "requests"("id"),
           "channel" TEXT NOT NULL,
           "ts" TEXT NOT NULL,
           "announced" TEXT
        );
        CREATE UNIQUE INDEX "idx_cards_channel_ts"
            ON "cards" ("channel", "ts");
        CREATE TABLE "deliveries" (
           "key" TEXT PRIMARY KEY,
           "at" TEXT
        )
        """,
    )


def _v3(db: Any) -> None:
    """Immutable facts about digests (bot/state/facts.py), reused across commands and restarts."""
    db.ddl(
        "create table digest_facts (registry text not null, digest text not null, "
        "media_type text, size integer, created text, platforms text, refs text, "
        "primary key (registry, digest)) without rowid"
    )


def _v4(db: Any) -> None:
    """Reliability: who executes a request (to recover it after a crash), an idempotency key
    for work that creates requests, the durable job queue, and the outbox."""
    _script(
        db,
        """
        ALTER TABLE requests ADD COLUMN exec_owner TEXT;
        ALTER TABLE requests ADD COLUMN exec_started_at TEXT;
        ALTER TABLE requests ADD COLUMN exec_retry_after TEXT;
        ALTER TABLE requests ADD COLUMN origin TEXT;
        ALTER TABLE requests ADD COLUMN note TEXT;
        ALTER TABLE requests ADD COLUMN channel TEXT;
        ALTER TABLE requests ADD COLUMN decided_origin TEXT;
        ALTER TABLE approvals ADD COLUMN origin TEXT;
        CREATE UNIQUE INDEX requests_origin ON requests (origin) WHERE origin IS NOT NULL;
        CREATE INDEX requests_executing ON requests (state) WHERE state = 'executing';

        CREATE TABLE jobs (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,            -- queued, running, done
            owner TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            outcome TEXT
        );
        CREATE INDEX jobs_state ON jobs (state, created_at);

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,            -- pending, sent, failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            error TEXT,
            after_key TEXT,                 -- an item that must be sent first (the card)
            version INTEGER NOT NULL DEFAULT 0  -- bumped when a card is touched again
        );
        CREATE INDEX outbox_due ON outbox (state, next_at);
        """,
    )


def _script(db: Any, script: str) -> None:
    """Run ``;``-separated statements inside the migration's transaction (executescript
    would COMMIT it first). Statements here hold no ``;`` of their own. Each goes through
    the engine's ``ddl`` (PostgreSQL maps the types: bot/state/engine_pg.py)."""
    for statement in script.split(";"):
        if statement.strip():
            db.ddl(statement)


def _v5(db: Any) -> None:
    """Purge: a request pins its exact item list; each item's state makes execution resumable.
    Thread messages edited in place (purge progress); scheduled retention slots taken."""
    _script(
        db,
        """
        ALTER TABLE requests ADD COLUMN spec TEXT;
        CREATE TABLE purge_items (
            request_id INTEGER NOT NULL REFERENCES requests(id),
            seq INTEGER NOT NULL,
            repository TEXT NOT NULL,
            kind TEXT NOT NULL,             -- tag, manifest
            tag TEXT,
            digest TEXT NOT NULL,
            tags TEXT NOT NULL,             -- JSON: every tag that goes with it
            item_time TEXT,
            state TEXT NOT NULL,            -- pending, sending, deleted, gone, skipped, failed
            detail TEXT,                    -- why skipped or failed
            updated_at TEXT,
            PRIMARY KEY (request_id, seq)
        ) WITHOUT ROWID;
        CREATE INDEX purge_items_state ON purge_items (request_id, state);
        CREATE TABLE messages (
            key TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            ts TEXT NOT NULL
        );
        CREATE TABLE retention_runs (
            name TEXT NOT NULL,
            slot TEXT NOT NULL,
            request_id INTEGER,
            outcome TEXT,
            PRIMARY KEY (name, slot)
        )
        """,
    )


def _v6(db: Any) -> None:
    """What a purge skipped at planning (locked, kept by --keep, shared with a tag it does not
    remove), with the reason: `request N` lists them after the pinned items, so an approver
    sees what the purge leaves as well as what it takes. ``seq`` continues the items' seq."""
    _script(
        db,
        """
        CREATE TABLE purge_skips (
            request_id INTEGER NOT NULL REFERENCES requests(id),
            seq INTEGER NOT NULL,
            item TEXT NOT NULL,             -- repo:tag or repo@digest
            reason TEXT NOT NULL,
            PRIMARY KEY (request_id, seq)
        ) WITHOUT ROWID
        """,
    )


def _v7(db: Any) -> None:
    """An outbox row is claimed before it is sent, so two deliverers (a worker draining as the
    next one starts; two replicas) never send it twice (bot/state/outbox.py)."""
    _script(
        db,
        """
        ALTER TABLE outbox ADD COLUMN owner TEXT;
        ALTER TABLE outbox ADD COLUMN claimed_at TEXT
        """,
    )


def _v8(db: Any) -> None:
    """Registry events (issue 24): each stored before the sender gets its 2xx, once per id,
    then processed by the worker; the live tag index they keep; the watch messages a burst
    folds into one summary per repository and channel."""
    _script(
        db,
        """
        CREATE TABLE registry_events (
            id TEXT PRIMARY KEY,            -- source:sender's id (a retry has the same)
            pos INTEGER NOT NULL,           -- its place in the body it came in
            host TEXT,
            repository TEXT NOT NULL,
            action TEXT NOT NULL,           -- push, delete, untag, repo_delete
            tag TEXT,
            digest TEXT,
            at TEXT NOT NULL,               -- when it happened, by the sender's clock
            received_at TEXT NOT NULL,
            event TEXT NOT NULL,            -- JSON: the whole RegistryEvent
            state TEXT NOT NULL,            -- queued, running, done
            owner TEXT,
            started_at TEXT,
            registry TEXT,                  -- the configured registry it was matched to
            outcome TEXT                    -- what processing made of it (JSON)
        );
        CREATE INDEX registry_events_state ON registry_events (state, received_at, pos);
        CREATE INDEX registry_events_repo ON registry_events (repository, received_at);
        CREATE TABLE tag_index (
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            tag TEXT NOT NULL,
            digest TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (registry, repository, tag)
        );
        CREATE INDEX tag_index_digest ON tag_index (registry, repository, digest);
        CREATE TABLE tag_index_repos (
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            rebuilt_at TEXT NOT NULL,       -- the last full read of the registry
            event_at TEXT,                  -- the last event applied since
            PRIMARY KEY (registry, repository)
        );
        CREATE TABLE watch_folds (
            channel TEXT NOT NULL,
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            opened_at TEXT NOT NULL,        -- when its first event was posted
            folded INTEGER NOT NULL,        -- events folded since, not yet summarised
            lines TEXT NOT NULL,            -- JSON: the first few of them, for the summary
            PRIMARY KEY (channel, registry, repository)
        )
        """,
    )


def _v9(db: Any) -> None:
    """`report`: the blobs each manifest holds (digest and size, JSON), so that storage is
    counted once per unique blob from the facts cache (bot/state/facts.py). `[[report]]`
    slots taken, with the registry's size then (the next report says how much it grew)."""
    _script(
        db,
        """
        ALTER TABLE digest_facts ADD COLUMN blobs TEXT;
        CREATE TABLE report_runs (
            name TEXT NOT NULL,
            slot TEXT NOT NULL,
            registry TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            taken_at TEXT NOT NULL,
            PRIMARY KEY (name, slot)
        )
        """,
    )


def _v10(db: Any) -> None:
    """Singletons under a lease, for two replicas on one database (bot/state/leases.py)."""
    _script(
        db,
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,            -- bot/state/liveness.py's host:pid:start
            expires_at TEXT NOT NULL,       -- ISO-8601 UTC, the holder's clock
            taken_at TEXT NOT NULL
        )
        """,
    )


def _v11(db: Any) -> None:
    """Issue 23: break-glass deletions and their reviews (bot/state/reviews.py). One review
    per break-glass request, written in the transaction that starts it; `bg_day` counts an
    actor's break-glass uses of a UTC day (`break_glass_per_day`)."""
    _script(
        db,
        """
        CREATE TABLE reviews (
            request_id INTEGER PRIMARY KEY REFERENCES requests(id),
            actor TEXT NOT NULL,            -- who broke the glass
            registry TEXT NOT NULL,
            repositories TEXT NOT NULL,     -- JSON list: whose owners may review
            rule TEXT NOT NULL,             -- the rule(s) that allowed it
            bg_day TEXT NOT NULL,           -- YYYY-MM-DD (UTC) of the break-glass
            created_at TEXT NOT NULL,
            due_at TEXT NOT NULL,           -- review_within after created_at
            state TEXT NOT NULL,            -- open | ok | concern
            reviewer TEXT,
            note TEXT,
            reviewed_at TEXT,
            reminded INTEGER NOT NULL DEFAULT 0,
            escalated INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX reviews_actor_day ON reviews (actor, bg_day);
        CREATE INDEX reviews_state ON reviews (state, due_at)
        """,
    )


def _v12(db: Any) -> None:
    """Issue 22: the snapshot taken before each DELETE or untag (the exact manifests that go
    and the tags they carried, zlib-compressed), kept for `[undo] window`, and what `undo`
    did with each (bot/state/snapshots.py). `undo_windows` outlives the pruned snapshots so
    that `undo` can say when a request's window closed."""
    _script(
        db,
        """
        CREATE TABLE undo_snapshots (
            request_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            tags TEXT NOT NULL,
            manifest_deleted INTEGER NOT NULL,
            data BLOB NOT NULL,
            raw_bytes BIGINT NOT NULL,
            stored_bytes BIGINT NOT NULL,
            taken_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            undo_state TEXT,
            undo_detail TEXT,
            undo_owner TEXT,
            undo_by TEXT,
            undone_at TEXT,
            PRIMARY KEY (request_id, seq)
        );
        CREATE INDEX undo_snapshots_expiry ON undo_snapshots (expires_at);
        CREATE TABLE undo_windows (
            request_id INTEGER PRIMARY KEY,
            expires_at TEXT NOT NULL
        )
        """,
    )


# Index i upgrades the schema from version i to i + 1. Append; never edit a shipped step.
MIGRATIONS: tuple[Callable[[Any], None], ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    _v9,
    _v10,
    _v11,
    _v12,
)
SCHEMA_VERSION = len(MIGRATIONS)


class _SqliteDatabase(sqlite_utils.Database):
    """``store.db`` on SQLite: sqlite-utils' Database, plus what the store contract adds so
    both engines offer the same handle (``executemany``, ``ddl``, ``append_only``)."""

    engine = "sqlite"

    def executemany(self, sql: str, rows: Any) -> None:
        self.conn.executemany(sql, rows)

    def ddl(self, statement: str) -> None:
        self.execute(statement)

    def append_only(self, table: str) -> None:
        self.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}\n"
            "        BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END"
        )
        self.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}\n"
            "        BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END"
        )


class Store:
    """The database, migrated to the current schema on open: a SQLite file, or a PostgreSQL
    database when ``target`` is a `ServerDatabase` (or a ``postgresql://`` URL).

    SQLite: per-thread connections to one file. The file is created only when asked
    (``create``: `acrbot init`, `acrbot demo`): a mistyped path would otherwise open a new,
    empty database in which nobody has a role. ``readonly`` opens an existing file without
    writing anything (an auditor's copy), and without migrating it. ``config_arg`` names the
    configuration in the fix a missing file gets (`acrbot init --config /etc/acrbot.toml`).

    PostgreSQL: a pool of connections (bot/state/engine_pg.py); the database must exist, its
    schema is created or migrated on open (``readonly``: neither). ``credential`` is the
    Entra ID credential for ``database_auth = "azure"`` (DefaultAzureCredential unless given).
    """

    def __init__(
        self,
        target: str | Path | ServerDatabase,
        *,
        create: bool = False,
        readonly: bool = False,
        config_arg: str = "--config FILE",
        busy_timeout: float = 30.0,
        credential: TokenCredential | None = None,
    ) -> None:
        self.readonly = readonly
        # How long a write waits for another process's lock before SQLITE_BUSY. The process
        # that acks Slack passes ~2 s: it must answer within 3 s, "busy" rather than nothing.
        self._pg: PgEngine | None = None
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self.migrated_from = SCHEMA_VERSION  # the schema version found on open (migrate())
        if isinstance(target, str) and is_server_url(target):
            target = ServerDatabase(url=target)
        if isinstance(target, ServerDatabase):
            self.engine, self.target, self.path = "postgresql", target, None
            self._open_server(
                target,
                create=create,
                readonly=readonly,
                credential=credential,
                config_arg=config_arg,
            )
            return
        self.engine = "sqlite"
        self.path = Path(target)
        self.target = self.path
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not create and not self.path.is_file():
            if self.path.parent.is_dir():
                where = "no such file"
            elif any(p.is_file() for p in self.path.parents):
                where = "a file is in the way of its folder"
            else:
                where = "its folder does not exist"
            raise ConfigError(
                f"database {self.path}: {where}; check the `database` key, or create it with "
                f"`acrbot init {config_arg}`"
            )
        try:
            if readonly:
                self.db.execute("select count(*) from sqlite_master").fetchone()
                return
            if create:
                self._create_private()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.migrated_from = self.migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if isinstance(exc, FileExistsError):  # mkdir met a file on the way
                reason = "a file is in the way of its folder"
            raise ConfigError(f"database {self.path}: {reason}") from None

    def _open_server(
        self,
        target: ServerDatabase,
        *,
        create: bool,
        readonly: bool,
        credential: TokenCredential | None,
        config_arg: str,
    ) -> None:
        """Connect; then, as for a file, the schema is created only when asked (`acrbot
        init`): `serve` pointed at the wrong (empty) database must not start with nobody
        holding a role. An existing schema is migrated (a rolling upgrade)."""
        from bot.state.engine_pg import PgEngine, connect_error

        self._pg = PgEngine(
            target, busy_timeout=self.busy_timeout, readonly=readonly, credential=credential
        )
        if readonly:
            return
        try:
            if not create and self.schema_version() is None:
                raise ConfigError(
                    f"database {target.where}: no acrbot schema in it; check the `database` "
                    f"URL, or create it with `acrbot init {config_arg}`"
                )
            self.migrated_from = self.migrate()
        except ConfigError:
            self._pg.close()
            raise
        except Exception as exc:
            self._pg.close()
            import psycopg

            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                raise ConfigError(
                    f"database {target.where}: {str(exc).splitlines()[0]}; the `database` "
                    "URL's user needs the right to create tables (GRANT CREATE ON SCHEMA "
                    "public TO …, or own the database)"
                ) from None
            if isinstance(exc, psycopg.Error):
                raise connect_error(target, exc) from None
            raise

    def _create_private(self) -> None:
        """The file (and the folder made for it) readable by acrbot's user only: it holds the
        role table, requests and, while a job runs, the response_url it answers on. SQLite
        gives the -wal, -shm and -journal files the database file's mode. A database made
        by an earlier release is tightened here (`acrbot init`); an existing folder is left
        as it is (a mount, the working directory)."""
        assert self.path is not None
        if not self.path.parent.is_dir():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            for name in (self.path.name, f"{self.path.name}-wal", f"{self.path.name}-shm"):
                path = self.path.with_name(name)
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    if stat.S_IMODE(path.stat().st_mode) & 0o077:
                        path.chmod(0o600)

    @property
    def db(self) -> Any:
        """The thread's database handle: ``execute(sql, params)`` (a cursor: fetchone,
        fetchall, rowcount, iteration), ``query(sql, params)`` (dicts), ``executemany``."""
        if self._pg is not None:
            return self._pg.db
        db = getattr(self._local, "db", None)
        if db is None:
            assert self.path is not None
            if self.readonly:
                # A copy in a folder we may not write to cannot get WAL's -shm file: read it
                # as immutable (nothing else is writing to a copy).
                flags = "mode=ro" + ("" if os.access(self.path.parent, os.W_OK) else "&immutable=1")
                conn = sqlite3.connect(
                    f"file:{self.path}?{flags}",
                    uri=True,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Zero what an UPDATE or DELETE frees: a finished job's payload (its response_url)
            # must not linger in the file's free space. Debian's SQLite is built with this on
            # already; saying it makes it so whatever SQLite the image carries.
            conn.execute("PRAGMA secure_delete = ON")
            db = _SqliteDatabase(conn, execute_plugins=False)
            self._local.db = db
            with self._lock:
                self._connections.append(conn)
        return db

    @property
    def busy_timeout(self) -> float:
        return self._busy_timeout

    @busy_timeout.setter
    def busy_timeout(self, seconds: float) -> None:
        """SQLite: the next connections' busy timeout (the acking process sets it once, before
        any thread connects). PostgreSQL: how long a connection or a row lock is waited for;
        the pool's connections are replaced so that each one has it."""
        self._busy_timeout = seconds
        if self._pg is not None:
            self._pg.set_busy_timeout(seconds)

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What this engine raises for a database problem (``except store.errors``)."""
        if self._pg is not None:
            import psycopg
            import psycopg_pool

            return (psycopg.Error, psycopg_pool.PoolTimeout)
        return (sqlite3.Error,)

    @property
    def in_transaction(self) -> bool:
        if self._pg is not None:
            return self._pg.in_transaction
        return bool(self.db.conn.in_transaction)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction; nested calls join it.

        SQLite takes the write lock up front (`BEGIN IMMEDIATE`), which avoids the
        deferred-transaction upgrade that fails with SQLITE_BUSY when two threads read, then
        both try to write. PostgreSQL begins a READ COMMITTED transaction on one pooled
        connection: take ``serialize`` or ``skip_locked`` where writers race.
        """
        if self._pg is not None:
            with self._pg.transaction() as pgdb:
                yield pgdb
            return
        db = self.db
        if db.conn.in_transaction:
            yield db
            return
        db.conn.execute("BEGIN IMMEDIATE")
        self._local.after = []
        try:
            yield db
        except BaseException:
            self._local.after = []
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")
        callbacks, self._local.after = self._local.after, []
        for callback in callbacks:
            callback()

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
        """A read-only view that does not move while it is read (`audit verify` reads the
        chain and its recorded head in one), taking no write lock; joins a transaction."""
        if self._pg is not None:
            with self._pg.transaction(snapshot=True) as pgdb:
                yield pgdb
            return
        db = self.db
        if db.conn.in_transaction:
            yield db
            return
        db.conn.execute("BEGIN")  # deferred: a read snapshot, no write lock taken
        try:
            yield db
        finally:
            db.conn.execute("COMMIT")

    def serialize(self, name: str) -> None:
        """Inside a transaction: wait for, then hold until it ends, the lock called ``name``
        (the audit chain's head, one request's state). A no-op on SQLite, whose
        `BEGIN IMMEDIATE` already serializes every writer."""
        if self._pg is not None:
            self._pg.serialize(name)

    @property
    def skip_locked(self) -> str:
        """Appended to a SELECT that claims rows inside a transaction: PostgreSQL locks
        what it returns and skips what another claimer holds; SQLite needs nothing."""
        return " for update skip locked" if self._pg is not None else ""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (now, if there is none):
        e.g. wake a deliverer only when what it should deliver is visible to it."""
        if self._pg is not None:
            self._pg.after_commit(callback)
            return
        pending = getattr(self._local, "after", None)
        if self.db.conn.in_transaction and pending is not None:
            pending.append(callback)
        else:
            callback()

    def schema_version(self) -> int | None:
        """The version the database's schema is at (None: no acrbot schema on the server)."""
        if self._pg is not None:
            with self._pg.transaction():
                return self._pg.read_version()
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; return the version found before.

        On PostgreSQL the whole migration is one transaction under a lock, so replicas that
        start together migrate once; a version newer than this code is refused on both."""
        if self._pg is None:
            self.db.execute("PRAGMA journal_mode = WAL")
        with self.transaction() as db:
            self.serialize("acrbot schema")
            found = self._pg.schema_version() if self._pg else self._user_version()
            if found > SCHEMA_VERSION:
                raise ConfigError(
                    f"database {self.target} has schema {found}, newer than this acrbot "
                    f"({SCHEMA_VERSION}); upgrade acrbot"
                )
            for version in range(found, SCHEMA_VERSION):
                MIGRATIONS[version](db)
                if self._pg is not None:
                    self._pg.set_schema_version(version + 1)
                else:
                    db.execute(f"PRAGMA user_version = {version + 1}")
        return found

    def _user_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            return
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
