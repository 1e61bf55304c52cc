"""Registry events end to end: a real docker-registry sends its notifications to a real
`acrbot serve`, which posts to a strict fake Slack.

Push → a watch line; a deletion through the registry API → a drift alert; the bot's own
deletion → none; the registry's retries and duplicates → one message; ACR webhook and Event
Grid bodies, the handshake, a bad secret (401, nothing stored), an oversize body (413); the
service SIGKILLed with events stored but not processed → processed once after the restart.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time

import pytest

from tests.support.distribution import OCI_MANIFEST, Distribution
from tests.support.fake_slack import FakeSlack
from tests.support.helpers import wait_until
from tests.support.registry_payloads import (
    acr_webhook,
    cloudevent,
    eventgrid,
    validation,
)
from tests.support.served import ServedBot

SECRET = "registry-events-secret-0123456789"
WATCH, SECURITY = "C0WATCH", "C0SECURE"
WITHIN = 15.0  # the promise: in chat within 15 s of the event


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    fake = FakeSlack().start()
    registry = Distribution(root / "registry")
    bot = ServedBot(
        root / "bot",
        fake,
        registry_url=registry.url,
        users={"UALICE": "contributor", "UBOB": "owner"},
        extra_config=(
            f'security_channel = "{SECURITY}"\n'
            "[events]\n"
            'secret_env = "ACRBOT_EVENTS_SECRET"\n'
            "max_body = 65536\n"
            "[[watch]]\n"
            'repos = ["team/*"]\n'
            f'channel = "{WATCH}"\n'
        ),
        extra_env={"ACRBOT_EVENTS_SECRET": SECRET},
    )
    registry.notify = (f"http://127.0.0.1:{bot.port}/registry/events", SECRET)
    registry.start()
    bot.start()
    yield bot, registry, fake
    bot.close()
    registry.stop()
    fake.stop()


def texts(fake, channel):
    return [c["text"] for c in fake.calls_to("chat.postMessage") if c.get("channel") == channel]


def wait_text(fake, channel, needle, *, count=1, timeout=WITHIN):
    return wait_until(
        lambda: (
            len([t for t in texts(fake, channel) if needle in t]) >= count
            and [t for t in texts(fake, channel) if needle in t]
        ),
        timeout,
        what=f"{count} message(s) with {needle!r} in {channel}",
    )


def post(bot, body: bytes, *, secret: str | None = SECRET, method="POST", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", bot.port, timeout=10)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if secret is not None:
        sent["Authorization"] = f"Bearer {secret}"
    conn.request(method, "/registry/events", body=body, headers=sent)
    response = conn.getresponse()
    return response.status, response.read().decode(), dict(response.getheaders())


def stored(bot) -> int:
    return bot.query("select count(*) from registry_events")[0][0]


def test_a_push_is_posted_in_the_watch_channel(served):
    bot, registry, fake = served
    started = time.monotonic()
    digest = registry.push("team/api", "v1")
    (line,) = wait_text(fake, WATCH, "`dist/team/api:v1` pushed")
    assert time.monotonic() - started < WITHIN
    assert f"→ `{digest[:19]}`" in line and "from 127.0.0.1" in line
    assert bot.query("select action, outcome from audit where action = 'registry.push'")


def test_metrics_show_the_events_backlog(served):
    bot, _, _ = served
    status, text = bot.get("/metrics")
    assert status == 200
    assert "acrbot_registry_events_pending 0.0" in text


def test_a_deletion_through_the_registry_api_is_a_drift_alert(served):
    bot, registry, fake = served
    digest = registry.push("team/gone", "v1", label="gone")
    wait_text(fake, WATCH, "team/gone:v1")
    with registry.client() as client:
        client.delete(f"/v2/team/gone/manifests/{digest}").raise_for_status()
    (alert,) = wait_text(fake, SECURITY, "team/gone@")
    assert "was deleted outside the bot" in alert and "from 127.0.0.1" in alert
    rows = bot.query("select action from audit where action like 'external.%'")
    assert ("external.delete",) in rows


def test_the_bots_own_deletion_never_alerts(served):
    bot, registry, fake = served
    registry.push("team/own", "old", label="own")
    wait_text(fake, WATCH, "team/own:old")
    before = len(texts(fake, SECURITY))
    assert bot.command("UALICE", "delete team/own:old --manifest --reason EOL").status == 200
    request_id = wait_until(lambda: max(bot.request_states(), default=None), 15, what="request")
    assert bot.command("UBOB", f"approve {request_id}").status == 200
    wait_until(lambda: bot.request_states()[request_id] == "done", 20, what="deleted")
    wait_until(
        lambda: bot.query(
            "select count(*) from registry_events where repository = 'team/own' "
            "and action = 'delete' and state = 'done'"
        )[0][0],
        WITHIN,
        what="the delete event processed",
    )
    time.sleep(1.0)  # any alert would be queued with the event: give delivery a moment
    assert len(texts(fake, SECURITY)) == before
    outcomes = bot.query(
        "select outcome from audit where action = 'registry.delete' and target like '%team/own%'"
    )
    assert outcomes and outcomes[0][0].startswith("bot's own deletion")


def test_retries_and_duplicates_make_one_message(served):
    bot, registry, fake = served
    bot.kill()  # the registry gets no answer: it retries until the bot is back
    registry.push("team/retry", "v9", label="retry")
    time.sleep(2.5)  # at least two of its 1 s backoffs
    bot.start()
    wait_text(fake, WATCH, "team/retry:v9")
    (event_id,) = bot.query("select id from registry_events where repository = 'team/retry'")[0]
    envelope = {
        "events": [
            json.loads(
                bot.query("select event from registry_events where id = ?", [event_id])[0][0]
            )
        ]
    }
    # the same event sent again, as distribution's at-least-once delivery may
    raw = _as_distribution(envelope["events"][0])
    for _ in range(3):
        status, answer, _ = post(bot, json.dumps({"events": [raw]}).encode())
        assert status == 200 and json.loads(answer)["duplicates"] == 1
    time.sleep(1.5)
    assert len([t for t in texts(fake, WATCH) if "team/retry:v9" in t]) == 1


def _as_distribution(event: dict) -> dict:
    """A stored event back in distribution's shape, with the sender's own id."""
    return {
        "id": event["id"].removeprefix("distribution:"),
        "timestamp": event["at"],
        "action": "push",
        "target": {
            "mediaType": OCI_MANIFEST,
            "repository": event["repository"],
            "tag": event["tag"],
            "digest": event["digest"],
        },
        "request": {"host": event["host"], "addr": event["addr"]},
    }


def test_acr_webhook_and_event_grid_bodies(served):
    bot, registry, fake = served
    host = registry.url.removeprefix("http://")
    webhook = acr_webhook(id="acr-1", repository="team/acr", tag="w1")
    webhook["request"]["host"] = host
    assert post(bot, json.dumps(webhook).encode())[0] == 200
    wait_text(fake, WATCH, "team/acr:w1")
    data = acr_webhook(id="eg-data-1", repository="team/grid", tag="g1")
    data["request"]["host"] = host
    grid = [eventgrid("Microsoft.ContainerRegistry.ImagePushed", data, id="eg-1")]
    assert post(bot, json.dumps(grid).encode())[0] == 200
    wait_text(fake, WATCH, "team/grid:g1")
    cloud = acr_webhook(id="ce-data-1", repository="team/cloud", tag="c1")
    cloud["request"]["host"] = host
    body = cloudevent("Microsoft.ContainerRegistry.ImagePushed", cloud, id="ce-1")
    assert post(bot, json.dumps(body).encode())[0] == 200
    wait_text(fake, WATCH, "team/cloud:c1")


def test_handshakes(served):
    bot, _, _ = served
    status, answer, _ = post(bot, validation("code-42"))
    assert (status, json.loads(answer)) == (200, {"validationResponse": "code-42"})
    status, _, headers = post(
        bot, b"", method="OPTIONS", headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert status == 200 and headers["webhook-allowed-origin"] == "eventgrid.azure.net"


def test_a_wrong_secret_is_401_and_changes_nothing(served):
    bot, _, _ = served
    body = json.dumps(acr_webhook(id="intruder", repository="team/x", tag="evil")).encode()
    before = stored(bot)
    for secret in (None, "wrong", SECRET + "x", SECRET[:-1]):
        assert post(bot, body, secret=secret)[0] == 401
    assert post(bot, body, secret=None, headers={"Authorization": SECRET})[0] == 401
    assert stored(bot) == before
    assert SECRET not in bot.log
    for path in bot.database.parent.glob(bot.database.name + "*"):  # the database, its WAL
        assert SECRET.encode() not in path.read_bytes(), path


def test_an_oversize_body_is_413_and_a_malformed_one_400(served):
    bot, _, _ = served
    before = stored(bot)
    assert post(bot, b"x" * 70_000)[0] == 413
    status, answer, _ = post(bot, b'{"not": "an event"}')
    assert status == 400 and "not a registry event" in answer
    assert stored(bot) == before


def test_events_stored_but_not_processed_survive_a_sigkill(served):
    bot, registry, fake = served
    worker = bot.worker_pid()
    os.kill(worker, signal.SIGSTOP)  # stored, never processed: the worker cannot claim
    try:
        host = registry.url.removeprefix("http://")
        webhook = acr_webhook(id="killed-1", repository="team/kill", tag="k1")
        webhook["request"]["host"] = host
        assert post(bot, json.dumps(webhook).encode())[0] == 200
        assert bot.query("select state from registry_events where id = 'acr:killed-1'") == [
            ("queued",)
        ]
    finally:
        bot.kill()  # the service and its (stopped) worker
    bot.start()
    wait_text(fake, WATCH, "team/kill:k1")
    time.sleep(1.5)
    assert len([t for t in texts(fake, WATCH) if "team/kill:k1" in t]) == 1
    assert bot.query("select count(*) from audit where target like '%team/kill:k1%'") == [(1,)]


def test_show_answers_from_the_index(served):
    bot, registry, fake = served
    digest = registry.push("team/many", "base", label="many")
    registry.add_tags("team/many", [f"t{i}" for i in range(300)], digest)
    bot.stop()  # the index is rebuilt at start: it reads the 300 tags the storage gained
    bot.start()
    wait_until(
        lambda: (
            bot.query("select count(*) from tag_index where repository = 'team/many'")[0][0] == 301
        ),
        60,
        what="the index rebuilt",
    )
    sent = bot.command("UALICE", "show team/many:base")
    messages = wait_until(lambda: fake.response_messages(sent.name), 15, what="the answer")
    shown = json.dumps(messages)
    assert "(301 in all)" in shown and "Tags from the live tag index" in shown


def test_serve_without_the_receivers_secret_stops_with_one_line(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "acrbot.toml"
    config.write_text(
        f'database = "{tmp_path / "a.db"}"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
        '[events]\nsecret_env = "ACRBOT_EVENTS_SECRET"\n'
    )
    env = {
        **os.environ,
        "ACRBOT_CONFIG": str(config),
        "SLACK_BOT_TOKEN": "xoxb-never-used",
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never asked: the check comes first
    }
    env.pop("ACRBOT_EVENTS_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "events.secret_env: $ACRBOT_EVENTS_SECRET must hold a secret" in done.stderr
    assert "Traceback" not in done.stderr
