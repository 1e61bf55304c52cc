"""The work behind each Slack job: run the core, and record what to say in the outbox.

This runs after the ack, in the worker, so nothing here is on Slack's 3-second clock. Each job
ends in one transaction that writes the command's audit row, marks the job done and queues
its answer (bot/state/outbox.py); a job the worker died in is run again by the next worker, and its
effects are keyed by the job (``origin``), so they happen once. Decisions go through the same
Dispatcher as typed commands: a click is authorized exactly like `/acr approve ID`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.commands import OWN
from bot.core.policy import Scope, allows
from bot.core.redaction import REDACTOR
from bot.core.replies import Reply, Table
from bot.core.request_types import State
from bot.kernel.dispatch import Dispatcher
from bot.slack import blocks, handoff
from bot.slack.charts import put_chart
from bot.slack.delivery import DM, EPHEMERAL, RESPOND, SlackDelivery
from bot.slack.paging import PageState, neighbours
from bot.slack.still_working import StillWorking
from bot.state.announce import HOME
from bot.state.cards import Cards
from bot.state.dbhealth import HEALTH, DatabaseUnavailable, problem_of
from bot.state.jobqueue import JobQueue, QueuedJob
from bot.state.snapshots import Snapshots
from handlers.requests import rules_gate
from handlers.requests.break_glass import sweep_policy

log = logging.getLogger(__name__)
PUBLIC_FLAG = "--public"


def unslack(text: str) -> str:
    """Slack sends `&`, `<` and `>` typed by people as `&amp;`, `&lt;`, `&gt;` (and its own
    mentions as real `<@U…>`): decode those three once, here at the edge, so the core stores
    and audits what was typed; renderers escape again on the way out."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_public(text: str) -> tuple[str, bool]:
    """`--public` is Slack's own option (post in the channel); the core never sees it."""
    words = text.split()
    if PUBLIC_FLAG not in words:
        return text, False
    return " ".join(w for w in words if w != PUBLIC_FLAG), True


