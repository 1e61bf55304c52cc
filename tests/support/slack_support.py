"""Drive the real Bolt app over HTTP the way Slack does: signed bodies, real payload shapes."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bot.core.policy import Grant, Role
from bot.slack.service import HttpServer, SlackApp, run_in_thread
from bot.slack.worker import SlackWorker
from tests.support.fake_slack import FakeSlack

SECRET = "test-signing-secret"
TEAM = "T0001"


def post_signed(port: int, body: str, *, secret: str, timeout: float = 5) -> int:
    """POST ``body`` (form-encoded) to a serving bot's /slack/events on 127.0.0.1, signed as
    Slack signs it; the HTTP status."""
    ts = str(int(time.time()))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(
        "POST",
        "/slack/events",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
                timestamp=ts, body=body
            ),
        },
    )
    return conn.getresponse().status


def slash_command(
    port: int, *, user: str, text: str, response_url: str, trigger: str, secret: str
) -> int:
    """`/acr text` from ``user`` to a serving bot, signed; the HTTP status of the ack."""
    body = urlencode(
        {
            "command": "/acr",
            "text": text,
            "user_id": user,
            "channel_id": "C1",
            "team_id": TEAM,
            "response_url": response_url,
            "trigger_id": trigger,
        }
    )
    return post_signed(port, body, secret=secret)


class SlowRegistry:
    """A registry whose every call takes ``delay`` seconds first (a slow ACR).

    Picklable, so a worker process can be handed one (bench/ack_latency.py, tests).
    """

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner, self._delay = inner, delay
        self.name, self.kind = inner.name, inner.kind
        self.login_server, self.can_untag = inner.login_server, inner.can_untag

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # pickle looks up __setstate__ before _inner exists
            raise AttributeError(name)
        attr = getattr(self._inner, name)

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._delay)
            return attr(*args, **kwargs)

        return slow


class SlackHarness:
    def __init__(self, fake: FakeSlack, front: SlackApp, worker: SlackWorker) -> None:
        self.fake = fake
        self.worker = worker
        self.work = worker.work
        self.ctx = worker.work.ctx
        self.server = HttpServer(front, host="127.0.0.1", port=0)
        self.port = self.server.port
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    def start(self) -> SlackHarness:
        self.worker.start_background()
        self._thread = run_in_thread(self.server)
        return self

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        self.server.stop()
        self._thread.join(timeout=10)
        self.worker.stop()

    def grant(self, user: str, role: str, **scope: str) -> None:
        self.ctx.roles.grant(
            Grant(principal=user, role=Role(role), **scope), by="test", at=self.ctx.clock()
        )

    # -- raw HTTP --------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: str = "", headers: dict | None = None
    ) -> tuple[int, str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        started = time.perf_counter()
        conn.request(method, path, body=body.encode(), headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        elapsed = time.perf_counter() - started
        conn.close()
        return response.status, text, elapsed

    def signed(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str = SECRET,
        extra: dict | None = None,
    ) -> tuple[int, str, float]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            **(extra or {}),
        }
        return self.request("POST", "/slack/events", body, headers)

    # -- what Slack sends ------------------------------------------------------------------

    def command(self, user: str, text: str, *, channel: str = "C0CHAN") -> tuple[str, int]:
        """Send `/acr text`; return (the response_url name, HTTP status)."""
        name = f"cmd{next(self._ids)}"
        body = urlencode(
            {
                "token": "legacy",
                "team_id": TEAM,
                "team_domain": "acme",
                "channel_id": channel,
                "channel_name": "platform",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/acr",
                "text": text,
                "api_app_id": "A0001",
                "is_enterprise_install": "false",
                "response_url": self.fake.response_url(name),
                "trigger_id": f"trig.{next(self._ids)}",
            }
        )
        status, _, _ = self.signed(body, "application/x-www-form-urlencoded")
        return name, status

    def response(self, name: str, timeout: float = 10) -> dict[str, Any]:
        return self.fake.wait_for(f"response_url:{name}", timeout=timeout)[0]

    def say(self, user: str, text: str, **kw: Any) -> dict[str, Any]:
        """A slash command and the reply it gets through response_url."""
        name, status = self.command(user, text, **kw)
        assert status == 200
        return self.response(name)

    def click(
        self,
        user: str,
        action_id: str,
        value: str,
        *,
        channel: str,
        message_ts: str,
        retry: int | None = None,
        trigger: str | None = None,
        ephemeral: bool = False,
    ) -> int:
        """A block_actions payload as Slack sends it for a button on a message in a channel
        (``ephemeral``: on a message only the clicker sees; Slack sends no `message` then)."""
        original = {"text": "clicked", "response_type": "ephemeral" if ephemeral else "in_channel"}
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0001",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": trigger or f"trig.{next(self._ids)}",
            "team": {"id": TEAM, "domain": "acme"},
            "channel": {"id": channel, "name": "platform"},
            "message": {"type": "message", "ts": message_ts, "bot_id": "BBOT", "text": "card"},
            "response_url": self.fake.response_url(self._click_response_name(), original=original),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": value,
                    "type": "button",
                    "text": {"type": "plain_text", "text": action_id},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if ephemeral:
            del payload["message"]
        extra = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            if retry
            else None
        )
        status, _, _ = self.signed(
            urlencode({"payload": json.dumps(payload)}),
            "application/x-www-form-urlencoded",
            extra=extra,
        )
        return status

    def _click_response_name(self) -> str:
        self.last_click_response = f"click{next(self._ids)}"
        return self.last_click_response

    def submit_view(
        self, user: str, view: dict[str, Any], reason: str, *, block: str = "reason"
    ) -> tuple[int, str]:
        """Submit a modal whose one input (block and action id ``block``) holds ``reason``."""
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM},
            "user": {"id": user},
            "api_app_id": "A0001",
            "token": "legacy",
            "trigger_id": f"trig.{next(self._ids)}",
            "view": {
                **view,
                "id": "V0001",
                "state": {
                    "values": {block: {block: {"type": "plain_text_input", "value": reason}}}
                },
            },
        }
        status, text, _ = self.signed(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )
        return status, text

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry: int | None = None
    ) -> int:
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": TEAM,
                "api_app_id": "A0001",
                "event": event,
                "type": "event_callback",
                "event_id": event_id or f"Ev{next(self._ids):08d}",
                "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}],
            }
        )
        extra = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            if retry
            else None
        )
        status, _, _ = self.signed(body, "application/json", extra=extra)
        return status

    def thread_reply(
        self,
        user: str,
        text: str,
        *,
        channel: str,
        thread_ts: str,
        broadcast: bool = False,
        **kw: Any,
    ) -> int:
        """A reply in a thread, as Slack delivers it to an app without history scopes: an
        `app_mention` event when it mentions the bot, nothing at all otherwise."""
        if "<@UBOT>" not in text:
            return 200  # Slack sends the app nothing: it may not read the channel
        ts = f"{time.time():.6f}"
        event = {
            "type": "app_mention",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "thread_ts": thread_ts,
            "event_ts": ts,
        }
        if broadcast:  # "Also send to channel"
            event["subtype"] = "thread_broadcast"
        return self.event(event, **kw)


def card_of(slack):
    """The card: the one chat.postMessage that has Approve/Deny buttons."""
    cards = [c for c in slack.fake.wait_for("chat.postMessage") if "blocks" in c]
    assert len(cards) == 1
    return cards[0]


def buttons(blocks):
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def card_ts(slack, request_id=1):
    """The ts of request ``request_id``'s card, once the worker has posted it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = slack.ctx.store.db.execute(
            "select ts from cards where request_id = ?", [request_id]
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.01)
    raise AssertionError(f"request #{request_id} has no card")
