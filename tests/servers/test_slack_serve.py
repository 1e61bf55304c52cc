"""`acrbot serve` as a real process: HTTP mode on a free port, stopped by PID."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import demo_env, free_port, health, serve_env, start_serve, worker_of
from tests.support.slack_support import slash_command


@pytest.fixture
def served(tmp_path, fake_slack):
    port, proc = start_serve(demo_env(tmp_path, fake_slack))
    yield port, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def send_command(port: int, response_url: str, trigger: str) -> int:
    return slash_command(
        port,
        user="carol",
        text="tags baseimages/fedora",
        response_url=response_url,
        trigger=trigger,
        secret="s3",
    )


def test_serve_answers_signed_commands(served, fake_slack):
    port, _ = served
    assert send_command(port, fake_slack.response_url("p1"), "t1") == 200
    assert fake_slack.wait_for("response_url:p1")[0]["text"] == "2 tags in demo/baseimages/fedora"


def test_serve_replaces_a_dead_worker_and_health_says_so(served, fake_slack):
    port, proc = served
    worker = worker_of(proc.pid)
    os.kill(worker, signal.SIGKILL)
    statuses = [health(port)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (503 in statuses and statuses[-1] == 200):
        time.sleep(0.05)
        statuses.append(health(port))
    assert statuses[-1] == 200 and 503 in statuses  # down for the restart delay, then up
    assert worker_of(proc.pid) != worker
    assert send_command(port, fake_slack.response_url("p2"), "t2") == 200
    assert fake_slack.wait_for("response_url:p2")[0]["text"] == "2 tags in demo/baseimages/fedora"


def test_sigterm_stops_serve_and_its_worker(served):
    _, proc = served
    worker = worker_of(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(AssertionError):
        worker_of(proc.pid)
    assert not Path(f"/proc/{worker}").exists()


def test_serve_in_socket_mode_acks_and_answers(tmp_path, fake_slack):
    from tests.support.fake_socket_mode import FakeSocketMode

    ws = FakeSocketMode().start()
    ws.attach(fake_slack)
    env = {**demo_env(tmp_path, fake_slack), "SLACK_APP_TOKEN": "xapp-test"}
    env.update(HTTPS_PROXY="", HTTP_PROXY="")
    del env["SLACK_SIGNING_SECRET"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ws.wait_connections(1, timeout=30)
        envelope = ws.send(
            "slash_commands",
            {
                "command": "/acr",
                "text": "tags baseimages/fedora",
                "user_id": "carol",
                "channel_id": "C1",
                "team_id": "T0001",
                "trigger_id": "sm1",
                "response_url": fake_slack.response_url("sm1"),
            },
        )
        assert ws.wait_ack(envelope)[0] == {"envelope_id": envelope}
        reply = fake_slack.wait_for("response_url:sm1")[0]
        assert reply["text"] == "2 tags in demo/baseimages/fedora"
        worker = worker_of(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
        ws.stop()
    assert code == 0, proc.stderr.read()
    assert not Path(f"/proc/{worker}").exists()


def test_serve_with_a_database_it_cannot_open_says_so(tmp_path, fake_slack):
    (tmp_path / "afile").write_text("")
    (tmp_path / "acrbot.toml").write_text(
        'database = "afile/acrbot.db"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", str(free_port())],
        env=serve_env(tmp_path / "acrbot.toml", fake_slack),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "afile/acrbot.db: a file is in the way of its folder; check the `database` key" in (
        result.stderr
    )


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


def test_serve_stops_with_one_line_when_slack_turns_socket_mode_off(tmp_path, fake_slack):
    from tests.support.fake_socket_mode import FakeSocketMode

    ws = FakeSocketMode().start()
    ws.attach(fake_slack)
    env = {**demo_env(tmp_path, fake_slack), "SLACK_APP_TOKEN": "xapp-test"}
    env.update(HTTPS_PROXY="", HTTP_PROXY="")
    del env["SLACK_SIGNING_SECRET"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ws.wait_connections(1, timeout=30)
        worker = worker_of(proc.pid)
        opened = len(fake_slack.calls_to("apps.connections.open"))
        ws.disconnect("link_disabled")
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        ws.stop()
    stderr = proc.stderr.read()
    assert code == 2, stderr
    assert stderr.strip().splitlines()[-1] == (
        "acrbot: Slack turned Socket Mode off for this app (disconnect: link_disabled): turn it "
        "on again under Socket Mode in the app's settings, or unset SLACK_APP_TOKEN to serve "
        "over HTTP"
    )
    assert len(fake_slack.calls_to("apps.connections.open")) == opened  # no reconnect loop
    assert not Path(f"/proc/{worker}").exists()
