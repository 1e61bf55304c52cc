"""The append-only audit: one row per command, decision and outcome, chained by hashes.

Each row's hash covers its own fields and the previous row's hash, so editing or deleting any
row breaks the chain from there on; the chain head is also kept in `meta`, so dropping the
newest rows is caught too. `acrbot audit verify` walks the chain.

A plain SHA-256 chain proves little against someone who can write the database: they can
recompute every hash, and rewrite any row of `meta`. With a key (`[audit] key_env`), each row's
hash is an HMAC-SHA256 under that key, which the database never holds, and the recorded head
carries an HMAC of its own: rewriting history, or cutting its end, needs the key too. Where
the key starts is therefore never read from the database: the configuration says it
(`[audit] keyed_from`, row 1 unless set), and verification fails for any row from there on
that is not keyed. A chain started before the key was set keeps its plain rows: the first
keyed write appends an `audit.keyed` row under the key (its HMAC covers its place and the
plain row before it, so the plain history up to it is pinned), and `acrbot audit verify`
names that row for the operator to write into `keyed_from`.

The Blob archive is the anchor outside the database: `audit verify` compares it with the
local rows both ways.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from bot.state.store import Store

GENESIS = "0" * 64
HEAD_KEY = "audit_head"  # "<id>:<hash>", and ":<head MAC>" when keyed
LEGACY_KEYED_KEY = "audit_keyed_from"  # written by earlier releases; only ever a hint now
CHAIN_LOCK = "audit chain"  # store.serialize: appends from several processes take turns
SWITCH_ACTION = "audit.keyed"  # the row that starts the keyed part of an older chain
AUDIT_COLUMNS = (
    "id",
    "ts",
    "actor",
    "action",
    "target",
    "request_id",
    "outcome",
    "error",
    "prev_hash",
    "hash",
)


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
    first_keyed: int | None = None  # the first row found keyed (with a key)

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_hash(prev_hash: str, row: Mapping[str, Any], key: bytes | None = None) -> str:
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


def _matches(row: Mapping[str, Any], key: bytes | None) -> bool:
    return hmac.compare_digest(entry_hash(row["prev_hash"], row, key), str(row["hash"]))


def head_mac(key: bytes, last_id: int, last_hash: str) -> str:
    """The head's own HMAC: without it, whoever cuts the newest rows could write a head
    naming the row they kept (its hash is a valid HMAC already). Domain-separated from rows."""
    payload = f"audit_head:{int(last_id)}:{last_hash}".encode()  # rows' payloads are JSON
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Chain:
    """The result of walking rows in order: what was wrong, and where the chain ends."""

    checked: int
    problems: tuple[str, ...]
    last_id: int
    last_hash: str
    first_keyed: int | None = None  # the first row whose hash is an HMAC under the key


def _span(first: int, last: int, label: str = "row") -> str:
    return f"{label} {first}" if first == last else f"{label}s {first}–{last}"


class ChainCheck:
    """Checks rows fed in order: ids consecutive from 1, each row linked to the one before,
    hashes matching. With ``key``, rows from ``keyed_from`` on must be HMACs under it and rows
    before it plain SHA-256 — the database has no say in where the key starts.

    Without a key, keyed rows cannot be checked: the first row that is not plain SHA-256 and
    is an `audit.keyed` row (or the row ``keyed_hint`` names) is reported once as the start
    of keyed rows, which is still a failure: nothing after it was verified.

    Fed row by row (not handed a list) so the archive can be checked and compared with the
    database in one pass over its blobs.
    """

    def __init__(
        self,
        *,
        label: str = "row",
        key: bytes | None = None,
        keyed_from: int = 1,
        keyed_hint: int | None = None,
    ) -> None:
        self.label, self.key, self.keyed_from, self.keyed_hint = label, key, keyed_from, keyed_hint
        self.problems: list[str] = []
        self.prev_id, self.prev_hash, self.checked = 0, GENESIS, 0
        self.first_keyed: int | None = None
        self._plain: list[int] = []  # [first, last] of plain rows where keyed ones were due
        self._early: list[int] = []  # [first, last] of keyed rows before keyed_from
        self._unverifiable = False  # no key, and keyed rows began

    def feed(self, row: Mapping[str, Any]) -> None:
        label, row_id = self.label, row["id"]
        self.checked += 1
        if row_id != self.prev_id + 1:
            self._flush()
            self.problems.append(f"{label}s {self.prev_id + 1}–{row_id - 1} are missing")
        if row["prev_hash"] != self.prev_hash:
            self._flush()
            self.problems.append(f"{label} {row_id}: does not link to the row before it")
        if self.key is None:
            if not self._unverifiable and not _matches(row, None):
                if row["action"] == SWITCH_ACTION or row_id == self.keyed_hint:
                    self._unverifiable = True
                    self.problems.append(
                        f"{label}s from {row_id} on are keyed: set the audit key "
                        "([audit] key_env) to verify them"
                    )
                else:
                    self.problems.append(
                        f"{label} {row_id}: content does not match its hash (edited)"
                    )
        else:
            keyed = _matches(row, self.key)
            if keyed and self.first_keyed is None:
                self.first_keyed = row_id
            due = row_id >= self.keyed_from
            if keyed == due:
                self._flush()
            elif due and _matches(row, None):
                _extend(self._plain, row_id)
            elif keyed:
                _extend(self._early, row_id)
            else:
                self._flush()
                self.problems.append(f"{label} {row_id}: content does not match its hash (edited)")
        self.prev_id, self.prev_hash = row_id, row["hash"]

    def _flush(self) -> None:
        label = self.label
        if self._plain:
            first, last = self._plain
            self.problems.append(
                f"{_span(first, last, label)} {'is' if first == last else 'are'} plain "
                f"SHA-256, but the audit key applies from {label} {self.keyed_from} "
                "([audit] keyed_from)"
            )
            self._plain.clear()
        if self._early:
            first, last = self._early
            self.problems.append(
                f"{_span(first, last, label)} {'is' if first == last else 'are'} keyed, but "
                f"[audit] keyed_from = {self.keyed_from} says the key starts later"
            )
            self._early.clear()

    def result(self) -> Chain:
        self._flush()
        return Chain(
            checked=self.checked,
            problems=tuple(self.problems),
            last_id=self.prev_id,
            last_hash=self.prev_hash,
            first_keyed=self.first_keyed,
        )


def _extend(run: list[int], row_id: int) -> None:
    if run:
        run[1] = row_id
    else:
        run.extend([row_id, row_id])


def check_chain(rows: Iterable[Mapping[str, Any]], **options: Any) -> Chain:
    """Walk ``rows`` in order with a ChainCheck (its options)."""
    check = ChainCheck(**options)
    for row in rows:
        check.feed(row)
    return check.result()


class Audit:
    """The chain in ``store``. ``key``: rows are HMACs under it; ``keyed_from``: the first row
    the key applies to (from the configuration; row 1 unless an older chain was upgraded)."""

    def __init__(self, store: Store, *, key: bytes | None = None, keyed_from: int = 1) -> None:
        self._store = store
        self._key = key
        self.keyed_from = keyed_from if key is not None else None
        self._written: tuple[int, str] | None = None  # the newest row this object wrote
        self.on_append: Callable[[], None] | None = None  # e.g. wake the archive shipper

    @property
    def keyed(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> bytes | None:
        return self._key

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
        """Add one row at the head of the chain, inside the caller's transaction if any.

        With a key, a chain whose newest row is not keyed (empty, or written before the key
        was set) first gets its `audit.keyed` row, under the key."""
        with self._store.transaction() as db:
            self._store.serialize(CHAIN_LOCK)  # replicas on PostgreSQL: one chain, in turn
            last = self._last(db)
            if self._key is not None and not self._keyed(last):
                last = self._insert(db, last, _switch_row(last, at))
            row = self._insert(
                db,
                last,
                {
                    "ts": at.isoformat(timespec="milliseconds"),
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "request_id": request_id,
                    "outcome": outcome,
                    "error": error,
                },
            )
        if self.on_append is not None:
            self.on_append()
        return AuditEntry(**row)

    def seal(self, *, at: datetime) -> AuditEntry | None:
        """Bring the chain under the key now (`acrbot init`): the `audit.keyed` row if the
        newest row is not keyed, else the head's HMAC if an earlier release left it without
        one. Returns the `audit.keyed` row written, if any."""
        if self._key is None:
            return None
        with self._store.transaction() as db:
            self._store.serialize(CHAIN_LOCK)
            last = self._last(db)
            if not self._keyed(last):
                return AuditEntry(**self._insert(db, last, _switch_row(last, at)))
            self._write_head(db, last["id"], last["hash"])
        return None

    def _last(self, db: Any) -> dict[str, Any] | None:
        row = db.execute("select * from audit order by id desc limit 1").fetchone()
        if row is None:
            return None
        return dict(zip(AUDIT_COLUMNS, row, strict=True))

    def _keyed(self, last: Mapping[str, Any] | None) -> bool:
        """Whether the newest row is keyed; the row this object wrote last is known to be,
        which spares re-hashing it on every append (one HMAC a command)."""
        if last is None or self._key is None:
            return False
        if (last["id"], last["hash"]) == self._written:
            return True
        return _matches(last, self._key)

    def _insert(
        self, db: Any, last: Mapping[str, Any] | None, fields: dict[str, Any]
    ) -> dict[str, Any]:
        prev_id, prev_hash = (last["id"], last["hash"]) if last else (0, GENESIS)
        row = {"id": prev_id + 1, **fields, "prev_hash": prev_hash}
        row["hash"] = entry_hash(prev_hash, row, self._key)
        # Plain SQL on this hot path (every command writes here): sqlite-utils' insert and
        # upsert introspect the table first, ~20 queries a row instead of 2.
        db.execute(
            "insert into audit (id, ts, actor, action, target, request_id, outcome, error, "
            "prev_hash, hash) values (:id, :ts, :actor, :action, :target, :request_id, "
            ":outcome, :error, :prev_hash, :hash)",
            row,
        )
        self._write_head(db, row["id"], row["hash"])
        self._written = (row["id"], row["hash"])  # one tuple: safe to share between threads
        return row

    def _write_head(self, db: Any, last_id: int, last_hash: str) -> None:
        value = f"{last_id}:{last_hash}"
        if self._key is not None:
            value += f":{head_mac(self._key, last_id, last_hash)}"
        db.execute(
            "insert into meta (key, value) values (?, ?) "
            "on conflict (key) do update set value = excluded.value",
            [HEAD_KEY, value],
        )

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
        """Walk the whole chain; report every row whose hash or link does not hold, and a
        head that does not match its last row (or, with a key, is not signed with it).

        Rows and the recorded head are read in one read transaction (one snapshot), so a
        command committed meanwhile cannot look like rows removed from the end.
        """
        with self._store.snapshot() as db:
            hint = db.execute("select value from meta where key = ?", [LEGACY_KEYED_KEY]).fetchone()
            chain = check_chain(
                db.query("select * from audit order by id"),
                key=self._key,
                keyed_from=self.keyed_from or 1,
                keyed_hint=int(hint[0]) if hint and str(hint[0]).isdigit() else None,
            )
            head = db.execute("select value from meta where key = ?", [HEAD_KEY]).fetchone()
        problems, checked = list(chain.problems), chain.checked
        problems += self._head_problems(head[0] if head else None, chain)
        if self._key is not None and self.keyed_from is not None:
            if chain.last_id < self.keyed_from:
                problems.append(
                    f"no keyed row: the audit key applies from row {self.keyed_from} but the "
                    f"chain ends at row {chain.last_id} (rows removed from the end, or the key "
                    "never used: `acrbot init` starts the keyed chain)"
                )
            elif chain.first_keyed is None:
                problems.append(
                    "no row is keyed, although the audit key is set: `acrbot init` starts "
                    "the keyed chain (and names the row to write into keyed_from)"
                )
            elif chain.first_keyed > self.keyed_from:
                problems.append(
                    f"row {chain.first_keyed} is the first keyed row: if the rows before it "
                    "were written before the audit key was set, say so with "
                    f"`keyed_from = {chain.first_keyed}` in [audit]"
                )
        return Verification(
            checked=checked, problems=tuple(problems), first_keyed=chain.first_keyed
        )

    def _head_problems(self, recorded: str | None, chain: Chain) -> list[str]:
        actual = f"{chain.last_id}:{chain.last_hash}" if chain.checked else None
        parts = recorded.split(":") if recorded else []
        expected = ":".join(parts[:2]) if parts else None
        mac = parts[2] if len(parts) > 2 else None
        if expected != actual:
            return [
                f"the chain head is {actual or 'empty'} but {expected or 'nothing'} was "
                "recorded (rows removed from the end?)"
            ]
        if self._key is None or not chain.checked:
            return []
        if mac is None:
            return [
                "the recorded chain head is not signed with the audit key (rows removed from "
                "the end, or it was written before the key: `acrbot init` signs it)"
            ]
        if not hmac.compare_digest(mac, head_mac(self._key, chain.last_id, chain.last_hash)):
            return [
                "the recorded chain head's signature does not match (rows removed from the end?)"
            ]
        return []

    def local_rows(self) -> Iterator[dict[str, Any]]:
        """Every row, oldest first, read lazily (one cursor)."""
        yield from self._store.db.query("select * from audit order by id")


def _switch_row(last: Mapping[str, Any] | None, at: datetime) -> dict[str, Any]:
    """The `audit.keyed` row: under the key, it pins the plain history before it."""
    first = (last["id"] + 1) if last else 1
    return {
        "ts": at.isoformat(timespec="milliseconds"),
        "actor": "acrbot",
        "action": SWITCH_ACTION,
        "target": f"keyed from row {first}",
        "request_id": None,
        "outcome": "ok",
        "error": None,
    }


def compare_with_archive(
    local: Iterable[Mapping[str, Any]],
    archived: Iterable[Mapping[str, Any]],
    *,
    shipped: int,
) -> tuple[int, list[str]]:
    """Compare both ways, in one ordered pass over each (no copy of either in memory): an
    archived row missing or different here, and a row the database says it shipped
    (``shipped``: `meta.archive_shipped`) that the archive lacks — a truncated archive."""
    problems: list[str] = []
    gone: list[int] = []  # [first, last] of shipped rows missing from the archive

    def missing(row_id: int) -> None:
        if gone and gone[1] == row_id - 1:
            gone[1] = row_id
        else:
            flush()
            gone.extend([row_id, row_id])

    def flush() -> None:
        if gone:
            problems.append(
                f"{_span(gone[0], gone[1])} of the database, shipped, "
                f"{'is' if gone[0] == gone[1] else 'are'} not in the archive "
                "(the archive was cut or edited)"
            )
            gone.clear()

    mine = iter(local)
    current = next(mine, None)
    compared, last_archived = 0, 0
    for row in archived:
        compared += 1
        row_id = row["id"]
        if not isinstance(row_id, int) or row_id <= last_archived:
            problems.append(f"archive row {row_id} is out of order or repeated")
            continue
        last_archived = row_id
        while current is not None and current["id"] < row_id:
            if current["id"] <= shipped:
                missing(current["id"])
            current = next(mine, None)
        if current is None or current["id"] != row_id:
            flush()
            problems.append(f"row {row_id} is in the archive but not in the database")
            continue
        if current["hash"] != row["hash"]:
            flush()
            problems.append(f"row {row_id} differs from its archived copy")
        current = next(mine, None)
    while current is not None and current["id"] <= shipped:
        missing(current["id"])
        current = next(mine, None)
    flush()
    return compared, problems
