"""Draw a Reply as HTML for Jupyter: a table for lists, a definition list for `show`, a card for
a deletion request, one line for an error.

Everything that reaches the page is escaped: tag names, reasons, repository names and error
messages come from users or registries, and a notebook renders HTML from trusted output
without sanitizing it. Backtick spans in the core's texts (`tags repo --after x`) become
<code> after escaping, so they cannot smuggle markup either. Styles are inline and few, so the
output reads the same in JupyterLab, classic Notebook, VS Code and a static nbconvert page.
"""

from __future__ import annotations

import html
import re

from bot.core.replies import Reply, Table
from bot.core.request_types import DeletionRequest, State

_CODE = re.compile(r"`([^`]+)`")
_FONT = "font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px"
_MUTED = "color: var(--jp-ui-font-color2, #57606a)"
_STATE_COLOUR = {
    State.PENDING: "#bf8700",
    State.EXECUTING: "#0969da",
    State.DONE: "#1a7f37",
    State.DENIED: "#6e7781",
    State.CANCELLED: "#6e7781",
    State.EXPIRED: "#6e7781",
    State.FAILED: "#cf222e",
}
ERROR_COLOUR = "#cf222e"


def inline(text: str) -> str:
    """Escape ``text``; then `code` spans become <code>."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text, quote=True))


def error_line(message: str) -> str:
    """A failure as one styled line: a usage hint follows on the same line, never a traceback."""
    one_line = " — ".join(part.strip() for part in message.splitlines() if part.strip())
    return (
        f'<div class="acr-error" style="{_FONT}; color: {ERROR_COLOUR}">'
        f"<strong>✖ error:</strong> {inline(one_line)}</div>"
    )


def reply_html(reply: Reply, *, hidden_secret: bool = False) -> str:
    """The whole reply. A request gets its card; anything else title, fields, table, notes."""
    if not reply.ok and reply.request is None:
        return error_line(reply.text)
    if reply.request is not None:
        return request_card(reply, reply.request)
    parts = [f'<div class="acr-title"><strong>{inline(reply.text)}</strong></div>']
    if reply.fields:
        parts.append(definition_list(reply.fields))
    if reply.table is not None and reply.table.rows:
        parts.append(table_html(reply.table))
    parts.extend(_notes(reply, hidden_secret=hidden_secret))
    return f'<div class="acr-result" style="{_FONT}">{"".join(parts)}</div>'


def definition_list(fields: tuple[tuple[str, str], ...]) -> str:
    items = "".join(
        f'<dt style="font-weight: 600">{inline(key)}</dt><dd style="margin: 0">{inline(value)}</dd>'
        for key, value in fields
    )
    return (
        '<dl class="acr-fields" style="display: grid; grid-template-columns: max-content auto; '
        f'gap: 2px 16px; margin: 6px 0">{items}</dl>'
    )


def table_html(table: Table) -> str:
    head = "".join(f'<th style="text-align: left">{html.escape(c)}</th>' for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td style="text-align: left">{html.escape(cell)}</td>' for cell in row)
        + "</tr>"
        for row in table.rows
    )
    return (
        f'<table class="acr-table" style="margin: 6px 0"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def request_card(reply: Reply, request: DeletionRequest) -> str:
    """The request as an approver sees it in Slack: what goes, who asks, why, and its state."""
    colour = _STATE_COLOUR.get(request.state, "#6e7781")
    badge = (
        f'<span class="acr-state" style="color: #fff; background: {colour}; border-radius: 10px; '
        f'padding: 1px 8px; font-size: 11px; margin-left: 6px">{html.escape(request.state)}</span>'
    )
    title_colour = colour if not reply.ok else "inherit"
    parts = [
        f'<div style="font-weight: 600; font-size: 14px">Deletion request #{request.id}{badge}'
        "</div>",
        f'<div style="color: {title_colour}">{inline(reply.text)}</div>',
        definition_list(reply.fields),
    ]
    if reply.table is not None and reply.table.rows:  # a purge's items (`request ID`)
        parts.append(table_html(reply.table))
    parts.extend(_notes(reply, hidden_secret=False))
    if request.state is State.PENDING:
        parts.append(f'<div class="acr-next" style="{_MUTED}">{inline(_where(request))}</div>')
    return (
        f'<div class="acr-card" style="{_FONT}; border: 1px solid #d0d7de; '
        f"border-left: 4px solid {colour}; border-radius: 6px; padding: 8px 12px; "
        f'max-width: 760px">{"".join(parts)}</div>'
    )


def _where(request: DeletionRequest) -> str:
    """Where the approval happens: the Slack thread when a channel is set, else a command."""
    if request.channel:
        return (
            "Owners approve it in Slack: a running `acrbot serve` posts this card in channel "
            f"{request.channel}, and the outcome comes back here with `wait({request.id})`."
        )
    return (
        f"An owner other than {request.requester} approves it with `approve {request.id}` "
        "(no `[slack] requests_channel` is configured, so no card goes to Slack)."
    )


def _notes(reply: Reply, *, hidden_secret: bool) -> list[str]:
    notes = list(reply.notes)
    if reply.paging is not None and reply.paging.hint():
        notes.append(reply.paging.hint() or "")
    if hidden_secret:
        notes.append(
            "The new value is in this result's `.secret`; it is not displayed, so it does not "
            "end up in the saved notebook."
        )
    return [f'<p class="acr-note" style="{_MUTED}; margin: 4px 0">{inline(n)}</p>' for n in notes]
