"""Render Replies and request cards as Block Kit, within Slack's limits.

A message holds at most 50 blocks and a text object at most 3,000 characters. Listings are
paged by the handlers (25 rows by default), and a page carries Previous/Next buttons that
re-run the command (bot/slack/paging.py). A reply too long for one message shows its first
part and says so: nothing is ever cut silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core import formatting as fmt
from bot.core.purge_spec import pace_text, totals_text
from bot.core.render_text import table_lines
from bot.core.replies import Reply
from bot.core.request_types import DeletionRequest, State
from bot.slack.paging import PageState

MAX_TEXT = 3000
CHUNK = MAX_TEXT - 100  # room for the code fences
SECTIONS_PER_PAGE = 5  # ~15k characters a page, far below 50 blocks
APPROVE, DENY = "acr_approve", "acr_deny"
UNDO = "acr_undo"  # a done card's Undo button: `undo ID` as whoever clicks
PAGE_PREVIOUS, PAGE_NEXT = "acr_page_previous", "acr_page_next"
MORE = "acr_more"  # the "More" button of earlier releases; a click says to run it again
SECTIONS_PER_MESSAGE = 10  # ~29k characters: a reply longer than this is cut, with a note
DENY_VIEW = "acr_deny_modal"  # the modal that asks why a request is denied
# [[policy]] confirm = "type": Approve opens a modal asking for the repository name.
APPROVE_TYPED, CONFIRM_VIEW = "acr_approve_typed", "acr_confirm_modal"

_STATE_EMOJI = {
    State.PENDING: ":hourglass_flowing_sand:",
    State.EXECUTING: ":gear:",
    State.DONE: ":white_check_mark:",
    State.DENIED: ":no_entry:",
    State.CANCELLED: ":wastebasket:",
    State.EXPIRED: ":hourglass:",
    State.FAILED: ":x:",
}


@dataclass(frozen=True)
class Message:
    """One Slack message: fallback text (notifications, screen readers) and blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def escape(text: str) -> str:
    """Slack's three control characters, so user text cannot @channel or fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=text)).to_dict()


def _chunks(lines: list[str], *, code: bool) -> list[str]:
    """Group lines into texts under the limit; a line longer than the limit is split."""
    pieces: list[str] = []
    for line in lines:
        pieces.extend(line[i : i + CHUNK] for i in range(0, max(len(line), 1), CHUNK))
    chunks, current = [], ""
    for piece in pieces:
        if current and len(current) + len(piece) + 1 > CHUNK:
            chunks.append(current)
            current = ""
        current = f"{current}\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return [f"```{c}```" if code else c for c in chunks]


def marked(text: str, reply: Reply) -> str:
    """Escaped text, with the reply's people as mentions and its spans as code."""
    out = escape(text)
    for span in sorted(set(reply.spans), key=len, reverse=True):
        out = out.replace(escape(span), f"`{escape(span)}`")
    for who in sorted(set(reply.people), key=len, reverse=True):
        mention = _mention(who)
        if mention:
            out = re.sub(rf"(?<![\w@<`]){re.escape(who)}(?![\w>`])", mention, out)
    return out


def _mention(principal: str) -> str | None:
    if re.fullmatch(r"[UW][A-Z0-9]+", principal):
        return f"<@{principal}>"
    if re.fullmatch(r"S[A-Z0-9]+", principal):
        return f"<!subteam^{principal}>"
    return None


def reply_pages(reply: Reply) -> list[Message]:
    """The reply as one or more pages; never includes ``reply.secret``."""
    headline = marked(reply.text, reply) if reply.ok else f":x: {escape(reply.text)}"
    bodies: list[str] = []
    if reply.fields:
        bodies += _chunks(
            [f"*{escape(k)}:* {marked(v, reply)}" for k, v in reply.fields], code=False
        )
    if reply.table is not None and reply.table.rows:
        bodies += _chunks([escape(line) for line in table_lines(reply.table)], code=True)
    notes = [escape(n) for n in reply.notes]
    head = _chunks([headline], code=False)
    sections = head + bodies
    pages = [
        sections[i : i + SECTIONS_PER_PAGE] for i in range(0, len(sections), SECTIONS_PER_PAGE)
    ]
    fallback = marked(reply.text, reply) if reply.ok else f"Error: {escape(reply.text)}"
    messages = []
    for number, page in enumerate(pages, start=1):
        blocks = [section(text) for text in page]
        if len(pages) > 1:
            blocks.append(
                ContextBlock(
                    elements=[MarkdownTextObject(text=f"page {number} of {len(pages)}")]
                ).to_dict()
            )
        if number == len(pages) and notes:
            blocks.append(
                ContextBlock(elements=[MarkdownTextObject(text=n) for n in notes[:10]]).to_dict()
            )
        messages.append(Message(text=fallback[:MAX_TEXT], blocks=blocks))
    return messages


