"""The `report` chart: storage by repository, stacked tagged / stale / untagged, as a PNG.

One drawing for every door (Slack uploads the PNG, notebooks show it inline). matplotlib is
imported here, inside the function, never at start-up or on Slack's acking path: it costs
~0.3 s and 30 MB to import, and only a report draws (tests/unit/test_startup.py watches the
start-up imports). The Agg backend draws without a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from bot.core import formatting as fmt

COLOURS = {"tagged": "#2f6db5", "stale": "#e39b2d", "untagged": "#b8b8b8"}
WIDTH_IN, DPI = 10.0, 100  # 1000 px wide


def figure(rows: Sequence[dict[str, Any]], *, title: str) -> Any:
    """A matplotlib Figure: one horizontal bar per row, biggest at the top."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, thread-safe

    height = max(2.5, 0.8 + 0.35 * len(rows))
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    ax = fig.add_subplot()
    names = [str(r["repository"]) for r in rows][::-1]
    left = [0.0] * len(rows)
    top = max((sum(int(r[k]) for k in COLOURS) for r in rows), default=0) or 1
    unit, scale = _unit(top)
    for kind, colour in COLOURS.items():
        values = [int(r[kind]) / scale for r in rows][::-1]
        ax.barh(names, values, left=left, color=colour, label=kind)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel(f"storage ({unit}, each blob counted once)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def png(rows: Sequence[dict[str, Any]], *, title: str) -> bytes:
    """The chart as PNG bytes."""
    out = io.BytesIO()
    figure(rows, title=title).savefig(out, format="png")
    return out.getvalue()


def alt_text(rows: Sequence[dict[str, Any]], *, title: str, limit: int = 1000) -> str:
    """The chart in words, for screen readers (Slack's alt_txt, at most 1,000 characters)."""
    parts = [f"{title}."]
    for r in rows:
        total = sum(int(r[k]) for k in COLOURS)
        parts.append(
            f"{r['repository']}: {fmt.size(total)} ({fmt.size(int(r['stale']))} stale, "
            f"{fmt.size(int(r['untagged']))} untagged)."
        )
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unit(top: int) -> tuple[str, float]:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if top >= scale:
            return unit, float(scale)
    return "bytes", 1.0
