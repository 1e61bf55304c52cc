"""A deletion asked for in a notebook is approved in Slack: a real `acrbot serve` posts its card
from the outbox, an owner clicks Approve, and `Acr.wait` sees the outcome. The notebook side
holds no Slack token; the two processes share only the database."""

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from bot import demo
from bot.core.config import load
from bot.core.policy import Grant, Role
from bot.notebook import Acr
from bot.slack.blocks import APPROVE
from bot.state.cards import Cards
from bot.state.roles import RoleTable
from bot.state.store import Store
from tests.support.helpers import serve_env, start_serve
from tests.support.slack_support import post_signed

CHANNEL = "C0REQUESTS"
SIGNING_SECRET = "s3"  # what serve_env gives `acrbot serve`

TEAM_CONFIG = f"""
[slack]
requests_channel = "{CHANNEL}"

[users]                 # notebook logins -> the Slack ids the grants name
alice = "UALICE"
bob = "UBOB"
"""


@pytest.fixture
def team(tmp_path):
    """The demo with a requests channel, and roles granted to Slack ids as a team would."""
    demo.prepare(tmp_path)
    path = tmp_path / "acrbot.toml"
    path.write_text(path.read_text() + TEAM_CONFIG)
    store = Store(load(path).database)
    roles = RoleTable(store)
    for user, role in (("UALICE", Role.CONTRIBUTOR), ("UBOB", Role.OWNER)):
        roles.grant(Grant(principal=user, role=role), by="test", at=datetime.now(UTC))
    store.close()
    return path


@pytest.fixture
def served(team, fake_slack):
    env = serve_env(team, fake_slack)
    env.pop("ACRBOT_USER", None)
    port, proc = start_serve(env, stdout=subprocess.DEVNULL)
    yield port
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def click_approve(port, fake_slack, *, user, request_id, ts):
    """The block_actions payload Slack sends when ``user`` clicks Approve on the card."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0001"},
        "api_app_id": "A0001",
        "token": "legacy",
        "container": {
            "type": "message",
            "message_ts": ts,
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        },
        "trigger_id": "trig.approve",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": CHANNEL, "name": "registry-requests"},
        "message": {"type": "message", "ts": ts, "bot_id": "BBOT", "text": "card"},
        "response_url": fake_slack.response_url("approve-click"),
        "actions": [
            {
                "action_id": APPROVE,
                "block_id": "b1",
                "value": str(request_id),
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    return post_signed(port, body, secret=SIGNING_SECRET)


def wait_for_card(acr, request_id, timeout=10.0):
    """Where `acrbot serve` posted the request's card (it records the ts in the database)."""
    cards = Cards(acr.dispatcher.ctx.store)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        card = cards.get(request_id)
        if card is not None:
            return card
        time.sleep(0.05)
    raise AssertionError(f"no card for request #{request_id} after {timeout} s")


def test_a_notebook_request_is_approved_in_slack_and_waited_for(team, served, fake_slack):
    acr = Acr(config=team, user="alice")
    request = acr.delete("baseimages/fedora:24", reason="EOL since 2017")
    asked = time.monotonic()
    assert request.ok and request.data["state"] == "pending"
    assert request.data["requester"] == "UALICE"  # alice's Slack id, through [users]
    assert request.request.channel == CHANNEL

    card = wait_for_card(acr, request.data["id"])
    assert time.monotonic() - asked < 5  # the outbox is polled every second
    assert card.channel == CHANNEL
    posted = [p for p in fake_slack.calls_to("chat.postMessage") if p.get("channel") == CHANNEL]
    assert len(posted) == 1
    assert "Deletion request #1 by <@UALICE>" in posted[0]["text"]
    assert APPROVE in json.dumps(posted[0]["blocks"])

    assert click_approve(served, fake_slack, user="UBOB", request_id=1, ts=card.ts) == 200
    outcome = acr.wait(request, timeout=20, poll=0.1)
    assert outcome.ok, outcome.text
    assert outcome.text == "Request #1 approved and done: deleted 24 from demo/baseimages/fedora."
    assert outcome.data["approvals"] == ["UBOB"]
    assert [t["name"] for t in acr.tags("baseimages/fedora").data["tags"]] == ["latest"]

    done = fake_slack.wait_for("chat.postMessage", count=3, timeout=10)  # card, thread, DM
    assert any(p.get("thread_ts") == card.ts and "Done" in p["text"] for p in done)
    assert any(p.get("channel") == "UALICE" for p in done)  # the requester hears, in Slack
    rows = {(e.actor, e.action) for e in acr.dispatcher.ctx.audit.entries(last=50)}
    assert ("UALICE", "delete@notebook") in rows
    assert acr.dispatcher.ctx.audit.verify().ok
