"""`audit`: read the append-only audit log."""

from __future__ import annotations

from bot.context import Call, Context
from bot.replies import Reply, Table


def audit(call: Call, *, ctx: Context) -> Reply:
    entries = ctx.audit.entries(
        last=call.args["last"] or 20, actor=call.args["user"], request_id=call.args["request"]
    )
    rows = tuple(
        (
            str(e.id),
            e.ts[:19].replace("T", " "),
            e.actor,
            e.action,
            e.target,
            f"#{e.request_id}" if e.request_id else "",
            e.outcome,
            e.error or "",
        )
        for e in entries
    )
    return Reply(
        text=f"{len(rows)} audit entr{'y' if len(rows) == 1 else 'ies'}" + (":" if rows else "."),
        table=Table(
            ("id", "time", "actor", "action", "target", "request", "outcome", "error"), rows
        ),
        data=[e.as_dict() for e in entries],
    )
