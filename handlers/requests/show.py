"""`request N` and `requests`: one request in full (a purge's items paged), or a list."""

from __future__ import annotations

from dataclasses import replace

from bot.core import formatting as fmt
from bot.core.commands import READ
from bot.core.policy import Scope, allows
from bot.core.replies import Paging, Reply, Table
from bot.core.request_types import State
from bot.kernel.context import Call, Context
from handlers.requests import rules_gate
from handlers.requests.reply import request_data, request_reply, visible_request


def list_requests(call: Call, *, ctx: Context) -> Reply:
    """Requests the caller may read: pending by default, --mine, or --all."""
    if call.args["mine"]:
        found, what = ctx.requests.list(requester=call.user), "of your requests"
    elif call.args["all"]:
        found, what = ctx.requests.list(), "requests"
    else:
        found, what = ctx.requests.list(states=[State.PENDING]), "pending requests"
    found = [
        r
        for r in found
        if allows(call.grants, READ, Scope.REPOSITORY, registry=r.registry, repository=r.repository)
        or r.requester == call.user
    ]
    rows = tuple(
        (
            f"#{r.id}",
            r.state.value,
            r.target,
            r.requester,
            f"{len(r.approvals)}/{r.required}",
            fmt.when(r.expires_at),
        )
        for r in found
    )
    noun = what if len(rows) != 1 else what.replace("requests", "request")
    return Reply(
        text=f"{len(rows)} {noun}" + (":" if rows else "."),
        table=Table(("id", "state", "target", "requester", "approvals", "expires"), rows),
        data=[request_data(r) for r in found],
    )


def show_request(call: Call, *, ctx: Context) -> Reply:
    """One request in full: its facts, and for a purge every item with its state (paged)."""
    request = visible_request(call, ctx, call.args["id"])
    reply = request_reply(
        f"Request #{request.id} ({request.action}): {request.state.value}", request
    )
    if (policy := rules_gate.policy_field(ctx, request)) is not None:
        reply = replace(reply, fields=(*reply.fields, policy))
    if request.forced is not None:  # every tag it moves, from and to (the card shows 10)
        rows = tuple(
            (f"{i.repository}:{i.tag}", i.from_digest, i.to_digest) for i in request.forced.items
        )
        return replace(reply, table=Table(("tag", "from (re-pushed)", "to (snapshot)"), rows))
    if not request.is_purge:
        return reply
    top = call.args["top"] or 25
    after = int(call.args["after"]) if (call.args["after"] or "").isdigit() else 0
    items = ctx.purges.items(request.id, after=after, limit=top + 1)
    # What planning left out follows the items (its seq continues theirs), on the same pages.
    skips = (
        ctx.purges.planning_skips(request.id, after=after, limit=top + 1 - len(items))
        if len(items) <= top
        else []
    )
    shown = items[:top]
    shown_skips = skips[: top - len(shown)]
    last = shown_skips[-1].seq if shown_skips else shown[-1].seq if shown else after
    counts = ctx.purges.counts(request.id)
    reasons = ctx.purges.planning_reasons(request.id)
    rows = tuple(
        (str(i.seq), i.label, fmt.short_digest(i.digest), i.state, i.detail or "") for i in shown
    ) + tuple((str(s.seq), s.item, "", "skipped at planning", s.reason) for s in shown_skips)
    notes = ["Items: " + ", ".join(f"{n:,} {state}" for state, n in sorted(counts.items())) + "."]
    if reasons:
        notes.append(
            f"Skipped at planning (not pinned, left as they are): {reasons.total():,} — "
            + ", ".join(f"{n:,} {reason}" for reason, n in reasons.most_common(5))
            + (" …" if len(reasons) > 5 else "")
            + "."
        )
    return replace(
        reply,
        table=Table(("#", "item", "digest", "state", "detail"), rows),
        notes=tuple(notes),
        paging=Paging(
            command=f"request {request.id}" + (f" --top {top}" if call.args["top"] else ""),
            after=str(after) if after else None,
            next_after=str(last) if len(items) + len(skips) > top else None,
        ),
        data={
            **request_data(request),
            "items": [
                {
                    "seq": i.seq,
                    "repository": i.repository,
                    "kind": i.kind,
                    "tag": i.tag,
                    "digest": i.digest,
                    "tags": list(i.tags),
                    "state": i.state,
                    "detail": i.detail,
                }
                for i in shown
            ],
            "skipped": [{"seq": s.seq, "item": s.item, "reason": s.reason} for s in shown_skips],
        },
    )
