"""`events [REPO] [--last N]`: what the registry told the bot, newest first, with what the bot
made of it (posted to a channel, folded into a summary, drift, the bot's own deletion)."""

from __future__ import annotations

from bot.core import formatting as fmt
from bot.core.commands import READ
from bot.core.policy import Scope, allows
from bot.core.replies import Reply, Table
from bot.kernel.context import Call, Context
from bot.state.registry_events import EventLog, StoredEvent

SCAN = 5000  # events read at most to fill one answer with what the caller may read


def _what(stored: StoredEvent) -> str:
    outcome = stored.outcome
    if outcome is None:
        return "queued"
    parts = []
    if outcome.get("drift"):
        parts.append(f"DRIFT ({outcome['drift']})")
    if outcome.get("own"):
        parts.append("the bot's own deletion")
    if outcome.get("locked"):
        parts.append("locked (write-once)")
    if outcome.get("lock_error"):
        parts.append("lock failed")
    if outcome.get("posted"):
        parts.append("posted")
    elif outcome.get("folded"):
        parts.append("in a summary")
    return ", ".join(parts) or "seen"


def events(call: Call, *, ctx: Context) -> Reply:
    """The newest registry events of the registry (one repository, or every repository the
    caller may read)."""
    last = call.args.get("last") or 20
    repository = call.args.get("repository")
    registry = call.registry_name
    shown: list[StoredEvent] = []
    for stored in EventLog(ctx.store).recent(repository=repository, limit=SCAN):
        name = stored.registry or registry
        if stored.registry is not None and stored.registry != registry:
            continue
        if not allows(
            call.grants, READ, Scope.REPOSITORY, registry=name, repository=stored.event.repository
        ):
            continue
        shown.append(stored)
        if len(shown) >= last:
            break
    where = f"`{repository}` in {registry}" if repository else str(registry)
    if not shown:
        return Reply(
            text=f"No registry events for {where} yet.",
            notes=(
                "Events arrive when the registry is pointed at the bot's /registry/events "
                "(docs/registry-events.md).",
            ),
            data={"registry": registry, "events": []},
        )
    rows = tuple(
        (
            fmt.when(s.event.at),
            s.event.action.value,
            s.event.image if not repository else s.event.image.removeprefix(repository),
            fmt.short_digest(s.event.digest) if s.event.digest else "",
            s.event.actor or "",
            s.event.addr or "",
            _what(s),
        )
        for s in shown
    )
    return Reply(
        text=f"The last {len(shown)} registry events for {where}, newest first.",
        table=Table(columns=("when", "action", "image", "digest", "by", "from", "bot"), rows=rows),
        data={
            "registry": registry,
            "events": [
                {**s.event.as_dict(), "registry": s.registry, "outcome": s.outcome} for s in shown
            ],
        },
    )
