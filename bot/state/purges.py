"""The items a purge request pinned, and what became of each: the durable half of a purge.

Each item moves pending → sending → deleted (or gone, skipped, failed) in SQLite, with one
audit row when it reaches its final state. `sending` is written before the DELETE leaves, so
after a crash the bot knows which DELETEs may have happened and reads the registry for those
instead of sending them again (handlers/requests/purge_run.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.redaction import redact_urls
from bot.core.request_types import Clock
from bot.state.audit import Audit
from bot.state.snapshots import Snapshot, record
from bot.state.store import Store

PENDING, SENDING = "pending", "sending"
DELETED, GONE, SKIPPED, FAILED = "deleted", "gone", "skipped", "failed"
FINAL = (DELETED, GONE, SKIPPED, FAILED)


@dataclass(frozen=True)
class PurgeItem:
    request_id: int
    seq: int
    repository: str
    kind: str  # tag or manifest
    tag: str | None
    digest: str
    tags: tuple[str, ...]
    when: datetime | None
    state: str
    detail: str | None
    updated_at: datetime | None = None

    @property
    def label(self) -> str:
        if self.kind == "tag":
            return f"{self.repository}:{self.tag}"
        names = ", ".join(self.tags[:3]) + (" …" if len(self.tags) > 3 else "")
        return f"{self.repository}@{self.digest[:19]}" + (f" ({names})" if names else "")


@dataclass(frozen=True)
class PlanningSkip:
    """A tag or manifest the purge matched but left out when it was planned, and why."""

    seq: int  # after the items' seq: `request N --after` pages through both
    item: str
    reason: str


def pin_items(
    db: Any,
    request_id: int,
    items: list[dict[str, Any]],
    skipped: Sequence[tuple[str, str]],
) -> None:
    """Record a new purge request's items (all `pending`) and what planning left out
    (``skipped``: (item, reason), numbered after the items), inside its transaction."""
    db.executemany(
        "insert into purge_items (request_id, seq, repository, kind, tag, digest, tags, "
        "item_time, state) values (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
        [
            (
                request_id,
                seq,
                item["repository"],
                item["kind"],
                item.get("tag"),
                item["digest"],
                json.dumps(item.get("tags", [])),
                item.get("when"),
            )
            for seq, item in enumerate(items, start=1)
        ],
    )
    db.executemany(
        "insert into purge_skips (request_id, seq, item, reason) values (?, ?, ?, ?)",
        [
            (request_id, seq, what, reason)
            for seq, (what, reason) in enumerate(skipped, start=len(items) + 1)
        ],
    )


class PurgeItems:
    def __init__(self, store: Store, audit: Audit, *, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    def items(
        self,
        request_id: int,
        *,
        states: Iterable[str] | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[PurgeItem]:
        sql = "select * from purge_items where request_id = ? and seq > ?"
        params: list[object] = [request_id, after]
        if states is not None:
            states = list(states)
            sql += f" and state in ({', '.join('?' for _ in states)})"
            params += states
        sql += " order by seq"
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        return [_item(row) for row in self._store.db.query(sql, params)]

    def planning_skips(
        self, request_id: int, *, after: int = 0, limit: int | None = None
    ) -> list[PlanningSkip]:
        """What planning left out of the request and why, numbered after the items."""
        sql = "select * from purge_skips where request_id = ? and seq > ? order by seq"
        params: list[object] = [request_id, after]
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        return [
            PlanningSkip(seq=row["seq"], item=row["item"], reason=row["reason"])
            for row in self._store.db.query(sql, params)
        ]

    def planning_reasons(self, request_id: int) -> Counter[str]:
        """How many were left out at planning for each reason (one query, not one a row)."""
        rows = self._store.db.execute(
            "select reason, count(*) from purge_skips where request_id = ? group by reason "
            "order by count(*) desc, reason",
            [request_id],
        )
        return Counter(dict(rows.fetchall()))

    def counts(self, request_id: int) -> Counter[str]:
        rows = self._store.db.execute(
            "select state, count(*) from purge_items where request_id = ? group by state",
            [request_id],
        )
        return Counter(dict(rows.fetchall()))

    def details(self, request_id: int, state: str, *, limit: int = 5) -> Counter[str]:
        """The most common reasons for ``state`` (skipped, failed), for summaries."""
        rows = self._store.db.execute(
            "select detail, count(*) from purge_items where request_id = ? and state = ? "
            "group by detail order by count(*) desc limit ?",
            [request_id, state, limit],
        )
        return Counter({detail or "": n for detail, n in rows.fetchall()})

    def sending(self, item: PurgeItem, *, snapshot: Snapshot | None = None) -> None:
        """Written (and committed) before the DELETE leaves, with the snapshot `undo` needs
        (bot/state/snapshots.py) in the same transaction."""
        with self._store.transaction() as db:
            db.execute(
                "update purge_items set state = ?, updated_at = ? where request_id = ? and seq = ?",
                [SENDING, self._now(), item.request_id, item.seq],
            )
            if snapshot is not None:
                record(db, snapshot)  # undo's snapshot: in the transaction marking the DELETE

    def back_to_pending(self, item: PurgeItem) -> None:
        with self._store.transaction() as db:
            db.execute(
                "update purge_items set state = ?, updated_at = ? where request_id = ? and seq = ?",
                [PENDING, self._now(), item.request_id, item.seq],
            )

    def finish(self, item: PurgeItem, state: str, *, target: str, detail: str | None) -> None:
        """Final state and its one audit row, in one transaction."""
        now = self._clock()
        detail = redact_urls(detail) if detail else detail  # no URL's password in the audit
        with self._store.transaction() as db:
            db.execute(
                "update purge_items set state = ?, detail = ?, updated_at = ? "
                "where request_id = ? and seq = ?",
                [state, detail, self._now(), item.request_id, item.seq],
            )
            self._audit.append(
                actor="acrbot",
                action="purge.item",
                target=target,
                request_id=item.request_id,
                outcome=state,
                error=detail,
                at=now,
            )

    def _now(self) -> str:
        return self._clock().isoformat(timespec="seconds")


def _item(row: dict) -> PurgeItem:
    return PurgeItem(
        request_id=row["request_id"],
        seq=row["seq"],
        repository=row["repository"],
        kind=row["kind"],
        tag=row["tag"],
        digest=row["digest"],
        tags=tuple(json.loads(row["tags"] or "[]")),
        when=datetime.fromisoformat(row["item_time"]) if row["item_time"] else None,
        state=row["state"],
        detail=row["detail"],
        updated_at=datetime.fromisoformat(row["updated_at"]) if row["updated_at"] else None,
    )
