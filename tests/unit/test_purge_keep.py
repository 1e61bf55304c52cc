"""`--keep N` keeps the N most recent *images*, every tag they carry: it never splits an image
(issue 17.2). acr-cli keeps N tags; where tags of one image share a time (`oci`, layouts) a
tag-wise cut deleted `latest` and kept `1.25` on the very same image."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.purge_spec import PurgeSpec, image_order, parse_filter, select_tags
from bot.core.registry import TagInfo
from tests.support.fixtures import dry, seed

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
A, B, C = ("sha256:" + c * 64 for c in "abc")


def spec(keep, *filters):
    return PurgeSpec(filters=tuple(parse_filter(f) for f in filters or ["app:.*"]), keep=keep)


def names(tags):
    return sorted(t.name for t in tags)


def test_the_demo_purge_keeps_latest_with_its_image(bot):
    """The issue's repro: approved, `latest` used to be gone from nginx and wordpress."""
    reply = bot.say("alice", "purge --filter 'testimages/*:.*' --keep 1 --reason cleanup")
    assert reply.ok, reply.text
    request = bot.say("bob", "request 1")
    pinned = [(i["repository"], i["tag"]) for i in request.data["items"]]
    assert pinned == [("testimages/wordpress", "6.4")]
    assert bot.say("erin", "approve 1").ok
    assert names(bot.registry.all_tags("testimages/nginx")) == ["1.25", "latest"]
    assert names(bot.registry.all_tags("testimages/wordpress")) == ["6.5", "latest"]


def test_the_notebook_dry_run_keeps_alpine_latest_with_3_20(bot):
    """The example notebook's cell: `latest` and `3.20` are one image; both stay."""
    reply = bot.say(
        "carol",
        "purge --filter 'baseimages/*:.*' --filter 'testimages/*:.*' --ago 365d --keep 1 --dry-run",
    )
    going = sorted(f"{i['repository']}:{i['tag']}" for i in reply.data["items"])
    assert going == ["baseimages/alpine:3.19", "baseimages/fedora:24", "testimages/wordpress:6.4"]
    kept = sorted(s["item"] for s in reply.data["skipped"])
    assert kept == [
        "baseimages/alpine:3.20",
        "baseimages/alpine:latest",
        "baseimages/fedora:latest",
        "testimages/nginx:1.25",
        "testimages/nginx:latest",
        "testimages/wordpress:6.5",
        "testimages/wordpress:latest",
    ]
    assert {s["reason"] for s in reply.data["skipped"]} == {"kept (--keep 1)"}


def test_on_docker_registry_every_tag_of_a_kept_image_stays(oci_bot, clock):
    repo, digests = seed(oci_bot, clock, 4)  # b0 newest … b3 oldest
    oci_bot.registry.add_tags(repo, ["latest", "stable"], digests["b0"])
    oci_bot.registry.add_tags(repo, ["rc"], digests["b1"])
    reply = dry(oci_bot, "carol", f"purge --filter '{repo}:.*' --keep 2")
    assert sorted(i["tags"][0] for i in reply.data["items"]) == ["b2", "b3"]
    assert sorted(s["item"].split(":")[1] for s in reply.data["skipped"]) == [
        "b0",
        "b1",
        "latest",
        "rc",
        "stable",
    ]


def test_keep_counts_images_where_tags_of_one_image_have_their_own_times():
    """ACR: each tag has its own last update; the image's time is its newest tag's."""
    tags = [
        TagInfo("1.0", A, updated=NOW - timedelta(days=90)),
        TagInfo("latest", A, updated=NOW - timedelta(days=1)),
        TagInfo("2.0", B, updated=NOW - timedelta(days=10)),
        TagInfo("0.9", C, updated=NOW - timedelta(days=100)),
    ]
    chosen, skipped = select_tags(spec(1), "app", tags, now=NOW)
    assert names(chosen) == ["0.9", "2.0"]
    assert sorted(s.what for s in skipped) == ["app:1.0", "app:latest"]
    chosen, _ = select_tags(spec(2), "app", tags, now=NOW)
    assert names(chosen) == ["0.9"]


def test_ties_are_broken_by_the_highest_tag_then_the_digest_whatever_the_listing_order():
    same = NOW - timedelta(days=3)
    tags = [
        TagInfo("v9", A, created=same),
        TagInfo("v10", B, created=same),
        TagInfo("nightly", C, created=same),
        TagInfo("v2", C, created=same),
        TagInfo("old", "sha256:" + "d" * 64, created=None),  # no time: the oldest
    ]
    orders = set()
    for seed_ in range(20):
        shuffled = tags[:]
        random.Random(seed_).shuffle(shuffled)
        orders.add(tuple(image_order(shuffled)))
    # each image ranks by its highest tag in natural order: B (v10), A (v9), C (v2 > nightly)
    assert orders == {(B, A, C, "sha256:" + "d" * 64)}


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_keep_never_splits_an_image(keep):
    rng = random.Random(keep)
    digests = ["sha256:" + f"{i:064x}" for i in range(6)]
    tags = [
        TagInfo(f"t{n}", rng.choice(digests), created=NOW - timedelta(days=rng.randint(1, 4)))
        for n in range(30)
    ]
    chosen, skipped = select_tags(spec(keep), "app", tags, now=NOW)
    going = {t.digest for t in chosen}
    kept_tags = {s.what.split(":")[1] for s in skipped}
    kept = {t.digest for t in tags if t.name in kept_tags}
    assert not going & kept
    assert len(kept) == min(keep, len({t.digest for t in tags}))
