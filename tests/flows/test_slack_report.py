"""`report` in Slack: the numbers as text, and with `--public` a PNG chart uploaded through
files_upload_v2 (the strict fake refuses the retired files.upload) after the reply."""

from __future__ import annotations

import io
import struct
import time


def wait(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking its signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_public_report_uploads_a_chart_beside_its_numbers(slack):
    reply = slack.say("UCAROL", "report --public")
    assert "(each blob counted once)" in reply["text"]
    shared = wait(slack.fake.shared_files)
    assert len(shared) == 1
    chart = shared[0]
    width, height = png_size(chart.data)
    assert width == 1000 and 250 <= height <= 1200
    from PIL import Image  # matplotlib's own dependency: decode it in full

    image = Image.open(io.BytesIO(chart.data))
    image.load()
    assert image.size == (width, height)
    assert chart.channel == "C0CHAN" and chart.title == "demo: storage by repository"
    assert chart.comment.startswith("demo: ") and "each blob counted once" in chart.comment
    assert "baseimages/" in chart.alt_txt
    assert slack.fake.calls_to("files.upload", refused=True) == []
    slack.fake.assert_nothing_rejected()


def test_a_private_report_shares_no_file_in_the_channel(slack):
    reply = slack.say("UCAROL", "report")
    assert "(each blob counted once)" in reply["text"]
    time.sleep(0.5)
    assert slack.fake.shared_files() == []


def test_a_report_rule_posts_once_per_slot_and_says_how_much_it_grew(make_slack, clock):
    from bot.schedules.reports import run_due

    slack = make_slack(
        report=[{"name": "weekly", "schedule": "0 6 * * *", "channel": "C0REPORTS", "growth": 5}]
    )
    first = run_due(slack.ctx)
    assert len(first) == 1 and first[0].startswith("weekly: ")
    assert run_due(slack.ctx) == []  # the slot is taken once
    posted = wait(lambda: [f for f in slack.fake.shared_files() if f.channel == "C0REPORTS"])
    assert posted[0].comment.startswith("*Storage report `weekly`*\ndemo: ")
    assert "since the last report" not in posted[0].comment
    # The registry grows by more than 5 % before the next day's slot.
    registry = slack.ctx.registries.default
    registry.push("grown/app", "1", config={"n": 1}, layers=[b"x" * 400_000])
    clock.advance(days=1)
    second = run_due(slack.ctx)
    assert "Grew 391.0 KiB" in second[0] and "more than the 5% this report watches for" in second[0]
    shared = wait(lambda: [f for f in slack.fake.shared_files() if f.channel == "C0REPORTS"][1:])
    assert "*Grew 391.0 KiB" in shared[0].comment
    png_size(shared[0].data)
    slack.fake.assert_nothing_rejected()


def test_the_chart_survives_slack_failing_and_the_outbox_keeps_no_png(slack):
    slack.fake.fail("files.completeUploadExternal", status=500, retry_after=None)
    slack.fake.fail("files.getUploadURLExternal", status=429, retry_after=0)
    slack.say("UCAROL", "report --public")
    shared = wait(slack.fake.shared_files, timeout=30)
    assert len(shared) == 1
    png_size(shared[0].data)
    time.sleep(0.3)
    assert len(slack.fake.shared_files()) == 1  # once, though two attempts failed
    (payload,) = slack.ctx.store.db.execute(
        "select payload from outbox where kind = 'chart'"
    ).fetchone()
    assert len(payload) < 4000 and "PNG" not in payload  # the rows, not the picture
