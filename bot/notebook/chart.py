"""`report`'s chart in a notebook: the same drawing Slack uploads (bot/usage_chart.py).

Shown inline as a PNG through IPython's `_repr_png_` (no pyplot, no backend to select: it
works in any kernel and in nbconvert); ``figure`` is the matplotlib Figure, to restyle or
save (``chart.figure.savefig("report.svg")``).
"""

from __future__ import annotations

from typing import Any

from bot import usage_chart
from bot.core.usage import UsageReport, chart_rows


class Chart:
    def __init__(self, report: UsageReport) -> None:
        self.report = report
        self.rows = chart_rows(report)
        self.title = f"{report.registry}: storage by repository"
        self.figure: Any = usage_chart.figure(self.rows, title=self.title)

    def _repr_png_(self) -> bytes:
        import io

        out = io.BytesIO()
        self.figure.savefig(out, format="png")
        return out.getvalue()

    def __repr__(self) -> str:
        return usage_chart.alt_text(self.rows, title=self.title)
