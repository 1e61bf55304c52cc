"""`acrbot serve` at start-up: Slack unreachable or a wrong token is one line and exit 2,
after retrying what may pass; and Bolt is built without its "token will be unused" warning."""

import logging
import subprocess
import sys

import pytest

from bot.core.config import SlackSettings
from bot.slack import startup
from bot.slack.service import SlackApp, socket_mode_handler
from bot.slack.startup import StartupFailed
from tests.support.helpers import closed_port, demo_env, free_port

BOT_TOKEN_FIX = (
    "check SLACK_BOT_TOKEN: the Bot User OAuth Token (xoxb-…) on the app's OAuth & Permissions page"
)


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", str(free_port()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_slack_unreachable_says_where_in_one_line_and_exits_2(tmp_path, fake_slack):
    port = closed_port()
    env = {**demo_env(tmp_path, fake_slack), "SLACK_API_URL": f"http://127.0.0.1:{port}/api/"}
    result = serve(env, "--startup-wait", "1.5")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[-1] == (
        f"acrbot: Slack API unreachable at http://127.0.0.1:{port}/api/ (connection refused); "
        "gave up after 1.5 s"
    )
    retries = [line for line in lines[:-1] if "trying again in" in line]
    assert len(retries) >= 2 and len(retries) == len(lines) - 1  # nothing else: no traceback
    assert "Traceback" not in result.stderr


def test_serve_with_a_wrong_token_stops_at_once_with_one_line(tmp_path, fake_slack):
    fake_slack.errors["auth.test"] = "invalid_auth"
    result = serve(demo_env(tmp_path, fake_slack))
    assert result.returncode == 2
    assert result.stderr == (
        "acrbot: Slack bot token rejected: invalid_auth (the token is not valid in any "
        f"workspace; {BOT_TOKEN_FIX})\n"
    )
    assert fake_slack.attempts("auth.test") == 1  # a refusal is not retried


@pytest.fixture
def settings(fake_slack):
    return SlackSettings(bot_token="xoxb-test", signing_secret="s3", api_url=fake_slack.api_url)


def test_start_up_retries_5xx_with_backoff_then_goes_on(fake_slack, settings):
    fake_slack.fail("auth.test", status=503, times=2, body="")
    slept: list[float] = []
    answer = startup.verify_bot_token(settings, within=30, sleep=slept.append)
    assert answer["user_id"] == "UBOT"
    assert slept == [0.5, 1.0]
    assert fake_slack.attempts("auth.test") == 3


def test_start_up_waits_as_long_as_slack_says_when_rate_limited(fake_slack, settings):
    fake_slack.fail("auth.test", status=429, retry_after=3)
    slept: list[float] = []
    startup.verify_bot_token(settings, within=30, sleep=slept.append)
    assert slept == [3.0]


def test_start_up_gives_up_when_its_time_is_spent(fake_slack, settings):
    fake_slack.fail("auth.test", status=500, times=99, body="")
    with pytest.raises(StartupFailed) as caught:
        startup.verify_bot_token(settings, within=0, sleep=lambda s: None)
    assert str(caught.value) == (
        f"Slack API unreachable at {fake_slack.api_url} (HTTP 500); gave up after 0 s"
    )


def test_a_rejected_app_token_stops_socket_mode_with_one_line(fake_slack, settings):
    fake_slack.errors["apps.connections.open"] = "invalid_auth"
    socket_settings = SlackSettings(
        bot_token="xoxb-test", app_token="xapp-bad", api_url=fake_slack.api_url
    )
    handler = socket_mode_handler(SlackApp(socket_settings, sink=None))
    try:
        with pytest.raises(StartupFailed) as caught:
            startup.connect_socket_mode(handler, socket_settings, within=5)
    finally:
        handler.close()
    assert str(caught.value) == (
        "Slack app token rejected: invalid_auth (the token is not valid in any workspace; "
        "check SLACK_APP_TOKEN: an app-level token (xapp-…) with connections:write, on the "
        "app's Basic Information page)"
    )


def test_the_bolt_app_is_built_without_the_unused_token_warning(
    fake_slack, settings, monkeypatch, caplog
):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")  # as under `acrbot serve`
    caplog.set_level(logging.WARNING)
    front = SlackApp(settings, sink=None)
    assert [r.getMessage() for r in caplog.records] == []
    assert front.client.base_url == fake_slack.api_url
    assert front.client.token == "xoxb-test"
    assert fake_slack.attempts() == {}  # nothing sent to Slack while building it
