"""Deliver the outbox to Slack: cards, thread lines, outcomes, command replies.

One thread in the worker takes due outbox rows in order and sends each; a destination that
fails does not hold the others up. What Slack answers decides what happens next:
- 429: try again after its Retry-After; 5xx and network errors: back off (1 s, 2 s, … 60 s).
- Errors that no retry can fix (`invalid_blocks`, `channel_not_found`, `not_in_channel`, an
  expired response_url, …) end the row as failed, logged; a card that cannot be posted is
  reported to its requester instead.
Written by hand because slack_sdk's retry handlers retry inside one call (blocking the caller,
and re-sending a chat.postMessage whose answer was lost), while an outbox row must outlive the
process; the response_url has no retry handler at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.kernel.context import Context
from bot.ops import observe
from bot.slack import blocks
from bot.state import announce
from bot.state.cards import Cards
from bot.state.dbhealth import HEALTH
from bot.state.outbox import Item, Outbox
from handlers.requests import rules_gate

log = logging.getLogger(__name__)
RESPOND = "respond"  # payload: url, message (text, blocks, response_type, replace_original)
PROGRESS = "progress"  # payload: request (a purge): one thread message, edited in place
EPHEMERAL = "ephemeral"  # payload: channel, user, text, thread_ts
DM = "dm"  # payload: user, text
# payload: channel, thread_ts, title, comment, rows (bot/core/usage.py chart_rows). The PNG is
# drawn from the rows when the row is sent, not stored: a chart is ~40 KB of PNG against
# ~2 KB of rows, and the outbox keeps sent rows a week (drawing again on a retry costs
# ~0.1 s of the worker's CPU, never the acking process's).
CHART = "chart"
PERMANENT = frozenset(
    {
        "invalid_blocks",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "user_not_found",
        "user_not_in_channel",
        "cannot_dm_bot",
        "message_not_found",
        "cant_update_message",
        "missing_scope",
        "used_url",
        "expired_url",
        "no_service",
    }
)
# Slack refusing the bot itself, not one message: the outbox is held (nothing is failed) and
# `auth.test` is asked again with backoff until the token works again.
AUTH_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
AUTH_FIRST_CHECK, AUTH_MAX_CHECK = 1.0, 30.0  # seconds between two auth.test while held
# What any replica may deliver without the `delivery` lease (bot/state/leases.py): each row is
# the only message to its destination (a command's reply to its own response_url, a refusal,
# an apology), so no other row can overtake it. A request's card, the lines in its thread and
# App Home views are ordered (a line waits for its card through `after`, but two lines of one
# thread, or two redraws of one Home, would race between two deliverers): the lease holder
# alone sends those, in id order, one at a time.
UNORDERED = (RESPOND, EPHEMERAL, DM)
MAX_AGE = timedelta(hours=24)  # give up on a row after this long (replies: 30 min)
REPLY_AGE = timedelta(minutes=30)


class Retry(Exception):
    """Try this row again ``after`` seconds from now (None: back off by its attempts)."""

    def __init__(self, after: float | None, error: str) -> None:
        super().__init__(error)
        self.after, self.error = after, error


class Permanent(Exception):
    pass


class AuthRefused(Exception):
    """Slack refuses the token (revoked, invalid, app uninstalled): hold the outbox."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class SlackDelivery:
    def __init__(
        self,
        ctx: Context,
        client: WebClient,
        outbox: Outbox,
        *,
        publish_home: Callable[[str], None] | None = None,
        owners_of: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.ctx, self.client, self.outbox = ctx, client, outbox
        self.cards = Cards(ctx.store)
        self._publish_home = publish_home
        self._owners_of = owners_of
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time (the loop, or a test's direct call)
        self.held: str | None = None  # Slack's error while it refuses the token
        self._check_every = AUTH_FIRST_CHECK
        self._next_check = 0.0
        # Whether this process may send the ordered rows (the `delivery` lease); a single
        # process (the console, tests) always may.
        self.ordered: Callable[[], bool] = lambda: True
        outbox.on_put = self._wake.set
        self._senders: dict[str, Callable[[dict[str, Any]], None]] = {
            announce.CARD: self._card,
            announce.LINE: self._line,
            announce.OUTCOME: self._outcome,
            announce.HOME: lambda p: self._home(p["user"]),
            announce.HOMES: self._homes,
            PROGRESS: self._progress,
            RESPOND: self._respond,
            EPHEMERAL: self._ephemeral,
            DM: self._dm,
            announce.POST: self._post,
            CHART: self._chart,
        }

    # -- running ---------------------------------------------------------------------------

    def start(self, *, poll: float = 1.0) -> SlackDelivery:
        """Deliver in the background: at once when this process adds a row, else every
        ``poll`` seconds (rows added by other processes: a notebook, the console)."""

        held = self.outbox.held()  # held by the last process: ask auth.test first
        if held is not None:
            self.held, self._next_check = held["error"], 0.0

        def loop() -> None:
            while not self._stopping.is_set():
                self._wake.wait(poll)
                self._wake.clear()
                try:
                    if self.held is not None:
                        self.check_auth()
                    while self.deliver_due() and not self._stopping.is_set():
                        pass
                except Exception as exc:
                    if not HEALTH.guard(exc, doing="deliver the outbox"):
                        log.exception("outbox delivery failed; trying again in %ss", poll)

        self._thread = threading.Thread(target=loop, name="acr-outbox", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, then deliver once more what is due (what the last jobs queued)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.deliver_due(draining=True)
        except Exception:
            log.exception("could not deliver the last messages; they wait for the next start")

    def deliver_due(self, *, draining: bool = False) -> int:
        """Send every due row once; return how many were handled (sent or given up)."""
        with self._lock:
            handled = 0
            # While Slack refuses the token only response_url posts (they carry no token) go;
            # without the delivery lease, only the rows whose order does not matter.
            ordered = self.ordered()
            kinds = (RESPOND,) if self.held else None if ordered else UNORDERED
            for item in self.outbox.due(kinds=kinds):
                if self._stopping.is_set() and not draining:
                    break
                if self.held is not None and item.kind != RESPOND:
                    continue  # held since this pass began
                if item.kind not in UNORDERED and not self.ordered():
                    break  # the lease was lost during this pass
                handled += self._deliver(item)
            return handled

    # -- holding while Slack refuses the token -------------------------------------------

    def _hold(self, error: str) -> None:
        if self.held is None:
            log.error(
                "Slack refuses the bot token (%s): holding the outbox (%s messages wait); "
                "checking auth.test again with backoff",
                error,
                self.outbox.pending(),
            )
            self._check_every = AUTH_FIRST_CHECK
        self.held = error
        self._next_check = time.monotonic() + self._check_every
        self.outbox.hold(error)

    def check_auth(self) -> bool:
        """While held: ask `auth.test` when the backoff allows; True once Slack takes the
        token again (the hold is released and delivery goes on)."""
        if time.monotonic() < self._next_check:
            return False
        try:
            self.client.auth_test()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            self._check_every = min(self._check_every * 2, AUTH_MAX_CHECK)
            if error in AUTH_REFUSED:
                self._hold(error)
            else:  # Slack failing otherwise: ask again later, still held
                self._next_check = time.monotonic() + self._check_every
            log.info("auth.test: %s; again in %.0f s", error, self._check_every)
            return False
        except (URLError, OSError, TimeoutError):
            self._check_every = min(self._check_every * 2, AUTH_MAX_CHECK)
            self._next_check = time.monotonic() + self._check_every
            return False
        self.outbox.release()
        log.warning(
            "Slack takes the bot token again: delivering the %s waiting messages",
            self.outbox.pending(),
        )
        self.held = None
        return True

    def _deliver(self, item: Item) -> int:
        if self._expired(item):
            self.outbox.fail(item, "expired before it could be delivered")
            log.warning("outbox %s expired undelivered", item.key)
            return 1
        sender = self._senders.get(item.kind)
        if sender is None:
            self.outbox.fail(item, f"unknown kind {item.kind}")
            return 1
        if not self.outbox.claim(item):
            return 0  # another deliverer took it since it was read
        try:
            sender(item.payload)
        except AuthRefused as exc:  # not this message's fault: it waits, due at once
            self.outbox.retry(item, after=0, error=exc.error)
            self._hold(exc.error)
            return 0
        except Retry as exc:
            after = exc.after if exc.after is not None else _backoff(item.attempts)
            self.outbox.retry(item, after=after, error=exc.error)
            log.info("outbox %s: %s; again in %.1fs", item.key, exc.error, after)
            return 0
        except Permanent as exc:
            self.outbox.fail(item, str(exc))
            log.warning("outbox %s failed for good: %s", item.key, exc)
            self._gave_up(item, str(exc))
            return 1
        except Exception as exc:  # a bug or the database: release it, try again later
            self.outbox.retry(item, after=_backoff(item.attempts), error=type(exc).__name__)
            raise
        self.outbox.sent(item)
        observe.delivered(item.key, item.kind)
        return 1

    def _expired(self, item: Item) -> bool:
        age = datetime.now(UTC) - item.created_at
        return age > (REPLY_AGE if item.kind == RESPOND else MAX_AGE)

    def _gave_up(self, item: Item, error: str) -> None:
        """A card that cannot be posted: tell its requester, where the card was meant to be."""
        if item.kind != announce.CARD or self.cards.get(item.payload["request"]) is not None:
            return
        request = self.ctx.requests.get(item.payload["request"])
        self.outbox.put(
            f"cardfail:{request.id}",
            DM,
            {
                "user": request.requester,
                "text": f":warning: The card of your request #{request.id} could not be posted "
                f"in <#{item.payload['channel']}> ({error}). Invite me there; approvers can "
                f"still use `/acr approve {request.id}`.",
            },
        )

    # -- calling Slack ---------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except SlackApiError as exc:
            raise _classify(
                exc.response.status_code, exc.response.headers, exc.response.get("error")
            ) from None
        except (URLError, OSError, TimeoutError) as exc:
            raise Retry(None, f"network: {exc.__class__.__name__}") from None

    # -- senders ---------------------------------------------------------------------------

    def _card(self, payload: dict[str, Any]) -> None:
        request = self.ctx.requests.get(payload["request"])
        policy = rules_gate.policy_field(self.ctx, request)
        drawn = blocks.request_card(
            request,
            policy=policy[1] if policy else None,
            typed=rules_gate.terms_of(self.ctx, request).confirm,
            undo_window=self.ctx.config.undo_window,
        )
        card = self.cards.get(request.id)
        if card is None:
            posted = self._call(
                self.client.chat_postMessage,
                channel=payload["channel"],
                text=drawn.text,
                blocks=drawn.blocks,
            )
            self.cards.save(request.id, channel=posted["channel"], ts=posted["ts"])
        else:
            self._call(
                self.client.chat_update,
                channel=card.channel,
                ts=card.ts,
                text=drawn.text,
                blocks=drawn.blocks,
            )

    def _line(self, payload: dict[str, Any]) -> None:
        card = self.cards.get(payload["request"])
        if card is None:
            raise Permanent("the request has no card to reply under")
        request = self.ctx.requests.get(payload["request"])
        text = (
            f":+1: <@{payload['approver']}> approved "
            f"({len(request.approvals)} of {request.required})."
            if payload.get("line") == "approved"
            else blocks.escape(str(payload.get("text", "")))
        )
        self._call(self.client.chat_postMessage, channel=card.channel, thread_ts=card.ts, text=text)

    def _outcome(self, payload: dict[str, Any]) -> None:
        request = self.ctx.requests.get(payload["request"])
        outcome = blocks.outcome_text(request)
        if payload["to"] == "thread":
            card = self.cards.get(request.id)
            if card is None:
                raise Permanent("the request has no card to reply under")
            self._call(
                self.client.chat_postMessage, channel=card.channel, thread_ts=card.ts, text=outcome
            )
            return
        if not _is_slack_user(request.requester):
            return  # made from the console or a notebook by a non-Slack id: nobody to DM
        self._call(
            self.client.chat_postMessage,
            channel=request.requester,
            text=f"Your {'purge' if request.is_purge else 'deletion'} request #{request.id} "
            f"({blocks.escape(request.target)}): "
            f"{outcome}",
        )

    def _progress(self, payload: dict[str, Any]) -> None:
        """The purge's progress, one message in the card's thread edited in place."""
        request_id = payload["request"]
        card = self.cards.get(request_id)
        if card is None:
            raise Permanent("the request has no card to reply under")
        counts = self.ctx.purges.counts(request_id)
        total = sum(counts.values())
        done = total - counts["pending"] - counts["sending"]
        text = (
            f":hourglass_flowing_sand: Purging: {done:,} / {total:,} done "
            f"({counts['deleted'] + counts['gone']:,} deleted, {counts['skipped']:,} skipped, "
            f"{counts['failed']:,} failed)"
        )
        if done == total:
            text = text.replace(":hourglass_flowing_sand: Purging", ":checkered_flag: Purged")
        key = f"progress:{request_id}"
        row = self.ctx.store.db.execute(
            "select channel, ts from messages where key = ?", [key]
        ).fetchone()
        if row is None:
            posted = self._call(
                self.client.chat_postMessage, channel=card.channel, thread_ts=card.ts, text=text
            )
            with self.ctx.store.transaction() as db:
                db.execute(
                    "insert into messages (key, channel, ts) values (?, ?, ?) on conflict "
                    "(key) do update set channel = excluded.channel, ts = excluded.ts",
                    [key, posted["channel"], posted["ts"]],
                )
        else:
            self._call(self.client.chat_update, channel=row[0], ts=row[1], text=text)

    def _respond(self, payload: dict[str, Any]) -> None:
        try:
            response = WebhookClient(payload["url"], timeout=10).send_dict(payload["message"])
        except (URLError, OSError, TimeoutError) as exc:
            raise Retry(None, f"network: {exc.__class__.__name__}") from None
        if response.status_code == 200:
            return
        raise _classify(response.status_code, response.headers, (response.body or "").strip())

    def _ephemeral(self, payload: dict[str, Any]) -> None:
        self._call(self.client.chat_postEphemeral, **payload)

    def _post(self, payload: dict[str, Any]) -> None:
        """A line for a channel (registry events: watch lines, summaries, drift alerts)."""
        self._call(
            self.client.chat_postMessage,
            channel=payload["channel"],
            text=blocks.escape(payload["text"]),
            unfurl_links=False,
        )

    def _dm(self, payload: dict[str, Any]) -> None:
        if _is_slack_user(payload["user"]):
            self._call(self.client.chat_postMessage, channel=payload["user"], text=payload["text"])

    def _chart(self, payload: dict[str, Any]) -> None:
        """`report`'s chart, uploaded with files_upload_v2 (files.getUploadURLExternal, the
        bytes, files.completeUploadExternal; `files.upload` is retired), its numbers in the
        comment beside it and in its alt text for screen readers. A failure of the bytes'
        POST (slack_sdk's SlackRequestError) is retried like a network error: the file was
        not shared, and a new upload starts over."""
        from slack_sdk.errors import SlackRequestError

        from bot import usage_chart

        rows, title = payload["rows"], payload["title"]
        try:
            self._call(
                self.client.files_upload_v2,
                channel=payload["channel"],
                thread_ts=payload.get("thread_ts"),
                file=usage_chart.png(rows, title=title),
                filename="registry-report.png",
                title=title,
                alt_txt=usage_chart.alt_text(rows, title=title),
                initial_comment=payload["comment"],
            )
        except SlackRequestError as exc:
            raise Retry(None, f"upload: {str(exc)[:120]}") from None

    def _homes(self, payload: dict[str, Any]) -> None:
        """Redraw the App Home of every owner who can act on the request (and who has looked
        at it before or not: Slack shows it the next time they open the tab)."""
        if self._owners_of is None:
            return
        for user in self._owners_of(payload["request"])[:50]:
            self._home(user)

    def _home(self, user: str) -> None:
        if self._publish_home is not None and _is_slack_user(user):
            try:
                self._publish_home(user)
            except SlackApiError as exc:
                r = exc.response
                raise _classify(r.status_code, r.headers, r.get("error")) from None


def _is_slack_user(principal: str) -> bool:
    return principal[:1] in ("U", "W") and principal.isalnum() and principal.isupper()


def _backoff(attempt: int) -> float:
    return float(min(2**attempt, 60))


def _classify(status: int, headers: Any, error: str | None) -> Exception:
    error = error or f"HTTP {status}"
    if error in AUTH_REFUSED:
        return AuthRefused(error)
    if status == 429 or error in ("ratelimited", "rate_limited"):
        try:
            after = float(
                (headers or {}).get("Retry-After") or (headers or {}).get("retry-after") or 1
            )
        except (TypeError, ValueError):
            after = 1.0
        return Retry(max(after, 0.5), "rate limited (429)")
    if status >= 500 or error in ("internal_error", "fatal_error", "service_unavailable"):
        return Retry(None, f"Slack failed ({error})")
    if error in PERMANENT or status in (400, 403, 404, 410):
        return Permanent(error)
    return Retry(None, error)
