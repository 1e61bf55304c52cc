"""Purges paced to the registry's tier: the SKU read from ARM once, the card says how long."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from bot.slack.blocks import request_fields
from tests.support.fixtures import D, acr_config


@pytest.fixture
def make_bot(tmp_path, clock, fake_acr, make_acr):
    def make(**options):
        for i in range(40):  # real manifests: a purge keeps each one's bytes for undo
            fake_acr.push_image("ci/app", f"pr-{i}", offset=i)
        bot = build_dispatcher(
            acr_config(tmp_path, fake_acr, **options), clock=clock, registries=[make_acr()]
        )
        for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER)):
            bot.ctx.roles.grant(Grant(user, role), by="t", at=clock())
        return bot

    return make


def purge(bot):
    reply = bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice")
    assert reply.ok, reply.text
    return dict(reply.fields)


@pytest.mark.parametrize(
    ("sku", "pace"),
    [
        ("Basic", "40 deletions ≈ 27 s on Basic (1.5/s)"),
        ("Standard", "40 deletions ≈ 5 s on Standard (7.5/s)"),
        ("Premium", "40 deletions ≈ 1 s on Premium (30/s)"),
    ],
)
def test_the_purge_card_says_how_long_at_the_tier_pace(make_bot, fake_acr, sku, pace):
    fake_acr.state.sku = sku
    bot = make_bot()
    assert purge(bot)["pace"] == pace
    assert dict(bot.handle("request 1", user="alice").fields)["pace"] == pace
    card = dict(request_fields(bot.ctx.requests.get(1)))  # the Slack card
    assert card["Pace"] == pace


def test_the_sku_is_read_from_arm_once(make_bot, fake_acr):
    bot = make_bot()
    purge(bot)
    bot.handle("cancel 1", user="alice")
    purge(bot)
    assert fake_acr.count("GET", "/subscriptions/") == 1


def test_an_explicit_write_rate_wins_and_arm_is_not_asked(make_bot, fake_acr):
    bot = make_bot(write_rate="600/min")
    assert purge(bot)["pace"] == "40 deletions ≈ 4 s at write_rate 10/s"
    assert fake_acr.count(path_prefix="/subscriptions/") == 0


def test_an_unreadable_sku_paces_at_the_lowest_tier_and_says_so(make_bot, fake_acr):
    fake_acr.throttle(path_prefix="/subscriptions/", status=403, times=None)
    bot = make_bot()
    assert purge(bot)["pace"] == (
        "40 deletions ≈ 27 s at the Basic tier's pace (1.5/s): the registry's SKU could not be "
        "read; set write_rate to go faster"
    )


@pytest.mark.slow  # runs at the tier's real pace
def test_the_purge_runs_at_the_tier_pace(make_bot, fake_acr):
    fake_acr.state.sku = "Premium"  # 30 deletions a second
    bot = make_bot()
    purge(bot)
    began = time.monotonic()
    assert bot.handle("approve 1", user="bob").text.endswith("40 deleted, 0 skipped, 0 failed.")
    assert time.monotonic() - began >= 39 / 30
    assert fake_acr.state.repositories.get("ci/app", {}) == {}


def test_a_429_carries_its_retry_after_as_data(acr, fake_acr):
    from email.utils import format_datetime

    from bot.core.errors import RegistryError
    from handlers.registries.acr import _seconds

    fake_acr.push("ci/app", "1", D[1])
    fake_acr.throttle(method="GET", retry_after=7)
    with pytest.raises(RegistryError) as caught:
        acr.resolve("ci/app", "1")
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert str(caught.value) == "prod is throttling requests (429); try again in 7 s"
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (_seconds(soon) or 0) <= 30
    assert _seconds("soon") is None


@pytest.mark.slow  # runs at the tier's real pace
def test_reads_are_paced_at_read_rate_after_a_burst(fake_acr, make_acr):
    fake_acr.push("ci/app", "1", D[1])
    acr = make_acr(read_rate=10)  # a burst of 50 reads, then 10 a second
    began = time.monotonic()
    for _ in range(60):
        acr.resolve("ci/app", "1")
    assert time.monotonic() - began >= 0.9
    assert fake_acr.count(path_prefix="/subscriptions/") == 0  # read_rate set: no SKU read


def test_a_scan_past_the_burst_reads_the_sku_once(fake_acr, make_acr):
    fake_acr.push("ci/app", "1", D[1])
    acr = make_acr()
    for _ in range(75):  # Basic's 5 s burst: a command never touches ARM
        acr.resolve("ci/app", "1")
    assert fake_acr.count(path_prefix="/subscriptions/") == 0
    for _ in range(300):  # faster than Basic's 15 a second: the pace would make it wait
        acr.resolve("ci/app", "1")
        if fake_acr.count(path_prefix="/subscriptions/"):
            break
    for _ in range(20):
        acr.resolve("ci/app", "1")
    assert fake_acr.count(path_prefix="/subscriptions/") == 1
    assert acr.reads.pace.rate == 150.0  # Premium (the fake's SKU), less 10 %


def test_a_dry_run_says_how_long_the_purge_would_take(make_bot, fake_acr):
    fake_acr.state.sku = "Standard"
    reply = make_bot().handle("purge --filter 'ci/app:^pr-' --dry-run", user="alice")
    assert "Once approved: 40 deletions ≈ 5 s on Standard (7.5/s)." in reply.notes
