"""Whether a deletion a registry reports is one the bot itself executed.

The bot records what it is about to delete before it sends the DELETE (a request goes
`executing` with its start time; a purge item goes `sending`), so by the time the registry's
event arrives the record is there. A deletion matches when the same registry and repository,
the same digest (or, for an untag, the same tag, or a tag the deleted manifest carried) and a
time within ``WINDOW`` of the event line up. Anything else is someone else's deletion: drift.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from bot.state.store import Store

# The registry's clock against ours, plus how long a purge item may sit in `sending`
# (a paced purge, a slow registry): wide enough for both, narrow enough that yesterday's
# deletion of the same digest does not excuse today's.
WINDOW = timedelta(minutes=15)
_EXECUTED = ("executing", "done", "failed")
_ITEM_SENT = ("sending", "deleted", "gone")


def bot_deleted(
    store: Store,
    *,
    registry: str,
    repository: str,
    digest: str | None,
    tag: str | None,
    at: datetime,
    since: datetime | None = None,
) -> bool:
    """Whether the bot deleted ``digest`` (or untagged ``tag``) in ``repository`` around
    ``at`` (or, found by a reconcile, at any time from ``since`` to ``at``). Reads rows,
    compares times in Python (stored formats differ by table)."""
    db = store.db
    rows = db.execute(
        "select digest, tag, tags, exec_started_at, finished_at from requests "
        "where registry = ? and repository = ? and state in (?, ?, ?) "
        "and exec_started_at is not null",
        [registry, repository, *_EXECUTED],
    ).fetchall()
    for row_digest, row_tag, tags, started, finished in rows:
        if not _same(digest, tag, row_digest, row_tag, tags):
            continue
        if _near(at, started, finished, since):
            return True
    items = db.execute(
        "select p.digest, p.tag, p.tags, p.updated_at from purge_items p "
        "join requests r on r.id = p.request_id where r.registry = ? and p.repository = ? "
        "and p.state in (?, ?, ?) and (p.digest = ? or p.tag = ? or p.tags like ?)",
        [registry, repository, *_ITEM_SENT, digest or "", tag or "", _json_member(tag)],
    ).fetchall()
    return any(
        _same(digest, tag, d, t, tags) and _near(at, updated, updated, since)
        for d, t, tags, updated in items
    )


def _json_member(tag: str | None) -> str:
    """A LIKE pattern finding ``tag`` in a JSON list of tags (checked exactly afterwards)."""
    # Unescaped: `_` and `%` in a tag only widen the pre-filter; `_same` checks exactly.
    return f"%{json.dumps(tag)}%" if tag else ""


def _same(
    digest: str | None, tag: str | None, row_digest: str, row_tag: str | None, tags: str | None
) -> bool:
    if digest is not None:
        return digest == row_digest
    if tag is None:
        return False
    try:
        carried = json.loads(tags) if tags else []
    except ValueError:
        carried = []
    return tag == row_tag or tag in carried


def _near(at: datetime, start: str | None, end: str | None, since: datetime | None = None) -> bool:
    if start is None:
        return False
    begin = datetime.fromisoformat(start)
    finish = datetime.fromisoformat(end) if end else None
    if begin.tzinfo is None or at.tzinfo is None:
        return False
    if at < begin - WINDOW:
        return False
    return finish is None or (since or at) <= finish + WINDOW
