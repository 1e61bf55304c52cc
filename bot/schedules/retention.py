"""Scheduled retention: the running bot *requests* a purge on a schedule; owners approve it.

What neither `acr purge` tasks nor Harbor's retention offer: nothing runs unapproved. Each
`[[retention]]` rule names purge options, a cron schedule (UTC) and a channel. At each sweep
the bot takes the rule's latest schedule slot (within the last day) that it has not taken yet,
plans the purge exactly as `purge` would, and opens a request in the rule's channel (its card
is posted like any other); a slot with nothing to purge is recorded and skipped. The request's
origin is the rule and slot, so a crash between planning and recording cannot open two.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from croniter import croniter

from bot.core.commands import COMMANDS
from bot.core.config import RetentionConfig
from bot.core.errors import UserError
from bot.core.grammar import parse
from bot.kernel.context import Context
from handlers.requests.purge import plan_and_request  # the same selection as the command

log = logging.getLogger(__name__)
CATCH_UP = timedelta(days=1)  # a slot missed while the bot was down is taken up to a day late


def requester(rule: RetentionConfig) -> str:
    """Who a scheduled request is from: not a person, so any owner may approve it."""
    return f"retention:{rule.name}"


def latest_slot(rule: RetentionConfig, now: datetime) -> datetime:
    return croniter(rule.schedule, now).get_prev(datetime)


def run_due(ctx: Context) -> list[str]:
    """Take every rule's due slot; return one line per rule acted on (for logs and tests)."""
    done = []
    now = ctx.clock()
    for rule in ctx.config.retention:
        slot = latest_slot(rule, now)
        if now - slot > CATCH_UP:
            continue
        key = slot.isoformat()
        taken = ctx.store.db.execute(
            "select 1 from retention_runs where name = ? and slot = ?", [rule.name, key]
        ).fetchone()
        if taken:
            continue
        command = parse(rule.command(), COMMANDS)
        waiting = ctx.store.db.execute(
            "select id from requests where requester = ? and state = 'pending' order by id desc",
            [requester(rule)],
        ).fetchone()
        try:
            if waiting:  # one open request per rule: approvers are not asked twice
                raise UserError(f"request #{waiting[0]} from the previous slot is still pending")
            request = plan_and_request(
                ctx,
                command.args,
                requester=requester(rule),
                channel=rule.channel,
                origin=f"retention:{rule.name}:{key}",
            )
        except UserError as exc:
            outcome, request_id = f"no request: {exc}", None
        else:
            outcome, request_id = f"request #{request.id}", request.id
        with ctx.store.transaction() as db:
            db.execute(
                "insert into retention_runs (name, slot, request_id, outcome) "
                "values (?, ?, ?, ?) on conflict (name, slot) do nothing",
                [rule.name, key, request_id, outcome],
            )
            ctx.audit.append(
                actor=requester(rule),
                action="retention",
                target=f"{rule.name} @ {key}",
                request_id=request_id,
                outcome="requested" if request_id else "nothing",
                error=None if request_id else outcome,
                at=now,
            )
        log.info("retention %s (%s): %s", rule.name, key, outcome)
        done.append(f"{rule.name}: {outcome}")
    return done
