"""`request N` lists what a purge skipped at planning, with the reasons, after the pinned
items: an approver sees what the purge leaves as well as what it takes (issue 17.5). On both
engines (SQLite; PostgreSQL, marked `postgres`)."""

import pytest

from bot.app import build_dispatcher
from bot.core.render_text import render

PURGE = "purge --filter 'testimages/*:.*' --filter 'baseimages/*:.*' --keep 1 --reason cleanup"


@pytest.fixture
def store_options(database):
    return database.options


SKIPPED = [
    (3, "baseimages/alpine:3.19", "locked"),
    (4, "baseimages/alpine:3.20", "kept (--keep 1)"),
    (5, "baseimages/alpine:latest", "kept (--keep 1)"),
    (6, "baseimages/fedora:latest", "kept (--keep 1)"),
    (7, "testimages/nginx:1.25", "kept (--keep 1)"),
    (8, "testimages/nginx:latest", "kept (--keep 1)"),
    (9, "testimages/wordpress:6.5", "kept (--keep 1)"),
    (10, "testimages/wordpress:latest", "kept (--keep 1)"),
]


def make_request(bot):
    assert bot.say("bob", "lock baseimages/alpine:3.19 --delete").ok
    created = bot.say("alice", PURGE)
    assert created.ok, created.text
    assert "8 skipped at planning" in dict(created.fields)["deletes"]


def test_request_lists_the_skipped_items_with_their_reasons(bot):
    make_request(bot)
    reply = bot.say("bob", "request 1")
    assert [(i["seq"], i["tag"]) for i in reply.data["items"]] == [(1, "24"), (2, "6.4")]
    assert [(s["seq"], s["item"], s["reason"]) for s in reply.data["skipped"]] == SKIPPED
    text = render(reply)
    assert "  3   baseimages/alpine:3.19" in text
    rows = [line.split() for line in text.splitlines() if "  skipped at planning  " in line]
    assert [(r[1], " ".join(r[5:])) for r in rows] == [(i, why) for _, i, why in SKIPPED]
    assert text.endswith(
        "Items: 2 pending.\n"
        "Skipped at planning (not pinned, left as they are): 8 — 7 kept (--keep 1), 1 locked."
    )
    assert dict(reply.fields)["deletes"] == (
        "2 tags in 2 repositories; 8 skipped at planning "
        "(locked, kept, shared, in use or protected: "
        "`request 1` lists each with its reason)"
    )


def test_pages_run_through_the_items_then_the_skipped(bot):
    make_request(bot)
    seen, after = [], None
    while True:
        reply = bot.say("bob", "request 1 --top 3" + (f" --after {after}" if after else ""))
        seen += [i["seq"] for i in reply.data["items"]] + [s["seq"] for s in reply.data["skipped"]]
        if reply.paging.next_after is None:
            break
        after = reply.paging.next_after
    assert seen == list(range(1, 11))


def test_the_skipped_list_survives_a_restart_and_execution(bot, tmp_path, registry, clock):
    make_request(bot)
    assert bot.say("erin", "approve 1").ok
    again = build_dispatcher(bot.ctx.config, clock=clock, registries=[registry])
    reply = again.handle("request 1", user="bob")
    assert [(s["seq"], s["item"], s["reason"]) for s in reply.data["skipped"]] == SKIPPED
    assert [i["state"] for i in reply.data["items"]] == ["deleted", "deleted"]


def test_a_purge_with_nothing_skipped_lists_none(bot):
    assert bot.say("alice", "purge --filter 'baseimages/fedora:^24$' --reason x").ok
    reply = bot.say("bob", "request 1")
    assert reply.data["skipped"] == []
    assert "Skipped at planning" not in render(reply)


def test_a_request_from_before_skips_were_kept_does_not_claim_a_list(bot):
    """Made by an older acrbot (schema v5): only the number is known, and the card says so."""
    import json

    make_request(bot)
    with bot.ctx.store.transaction() as db:
        spec = json.loads(db.execute("select spec from requests where id = 1").fetchone()[0])
        del spec["skips_listed"]
        db.execute("update requests set spec = ? where id = 1", [json.dumps(spec)])
        db.execute("delete from purge_skips where request_id = 1")
    reply = bot.say("bob", "request 1")
    assert reply.data["skipped"] == []
    assert dict(reply.fields)["deletes"] == (
        "2 tags in 2 repositories; 8 skipped at planning "
        "(locked, kept, shared, in use or protected: "
        "a dry run with the same options lists them)"
    )
