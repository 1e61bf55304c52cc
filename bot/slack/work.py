"""The work behind each Slack job: run the core, answer in Slack, keep cards in sync.

This runs after the ack, in the worker (a thread pool, or the worker process `acrbot serve`
starts), so nothing here is on Slack's 3-second clock. Decisions go through the same Dispatcher
as typed commands: a click is authorized exactly like `/acr approve ID` by the same user.
"""

from __future__ import annotations

import json
import logging
import secrets
import shlex
import threading
from collections import OrderedDict
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.cards import FINAL, Cards, Deliveries
from bot.commands import OWN
from bot.dispatch import Dispatcher
from bot.policy import Scope, allows
from bot.redaction import REDACTOR
from bot.replies import Reply
from bot.requests import State
from bot.slack import blocks, jobs
from bot.slack.jobs import Job
from bot.slack.paging import PageState, neighbours
from bot.slack.progress import StillWorking

log = logging.getLogger(__name__)
PUBLIC_FLAG = "--public"


def strip_public(text: str) -> tuple[str, bool]:
    """`--public` is Slack's own option (post in the channel); the core never sees it."""
    words = text.split()
    if PUBLIC_FLAG not in words:
        return text, False
    return " ".join(w for w in words if w != PUBLIC_FLAG), True


class RecentKeys:
    """The last ``size`` keys seen, in memory (a bounded, thread-safe set)."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, key: object) -> bool:
        if not key:
            return True
        with self._lock:
            if key in self._keys:
                return False
            self._keys[str(key)] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return True


class SlackWork:
    """Runs jobs for one Dispatcher and answers through one WebClient."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        client: WebClient,
        still_working_after: float = 2.0,
    ) -> None:
        self.dispatcher = dispatcher
        self.ctx = dispatcher.ctx
        self.client = client
        self.still_working_after = still_working_after
        self.cards = Cards(self.ctx.store)
        self.deliveries = Deliveries(self.ctx.store)
        self.recent = RecentKeys()
        self._runs = {
            jobs.COMMAND: self._command,
            jobs.DECIDE: self._decide,
            jobs.OPEN_DENY: self._open_deny_modal,
            jobs.PAGE: self._page,
            jobs.MORE: self._more,
            jobs.THREAD_REPLY: self._thread_reply,
            jobs.HOME: lambda data: self.publish_home(data["user"]),
        }

    def run(self, job: Job) -> None:
        """Run one job; a failure is logged with a reference, never raised into the pool."""
        try:
            if self.first_time(job):
                self._runs[job.kind](job.data)
            else:
                log.info("duplicate delivery %s ignored", job.event_id or job.trigger_id)
        except Exception:
            log.exception("slack job %s failed (ref %s)", job.kind, secrets.token_hex(4))

    def first_time(self, job: Job) -> bool:
        """False for a delivery handled before (Slack's `X-Slack-Retry-Num` retries).

        A double click is two clicks with two trigger ids: the request state machine makes
        the second harmless.
        """
        if job.event_id:
            return self.deliveries.first_time(job.event_id, now=self.ctx.clock())
        return self.recent.first_time(job.trigger_id)

    # -- /acr ------------------------------------------------------------------------------

    def _command(self, command: dict[str, Any]) -> None:
        user, channel = command["user_id"], command["channel_id"]
        respond = Respond(response_url=command.get("response_url"))
        text, public = strip_public(command.get("text", ""))
        note = self._still_working(respond)
        try:
            reply = self.dispatcher.handle(text, user=user, progress=note)
        finally:
            replace = note.finish()
        if reply.secret is not None:
            self._deliver_secret(reply, respond, channel=channel, user=user)
        elif (
            reply.ok
            and reply.request is not None
            and reply.request.state is State.PENDING
            and self.cards.get(reply.request.id) is None
        ):
            self._post_card(reply, respond, channel=channel)
        else:
            if reply.ok and reply.request is not None:
                self.sync(reply.request.id, line=self._decision_line(user, reply))
            self._respond(reply, respond, public=public and reply.ok, replace=replace)

    def _deliver_secret(self, reply: Reply, respond: Respond, *, channel: str, user: str) -> None:
        """The secret goes to the caller only; the channel hears that it happened."""
        REDACTOR.add(reply.secret or "")
        first = blocks.reply_message(reply)
        secret = blocks.escape(reply.secret or "")
        respond(
            response_type="ephemeral",
            replace_original=False,
            text=first.text,
            blocks=[
                *first.blocks,
                blocks.section(f":key: New value, shown once and only to you: `{secret}`"),
            ],
        )
        announcement = f":key: <@{user}> {blocks.escape(reply.text)}"
        if reply.notes:
            announcement += " " + " ".join(blocks.escape(n) for n in reply.notes)
        self.client.chat_postMessage(channel=channel, text=announcement)

    def _post_card(self, reply: Reply, respond: Respond, *, channel: str) -> None:
        request = reply.request
        assert request is not None
        card = blocks.request_card(request)
        try:
            posted = self.client.chat_postMessage(
                channel=channel, text=card.text, blocks=card.blocks
            )
        except SlackApiError as exc:
            respond(
                response_type="ephemeral",
                text=(
                    f":warning: Request #{request.id} is recorded, but I could not post its card "
                    f"here ({exc.response.get('error')}). Invite me to the channel, or approvers "
                    f"can use `/acr approve {request.id}`."
                ),
            )
            return
        self.cards.save(request.id, channel=posted["channel"], ts=posted["ts"])
        respond(
            response_type="ephemeral",
            text=(
                f":white_check_mark: Request #{request.id} posted in this channel; approvers "
                "decide in its thread."
            ),
        )

    def _still_working(self, respond: Respond, *, in_place: bool = False) -> StillWorking:
        """``in_place``: the note replaces the message clicked (a page being turned)."""

        def post(text: str, replace: bool) -> None:
            respond(response_type="ephemeral", replace_original=replace or in_place, text=text)

        return StillWorking(post, first_after=self.still_working_after).start()

    def _respond(
        self,
        reply: Reply,
        respond: Respond,
        *,
        public: bool,
        replace: bool = False,
        back: list[str | None] | None = None,
    ) -> None:
        """One message; a page of a listing gets Previous/Next buttons that carry the way."""
        previous = following = None
        if reply.ok and reply.paging is not None:
            previous, following = neighbours(reply.paging, back=back or [], public=public)
        message = blocks.reply_message(reply, previous=previous, following=following)
        respond(
            response_type="in_channel" if public else "ephemeral",
            replace_original=replace,
            text=message.text,
            blocks=message.blocks,
        )

    @staticmethod
    def _decision_line(user: str, reply: Reply) -> str | None:
        request = reply.request
        if request is None or request.state is not State.PENDING:
            return None
        return f":+1: <@{user}> approved ({len(request.approvals)} of {request.required})."

    # -- buttons ---------------------------------------------------------------------------

    def _open_deny_modal(self, data: dict[str, Any]) -> None:
        request_id = data["request"]
        where = {"request": request_id, "channel": data.get("channel")}
        self.client.views_open(
            trigger_id=data["trigger_id"],
            view={
                "type": "modal",
                "callback_id": blocks.DENY_VIEW,
                "private_metadata": json.dumps(where),
                "title": {"type": "plain_text", "text": f"Deny request #{request_id}"},
                "submit": {"type": "plain_text", "text": "Deny"},
                "close": {"type": "plain_text", "text": "Cancel"},
                "blocks": [
                    {
                        "type": "input",
                        "block_id": "reason",
                        "label": {
                            "type": "plain_text",
                            "text": "Why? (posted in the request's thread)",
                        },
                        "element": {
                            "type": "plain_text_input",
                            "action_id": "reason",
                            "max_length": 500,
                        },
                    }
                ],
            },
        )

    def _decide(self, data: dict[str, Any]) -> None:
        """Run a decision as the deciding user; refusals go back to that user only."""
        user, channel = data["user"], data.get("channel")
        reply = self.dispatcher.handle(data["command"], user=user)
        if not reply.ok:
            text = f":x: {blocks.escape(reply.text)}"
            if channel:
                self.client.chat_postEphemeral(channel=channel, user=user, text=text)
            else:
                self.client.chat_postMessage(channel=user, text=text)
        elif reply.request is not None:
            line = self._decision_line(user, reply)
            self.sync(reply.request.id, line=line)
        if channel is None:
            self.publish_home(user)

    def _page(self, data: dict[str, Any]) -> None:
        """Previous/Next: re-run the listing from the button's cursor as the clicking user,
        and replace the message in place. A refusal goes to that user only."""
        respond = Respond(response_url=data.get("response_url"))
        state = PageState.decode(data.get("value", ""))
        if state is None:
            respond(
                response_type="ephemeral",
                replace_original=False,
                text=":x: That page link is damaged; run the command again.",
            )
            return
        note = self._still_working(respond, in_place=True)
        try:
            reply = self.dispatcher.handle(state.command, user=data["user"], progress=note)
        finally:
            posted = note.finish()
        if not reply.ok:
            self._respond(reply, respond, public=False, replace=posted)
            return
        self._respond(reply, respond, public=state.public, replace=True, back=state.back)

    def _more(self, data: dict[str, Any]) -> None:
        """A "More" button from an earlier release: its pages lived in memory and are gone."""
        Respond(response_url=data.get("response_url"))(
            response_type="ephemeral",
            replace_original=False,
            text="That list has expired; run the command again (lists now page with "
            "Previous/Next).",
        )

    # -- thread replies --------------------------------------------------------------------

    def _thread_reply(self, event: dict[str, Any]) -> None:
        card = self.cards.find(event["channel"], event["thread_ts"])
        if card is None:
            return
        words = (event.get("text") or "").split()
        while words and words[0].startswith("<@"):  # "@acrbot approve"
            words.pop(0)
        if not words or words[0].lower() not in ("approve", "deny"):
            return  # discussion
        verb, rest = words[0].lower(), " ".join(words[1:])
        user = event["user"]
        if verb == "deny" and not rest:
            self.client.chat_postEphemeral(
                channel=event["channel"],
                user=user,
                thread_ts=card.ts,
                text=":x: Say why: reply `deny <reason>`.",
            )
            return
        command = f"{verb} {card.request_id}"
        if rest:
            command += f" --reason {shlex.quote(rest)}"
        self._decide({"user": user, "channel": event["channel"], "command": command})

    # -- card, thread and requester --------------------------------------------------------

    def sync(self, request_id: int, *, line: str | None = None) -> None:
        """Redraw the card; post ``line`` and, once, the final outcome in its thread."""
        card = self.cards.get(request_id)
        request = self.ctx.requests.get(request_id)
        if card is None:
            return
        drawn = blocks.request_card(request)
        self.client.chat_update(
            channel=card.channel, ts=card.ts, text=drawn.text, blocks=drawn.blocks
        )
        if line:
            self.client.chat_postMessage(channel=card.channel, thread_ts=card.ts, text=line)
        if request.state in FINAL and self.cards.claim_announcement(request_id, request.state):
            try:
                outcome = blocks.outcome_text(request)
                self.client.chat_postMessage(channel=card.channel, thread_ts=card.ts, text=outcome)
                self.client.chat_postMessage(
                    channel=request.requester,
                    text=f"Your deletion request #{request.id} ({blocks.escape(request.target)}):"
                    f" {outcome}",
                )
            except SlackApiError:
                self.cards.release_announcement(request_id)
                raise

    def sweep(self) -> None:
        """Expire overdue requests and announce every outcome not yet announced."""
        self.ctx.requests.expire_due()
        for request_id in self.cards.unannounced():
            try:
                self.sync(request_id)
            except SlackApiError as exc:
                log.warning(
                    "could not announce request #%s: %s", request_id, exc.response.get("error")
                )
        self.deliveries.prune(older_than=Deliveries.horizon(self.ctx.clock()))

    # -- App Home --------------------------------------------------------------------------

    def publish_home(self, user: str) -> None:
        grants = self.ctx.roles.grants_for(user)
        pending = self.ctx.requests.list(states=[State.PENDING])
        actionable = [
            r
            for r in pending
            if r.requester != user
            and user not in {a.approver for a in r.approvals}
            and allows(grants, OWN, Scope.REQUEST, registry=r.registry, repository=r.repository)
        ]
        mine = [r for r in pending if r.requester == user]
        self.client.views_publish(
            user_id=user,
            view=blocks.home_view(
                user=user, grants=[str(g) for g in grants], actionable=actionable, mine=mine
            ),
        )
