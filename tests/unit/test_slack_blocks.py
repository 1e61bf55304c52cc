"""Block Kit rendering stays within Slack's limits and escapes what users type."""

from datetime import UTC, datetime, timedelta

from bot.core.replies import Reply, Table
from bot.core.request_types import DeletionRequest, State
from bot.slack import blocks


def _texts(message):
    for block in message.blocks:
        if "text" in block and isinstance(block["text"], dict):
            yield block["text"]["text"]
        for field in block.get("fields", []):
            yield field["text"]


def test_huge_tables_split_into_pages_within_limits():
    rows = tuple((f"tag-{i:05d}", "sha256:" + "a" * 12, "1.0 MiB") for i in range(3000))
    pages = blocks.reply_pages(
        Reply(text="3000 tags", table=Table(("tag", "digest", "size"), rows))
    )
    assert len(pages) > 1
    for page in pages:
        assert len(page.blocks) <= 50
        assert all(len(text) <= 3000 for text in _texts(page))
    joined = "".join(t for p in pages for t in _texts(p))
    assert all(f"tag-{i:05d}" in joined for i in range(3000))


def test_a_single_overlong_line_is_split_not_cut():
    pages = blocks.reply_pages(Reply(text="x" * 7000))
    texts = [t for p in pages for t in _texts(p)]
    assert all(len(t) <= 3000 for t in texts)
    assert "".join(texts).count("x") == 7000


def test_user_text_cannot_mention_channels_or_fake_links():
    request = DeletionRequest(
        id=3,
        registry="demo",
        repository="a",
        tag="1",
        digest="sha256:" + "b" * 64,
        manifest=False,
        tags=("1",),
        requester="UALICE",
        reason="<!channel> see <http://x|y>",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=1),
        required=1,
        state=State.PENDING,
    )
    shown = " ".join(_texts(blocks.request_card(request)))
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown
    assert "<http://x|y>" not in shown


def test_errors_are_marked():
    page = blocks.reply_pages(Reply(text="nope", ok=False))[0]
    assert page.text == "Error: nope"
    assert next(_texts(page)) == ":x: nope"
