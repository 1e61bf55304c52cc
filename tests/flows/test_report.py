"""`report` on the layout registry: unique-blob totals, stale and untagged shares, paging."""

from __future__ import annotations

from datetime import timedelta

from bot.core import formatting as fmt


def _layout_blobs(root, repo):
    return {p.name: p.stat().st_size for p in (root / repo / "blobs" / "sha256").iterdir()}


def test_report_counts_shared_layers_once(bot, clock):
    base = b"base layer " * 1000
    reg = bot.registry
    now = clock.now.isoformat()
    reg.push("rep/a", "v1", config={"created": now, "n": 1}, layers=[base, b"a1"])
    reg.push("rep/a", "v2", config={"created": now, "n": 2}, layers=[base, b"a2"])
    old = (clock.now - timedelta(days=200)).isoformat()
    reg.push("rep/b", "old", config={"created": old, "n": 3}, layers=[base, b"b-old" * 500])
    reply = bot.say("carol", "report --repo 'rep/*'")
    assert reply.ok, reply.text
    a, b = _layout_blobs(reg.root, "rep/a"), _layout_blobs(reg.root, "rep/b")
    rows = {r["repository"]: r for r in reply.data["repositories"]}
    assert (rows["rep/a"]["bytes"], rows["rep/b"]["bytes"]) == (sum(a.values()), sum(b.values()))
    assert reply.data["bytes"] == sum({**a, **b}.values())
    shared = sum(n for name, n in a.items() if name in b)
    assert reply.data["shared_bytes"] == shared > 0
    # rep/b's own blobs are stale (200 days, window 90); the base is not: rep/a uses it.
    assert reply.data["stale_bytes"] == sum(b.values()) - shared
    assert rows["rep/b"]["stale_bytes"] == sum(b.values())
    assert list(rows) == ["rep/b", "rep/a"]  # biggest first
    assert reply.text == "demo holds " + fmt.size(reply.data["bytes"]) + (
        " in 2 repositories matching `rep/*` (each blob counted once)"
    )
    assert dict(reply.fields)["shared layers"].endswith(
        "used by several repositories, counted once"
    )


def test_report_pages_biggest_first_and_names_the_next_page(bot):
    first = bot.say("carol", "report --top 2")
    assert len(first.data["repositories"]) == 2
    assert first.paging.next_after == first.data["repositories"][-1]["repository"]
    rest = bot.say("carol", first.paging.command_after(first.paging.next_after))
    sizes = [r["bytes"] for r in first.data["repositories"] + rest.data["repositories"]]
    assert sizes == sorted(sizes, reverse=True)
    assert (
        first.data["repositories_total"]
        == len(first.data["repositories"]) + len(rest.data["repositories"])
        or rest.paging.next_after is not None
    )


def test_report_refuses_a_bad_stale_naming_the_option(bot):
    reply = bot.say("carol", "report --stale 3months")
    assert not reply.ok
    assert reply.text.startswith("--stale `3months` is not a duration")


def test_a_purge_request_and_its_card_state_what_it_frees(bot, clock):
    import json

    from bot.slack import blocks

    base = b"shared base " * 2000
    reg = bot.registry
    old = (clock.now - timedelta(days=400)).isoformat()
    for i in range(3):
        reg.push("frees/app", f"pr-{i}", config={"created": old, "n": i}, layers=[base, b"%d" % i])
    # Untagging alone frees nothing; with --untagged the two images go with their last tag.
    dry = bot.say("alice", "purge --filter 'frees/app:^pr-[01]$' --dry-run")
    assert dry.data["freed_bytes"] == 0 and "freeing 0 B;" in dry.text
    line = "purge --filter 'frees/app:^pr-[01]$' --untagged --reason 'old PRs'"
    reply = bot.say("alice", line)
    assert reply.ok, reply.text
    request = bot.dispatcher.ctx.requests.get(reply.data["id"])
    freed = request.spec.freed_bytes
    assert 0 < freed < len(base)  # the base stays: pr-2 uses it
    card = json.dumps(blocks.request_card(request).blocks)
    assert "*Frees*" in card and "(unique blobs only it holds)" in card
    shown = bot.say("bob", f"request {request.id}")
    assert any(f"freeing {fmt.size(freed)}" in v for _, v in shown.fields), shown.fields


def test_report_counts_only_what_the_caller_may_read(bot):
    bot.grant("zoe", "reader", repositories="baseimages/*")
    reply = bot.say("zoe", "report")
    assert reply.ok, reply.text
    assert {r["repository"] for r in reply.data["repositories"]} == {
        "baseimages/alpine",
        "baseimages/fedora",
    }
    everything = bot.say("carol", "report").data
    assert reply.data["bytes"] < everything["bytes"]
