"""`/metrics`: what the bot counts, in one process and across `acrbot serve`'s two.

The end-to-end tests run `acrbot serve` as a real process (front + worker process, metrics
in prometheus-client's multiprocess mode) and read `/metrics` as Prometheus would.
"""

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.core.errors import NotFound
from bot.core.registry import Order
from bot.demo import seed_registry
from bot.ops import metrics, observe
from tests.support.helpers import demo_env, free_port, spawn_serve, wait_healthy, worker_of
from tests.support.slack_support import slash_command

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def local() -> Samples:
    """This process's metrics, as `/metrics` would show them."""
    return parse(metrics.Exposition().render()[0].decode())


# -- in one process ------------------------------------------------------------------------


def test_registry_calls_are_timed_by_registry_operation_and_status(tmp_path):
    registry = observe.metered(seed_registry(tmp_path / "registry"))
    before = local()
    assert registry.repositories()
    with pytest.raises(NotFound):
        registry.list_tags("no/such", order=Order.NAME, page_size=10)
    after = local()
    name = "acrbot_registry_call_seconds_count"
    for operation, status in (("repositories", "ok"), ("list_tags", "not_found")):
        labels = {"registry": "demo", "operation": operation, "status": status}
        assert value(after, name, **labels) - value(before, name, **labels) == 1
    assert (registry.name, registry.kind, registry.can_untag) == ("demo", "oci-layout", True)


def test_commands_approvals_and_executions_are_counted(bot):
    before = local()
    bot.say("alice", 'delete baseimages/fedora:24 --reason "EOL"')
    bot.say("alice", "approve 1")  # the requester may not: refused
    bot.say("bob", "approve 1")  # the quorum: the deletion runs
    bot.say("alice", 'delete baseimages/fedora:latest --reason "EOL"')
    bot.say("bob", "deny 2 --reason later")
    after = local()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("acrbot_commands_total", command="delete", outcome="ok") == 2
    assert delta("acrbot_commands_total", command="approve", outcome="refused") == 1
    assert delta("acrbot_commands_total", command="approve", outcome="ok") == 1
    assert delta("acrbot_approvals_total", outcome="approved") == 1
    assert delta("acrbot_approvals_total", outcome="denied") == 1
    assert delta("acrbot_executions_total", action="delete", outcome="done") == 1


def test_with_metrics_off_nothing_is_recorded(bot):
    before = local()
    with metrics.disabled():
        bot.say("carol", "tags baseimages/fedora")
    assert value(local(), "acrbot_commands_total", command="tags", outcome="ok") == value(
        before, "acrbot_commands_total", command="tags", outcome="ok"
    )


def test_http_port_slack_reaches_serves_no_metrics_their_own_port_does(slack):
    """`/metrics` used to answer on the port Slack (the internet) reaches, unauthenticated,
    --metrics-port or not. It is served only where configured."""
    reply = slack.say("UCAROL", "tags baseimages/fedora")
    assert reply["text"] == "2 tags in demo/baseimages/fedora"
    status, text, _ = slack.request("GET", "/metrics")
    assert status == 404 and "acrbot_" not in text
    assert slack.request("GET", "/healthz")[0] == 200
    server = metrics.Exposition().serve(host="127.0.0.1", port=0)
    try:
        _, found = scrape(server.server_port)
    finally:
        server.shutdown()
    assert value(found, "acrbot_ack_seconds_count", kind="command") >= 1
    assert value(found, "acrbot_jobs_submitted_total", kind="command", status="queued") >= 1
    assert value(found, "acrbot_job_seconds_count", kind="command") >= 1
    assert value(found, "acrbot_commands_total", command="tags", outcome="ok") >= 1


# -- `acrbot serve`: two processes -----------------------------------------------------------


def signed_command(port: int, user: str, text: str, response_url: str, trigger: str) -> int:
    return slash_command(
        port, user=user, text=text, response_url=response_url, trigger=trigger, secret="s3"
    )


def scrape(port: int) -> tuple[str, Samples]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    return response.getheader("Content-Type"), parse(response.read().decode())


