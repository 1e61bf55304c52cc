"""Bolt listeners: record the work as a Job, then ack.

This is all the process that talks to Slack does: one INSERT into the job queue (so what was
acked survives a crash; a retried or replayed delivery is recognised by its key), no
registry, no Web API call. Slack drops what is not acked within 3 s, and a burst of commands
must not queue behind work (bench/ack_latency.py); the work runs in a worker
(bot/slack/worker.py). When too many jobs wait (a wedged worker), a command is acked with
"busy, try again" instead of being queued.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from slack_bolt import Ack, App, BoltResponse

from bot.slack import blocks, handoff
from bot.slack.handoff import Job, JobSink

BUSY = ":hourglass: I'm busy with other commands right now; try again in a moment."
# What a job keeps of Slack's payload: only what running it needs. A slash command also
# carries the legacy verification token, names and ids the job has no use for, and the jobs
# table is on disk for a day (bot/state/jobqueue.py drops even these when the job ends).
COMMAND_FIELDS = ("user_id", "channel_id", "text", "response_url")
EVENT_FIELDS = ("channel", "user", "text", "ts", "thread_ts")

LOCKED = (
    ":hourglass: I'm busy: my database is locked by another process. Nothing was recorded; "
    "try again in a moment."
)
FULL = (
    ":warning: The bot cannot record commands: its database's disk is full; tell the "
    "operator. Nothing was recorded."
)
# Bolt answers commands itself while its `auth.test` fails (a revoked or invalid token):
# this replaces its "Please install this app into the workspace" text.
AUTH_FAILING = (
    ":warning: The bot cannot act right now: Slack does not accept its token (revoked or "
    "invalid); tell the operator. Nothing was recorded."
)
UNREACHABLE = (
    ":hourglass: I'm busy: my database server cannot be reached right now (restarting?). "
    "Nothing was recorded; try again in a moment."
)
REFUSED = {
    handoff.BUSY: BUSY,
    handoff.LOCKED: LOCKED,
    handoff.FULL: FULL,
    handoff.UNREACHABLE: UNREACHABLE,
}


class Listeners:
    """The `/acr` command, the card's buttons, the deny modal, thread replies, App Home."""

    def __init__(self, sink: JobSink) -> None:
        self.sink = sink

    def register(self, app: App) -> None:
        app.command("/acr")(self.on_command)
        app.action(blocks.APPROVE)(self.on_approve)
        app.action(blocks.DENY)(self.on_deny)
        app.action(blocks.UNDO)(self.on_undo)
        app.action(blocks.PAGE_PREVIOUS)(self.on_page)
        app.action(blocks.PAGE_NEXT)(self.on_page)
        app.action(blocks.MORE)(self.on_more)
        app.view(blocks.DENY_VIEW)(self.on_deny_submitted)
        app.action(blocks.APPROVE_TYPED)(self.on_approve_typed)
        app.view(blocks.CONFIRM_VIEW)(self.on_confirm_submitted)
        app.event("app_mention")(self.on_mention)
        app.event("app_home_opened")(self.on_home_opened)

    def on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        data = {k: command[k] for k in COMMAND_FIELDS if k in command}
        status = self.sink.submit(Job(handoff.COMMAND, data, trigger_id=command.get("trigger_id")))
        if status in REFUSED:
            ack(text=REFUSED[status])
        else:
            ack()

    def on_approve(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        decision = f"approve {int(action['value'])}"
        status = self.sink.submit(
            Job(handoff.DECIDE, _decision(body, decision), trigger_id=body.get("trigger_id"))
        )
        return _ack_click(ack, status)

    def on_undo(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        """A done card's Undo (confirmed in Slack's dialog): `undo ID` as the clicker."""
        command = f'undo {int(action["value"])} --reason "the Undo button on the card"'
        status = self.sink.submit(
            Job(handoff.DECIDE, _decision(body, command), trigger_id=body.get("trigger_id"))
        )
        return _ack_click(ack, status)

    def on_deny(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        data = {
            "trigger_id": body["trigger_id"],
            "request": int(action["value"]),
            "channel": _channel(body),
        }
        status = self.sink.submit(Job(handoff.OPEN_DENY, data, trigger_id=body["trigger_id"]))
        return _ack_click(ack, status)

    def on_deny_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The modal's answer: a reason is required, and Slack shows the error in the modal."""
        reason = (view["state"]["values"]["reason"]["reason"].get("value") or "").strip()
        if not reason:
            ack(response_action="errors", errors={"reason": "Say why you deny the request."})
            return
        where = json.loads(view["private_metadata"])
        status = self.sink.submit(
            Job(
                handoff.DECIDE,
                {
                    "user": body["user"]["id"],
                    "channel": where.get("channel"),
                    "command": f"deny {int(where['request'])} --reason {shlex.quote(reason)}",
                },
                trigger_id=body.get("trigger_id"),
            )
        )
        if status in REFUSED:  # the modal stays open, saying why: the user can submit again
            ack(response_action="errors", errors={"reason": REFUSED[status][:150]})
        else:
            ack()

    def on_approve_typed(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        """Approve where a rule has confirm = "type": the worker opens the modal."""
        data = {
            "trigger_id": body["trigger_id"],
            "request": int(action["value"]),
            "channel": _channel(body),
        }
        status = self.sink.submit(Job(handoff.OPEN_CONFIRM, data, trigger_id=body["trigger_id"]))
        return _ack_click(ack, status)

    def on_confirm_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The typed repository name becomes `approve ID --confirm NAME`: the handler compares
        it (a mismatch approves nothing and says so)."""
        typed = (view["state"]["values"]["confirm"]["confirm"].get("value") or "").strip()
        if not typed:
            ack(response_action="errors", errors={"confirm": "Type the repository name."})
            return
        where = json.loads(view["private_metadata"])
        status = self.sink.submit(
            Job(
                handoff.DECIDE,
                {
                    "user": body["user"]["id"],
                    "channel": where.get("channel"),
                    "command": f"approve {int(where['request'])} --confirm {shlex.quote(typed)}",
                },
                trigger_id=body.get("trigger_id"),
            )
        )
        if status in REFUSED:
            ack(response_action="errors", errors={"confirm": REFUSED[status][:150]})
        else:
            ack()

    def on_page(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        data = {
            "user": body["user"]["id"],
            "channel": _channel(body),
            "value": action.get("value", ""),
            "response_url": body.get("response_url"),
            # Only a message the clicker alone sees may be replaced by their page.
            "ephemeral": (body.get("container") or {}).get("is_ephemeral") is True,
        }
        status = self.sink.submit(Job(handoff.PAGE, data, trigger_id=body.get("trigger_id")))
        return _ack_click(ack, status)

    def on_more(self, ack: Ack, body: dict[str, Any]) -> BoltResponse | None:
        data = {"response_url": body.get("response_url")}
        status = self.sink.submit(Job(handoff.MORE, data, trigger_id=body.get("trigger_id")))
        return _ack_click(ack, status)

    def on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """`@acrbot approve` (or deny) in a card's thread, "Also send to channel" included;
        a mention outside a thread is not a decision."""
        thread = event.get("thread_ts")
        if not thread or thread == event.get("ts") or event.get("bot_id"):
            return
        data = {k: event[k] for k in EVENT_FIELDS if k in event}
        self.sink.submit(Job(handoff.THREAD_REPLY, data, event_id=body.get("event_id")))

    def on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            self.sink.submit(
                Job(handoff.HOME, {"user": event["user"]}, event_id=body.get("event_id"))
            )


def _ack_click(ack: Ack, status: str) -> BoltResponse | None:
    """Ack a click that was recorded. One that was not (busy, database locked or full) is
    answered 503 without an ack: Slack then shows the user that the click did not go
    through, which is the truth (a block_actions ack cannot carry a message)."""
    if status in REFUSED:
        return BoltResponse(status=503, body=REFUSED[status])
    ack()
    return None


def _channel(body: dict[str, Any]) -> str | None:
    return (body.get("channel") or {}).get("id")


def _decision(body: dict[str, Any], command: str) -> dict[str, Any]:
    return {"user": body["user"]["id"], "channel": _channel(body), "command": command}