class SlackWork:
    """Runs jobs for one Dispatcher; answers through the outbox and one WebClient."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        client: WebClient,
        still_working_after: float = 1.5,
    ) -> None:
        self.dispatcher = dispatcher
        dispatcher.door = "slack"  # the audit names the door a command came through
        self.ctx = dispatcher.ctx
        self.client = client
        self.still_working_after = still_working_after
        self.cards = Cards(self.ctx.store)
        self.queue = JobQueue(self.ctx.store)
        self.outbox = self.ctx.outbox
        self.delivery = SlackDelivery(
            self.ctx,
            client,
            self.outbox,
            publish_home=self.publish_home,
            owners_of=self.owners_who_can_act,
        )
        self._runs: dict[str, Callable[[QueuedJob], None]] = {
            handoff.COMMAND: self._command,
            handoff.DECIDE: self._decide_job,
            handoff.OPEN_DENY: self._open_deny_modal,
            handoff.OPEN_CONFIRM: self._open_confirm_modal,
            handoff.PAGE: self._page,
            handoff.MORE: self._more,
            handoff.THREAD_REPLY: self._thread_reply,
            handoff.HOME: self._home,
        }

    # -- running a job ---------------------------------------------------------------------

    def run(self, job: QueuedJob) -> None:
        """Run one claimed job; it ends done whatever happens (a failure is logged with a
        reference, and the user is told when there is someone to tell)."""
        try:
            if self.queue.too_old(job):
                self._apologise(job)
                return
            self._runs[job.kind](job)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            problem = problem_of(exc)
            if problem is not None:  # nothing of it was recorded: run it again later
                HEALTH.failed(problem, doing="run a job")
                raise DatabaseUnavailable(problem) from None
            ref = secrets.token_hex(4)
            log.exception("slack job %s failed (ref %s)", job.kind, ref)
            self._failed(job, ref)
            return
        # The dispatcher never raises: a job whose end (audit row, answer, done) could not be
        # written because the database is locked or full is still queued for this worker.
        if HEALTH.problem is not None and not self.queue.is_done(job.key):
            raise DatabaseUnavailable(HEALTH.problem)

    def _apologise(self, job: QueuedJob) -> None:
        """A job older than its response_url (the bot was down): say so, do not run it."""
        with self.ctx.store.transaction():
            user = _user_of(job)
            if user is not None and job.kind == handoff.COMMAND:
                text = job.payload.get("text", "")
                self.outbox.put(
                    f"sorry:{job.key}",
                    DM,
                    {
                        "user": user,
                        "text": ":warning: Sorry: your command `/acr "
                        f"{blocks.escape(text[:200])}` arrived while I was down and is too old "
                        "to answer now. Nothing was done; please run it again.",
                    },
                )
            self.queue.finish(job.key, "expired")

    def _failed(self, job: QueuedJob, ref: str) -> None:
        url = job.payload.get("response_url")
        with self.ctx.store.transaction():
            if url:
                self._put_reply(
                    job,
                    {
                        "response_type": "ephemeral",
                        "replace_original": False,
                        "text": f":x: Something went wrong on our side (ref {ref}); nothing was "
                        "changed unless a message says so.",
                    },
                )
            self.queue.finish(job.key, "error")

    def _put_reply(self, job: QueuedJob, message: dict[str, Any], *, part: str = "") -> None:
        self.outbox.put(
            f"reply:{job.key}{part}",
            RESPOND,
            {"url": job.payload["response_url"], "message": message},
        )

    # -- /acr ------------------------------------------------------------------------------

    def _command(self, job: QueuedJob) -> None:
        command = job.payload
        user, channel = command["user_id"], command["channel_id"]
        respond = Respond(response_url=command.get("response_url"))
        text, public = strip_public(unslack(command.get("text", "")))
        note = self._still_working(job)
        secret_reply: list[Reply] = []

        def finish(reply: Reply) -> None:
            replace = note.stop()
            if reply.secret is not None:
                secret_reply.append(reply)  # never into the database: sent below, directly
                self.queue.finish(job.key)
                return
            message = self._message(reply, public=public and reply.ok, command=text)
            message["replace_original"] = replace
            self._put_reply(job, message)
            if reply.ok and reply.chart is not None:
                put_chart(self.outbox, job.key, reply, channel=channel, public=public)
            self.queue.finish(job.key)

        try:
            self.dispatcher.handle(
                text,
                user=user,
                progress=note,
                channel=channel,
                origin=job.key,
                finish=finish,
            )
        finally:
            note.stop()
        if secret_reply:
            self._deliver_secret(secret_reply[0], respond, channel=channel, user=user, job=job)

    def _message(
        self,
        reply: Reply,
        *,
        public: bool,
        command: str = "",
        back: list[str | None] | None = None,
        offset: int = 0,
    ) -> dict[str, Any]:
        """A reply as a response_url message. A page of a listing gets Previous/Next that
        re-run it from its cursor; any other table longer than a page is shown a page at a
        time, its buttons re-running ``command`` and showing the rows from an offset."""
        previous = following = None
        if reply.ok and reply.paging is not None:
            previous, following = neighbours(reply.paging, back=back or [], public=public)
        elif reply.table is not None and len(reply.table.rows) > ROWS_PER_PAGE and command:
            reply, previous, following = _table_page(reply, command, offset, public)
        if reply.ok and reply.request is not None and reply.request.state is State.PENDING:
            reply = _with_card_note(reply)
        drawn = blocks.reply_message(reply, previous=previous, following=following)
        return {
            "response_type": "in_channel" if public else "ephemeral",
            "replace_original": False,
            "text": drawn.text,
            "blocks": drawn.blocks,
        }

    def _deliver_secret(
        self, reply: Reply, respond: Respond, *, channel: str, user: str, job: QueuedJob
    ) -> None:
        """The secret goes to the caller only, straight from memory (it never touches the
        database, so it cannot wait in the outbox); the channel hears that it happened.

        The change has happened when this runs: if the value cannot be delivered (the
        response_url expired, refused or unreachable, after retries), the caller is told so by
        a durable DM (without the value), never "nothing was changed"."""
        REDACTOR.add(reply.secret or "")
        first = blocks.reply_message(reply)
        secret = blocks.escape(reply.secret or "")
        problem = _send_secret(
            respond,
            text=first.text,
            blocks=[
                *first.blocks,
                blocks.section(f":key: New value, shown once and only to you: `{secret}`"),
            ],
        )
        if problem is not None:
            log.warning("could not deliver a new secret to %s: %s", user, problem)
            with self.ctx.store.transaction():
                self.outbox.put(
                    f"secret-undelivered:{job.key}",
                    DM,
                    {
                        "user": user,
                        "text": f":warning: {blocks.escape(reply.text)} But I could not show "
                        f"you the new value ({problem}), and it is kept nowhere: nobody has "
                        "it. Run the rotation again for a value you can use.",
                    },
                )
        announcement = f":key: <@{user}> {blocks.escape(reply.text)}"
        if reply.notes:
            announcement += " " + " ".join(blocks.escape(n) for n in reply.notes)
        try:
            self.client.chat_postMessage(channel=channel, text=announcement)
        except SlackApiError as exc:
            respond(
                response_type="ephemeral",
                replace_original=False,
                text=f":warning: I could not tell the channel ({exc.response.get('error')}); "
                "let your team know the password changed.",
            )

    def _still_working(self, job: QueuedJob, *, in_place: bool = False) -> StillWorking:
        """Notes queued like answers; ``in_place``: they replace the message clicked (a page
        being turned)."""
        count = iter(range(1, 100))

        def post(text: str, replace: bool) -> None:
            message = {
                "response_type": "ephemeral",
                "replace_original": replace or in_place,
                "text": text,
            }
            self._put_reply(job, message, part=f":note{next(count)}")

        return StillWorking(
            post, guard=self.ctx.store.transaction, first_after=self.still_working_after
        ).start()

    # -- buttons ---------------------------------------------------------------------------

    def _open_deny_modal(self, job: QueuedJob) -> None:
        """A trigger_id lives 3 seconds: a re-run after a crash cannot open the modal."""
        data = job.payload
        if job.attempts > 1:
            self.queue.finish(job.key, "trigger expired")
            return
        request_id = data["request"]
        where = {"request": request_id, "channel": data.get("channel")}
        request = self.ctx.requests.get(request_id)
        about = (
            f"*{blocks.escape(request.target)}*, requested by "
            f"{blocks._person(request.requester)}: {blocks.escape(request.reason)}"
        )
        try:
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
                        blocks.section(about[: blocks.MAX_TEXT]),
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
                        },
                    ],
                },
            )
        finally:
            self.queue.finish(job.key)

    def _open_confirm_modal(self, job: QueuedJob) -> None:
        """confirm = "type": the modal asking for the repository name (a trigger_id lives 3
        seconds: a re-run after a crash cannot open it)."""
        data = job.payload
        if job.attempts > 1:
            self.queue.finish(job.key, "trigger expired")
            return
        request = self.ctx.requests.get(data["request"])
        view = blocks.confirm_view(
            request, word=rules_gate.expected_word(request), channel=data.get("channel")
        )
        try:
            self.client.views_open(trigger_id=data["trigger_id"], view=view)
        finally:
            self.queue.finish(job.key)

    def _decide_job(self, job: QueuedJob) -> None:
        self._decide(job, job.payload)

    def _decide(self, job: QueuedJob, data: dict[str, Any]) -> None:
        """Run a decision as the deciding user; refusals go back to that user only. The card,
        thread line and outcome follow from the request's change (bot/state/announce.py)."""
        user, channel = data["user"], data.get("channel")

        def finish(reply: Reply) -> None:
            if not reply.ok:
                text = f":x: {blocks.escape(reply.text)}"
                if channel:
                    payload = {"channel": channel, "user": user, "text": text}
                    if data.get("thread_ts"):
                        payload["thread_ts"] = data["thread_ts"]
                    self.outbox.put(f"refused:{job.key}", EPHEMERAL, payload)
                else:
                    self.outbox.put(f"refused:{job.key}", DM, {"user": user, "text": text})
            if channel is None:  # clicked in App Home: redraw it
                self.outbox.put(f"home:{job.key}", HOME, {"user": user})
            self.queue.finish(job.key)

        self.dispatcher.handle(
            data["command"], user=user, channel=channel, origin=job.key, finish=finish
        )

    def _page(self, job: QueuedJob) -> None:
        """Previous/Next: re-run the listing from the button's cursor as the clicking user,
        and answer that user only.

        The button's value comes back from the client, so it is checked like typed input:
        only a listing runs (`rotate`, `delete`, a purge without --dry-run are refused). The
        page is always ephemeral, and replaces the message clicked only when that message
        was the clicker's own ephemeral one: a page turned on a message in the channel is
        shown to the clicker alone, never put in the channel in their (perhaps wider) view.
        """
        data = job.payload
        state = PageState.decode(data.get("value", ""))
        in_place = data.get("ephemeral") is True
        if state is None:
            with self.ctx.store.transaction():
                self._put_reply(
                    job,
                    {
                        "response_type": "ephemeral",
                        "replace_original": False,
                        "text": ":x: That page link is damaged; run the command again.",
                    },
                )
                self.queue.finish(job.key)
            return
        note = self._still_working(job, in_place=in_place)

        def finish(reply: Reply) -> None:
            posted = note.stop()
            if reply.ok:
                message = self._message(
                    reply,
                    public=False,
                    command=state.command,
                    back=state.back,
                    offset=state.offset,
                )
                message["replace_original"] = in_place
            else:
                message = self._message(reply, public=False)
                message["replace_original"] = posted and in_place
            self._put_reply(job, message)
            self.queue.finish(job.key)

        try:
            self.dispatcher.handle(
                state.command,
                user=data["user"],
                progress=note,
                origin=job.key,
                finish=finish,
                listing_only=True,
            )
        finally:
            note.stop()

    def _more(self, job: QueuedJob) -> None:
        """A "More" button from an earlier release: its pages lived in memory and are gone."""
        with self.ctx.store.transaction():
            self._put_reply(
                job,
                {
                    "response_type": "ephemeral",
                    "replace_original": False,
                    "text": "That list has expired; run the command again (lists now page "
                    "with Previous/Next).",
                },
            )
            self.queue.finish(job.key)

    # -- thread replies --------------------------------------------------------------------

    def _thread_reply(self, job: QueuedJob) -> None:
        event = job.payload
        card = self.cards.find(event["channel"], event["thread_ts"])
        words = unslack(event.get("text") or "").split()
        while words and words[0].startswith("<@"):  # "@acrbot approve"
            words.pop(0)
        if card is None or not words or words[0].lower() not in ("approve", "deny"):
            self.queue.finish(job.key, "discussion")
            return
        verb, rest = words[0].lower(), " ".join(words[1:])
        user = event["user"]
        if verb == "deny" and not rest:
            with self.ctx.store.transaction():
                self.outbox.put(
                    f"refused:{job.key}",
                    EPHEMERAL,
                    {
                        "channel": event["channel"],
                        "user": user,
                        "thread_ts": card.ts,
                        "text": ":x: Say why: reply `@acrbot deny <reason>`.",
                    },
                )
                self.queue.finish(job.key)
            return
        command = f"{verb} {card.request_id}"
        if rest:
            command += f" --reason {shlex.quote(rest)}"
        self._decide(
            job,
            {"user": user, "channel": event["channel"], "command": command, "thread_ts": card.ts},
        )

    # -- App Home --------------------------------------------------------------------------

    def _home(self, job: QueuedJob) -> None:
        with self.ctx.store.transaction():
            self.outbox.put(f"home:{job.key}", HOME, {"user": job.payload["user"]})
            self.queue.finish(job.key)

    def owners_who_can_act(self, request_id: int) -> list[str]:
        """Slack users who hold owner on every repository of the request (not its
        requester): whose App Home lists it while it waits."""
        request = self.ctx.requests.get(request_id)
        users: set[str] = set()
        for grant in self.ctx.roles.all_grants():
            if grant.role.value == "owner" and all(
                grant.covers(request.registry, r) for r in request.repositories
            ):
                users.update(self.ctx.roles.users(grant.principal))
        users.discard(request.requester)
        return sorted(u for u in users if u[:1] in ("U", "W") and u.isupper())

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

    # -- housekeeping ----------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire overdue requests (their outcomes go to the outbox), finish requests a crash
        left in `executing`, and forget old jobs and delivered messages."""
        self.ctx.requests.expire_due()
        if self.dispatcher.recover is not None:
            self.dispatcher.recover()
        sweep_policy(self.ctx)  # [[policy]]: held by a freeze; break-glass reviews
        if self.ctx.config.retention:
            from bot.schedules.retention import run_due

            run_due(self.ctx)
        if any(d.lock_schedule for d in self.ctx.config.deployed):
            from bot.schedules.deployed_locks import run_due_locks  # [[deployed]] lock_schedule

            run_due_locks(self.ctx)
        if self.ctx.config.reports:
            from bot.schedules.reports import run_due as post_reports

            post_reports(self.ctx)
        self.queue.prune()
        self.outbox.prune()
        Snapshots(self.ctx.store, self.ctx.audit, clock=self.ctx.clock).prune()  # [undo] window


ROWS_PER_PAGE = 25


def _table_page(
    reply: Reply, command: str, offset: int, public: bool
) -> tuple[Reply, PageState | None, PageState | None]:
    """Rows ``offset``… of a long table (the header on every page), and the buttons around."""
    assert reply.table is not None
    rows = reply.table.rows
    offset = max(0, min(offset, len(rows) - 1))
    shown = rows[offset : offset + ROWS_PER_PAGE]
    note = f"Rows {offset + 1:,}–{offset + len(shown):,} of {len(rows):,}."
    page = replace(reply, table=Table(reply.table.columns, shown), notes=(note, *reply.notes))
    previous = (
        PageState(command, public=public, offset=max(0, offset - ROWS_PER_PAGE))
        if offset > 0
        else None
    )
    following = (
        PageState(command, public=public, offset=offset + ROWS_PER_PAGE)
        if offset + ROWS_PER_PAGE < len(rows)
        else None
    )
    return page, previous, following


def _with_card_note(reply: Reply) -> Reply:
    note = "Its card follows in this channel; approvers decide in its thread."
    return replace(reply, notes=(*reply.notes, note))


def _user_of(job: QueuedJob) -> str | None:
    """Who asked: `user_id` in a slash command, `user` in the other jobs' data."""
    data = job.payload
    user = data.get("user_id") or data.get("user")
    return user if isinstance(user, str) else None


SECRET_ATTEMPTS = 3  # posts of a new secret to response_url before telling the user by DM


def _send_secret(respond: Respond, **message: Any) -> str | None:
    """Post the secret to response_url: retried on 429, 5xx and connection errors (the same
    message, to the same ephemeral place: a repeat shows it twice to the same person at
    worst). None when delivered, else what went wrong (no secret in it)."""
    problem = "no attempt"
    for attempt in range(1, SECRET_ATTEMPTS + 1):
        wait = 0.5 * attempt
        try:
            response = respond(response_type="ephemeral", replace_original=False, **message)
        except Exception as exc:  # URLError, a timeout: the value may not have arrived
            problem = f"{exc.__class__.__name__} posting to response_url"
        else:
            status = getattr(response, "status_code", 200)
            if status == 200:
                return None
            problem = f"response_url answered HTTP {status}"
            if status != 429 and status < 500:
                return problem  # expired or refused: a retry gets the same answer
            retry_after = (getattr(response, "headers", None) or {}).get("Retry-After")
            with contextlib.suppress(TypeError, ValueError):
                wait = min(float(retry_after), 5.0)
        if attempt < SECRET_ATTEMPTS:
            time.sleep(wait)
    return problem