def reply_message(
    reply: Reply,
    *,
    previous: PageState | None = None,
    following: PageState | None = None,
) -> Message:
    """The reply as one message, with Previous/Next buttons for a page of a listing.

    Never includes ``reply.secret``. A reply longer than one message keeps its first part
    and ends with a note that says how much was left out and how to see it.
    """
    pages = reply_pages(reply)
    blocks = [b for b in pages[0].blocks if b["type"] == "section"]
    rest = [b for p in pages[1:] for b in p.blocks if b["type"] == "section"]
    room = SECTIONS_PER_MESSAGE - len(blocks)
    blocks += rest[:room]
    context = [
        b for p in pages for b in p.blocks if b["type"] == "context" and "page " not in str(b)
    ]
    if len(rest) > room:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f":scissors: {len(rest) - room} more part(s) of this reply do not "
                        "fit in one Slack message. Narrow it (`--top`, `--filter`, `--last`) "
                        "or run it with `acrbot run --json`."
                    )
                ]
            ).to_dict()
        )
    blocks += context
    buttons = []
    if previous is not None:
        buttons.append(
            ButtonElement(text="Previous", action_id=PAGE_PREVIOUS, value=previous.encode())
        )
    if following is not None:
        buttons.append(ButtonElement(text="Next", action_id=PAGE_NEXT, value=following.encode()))
    if buttons:
        blocks.append(ActionsBlock(elements=buttons).to_dict())
    return Message(text=pages[0].text, blocks=blocks)


FIELD_MAX = 2000  # Slack's limit for one section field
SHOWN_TAGS = 20  # names a card lists before "… and N more"


def _names(names: tuple[str, ...] | list[str], request_id: int) -> str:
    """Names for a card field: the first ones, then how many more and where to see them."""
    shown = [escape(n) for n in names[:SHOWN_TAGS]]
    text = ", ".join(shown)
    if len(names) > SHOWN_TAGS:
        text += f" … and {len(names) - SHOWN_TAGS:,} more (`/acr request {request_id}`)"
    return text[:FIELD_MAX]


def _moves(request: DeletionRequest) -> str:
    """A forced undo's first moves, cut to fit one field (with its title) and pointing at
    `request ID`, which lists every one."""
    assert request.forced is not None
    text = escape(request.forced.moves(shown=10))
    room = FIELD_MAX - 100  # the field's title and the pointer below
    if len(text) > room:
        text = text[:room] + " …"
    if len(request.forced.items) > 1:
        text += f" (every one: `/acr request {request.id}`)"
    return text


