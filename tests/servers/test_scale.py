"""Listings at registry scale, on a real docker-registry with thousands of tags written straight
into its storage: a page costs one listing and the page's lookups, never one per tag."""

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from bot.core.registry import Order
from handlers.registries.oci import OciRegistry
from tests.support.distribution import Distribution
from tests.support.fault_proxy import FaultProxy
from tests.support.fixtures import make_config

BIG, DATED = "scale/big", "scale/dated"
TAGS = 3000


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    registry = Distribution(tmp_path_factory.mktemp("scale"), in_memory=True).start()
    digest = registry.push(BIG, "v0")
    registry.add_tags(BIG, (f"v{i}" for i in range(1, TAGS)), digest)
    other = registry.push(BIG, "latest", label="other")
    registry.seed_images(
        DATED, 30, created=lambda i: f"2024-01-{i + 1:02d}T00:00:00Z", tag=lambda i: f"b{i}"
    )
    proxy = FaultProxy(registry.url).start()
    yield registry, proxy, digest, other
    proxy.stop()
    registry.stop()


@pytest.fixture
def counted(seeded):
    _, proxy, digest, other = seeded
    proxy.reset()
    return OciRegistry("dist", proxy.url), proxy, digest, other


def heads(proxy):
    return sum(n for (m, p), n in proxy.counts.items() if m == "HEAD")


def test_a_page_of_3000_tags_costs_one_listing_and_the_pages_heads(counted):
    oci, proxy, digest, _ = counted
    page = oci.list_tags(BIG, order=Order.NAME, page_size=25)
    assert [t.name for t in page.tags[:12]] == [
        "latest",
        "v0",
        "v1",
        "v2",
        "v3",
        "v4",
        "v5",
        "v6",
        "v7",
        "v8",
        "v9",
        "v10",  # natural order: v10 after v9
    ]
    assert (page.total, page.exact, page.after) == (TAGS + 1, True, "v23")
    assert proxy.count("GET", f"/v2/{BIG}/tags/list") == 1
    assert heads(proxy) == 25
    proxy.reset()
    second = oci.list_tags(BIG, order=Order.NAME, page_size=25, after=page.after)
    assert second.tags[0].name == "v24" and heads(proxy) == 25
    assert {t.digest for t in second.tags} == {digest}


def test_a_warm_page_reads_no_manifest_or_config_again(counted, tmp_path):
    """Digest facts (size, created) are cached in SQLite, across restarts of the bot."""
    _, proxy, _, _ = counted
    config = make_config(tmp_path, registry=[{"name": "dist", "type": "oci", "url": proxy.url}])
    first = build_dispatcher(config)
    first.ctx.roles.grant(Grant("carol", Role.READER), by="t", at=first.ctx.clock())
    assert first.handle(f"tags {BIG}", user="carol").ok
    assert proxy.count("GET") > 1  # the listing, the manifests, the configs
    first.ctx.store.close()
    proxy.reset()
    restarted = build_dispatcher(config)
    reply = restarted.handle(f"tags {BIG}", user="carol")
    assert reply.text == f"{TAGS + 1:,} tags in dist/{BIG}"
    assert proxy.count("GET") == 1 and heads(proxy) == 25  # the listing, the page's HEADs
    assert reply.notes[0] == f"Showing the first 25 of {TAGS + 1:,} tags."
    assert "no push dates" in reply.notes[1]


def test_filter_pages_over_matching_names_only(counted):
    oci, proxy, _, _ = counted
    page = oci.list_tags(BIG, order=Order.NAME, page_size=5, pattern="v29??")
    assert [t.name for t in page.tags] == ["v2900", "v2901", "v2902", "v2903", "v2904"]
    assert page.total == 100 and heads(proxy) == 5


def test_time_order_on_oci_reads_the_image_configs_created(seeded):
    registry, _, _, _ = seeded
    oci = OciRegistry("dist", registry.url)
    page = oci.list_tags(DATED, order=Order.TIME_DESC, page_size=3)
    assert [t.name for t in page.tags] == ["b29", "b28", "b27"]
    assert page.tags[0].created.isoformat() == "2024-01-30T00:00:00+00:00"
    oldest = oci.list_tags(DATED, order=Order.TIME_ASC, page_size=2)
    assert [t.name for t in oldest.tags] == ["b0", "b1"]


def test_show_caps_what_it_prints_and_points_at_the_rest(seeded, tmp_path):
    registry, _, digest, _ = seeded
    config = make_config(tmp_path, registry=[{"name": "dist", "type": "oci", "url": registry.url}])
    bot = build_dispatcher(config)
    bot.ctx.roles.grant(Grant("carol", Role.READER), by="t", at=bot.ctx.clock())
    seen = []
    reply = bot.handle(
        f"show {BIG}:v7",
        user="carol",
        progress=lambda d, t, what: seen.append((d, t, what.describe(t))),
    )
    fields = dict(reply.fields)
    assert fields["tags"].startswith("v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10")
    assert fields["tags"].endswith(f"… ({TAGS:,} in all)")
    assert reply.notes == (
        f"{TAGS - 20:,} more tags share this digest: `tags {BIG} --digest {digest}` lists them.",
    )
    assert len(reply.data["tags"]) == TAGS  # --json has them all
    # the scan reported its progress, and what it was doing
    assert seen[-1] == (TAGS + 1, TAGS + 1, f"resolving {TAGS + 1:,} tags")
    rest = bot.handle(f"tags {BIG} --digest {digest} --top 5 --after v19", user="carol")
    assert [row[0] for row in rest.table.rows] == ["v20", "v21", "v22", "v23", "v24"]


def test_a_manifest_request_lists_every_tag_that_goes(seeded, tmp_path):
    registry, _, _, _ = seeded
    digest = registry.push("scale/shared", "a0", label="shared")
    registry.add_tags("scale/shared", (f"a{i}" for i in range(1, 300)), digest)
    config = make_config(tmp_path, registry=[{"name": "dist", "type": "oci", "url": registry.url}])
    bot = build_dispatcher(config)
    bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="t", at=bot.ctx.clock())
    reply = bot.handle("delete scale/shared:a0 --manifest --reason 'CI leftovers'", user="alice")
    assert reply.ok, reply.text
    assert len(reply.request.tags) == 300 and reply.request.tags[:3] == ("a0", "a1", "a10")