def eventually(port: int, ready: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        _, found = scrape(port)
        if ready(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    return stderr


def test_serve_merges_both_processes_metrics_and_logs_one_trail_per_job(tmp_path, fake_slack):
    port, metrics_port = free_port(), free_port()
    proc = spawn_serve(
        demo_env(tmp_path, fake_slack),
        *("--port", str(port), "--log-format", "json"),
        *("--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"),
    )
    try:
        wait_healthy(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        assert conn.getresponse().status == 404  # not on the port Slack reaches
        commands = [
            ("carol", "tags baseimages/fedora", "t1"),
            ("alice", 'delete baseimages/fedora:24 --reason "EOL"', "t2"),
            ("bob", "approve 1", "t3"),
        ]
        for user, text, trigger in commands:
            url = fake_slack.response_url(trigger)
            assert signed_command(port, user, text, url, trigger) == 200
            fake_slack.wait_for(f"response_url:{trigger}")
        content_type, found = scrape(metrics_port)
        assert content_type.startswith("text/plain; version=")
        found = eventually(
            metrics_port,
            lambda s: value(s, "acrbot_executions_total", action="delete", outcome="done"),
        )

        assert value(found, "acrbot_ack_seconds_count", kind="command") == 3  # the front
        assert value(found, "acrbot_jobs_submitted_total", kind="command", status="queued") == 3
        assert value(found, "acrbot_commands_total", command="tags", outcome="ok") == 1  # worker
        assert value(found, "acrbot_commands_total", command="delete", outcome="ok") == 1
        assert value(found, "acrbot_approvals_total", outcome="approved") == 1
        assert value(found, "acrbot_executions_total", action="delete", outcome="done") == 1
        assert value(found, "acrbot_job_seconds_count", kind="command") == 3
        assert value(found, "acrbot_job_wait_seconds_count", kind="command") == 3
        calls = {
            labels
            for (name, labels) in found
            if name == "acrbot_registry_call_seconds_count" and ("registry", "demo") in labels
        }
        operations = {dict(labels)["operation"] for labels in calls}
        assert {"list_tags", "tag", "untag"} <= operations  # `tag`: digest and lock, one read
        assert value(found, "acrbot_queue_jobs", state="queued") == 0  # read from SQLite
        assert ("acrbot_outbox_pending_messages", frozenset()) in found
        assert value(found, "acrbot_worker_up") == 1
        assert value(found, "acrbot_worker_restarts_total") == 0

        os.kill(worker_of(proc.pid), signal.SIGKILL)
        url = fake_slack.response_url("t4")
        found = eventually(metrics_port, lambda s: value(s, "acrbot_worker_restarts_total") == 1)
        assert value(found, "acrbot_worker_restarts_total") == 1
        # The dead worker's counts stay (its files outlive it), and the new one's add up.
        assert value(found, "acrbot_commands_total", command="tags", outcome="ok") == 1
        assert signed_command(port, "carol", "tags baseimages/fedora", url, "t4") == 200
        fake_slack.wait_for("response_url:t4")
        found = eventually(
            metrics_port,
            lambda s: value(s, "acrbot_commands_total", command="tags", outcome="ok") == 2,
        )
        assert value(found, "acrbot_commands_total", command="tags", outcome="ok") == 2
    finally:
        stderr = stop(proc)

    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    trail = [line for line in lines if line.get("job") == "trigger:t1"]
    front = [line["msg"] for line in trail if line["pid"] == proc.pid]
    worker = [
        line["msg"].split(" after ")[0].split(" in ")[0]
        for line in trail
        if line["pid"] != proc.pid
    ]
    assert front == ["acked command: queued"]  # one id, from the ack to the answer
    assert worker == [
        "job command started",
        "command tags by carol: ok",
        "job command finished",
        "delivered respond reply:trigger:t1",
    ]
    assert len({line["pid"] for line in trail}) == 2
    assert not [line for line in lines if "token` will be unused" in line["msg"]]


def test_socket_mode_serves_metrics_on_its_own_port(tmp_path, fake_slack):
    from tests.support.fake_socket_mode import FakeSocketMode

    ws = FakeSocketMode().start()
    ws.attach(fake_slack)
    env = {**demo_env(tmp_path, fake_slack), "SLACK_APP_TOKEN": "xapp-test"}
    env.update(HTTPS_PROXY="", HTTP_PROXY="")
    del env["SLACK_SIGNING_SECRET"]
    port = free_port()
    proc = spawn_serve(env, "--metrics-port", str(port))
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
        ws.wait_ack(envelope)
        fake_slack.wait_for("response_url:sm1")
        found = eventually(
            port, lambda s: value(s, "acrbot_commands_total", command="tags", outcome="ok")
        )
        assert value(found, "acrbot_ack_seconds_count", kind="command") == 1
        assert value(found, "acrbot_commands_total", command="tags", outcome="ok") == 1
        ws.disconnect("refresh_requested")  # Slack recycles the connection
        ws.wait_connections(2)
        gaps = eventually(
            port,
            lambda s: value(s, "acrbot_socket_mode_gap_seconds_count", reason="refresh_requested"),
        )
        assert value(gaps, "acrbot_socket_mode_gap_seconds_count", reason="refresh_requested") == 1
        assert value(gaps, "acrbot_socket_mode_gap_seconds_sum", reason="refresh_requested") < 1
        assert value(gaps, "acrbot_socket_mode_gap_seconds_count", reason="dropped") == 0
        assert value(gaps, "acrbot_socket_mode_connections") >= 1
        assert gaps[("acrbot_socket_mode_down_seconds", frozenset())] == 0
    finally:
        stderr = stop(proc)
        ws.stop()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in stderr
