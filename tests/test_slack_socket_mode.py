"""Socket Mode through slack_sdk's real built-in client against a local WebSocket server."""

import time

import pytest

from bot.config import SlackSettings
from bot.demo import seed_registry
from bot.policy import Grant, Role
from bot.slack.service import SlackApp, socket_mode_handler
from bot.slack.worker import SlackWorker
from tests.conftest import SLACK_USERS, make_config
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode


@pytest.fixture(scope="module")
def fake_slack_module():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def socket_mode(tmp_path_factory, fake_slack_module):
    """One bot on one Socket Mode connection for the module (closing the SDK client takes ~3 s)."""
    tmp_path = tmp_path_factory.mktemp("socket")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HTTPS_PROXY", "")  # the built-in client ignores NO_PROXY
        env.setenv("HTTP_PROXY", "")
        ws = FakeSocketMode().start()
        fake_slack_module.socket_url = ws.url
        settings = SlackSettings(
            bot_token="xoxb-test", app_token="xapp-test", api_url=fake_slack_module.api_url
        )
        worker = SlackWorker(
            make_config(tmp_path),
            settings,
            workers=8,
            registries=[seed_registry(tmp_path / "registry")],
        )
        worker.start_background()
        ctx = worker.work.ctx
        for user, role in SLACK_USERS.items():
            ctx.roles.grant(Grant(user, Role(role)), by="test", at=ctx.clock())
        handler = socket_mode_handler(SlackApp(settings, worker))
        handler.connect()
        ws.wait_connections(1)
        yield ws, worker.work
        handler.close()
        worker.stop()
        ws.stop()


@pytest.fixture
def fake_slack(fake_slack_module):
    return fake_slack_module


def command(user, text, response_url):
    return {
        "token": "legacy",
        "team_id": "T0001",
        "channel_id": "C0CHAN",
        "user_id": user,
        "command": "/acr",
        "text": text,
        "api_app_id": "A0001",
        "response_url": response_url,
        "trigger_id": f"trig.{time.time()}",
    }


def test_slash_command_is_acked_then_answered(socket_mode, fake_slack):
    ws, _ = socket_mode
    envelope = ws.send(
        "slash_commands", command("UCAROL", "tags baseimages/fedora", fake_slack.response_url("s1"))
    )
    ack, latency = ws.wait_ack(envelope)
    assert ack["envelope_id"] == envelope
    assert latency < 1.0
    reply = fake_slack.wait_for("response_url:s1")[0]
    assert reply["text"] == "2 tags in demo/baseimages/fedora"


def test_button_click_through_socket_mode_decides(socket_mode, fake_slack):
    ws, work = socket_mode
    ws.send(
        "slash_commands",
        command(
            "UALICE", "delete baseimages/alpine:3.19 --reason x", fake_slack.response_url("s2")
        ),
    )
    fake_slack.wait_for("response_url:s2")
    request_id = work.ctx.requests.list()[0].id
    ts = work.cards.get(request_id).ts
    click = {
        "type": "block_actions",
        "user": {"id": "UBOB"},
        "api_app_id": "A0001",
        "team": {"id": "T0001"},
        "channel": {"id": "C0CHAN"},
        "trigger_id": "trig.9",
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0CHAN"},
        "message": {"ts": ts},
        "response_url": fake_slack.response_url("c1"),
        "actions": [
            {
                "action_id": "acr_approve",
                "value": str(request_id),
                "type": "button",
                "block_id": "b",
                "action_ts": "1",
            }
        ],
    }
    ws.wait_ack(ws.send("interactive", click))
    fake_slack.wait_for("chat.update")
    assert work.ctx.requests.get(request_id).state.value == "done"


def test_disconnect_makes_the_client_reconnect(socket_mode, fake_slack):
    ws, _ = socket_mode
    opened = len(fake_slack.calls_to("apps.connections.open"))
    ws.disconnect()
    ws.wait_connections(2)
    assert len(fake_slack.calls_to("apps.connections.open")) > opened
    envelope = ws.send("slash_commands", command("UCAROL", "whoami", fake_slack.response_url("s3")))
    ws.wait_ack(envelope)
    assert fake_slack.wait_for("response_url:s3")[0]["text"] == "You are <@UCAROL>."


def test_events_api_envelope_is_acked(socket_mode, fake_slack):
    ws, _ = socket_mode
    event = {
        "token": "legacy",
        "team_id": "T0001",
        "api_app_id": "A0001",
        "event": {"type": "app_home_opened", "user": "UBOB", "tab": "home", "channel": "D1"},
        "type": "event_callback",
        "event_id": "Ev77",
        "event_time": 1,
    }
    ws.wait_ack(ws.send("events_api", event, retry_attempt=0, retry_reason=""))
    assert fake_slack.wait_for("views.publish")[0]["user_id"] == "UBOB"
