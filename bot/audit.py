"""The append-only audit: one row per command, decision and outcome, chained by hashes.

Each row's hash covers its own fields and the previous row's hash, so editing or deleting any
row breaks the chain from there on; the chain head is also kept in `meta`, so dropping the
newest rows is caught too. `acrbot audit verify` walks the chain.

A plain SHA-256 chain proves little against someone who can write the database: they can
recompute every hash. With a key (`[audit] key_env`), each row's hash is an HMAC-SHA256 under
that key, which the database never holds: rewriting history needs the key too. The first keyed
row is recorded (`audit_keyed_from`), so a chain started before the key was set still verifies
(the rows before it are plain SHA-256). The Blob archive is the anchor outside the database:
`audit verify` compares every archived row with the local one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from bot.store import Store

GENESIS = "0" * 64
HEAD_KEY = "audit_head"
KEYED_KEY = "audit_keyed_from"  # id of the first row hashed with the key


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: str
    actor: str
    action: str
    target: str
    request_id: int | None
    outcome: str
    error: str | None
    prev_hash: str
    hash: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_hash(prev_hash: str, row: dict, key: bytes | None = None) -> str:
    """SHA-256 (or, with ``key``, HMAC-SHA256) over the previous hash and the row's fields,
    in a fixed JSON form."""
    fields = [
        prev_hash,
        row["id"],
        row["ts"],
        row["actor"],
        row["action"],
        row["target"],
        row["request_id"],
        row["outcome"],
        row["error"],
    ]
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    if key is not None:
        return hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class Chain:
    """The result of walking rows in order: what was wrong, and where the chain ends."""

    checked: int
    problems: tuple[str, ...]
    last_id: int
    last_hash: str


def check_chain(
    rows: Iterable[dict],
    *,
    label: str = "row",
    key: bytes | None = None,
    keyed_from: int | None = None,
) -> Chain:
    """Check ids are consecutive from 1, each row links to the one before, hashes match (rows
    from ``keyed_from`` on under ``key``)."""
    problems: list[str] = []
    prev_id, prev_hash, checked = 0, GENESIS, 0
    for row in rows:
        checked += 1
        if row["id"] != prev_id + 1:
            problems.append(f"{label}s {prev_id + 1}–{row['id'] - 1} are missing")
        if row["prev_hash"] != prev_hash:
            problems.append(f"{label} {row['id']}: does not link to the row before it")
        keyed = keyed_from is not None and row["id"] >= keyed_from
        if keyed and key is None:
            if row["id"] == keyed_from:
                problems.append(
                    f"{label}s from {keyed_from} on are keyed: set the audit key "
                    "([audit] key_env) to verify them"
                )
        elif entry_hash(row["prev_hash"], row, key if keyed else None) != row["hash"]:
            problems.append(f"{label} {row['id']}: content does not match its hash (edited)")
        prev_id, prev_hash = row["id"], row["hash"]
    return Chain(checked=checked, problems=tuple(problems), last_id=prev_id, last_hash=prev_hash)


class Audit:
    def __init__(self, store: Store, *, key: bytes | None = None) -> None:
        self._store = store
        self._key = key
        self.on_append: Callable[[], None] | None = None  # e.g. wake the archive shipper

    def keyed_from(self) -> int | None:
        row = self._store.db.execute("select value from meta where key = ?", [KEYED_KEY]).fetchone()
        return int(row[0]) if row else None

    def append(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        at: datetime,
        request_id: int | None = None,
        error: str | None = None,
    ) -> AuditEntry:
        """Add one row at the head of the chain, inside the caller's transaction if any."""
        with self._store.transaction() as db:
            head = db.execute("select id, hash from audit order by id desc limit 1").fetchone()
            prev_id, prev_hash = head if head else (0, GENESIS)
            row = {
                "id": prev_id + 1,
                "ts": at.isoformat(timespec="milliseconds"),
                "actor": actor,
                "action": action,
                "target": target,
                "request_id": request_id,
                "outcome": outcome,
                "error": error,
                "prev_hash": prev_hash,
            }
            if (
                self._key is not None
                and not db.execute("select 1 from meta where key = ?", [KEYED_KEY]).fetchone()
            ):
                db.execute(
                    "insert into meta (key, value) values (?, ?)", [KEYED_KEY, str(row["id"])]
                )
            keyed = self._key is not None
            row["hash"] = entry_hash(prev_hash, row, self._key if keyed else None)
            # Plain SQL on this hot path (every command writes here): sqlite-utils' insert and
            # upsert introspect the table first, ~20 queries a row instead of 2.
            db.execute(
                "insert into audit (id, ts, actor, action, target, request_id, outcome, error, "
                "prev_hash, hash) values (:id, :ts, :actor, :action, :target, :request_id, "
                ":outcome, :error, :prev_hash, :hash)",
                row,
            )
            db.execute(
                "insert or replace into meta (key, value) values (?, ?)",
                [HEAD_KEY, f"{row['id']}:{row['hash']}"],
            )
        if self.on_append is not None:
            self.on_append()
        return AuditEntry(**row)

    def entries(
        self,
        *,
        last: int = 20,
        actor: str | None = None,
        request_id: int | None = None,
        before: int | None = None,
    ) -> list[AuditEntry]:
        """The newest ``last`` rows matching the filters (older than id ``before``), oldest
        first."""
        where, params = [], []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        if request_id is not None:
            where.append("request_id = ?")
            params.append(request_id)
        sql = "select * from audit"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by id desc limit ?"
        rows = list(self._store.db.query(sql, [*params, last]))
        return [AuditEntry(**row) for row in reversed(rows)]

    def verify(self) -> Verification:
        """Walk the whole chain; report every row whose hash or link does not hold.

        Rows and the recorded head are read in one read transaction (one snapshot), so a
        command committed meanwhile cannot look like rows removed from the end.
        """
        conn = self._store.db.conn
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # deferred: a read snapshot, no write lock taken
        try:
            chain = check_chain(
                self._store.db.query("select * from audit order by id"),
                key=self._key,
                keyed_from=self.keyed_from(),
            )
            head = conn.execute("select value from meta where key = ?", [HEAD_KEY]).fetchone()
        finally:
            if own:
                conn.execute("COMMIT")
        problems, checked = list(chain.problems), chain.checked
        prev_id, prev_hash = chain.last_id, chain.last_hash
        expected = head[0] if head else None
        actual = f"{prev_id}:{prev_hash}" if checked else None
        if expected != actual:
            problems.append(
                f"the chain head is {actual or 'empty'} but {expected or 'nothing'} was recorded "
                "(rows removed from the end?)"
            )
        return Verification(checked=checked, problems=tuple(problems))

    def compare(self, archived: Iterable[dict]) -> tuple[int, list[str]]:
        """Compare archived rows with the local ones: the archive is outside the database, so
        a history rewritten here (hashes recomputed, the tail cut) differs from it."""
        compared, problems = 0, []
        local = {
            row["id"]: row["hash"]
            for row in self._store.db.query("select id, hash from audit order by id")
        }
        for row in archived:
            compared += 1
            mine = local.get(row["id"])
            if mine is None:
                problems.append(f"row {row['id']} is in the archive but not in the database")
            elif mine != row["hash"]:
                problems.append(f"row {row['id']} differs from its archived copy")
        return compared, problems
