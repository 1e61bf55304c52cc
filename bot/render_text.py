"""Render a Reply as plain text for the console and `acrbot run`."""

from __future__ import annotations

from bot.replies import Reply, Table


def render(reply: Reply) -> str:
    lines = [reply.text if reply.ok else f"error: {reply.text}"]
    if reply.fields:
        width = max(len(k) for k, _ in reply.fields)
        lines.extend(f"  {k.ljust(width)}  {v}" for k, v in reply.fields)
    if reply.table is not None:
        lines.extend(table_lines(reply.table))
    lines.extend(reply.notes)
    if reply.paging is not None and reply.paging.hint():
        lines.append(reply.paging.hint() or "")
    if reply.secret is not None:
        lines.append(f"  (shown once, only to you) {reply.secret}")
    return "\n".join(lines)


def table_lines(table: Table) -> list[str]:
    """Aligned columns, header first; shared by the console and Slack's code blocks."""
    if not table.rows:
        return []
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(table.columns), *(line(row) for row in table.rows)]
