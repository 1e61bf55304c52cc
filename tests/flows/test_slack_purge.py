"""A purge through Slack: its card, one approval, progress edited in the thread, the summary;
on both engines (SQLite; PostgreSQL, marked `postgres`)."""

import json
import time

import pytest

from tests.support.slack_support import buttons, card_of, card_ts


@pytest.fixture
def store_options(database):
    return database.options


def thread_posts(slack, ts):
    return [p for p in slack.fake.calls_to("chat.postMessage") if p.get("thread_ts") == ts]


def wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_purge_card_one_click_progress_and_the_summary(slack):
    reply = slack.say("UALICE", "purge --filter 'baseimages/*:.*' --ago 30d --reason 'old bases'")
    assert reply["text"].startswith("Purge request #1 created: 5 tags in 2 repositories pinned")
    card = card_of(slack)
    shown = json.dumps(card["blocks"])
    for fact in (
        "Purge request #1",
        "--filter baseimages/*:.* --ago 30d",
        "5 tags in 2 repositories",
        "5 items, every one listed by `/acr request 1`",
        "baseimages/alpine:3.20",
        "old bases",
    ):
        assert fact in shown, fact
    assert buttons(card["blocks"]) == ["acr_approve", "acr_deny"]
    ts = card_ts(slack)
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=ts)
    outcome = wait(
        lambda: [p for p in thread_posts(slack, ts) if p["text"].startswith(":white_check_mark:")]
    )
    assert outcome[0]["text"].startswith(
        ":white_check_mark: Purge done: 5 deleted, 0 skipped, 0 failed (approved by <@UBOB>)."
    )
    marks = (":hourglass_flowing_sand: Purging", ":checkered_flag: Purged")
    progress = [p for p in thread_posts(slack, ts) if p["text"].startswith(marks)]
    assert len(progress) == 1  # one message in the thread, edited in place
    updates = [
        u["text"] for u in slack.fake.calls_to("chat.update") if u.get("text", "").startswith(marks)
    ]
    final = wait(lambda: (updates or [progress[-1]["text"]])[-1])
    assert final == ":checkered_flag: Purged: 5 / 5 done (5 deleted, 0 skipped, 0 failed)"
    card_update = wait(
        lambda: [u for u in slack.fake.calls_to("chat.update") if "*done*" in json.dumps(u)]
    )
    assert buttons(card_update[-1]["blocks"]) == ["acr_undo"]  # only Undo, once done
    assert slack.ctx.registries.default.all_tags("baseimages/alpine") == []
