"""Break-glass reviews: every deletion made with `--break-glass` is reviewed afterwards.

A review is written in the transaction that starts the break-glass execution (so no
break-glass runs without one); an owner other than the actor closes it with `review ID --ok`
or `--concern TEXT`, each a compare-and-set on `state` with its audit row. The worker's sweep
reminds before `due_at` and escalates once after it (handlers/requests/break_glass.py).
The same rows count an actor's break-glass uses per UTC day (`break_glass_per_day`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.core.errors import Conflict, NotFound
from bot.state.audit import Audit
from bot.state.store import Store, from_iso, iso

OPEN, OK, CONCERN = "open", "ok", "concern"
_COLUMNS = (
    "request_id",
    "actor",
    "registry",
    "repositories",
    "rule",
    "created_at",
    "due_at",
    "state",
    "reviewer",
    "note",
    "reviewed_at",
    "reminded",
    "escalated",
)


@dataclass(frozen=True)
class Review:
    request_id: int
    actor: str
    registry: str
    repositories: tuple[str, ...]
    rule: str
    created_at: datetime
    due_at: datetime
    state: str
    reviewer: str | None = None
    note: str | None = None
    reviewed_at: datetime | None = None
    reminded: bool = False
    escalated: bool = False


class Reviews:
    def __init__(self, store: Store, audit: Audit) -> None:
        self._store = store
        self._audit = audit

    def open(
        self,
        *,
        request_id: int,
        actor: str,
        registry: str,
        repositories: Iterable[str],
        rule: str,
        now: datetime,
        due: datetime,
    ) -> None:
        """Record the review a break-glass owes (joins the caller's transaction)."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO reviews (request_id, actor, registry, repositories, rule, bg_day, "
                "created_at, due_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id) DO NOTHING",
                [
                    request_id,
                    actor,
                    registry,
                    json.dumps(sorted(repositories)),
                    rule,
                    now.date().isoformat(),
                    iso(now),
                    iso(due),
                    OPEN,
                ],
            )

    def used_today(self, actor: str, now: datetime) -> int:
        """How many break-glass deletions ``actor`` made this UTC day."""
        row = self._store.db.execute(
            "SELECT count(*) FROM reviews WHERE actor = ? AND bg_day = ?",
            [actor, now.date().isoformat()],
        ).fetchone()
        return int(row[0])

    def get(self, request_id: int) -> Review | None:
        rows = self._rows("request_id = ?", [request_id])
        return _review(rows[0]) if rows else None

    def _rows(self, where: str, params: list) -> list[dict]:
        """Rows as dicts by the columns named here (the store's result carries no cursor
        description on PostgreSQL: the contract is rows of values)."""
        cursor = self._store.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM reviews WHERE {where}", params
        )
        return [dict(zip(_COLUMNS, row, strict=True)) for row in cursor.fetchall()]

    def record(
        self, request_id: int, *, reviewer: str, ok: bool, note: str | None, now: datetime
    ) -> Review:
        """Close an open review (once: a second review is a Conflict naming the first)."""
        with self._store.transaction() as db:
            review = self.get(request_id)
            if review is None:
                raise NotFound(f"request #{request_id} was not a break-glass: nothing to review")
            if review.state != OPEN:
                raise Conflict(
                    f"request #{request_id} was already reviewed by {review.reviewer} "
                    f"({review.state}{': ' + review.note if review.note else ''})"
                )
            state = OK if ok else CONCERN
            db.execute(
                "UPDATE reviews SET state = ?, reviewer = ?, note = ?, reviewed_at = ? "
                "WHERE request_id = ? AND state = ?",
                [state, reviewer, note, iso(now), request_id, OPEN],
            )
            self._audit.append(
                actor=reviewer,
                action="request.review",
                target=f"{review.registry}: break-glass #{request_id} by {review.actor}",
                request_id=request_id,
                outcome=state,
                error=note,
                at=now,
            )
        found = self.get(request_id)
        assert found is not None
        return found

    def open_reviews(self) -> list[Review]:
        rows = self._rows("state = ? ORDER BY due_at", [OPEN])
        return [_review(r) for r in rows]

    def mark(self, request_id: int, column: str) -> bool:
        """Set `reminded` or `escalated` once (compare-and-set): True if this call did."""
        if column not in ("reminded", "escalated"):
            raise ValueError(column)
        with self._store.transaction() as db:
            cursor = db.execute(
                f"UPDATE reviews SET {column} = 1 WHERE request_id = ? AND {column} = 0 "
                "AND state = ?",
                [request_id, OPEN],
            )
        return cursor.rowcount == 1


def _review(row: dict) -> Review:
    return Review(
        request_id=row["request_id"],
        actor=row["actor"],
        registry=row["registry"],
        repositories=tuple(json.loads(row["repositories"])),
        rule=row["rule"],
        created_at=from_iso(row["created_at"]),
        due_at=from_iso(row["due_at"]),
        state=row["state"],
        reviewer=row["reviewer"],
        note=row["note"],
        reviewed_at=from_iso(row["reviewed_at"]) if row["reviewed_at"] else None,
        reminded=bool(row["reminded"]),
        escalated=bool(row["escalated"]),
    )
