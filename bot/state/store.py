"""The SQLite database: connections, transactions and versioned schema migrations.

One file holds grants, requests, approvals and the audit. Each thread gets its own connection
(SQLite connections are not for sharing); writers serialize through `BEGIN IMMEDIATE`, which is
what makes approvals that race each other execute a request exactly once.
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

from bot.core.errors import ConfigError


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


def _v1(db: sqlite_utils.Database) -> None:
    db["grants"].create(
        {
            "id": int,
            "principal": str,
            "role": str,
            "registry": str,
            "repositories": str,
            "granted_by": str,
            "granted_at": str,
        },
        pk="id",
        not_null={"principal", "role", "registry", "repositories"},
    )
    db["grants"].create_index(["principal", "role", "registry", "repositories"], unique=True)
    db["requests"].create(
        {
            "id": int,
            "action": str,
            "registry": str,
            "repository": str,
            "tag": str,
            "digest": str,
            "manifest": int,
            "tags": str,
            "requester": str,
            "reason": str,
            "created_at": str,
            "expires_at": str,
            "required": int,
            "state": str,
            "decided_by": str,
            "decision_reason": str,
            "error": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"action", "registry", "repository", "digest", "requester", "state"},
    )
    db["requests"].create_index(["state", "expires_at"])
    db["approvals"].create(
        {"request_id": int, "approver": str, "reason": str, "created_at": str},
        pk=("request_id", "approver"),
        foreign_keys=[("request_id", "requests", "id")],
    )
    db["audit"].create(
        {
            "id": int,
            "ts": str,
            "actor": str,
            "action": str,
            "target": str,
            "request_id": int,
            "outcome": str,
            "error": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="id",
        not_null={"ts", "actor", "action", "outcome", "prev_hash", "hash"},
    )
    db["audit"].create_index(["actor"])
    db["audit"].create_index(["request_id"])
    db["meta"].create({"key": str, "value": str}, pk="key")
    # Append-only: refuse edits through SQL. `audit verify` still catches edits made by
    # someone who drops these triggers, through the hash chain.
    db.executescript(
        """
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;
        """
    )


def _v2(db: sqlite_utils.Database) -> None:
    """Chat surfaces: where each request's card lives, and deliveries already handled."""
    db["cards"].create(
        {"request_id": int, "channel": str, "ts": str, "announced": str},
        pk="request_id",
        not_null={"channel", "ts"},
        foreign_keys=[("request_id", "requests", "id")],
    )
    db["cards"].create_index(["channel", "ts"], unique=True)
    db["deliveries"].create({"key": str, "at": str}, pk="key")


def _v3(db: sqlite_utils.Database) -> None:
    """Immutable facts about digests (bot/state/facts.py), reused across commands and restarts."""
    db.execute(
        "create table digest_facts (registry text not null, digest text not null, "
        "media_type text, size integer, created text, platforms text, refs text, "
        "primary key (registry, digest)) without rowid"
    )


def _v4(db: sqlite_utils.Database) -> None:
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


def _script(db: sqlite_utils.Database, script: str) -> None:
    """Run ``;``-separated statements inside the migration's transaction (executescript
    would COMMIT it first). Statements here hold no ``;`` of their own."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v5(db: sqlite_utils.Database) -> None:
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


def _v6(db: sqlite_utils.Database) -> None:
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


def _v7(db: sqlite_utils.Database) -> None:
    """An outbox row is claimed before it is sent, so two deliverers (a worker draining as the
    next one starts; two replicas) never send it twice (bot/state/outbox.py)."""
    _script(
        db,
        """
        ALTER TABLE outbox ADD COLUMN owner TEXT;
        ALTER TABLE outbox ADD COLUMN claimed_at TEXT
        """,
    )


def _v8_undo(db: sqlite_utils.Database) -> None:
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
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8_undo,
)
SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """Per-thread connections to one SQLite file, migrated to the current schema on open.

    The file is created only when asked (``create``: `acrbot init`, `acrbot demo`): a
    mistyped path would otherwise open a new, empty database in which nobody has a role.
    ``readonly`` opens an existing file without writing anything (an auditor's copy), and
    without migrating it. ``config_arg`` names the configuration in the fix a missing file
    gets (`acrbot init --config /etc/acrbot.toml`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = False,
        readonly: bool = False,
        config_arg: str = "--config FILE",
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # How long a write waits for another process's lock before SQLITE_BUSY. The process
        # that acks Slack passes ~2 s: it must answer within 3 s, "busy" rather than nothing.
        self.busy_timeout = busy_timeout
        self._local = threading.local()
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
            self.migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if isinstance(exc, FileExistsError):  # mkdir met a file on the way
                reason = "a file is in the way of its folder"
            raise ConfigError(f"database {self.path}: {reason}") from None

    def _create_private(self) -> None:
        """The file (and the folder made for it) readable by acrbot's user only: it holds the
        role table, requests and, while a job runs, the response_url it answers on. SQLite
        gives the -wal, -shm and -journal files the database file's mode. A database made
        by an earlier release is tightened here (`acrbot init`); an existing folder is left
        as it is (a mount, the working directory)."""
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
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
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
            db = sqlite_utils.Database(conn, execute_plugins=False)
            self._local.db = db
            with self._lock:
                self._connections.append(conn)
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction taken up front (`BEGIN IMMEDIATE`); nested calls join it.

        Taking the write lock at BEGIN avoids the deferred-transaction upgrade that fails with
        SQLITE_BUSY when two threads read, then both try to write.
        """
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

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (now, if there is none):
        e.g. wake a deliverer only when what it should deliver is visible to it."""
        pending = getattr(self._local, "after", None)
        if self.db.conn.in_transaction and pending is not None:
            pending.append(callback)
        else:
            callback()

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; return the version found before."""
        db = self.db
        db.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise ConfigError(
                    f"database {self.path} has schema {found}, newer than this acrbot "
                    f"({SCHEMA_VERSION}); upgrade acrbot"
                )
            for version in range(found, SCHEMA_VERSION):
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
        return found

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
