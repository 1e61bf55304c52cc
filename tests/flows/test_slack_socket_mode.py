"""Socket Mode through slack_sdk's real built-in client against a local WebSocket server."""

import time

import pytest

from bot.core.config import SlackSettings
from bot.core.policy import Grant, Role
from bot.demo import seed_registry
from bot.slack.service import SlackApp, socket_mode_handler
from bot.slack.worker import SlackWorker
from tests.support.fake_slack import FakeSlack
from tests.support.fake_socket_mode import FakeSocketMode
from tests.support.fixtures import SLACK_USERS, make_config


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
        ws.attach(fake_slack_module)
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


# -- connections: Slack recycles them; the bot must always have one -----------------------------


class AckOnly:
    """A sink that takes every job: these tests are about the connection, not the work."""

    def submit(self, job):
        return "queued"


@pytest.fixture
def link(fake_slack_module, monkeypatch):
    """A fresh server and client per test: each starts its connection cycle at zero."""
    monkeypatch.setenv("HTTPS_PROXY", "")
    monkeypatch.setenv("HTTP_PROXY", "")
    ws = FakeSocketMode(close_after=3.0).start().attach(fake_slack_module)
    settings = SlackSettings(
        bot_token="xoxb-test", app_token="xapp-test", api_url=fake_slack_module.api_url
    )
    stopped = []
    handler = socket_mode_handler(SlackApp(settings, AckOnly()), on_fatal=stopped.append)
    handler.connect()
    ws.wait_connections(1)
    yield ws, handler, stopped
    handler.close()
    ws.stop()


def event(ws):
    body = {
        "token": "legacy",
        "team_id": "T0001",
        "api_app_id": "A0001",
        "event": {"type": "app_home_opened", "user": "UBOB", "tab": "home", "channel": "D1"},
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": 1,
    }
    return ws.send("events_api", body, retry_attempt=0, retry_reason="")


def opens(fake_slack):
    return len(fake_slack.calls_to("apps.connections.open"))


@pytest.mark.slow  # waits out whole refresh cycles (~20 s)
@pytest.mark.parametrize("offsets", [(0.5, 3.5, 6.5, 9.5)])
def test_socket_mode_refresh_leaves_no_gap_anywhere_in_the_monitor_cycle(link, offsets):
    """Refreshes at several points of slack_sdk's 10 s monitor cycle (where its
    websocket-client client stalled for 10.5 s): never a window over 1 s without a connection
    Slack can deliver to, and envelopes sent straight after each refresh are acked at once."""
    ws, _, stopped = link
    began = ws.deliverable()[-1].hello_at
    for offset in offsets:
        current = ws.deliverable()[-1]
        time.sleep(max(0.0, current.hello_at + offset - time.monotonic()))
        ws.disconnect("refresh_requested")
        envelopes = []
        for _ in range(10):
            envelopes.append(event(ws))
            time.sleep(0.05)
        latencies = [ws.wait_ack(e, timeout=5)[1] for e in envelopes]
        assert max(latencies) < 1.0, (offset, latencies)
    gaps = ws.gaps(began)
    assert gaps and max(seconds for _, seconds in gaps) < 1.0, gaps
    assert ws.refused == [] and ws.ack_errors == [] and stopped == []
    assert (
        max(
            len([c for c in ws.history if c.opened_at <= t.opened_at <= (c.closed_at or 1e12)])
            for t in ws.history
        )
        <= 3
    )  # overlapping, far from Slack's 10


def test_socket_mode_warning_opens_the_replacement_before_slack_closes_the_old(link):
    ws, handler, _ = link
    first = ws.deliverable()[-1]
    ws.disconnect("warning")
    ws.wait_connections(2, timeout=2)
    replacement = ws.history[-1]
    assert replacement.hello_at < first.told_at + 1.0
    assert first.closed_at is None  # still read until Slack closes it
    assert ws.wait_ack(event(ws), timeout=2)[1] < 1.0
    assert handler.client.status.reconnects == 1
    assert handler.client.status.last_reason == "warning"


@pytest.mark.slow  # waits out reconnect back-offs (~2.5 s)
def test_socket_mode_link_disabled_stops_for_good(link, fake_slack_module):
    ws, handler, stopped = link
    before = opens(fake_slack_module)
    ws.disconnect("link_disabled")
    deadline = time.monotonic() + 5
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stopped == [
        "Slack turned Socket Mode off for this app (disconnect: link_disabled): turn it on "
        "again under Socket Mode in the app's settings, or unset SLACK_APP_TOKEN to serve "
        "over HTTP"
    ]
    time.sleep(2.5)
    assert opens(fake_slack_module) == before  # no reconnect loop
    assert ws.open_connections() == []
    assert handler.client.status.stopped == stopped[0]


@pytest.mark.slow  # waits out a back-off (~2 s)
def test_socket_mode_too_many_websockets_backs_off_before_replacing(link, fake_slack_module):
    ws, _, _ = link
    before = opens(fake_slack_module)
    ws.disconnect("too_many_websockets")
    time.sleep(1.2)
    assert opens(fake_slack_module) == before  # adding a connection at once adds to the count
    ws.wait_connections(2, timeout=5)
    assert opens(fake_slack_module) == before + 1
    assert ws.wait_ack(event(ws), timeout=2)[1] < 1.0


def test_socket_mode_dropped_connection_is_replaced_at_once(link):
    ws, handler, _ = link
    first = ws.deliverable()[-1]
    ws._close(first.id)  # Slack goes away without a word
    ws.wait_connections(2, timeout=3)
    assert ws.history[-1].hello_at - first.closed_at < 1.0
    assert handler.client.status.last_reason == "dropped"
    assert ws.wait_ack(event(ws), timeout=2)[1] < 1.0


@pytest.mark.slow  # a chaos run of its own (~13 s)
def test_socket_mode_chaos_every_envelope_acked_every_command_answered_once(
    tmp_path, fake_slack_module
):
    from tests.support.chaos_socket import SocketChaos, SocketChaosOptions

    counts = SocketChaos(
        tmp_path, fake_slack_module, SocketChaosOptions(duration=12, seed=3, settle=20)
    ).run()
    assert counts.problems() == [], counts.lines()
    assert counts.envelopes > 50 and sum(counts.refreshes.values()) >= 4
    assert counts.refreshes["refresh_requested"] >= 1


@pytest.mark.slow  # waits for the link to notice
def test_socket_mode_app_token_revoked_while_running_stops_with_one_line(link, fake_slack_module):
    ws, _, stopped = link
    fake_slack_module.errors["apps.connections.open"] = "token_revoked"
    try:
        ws._close(ws.deliverable()[-1].id)  # the reconnect finds the token revoked
        deadline = time.monotonic() + 5
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = len(fake_slack_module.calls_to("apps.connections.open", refused=True))
        time.sleep(1.5)
        assert len(fake_slack_module.calls_to("apps.connections.open", refused=True)) == refused
    finally:
        del fake_slack_module.errors["apps.connections.open"]
    assert stopped == [
        "Slack app token rejected: token_revoked (the token was revoked; check SLACK_APP_TOKEN: "
        "an app-level token (xapp-…) with connections:write, on the app's Basic Information page)"
    ]