def slack_date(value: datetime | None) -> str:
    """A time each viewer sees in their own time zone, with a UTC fallback for clients that
    cannot render Slack's date token."""
    if value is None:
        return "unknown"
    epoch = int(value.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{fmt.when(value)}>"


def request_fields(request: DeletionRequest) -> list[tuple[str, str]]:
    approvals = f"{len(request.approvals)} of {request.required}"
    if request.approvals:
        approvals += " (" + ", ".join(_person(a.approver) for a in request.approvals) + ")"
    spec = request.spec
    if request.forced is not None:  # `undo --force`: re-pushed tags moved back
        head = [
            ("Requester", _person(request.requester)),
            (
                "Undo --force",
                f"`{escape(request.registry)}`: tags re-pushed since "
                f"#{request.forced.source}, moved back to what it deleted",
            ),
            ("Will move", _moves(request)),
        ]
    elif spec is not None:  # a purge
        first = spec.first
        head = [
            ("Requester", f"<@{request.requester}>"),
            (
                "Purge",
                f"`{escape(request.registry)}` {escape(spec.describe)}"[:FIELD_MAX],
            ),
            ("Will delete", escape(totals_text(spec))),
            *([("Frees", _frees(spec.freed_bytes))] if spec.freed_bytes is not None else []),
            (
                "Pinned",
                f"{spec.items:,} items, every one listed by `/acr request {request.id}`"
                + (f"; first: {_names(first, request.id)}" if first else ""),
            ),
        ]
        paced = pace_text(spec.items, spec.pace)
        if paced:
            head.append(("Pace", escape(paced)))
    else:
        going = _names(request.tags, request.id) or "(untagged manifest)"
        if len(request.tags) > 1:
            going = f"{len(request.tags):,} tags: {going}"
        head = [
            ("Requester", _person(request.requester)),
            ("Image", f"`{escape(request.registry)}/{escape(_image_short(request))}`"),
            # half-width fields: the short digest (the full one is in `show` and `request`)
            ("Digest", f"`{fmt.short_digest(request.digest)}`"),
            ("Will delete", ("manifest and tags " if request.manifest else "tag ") + going),
        ]
    fields = [*head, ("Reason", escape(request.reason)[:FIELD_MAX])]
    if request.state is State.PENDING:
        fields.append(("Expires", slack_date(request.expires_at)))
    elif request.decided_by and request.finished_at:
        who = "the bot" if request.decided_by == "acrbot" else _person(request.decided_by)
        fields.append(
            ("Decided", f"{request.state.value} by {who}, {slack_date(request.finished_at)}")
        )
    fields.append(("Approvals", approvals))
    return fields


def _person(principal: str) -> str:
    """A Slack user as a mention (resolved by Slack); anyone else (a console login, the
    retention scheduler) as plain, escaped text."""
    if principal[:1] in ("U", "W") and principal.isalnum() and principal.isupper():
        return f"<@{principal}>"
    return escape(principal)


def _image_short(request: DeletionRequest) -> str:
    image = request.image
    return (
        image.replace(request.digest, fmt.short_digest(request.digest)) if request.digest else image
    )


def state_line(request: DeletionRequest) -> str:
    line = f"{_STATE_EMOJI[request.state]} *{request.state.value}*"
    if request.decided_by and request.state in (State.DENIED, State.CANCELLED):
        line += f" by {_person(request.decided_by)}"
        if request.decision_reason:
            line += f": {escape(request.decision_reason)}"
    if request.error:
        line += f": {escape(request.error)}"
    return line


def _frees(freed: int) -> str:
    if freed:
        return f"{fmt.size(freed)} (unique blobs only it holds)"
    return "nothing by itself: untagged images stay until a purge with `--untagged`"


def _title(request: DeletionRequest) -> str:
    if request.forced is not None:
        return "Forced undo request"
    return "Purge request" if request.is_purge else "Deletion request"


def request_card(
    request: DeletionRequest,
    *,
    policy: str | None = None,
    typed: bool = False,
    undo_window: timedelta | None = None,
) -> Message:
    """The card posted in the channel; buttons only while the request can be decided, and
    once done, an Undo button (with ``undo_window``) that says until when it is possible.
    ``policy``: the rule that governs it and what it still needs (handlers/requests/
    rules_gate.py), drawn under the facts; ``typed``: Approve opens the modal that asks for
    the repository name (confirm = "type") instead of a confirmation dialog."""
    title = _title(request)
    blocks: list[Block] = [
        HeaderBlock(text=f"{title} #{request.id}"),
        SectionBlock(
            fields=[MarkdownTextObject(text=f"*{k}*\n{v}") for k, v in request_fields(request)]
        ),
        ContextBlock(elements=[MarkdownTextObject(text=state_line(request))]),
    ]
    if policy:
        blocks.insert(2, ContextBlock(elements=[MarkdownTextObject(text=escape(policy)[:2000])]))
    if request.state is State.PENDING:
        what = (
            totals_text(request.spec)
            if request.spec is not None
            else "no image: it moves tags pushed again since back to what was deleted"
            if request.forced is not None
            else ("the image and " if request.manifest else "")
            + (f"{len(request.tags):,} tags" if len(request.tags) > 1 else f"tag {request.tag}")
            + f" from {request.registry}/{request.repository}"
        )
        confirm = ConfirmObject(
            title="Approve and delete?",
            text=f"Approving may run it now: it deletes {what}."[:300],
            confirm="Approve",
            deny="Cancel",
            style="danger",
        )
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Approve",
                        action_id=APPROVE_TYPED if typed else APPROVE,
                        value=str(request.id),
                        style="primary",
                        confirm=None if typed else confirm,
                    ),
                    ButtonElement(
                        text="Deny", action_id=DENY, value=str(request.id), style="danger"
                    ),
                ]
            )
        )
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text="Owners: click, or reply in this thread with `@acrbot approve` or "
                        "`@acrbot deny <reason>`. The requester cannot approve their own "
                        "request."
                    )
                ]
            )
        )
    # A forced undo deletes nothing (no snapshot): nothing to undo.
    if (
        request.state is State.DONE
        and undo_window is not None
        and request.finished_at
        and request.forced is None
    ):
        blocks += undo_blocks(request, request.finished_at + undo_window)
    text = (
        f"{title} #{request.id} by {_person(request.requester)}: {escape(request.target)} "
        f"({request.state.value})"
    )
    return Message(text=text, blocks=[b.to_dict() for b in blocks])


