"""`report` on ACR: the plan's included storage from ARM's listUsages, beside the counts."""

from __future__ import annotations

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from tests.support.fixtures import make_config

D1, D2, D3 = ("sha256:" + c * 64 for c in "abc")


@pytest.fixture
def bot(tmp_path, clock, acr, fake_acr):
    fake_acr.push("team/api", "1.0", D1)
    fake_acr.push("team/api", "stable", D1)
    fake_acr.push_manifest("team/api", D2)  # untagged
    fake_acr.push("team/web", "2.0", D3)
    dispatcher = build_dispatcher(make_config(tmp_path), clock=clock, registries=[acr])
    dispatcher.ctx.roles.grant(Grant("carol", Role.READER), by="test", at=clock())
    return dispatcher


def test_report_states_usage_against_the_plan(bot, fake_acr):
    fake_acr.usages[0].update(limit=10 * 1024**3, currentValue=12 * 1024**3)
    reply = bot.handle("report", user="carol")
    assert reply.ok, reply.text
    assert dict(reply.fields)["plan storage"] == (
        "12.0 GiB of 10.0 GiB included (120%), 2.0 GiB over"
    )
    assert reply.data["quota"] == {"used": 12 * 1024**3, "included": 10 * 1024**3}
    rows = {r["repository"]: r for r in reply.data["repositories"]}
    assert (rows["team/api"]["tags"], rows["team/api"]["manifests"]) == (2, 2)
    assert rows["team/api"]["untagged"] == 1
    assert [r for r in fake_acr.requests if r.path.endswith("/listUsages")]


def test_report_says_when_the_plan_cannot_be_read(bot, fake_acr):
    fake_acr.usages.clear()
    reply = bot.handle("report", user="carol")
    assert reply.ok and "plan storage" not in dict(reply.fields)
    assert any("could not be read from ARM (listUsages)" in n for n in reply.notes)
