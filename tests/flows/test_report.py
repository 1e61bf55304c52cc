"""`report` on the layout registry: unique-blob totals, stale and untagged shares, paging."""

from __future__ import annotations

from datetime import timedelta


def test_report_counts_shared_layers_once(bot, clock):
    base = b"base layer " * 1000
    reg = bot.registry
    now = clock.now.isoformat()
    a1 = reg.push("rep/a", "v1", config={"created": now, "n": 1}, layers=[base, b"a1"])
    reg.push("rep/a", "v2", config={"created": clock.now.isoformat(), "n": 2}, layers=[base, b"a2"])
    old = (clock.now - timedelta(days=200)).isoformat()
    reg.push("rep/b", "old", config={"created": old, "n": 3}, layers=[base, b"b-old" * 500])
    reply = bot.say("alice", "report --repo 'rep/*'")
    assert reply.ok, reply.text
    print(reply.text, reply.data)
    assert a1