def undo_blocks(request: DeletionRequest, until: datetime) -> list[Block]:
    """The Undo button of a done card: its confirmation names what comes back; the line
    under it says until when (after that `undo` refuses and says the window closed)."""
    if request.is_purge:
        what = f"what purge #{request.id} deleted ({request.note or 'every item'})"
    elif request.manifest:
        what = f"the image {request.repository}@{fmt.short_digest(request.digest)} with " + (
            f"its tags {', '.join(request.tags[:5])}" if request.tags else "no tag"
        )
    else:
        what = f"the tag {request.repository}:{request.tag}"
    confirm = ConfirmObject(
        title="Undo this deletion?",
        text=(
            f"Puts back {what} from the bot's snapshot, as you. A tag pushed again since is "
            "left alone."
        )[:300],
        confirm="Undo",
        deny="Cancel",
    )
    return [
        ActionsBlock(
            elements=[
                ButtonElement(text="Undo", action_id=UNDO, value=str(request.id), confirm=confirm)
            ]
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"The requester or an owner can undo this until {slack_date(until)} "
                    f"(`/acr undo {request.id} --reason …`, `--only REGEX` for part of it)."
                )
            ]
        ),
    ]


def outcome_text(request: DeletionRequest) -> str:
    """The line posted in the card's thread when the request reaches a final state."""
    if request.is_purge and request.state is State.DONE:
        approvers = ", ".join(_person(a.approver) for a in request.approvals)
        return (
            f":white_check_mark: Purge done: {escape(request.note or '')} (approved by "
            f"{approvers}). `/acr request {request.id}` lists every item with its outcome."
        )
    if request.state is State.DONE:
        gone = _names(request.tags, request.id) or request.digest
        approvers = ", ".join(_person(a.approver) for a in request.approvals)
        return (
            f":white_check_mark: Done: deleted {gone} from "
            f"`{escape(request.registry)}/{escape(request.repository)}` "
            f"(approved by {approvers})."
        )
    if request.state is State.DENIED:
        return (
            f":no_entry: Denied by {_person(request.decided_by or '')}: "
            f"{escape(request.decision_reason or '')}"
        )
    if request.state is State.CANCELLED:
        return f":wastebasket: Cancelled by {_person(request.decided_by or '')}."
    if request.state is State.EXPIRED:
        return (
            f":hourglass: Expired {slack_date(request.expires_at)} with "
            f"{len(request.approvals)} of {request.required} approvals; nothing was deleted."
        )
    return f":x: Failed: {escape(request.error or 'unknown error')}"


def home_view(
    *, user: str, grants: list[str], actionable: list[DeletionRequest], mine: list[DeletionRequest]
) -> dict[str, Any]:
    """The App Home tab: the caller's roles and the pending requests they can act on."""
    blocks: list[dict[str, Any]] = [
        HeaderBlock(text="acr-chatops").to_dict(),
        section(
            (
                f"*Your roles, <@{user}>:* "
                + (
                    "; ".join(f"`{escape(g)}`" for g in grants)
                    if grants
                    else "none yet — ask an owner for one."
                )
            )[:MAX_TEXT]
        ),
        HeaderBlock(text="Waiting for you").to_dict(),
    ]
    if not actionable:
        blocks.append(section("Nothing needs your approval."))
    for request in actionable[:10]:
        card = request_card(request)
        blocks.append(section(f"*{_title(request)} #{request.id}*"))
        blocks.extend(
            b for b in card.blocks[1:] if b["type"] != "context" or "Owners:" not in str(b)
        )
        blocks.append(DividerBlock().to_dict())
    if len(actionable) > 10:
        blocks.append(section(f"…and {len(actionable) - 10} more: `/acr requests`."))
    if mine:
        blocks.append(HeaderBlock(text="Your pending requests").to_dict())
        blocks.extend(
            section(
                f"#{r.id} `{escape(r.target)}` — {len(r.approvals)} of "
                f"{r.required} approvals, expires {slack_date(r.expires_at)}"
            )
            for r in mine[:10]
        )
    return {"type": "home", "blocks": blocks[:100]}


def confirm_view(request: DeletionRequest, *, word: str, channel: str | None) -> dict[str, Any]:
    """The modal of confirm = "type": the approver types ``word`` (the repository name);
    what they typed goes to `approve ID --confirm …`, which approves only on an exact match."""
    return {
        "type": "modal",
        "callback_id": CONFIRM_VIEW,
        "private_metadata": json.dumps({"request": request.id, "channel": channel}),
        "title": {"type": "plain_text", "text": f"Approve #{request.id}"[:24]},
        "submit": {"type": "plain_text", "text": "Approve"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(
                f"Approving may run it now: it deletes from *{escape(request.target)}*. "
                f"Type *{escape(word)}* to confirm."[:MAX_TEXT]
            ),
            {
                "type": "input",
                "block_id": "confirm",
                "label": {"type": "plain_text", "text": "Repository name"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "confirm",
                    "max_length": 255,
                },
            },
        ],
    }
