"""`acrbot serve` as a real process: HTTP mode on a free port, stopped by PID."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, fake_slack):
    subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--dir", str(tmp_path)],
        input="",
        text=True,
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s3",
        "SLACK_API_URL": fake_slack.api_url,
        "ACRBOT_CONFIG": str(tmp_path / "acrbot.toml"),
    }
    env.pop("SLACK_APP_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError(proc.communicate()[1])
    yield port
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def test_serve_answers_signed_commands(served, fake_slack):
    body = urlencode(
        {
            "command": "/acr",
            "text": "tags baseimages/fedora",
            "user_id": "carol",
            "channel_id": "C1",
            "team_id": "T0001",
            "response_url": fake_slack.response_url("p1"),
            "trigger_id": "t1",
        }
    )
    ts = str(int(time.time()))
    conn = http.client.HTTPConnection("127.0.0.1", served, timeout=5)
    conn.request(
        "POST",
        "/slack/events",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier("s3").generate_signature(
                timestamp=ts, body=body
            ),
        },
    )
    assert conn.getresponse().status == 200
    assert fake_slack.wait_for("response_url:p1")[0]["text"] == "2 tags in demo/baseimages/fedora"


def test_serve_without_tokens_says_which_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == "acrbot: SLACK_BOT_TOKEN: not set (the bot token, xoxb-…)\n"
