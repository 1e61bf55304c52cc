"""A reply's chart (`report`) queued for upload beside its text.

The chart goes in the channel only when the reply does (`--public`): a report lists the
repositories its caller may read, and a file shared in a channel is read by everyone in it.
A private report gets its numbers as text and a line saying how to post the chart.
"""

from __future__ import annotations

from bot.core import formatting as fmt
from bot.core.replies import Reply
from bot.core.usage import UsageReport, chart_rows
from bot.slack.delivery import CHART
from bot.state.outbox import Outbox


def put_chart(outbox: Outbox, key: str, reply: Reply, *, channel: str, public: bool) -> bool:
    """Queue the chart of ``reply`` after its text (`reply:KEY`); False when not shared."""
    report = reply.chart
    if not isinstance(report, UsageReport) or not public or not report.repositories:
        return False
    outbox.put(
        f"chart:{key}",
        CHART,
        {
            "channel": channel,
            "title": f"{report.registry}: storage by repository",
            "comment": comment(report),
            "rows": chart_rows(report),
        },
        after=f"reply:{key}",
    )
    return True


def comment(report: UsageReport) -> str:
    """The chart's numbers as text (what a screen reader reads beside the picture)."""
    lines = [
        f"{report.registry}: {fmt.size(report.bytes)} in {len(report.repositories):,} "
        f"repositories, each blob counted once ({fmt.size(report.shared_bytes)} of layers "
        f"shared between repositories counted once); tagged {fmt.size(report.tagged_bytes)}, "
        f"stale (no push in {report.stale_days} d) {fmt.size(report.stale_bytes)}, untagged "
        + (fmt.size(report.untagged_bytes) if report.untagged_listed else "not listed")
        + "."
    ]
    for r in report.repositories[:10]:
        lines.append(
            f"• {r.repository}: {fmt.size(r.bytes)} ({fmt.size(r.stale_bytes)} stale, "
            f"{fmt.size(r.untagged_bytes)} untagged)"
        )
    if len(report.repositories) > 10:
        lines.append(f"… {len(report.repositories) - 10:,} more in the reply's table.")
    return "\n".join(lines)
