"""Issue 18, item 5 (registry side): a huge tag listing does not take the worker's memory.

The bot runs as an `acrbot run` process (the worker's dispatcher, handlers and backend) against
tests/support/huge_registry.py, which streams a tags/list of a million tags (11 MB; bench/
registry_memory.py measures 5 million). Before: every name was held, then sorted with a key
each (5 million: 1,377 MiB peak, the deploy limit is 256 Mi). The paths that must resolve every
tag stop at the documented cap with a clear error instead of a HEAD per tag.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.huge_registry import HugeRegistry, prepare, run

ROOT = Path(__file__).resolve().parents[2]
TAGS = 1_000_000


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    with HugeRegistry(tags=TAGS) as registry:
        registry.config = prepare(tmp_path_factory.mktemp("huge"), registry.url, ROOT)
        yield registry


def test_tags_on_a_million_tag_repository_streams_in_bounded_memory(huge):
    listed = run(ROOT, huge.config, "tags huge/app")
    assert listed["answer"] == f"{TAGS:,} tags in dist/huge/app"
    assert listed["peak_mib"] < 128, listed  # before: 367 MiB for a million, 1,377 for 5 M


@pytest.mark.parametrize(
    ("command", "doing"),
    [
        ("tags huge/app --orderby time_desc", "sort them by time"),
        ("tags huge/app --digest sha256:" + "0" * 64, "find the tags on a digest"),
        (
            "delete huge/app:t1 --manifest --reason x",
            "read every tag's digest (as `purge` and `delete --manifest` need)",
        ),
    ],
)
def test_what_resolves_every_tag_stops_at_the_cap_with_a_clear_error(huge, command, doing):
    before = huge.listings
    refused = run(ROOT, huge.config, command)
    assert refused["answer"] == (
        "error: dist/huge/app has more than 50,000 tags: the distribution API finds a tag's "
        f"digest with one request per tag, and the bot resolves at most 50,000, so it cannot "
        f"{doing}; `tags huge/app` lists them by name"
    )
    assert huge.listings == before + 1
    assert refused["peak_mib"] < 128, refused
