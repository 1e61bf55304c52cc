"""Scheduled reports: `[[report]]` rules post the storage report to a channel, chart and all.

At each sweep of the worker, every rule's latest cron slot (UTC, within the last day) not yet
taken is measured (handlers/report.py, over the rule's repositories, as the bot itself) and
queued in the outbox as one chart upload whose comment carries the numbers. The slot is taken
in the same transaction as the outbox row (`report:NAME:SLOT`, written once), so a crash
before it means the next sweep measures again and one after it cannot post twice. The size
is kept with the slot; the next report says by how much the registry grew, in bold beyond
the rule's threshold.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from croniter import croniter

from bot.core import formatting as fmt
from bot.core.errors import UserError
from bot.core.purge_spec import parse_ago
from bot.core.report_rules import ReportRule
from bot.core.usage import UsageReport, chart_rows
from bot.kernel.context import Context
from bot.slack.charts import comment
from bot.slack.delivery import CHART
from handlers.report import measure

log = logging.getLogger(__name__)
CATCH_UP = timedelta(days=1)  # a slot missed while the bot was down is taken up to a day late


def latest_slot(rule: ReportRule, now: datetime) -> datetime:
    return croniter(rule.schedule, now).get_prev(datetime)


def growth_line(rule: ReportRule, report: UsageReport, previous: tuple[int, str] | None) -> str:
    """How the registry changed since the previous report of this rule ("" the first time)."""
    if previous is None:
        return ""
    before, when = previous
    change = report.bytes - before
    share = change / before * 100 if before else (100.0 if change else 0.0)
    since = f"since the last report ({when[:10]})"
    if change > 0 and share > rule.growth:
        return (
            f":chart_with_upwards_trend: *Grew {fmt.size(change)} ({share:.0f}%) {since}*, "
            f"more than the {rule.growth:g}% this report watches for."
        )
    sign = "+" if change >= 0 else "-"
    return f"{sign}{fmt.size(abs(change))} ({share:+.0f}%) {since}."


def run_due(ctx: Context) -> list[str]:
    """Take every rule's due slot; one line per rule acted on (for logs and tests)."""
    done = []
    now = ctx.clock()
    for rule in ctx.config.reports:
        slot = latest_slot(rule, now)
        if now - slot > CATCH_UP:
            continue
        key = slot.isoformat()
        db = ctx.store.db
        if db.execute(
            "select 1 from report_runs where name = ? and slot = ?", [rule.name, key]
        ).fetchone():
            continue
        registry = ctx.registries.get(rule.registry)
        try:
            names = registry.repositories()
            if rule.repos:
                from fnmatch import fnmatchcase

                names = [n for n in names if fnmatchcase(n, rule.repos)]
            stale = parse_ago(rule.stale)
            report = measure(
                registry,
                names,
                stale=stale,
                stale_days=int(stale.total_seconds() // 86400),
                now=now,
            )
        except UserError as exc:  # the registry unreachable: the next sweep tries again
            log.warning("report %s (%s): not measured: %s", rule.name, key, exc)
            done.append(f"{rule.name}: not measured: {exc}")
            continue
        previous = db.execute(
            "select bytes, taken_at from report_runs where name = ? order by slot desc limit 1",
            [rule.name],
        ).fetchone()
        text = comment(report)
        grew = growth_line(rule, report, tuple(previous) if previous else None)
        if grew:
            text += "\n" + grew
        with ctx.store.transaction() as tx:
            taken = tx.execute(
                "insert into report_runs (name, slot, registry, bytes, taken_at) "
                "values (?, ?, ?, ?, ?) on conflict (name, slot) do nothing",
                [rule.name, key, registry.name, report.bytes, now.isoformat()],
            ).rowcount
            if taken:
                ctx.outbox.put(
                    f"report:{rule.name}:{key}",
                    CHART,
                    {
                        "channel": rule.channel,
                        "title": f"{report.registry}: storage by repository",
                        "comment": f"*Storage report `{rule.name}`*\n{text}",
                        "rows": chart_rows(report),
                    },
                )
        log.info("report %s (%s): %s", rule.name, key, fmt.size(report.bytes))
        done.append(f"{rule.name}: {fmt.size(report.bytes)}" + (f"; {grew}" if grew else ""))
    return done
