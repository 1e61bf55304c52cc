"""Render a Reply as plain text for the console and `acrbot run`."""

from __future__ import annotations

import shutil
import textwrap

from bot.core.replies import Reply, Table

FALLBACK_WIDTH = 80  # columns when the output is no terminal (a pipe, a file)
MIN_PROSE = 24  # narrowest the last column may wrap to beside the others (or a third)


def terminal_width() -> int:
    """The width of the terminal the text goes to ($COLUMNS first), else 80."""
    return shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns


def render(reply: Reply, *, width: int | None = None) -> str:
    """The reply as text; tables fit in ``width`` columns when given (None: as wide as
    their cells, e.g. for a notebook's repr)."""
    lines = [reply.text if reply.ok else f"error: {reply.text}"]
    if reply.fields:
        key_width = max(len(k) for k, _ in reply.fields)
        lines.extend(f"  {k.ljust(key_width)}  {v}" for k, v in reply.fields)
    if reply.table is not None:
        lines.extend(table_lines(reply.table, width=width))
    lines.extend(reply.notes)
    if reply.paging is not None and reply.paging.hint():
        lines.append(reply.paging.hint() or "")
    if reply.secret is not None:
        lines.append(f"  (shown once, only to you) {reply.secret}")
    return "\n".join(lines)


def table_lines(table: Table, *, width: int | None = None) -> list[str]:
    """Aligned columns, header first; shared by the console and Slack's code blocks.

    Wider than ``width``, the last column (the prose: a summary, a reason) wraps beside the
    others when they leave it room, else goes under its row, indented, as `--help` pages do.
    """
    if not table.rows:
        return []
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [line(table.columns), *(line(row) for row in table.rows)]
    if width is None or max(len(text) for text in lines) <= width:
        return lines
    return _fitted(table, widths, width)


def _fitted(table: Table, widths: list[int], width: int) -> list[str]:
    lead = widths[:-1]
    start = 2 + sum(lead) + 2 * len(lead)  # where the last column begins
    if width - start >= max(MIN_PROSE, width // 3):
        lines = []
        for cells in (table.columns, *table.rows):
            head = "  " + "".join(c.ljust(w) + "  " for c, w in zip(cells[:-1], lead, strict=True))
            parts = _wrap(cells[-1], width - start) or [""]
            lines.append((head + parts[0]).rstrip())
            lines.extend(" " * start + part for part in parts[1:])
        return lines
    lines = []
    for row in table.rows:
        lines += _wrap("  ".join(c for c in row[:-1] if c), width, indent="  ", then="      ")
        lines += _wrap(row[-1], width, indent="      ", then="      ")
    return lines


def _wrap(text: str, width: int, *, indent: str = "", then: str = "") -> list[str]:
    """Break at spaces only (a usage's `[--top N]`, a digest stay whole)."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=then,
        break_long_words=False,
        break_on_hyphens=False,
    )
