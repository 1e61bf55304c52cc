"""A purge request's spec is a typed value stored as JSON in `requests.spec`: every row an
acrbot has ever written reads back, and writes back, key for key (issue 19, data at the seams)."""

import json

import pytest

from bot.core.purge_spec import pace_text, totals_text
from bot.core.request_types import PurgePace, PurgeRequestSpec

# As `purge` first stored it (c6fb47b): no pace, skips not kept.
FIRST = {
    "filters": ["testimages/*:.*"],
    "ago_seconds": 2592000.0,
    "keep": 1,
    "untagged": False,
    "describe": "--filter testimages/*:.* --ago 30d --keep 1",
    "repositories": ["testimages/nginx", "testimages/wordpress"],
    "counts": {
        "testimages/nginx": {"tags": 2, "manifests": 0, "skipped": 1},
        "testimages/wordpress": {"tags": 1, "manifests": 1, "skipped": 0},
    },
    "items": 4,
    "tags": 3,
    "manifests": 1,
    "skipped": 1,
    "first": ["testimages/nginx:1.24", "testimages/nginx:1.23"],
}
# Paced (95f5fb5), before the skips were kept (schema v6).
PACED = {**FIRST, "pace": {"rate": 7.5, "source": "tier", "tier": "Standard"}}
# Today's.
NOW = {
    **{k: v for k, v in FIRST.items() if k != "first"},
    "skips_listed": True,
    "first": FIRST["first"],
    "pace": {"rate": None, "source": "none", "tier": None},
}


@pytest.mark.parametrize("stored", [FIRST, PACED, NOW], ids=["first", "paced", "now"])
def test_purge_request_spec_round_trips_every_stored_vintage(stored):
    text = json.dumps(stored)
    spec = PurgeRequestSpec.from_json(json.loads(text))
    assert json.dumps(spec.to_json()) == text


def test_purge_request_spec_reads_into_fields():
    spec = PurgeRequestSpec.from_json(PACED)
    assert spec.repositories == ("testimages/nginx", "testimages/wordpress")
    assert (spec.items, spec.tags, spec.manifests, spec.skipped) == (4, 3, 1, 1)
    assert spec.skips_listed is False
    assert spec.pace == PurgePace(rate=7.5, source="tier", tier="Standard")
    assert totals_text(spec) == "3 tags and 1 untagged manifest in 2 repositories"
    assert pace_text(spec.items, spec.pace) == "4 deletions ≈ 1 s on Standard (7.5/s)"
    assert PurgeRequestSpec.from_json(FIRST).pace is None
    assert pace_text(4, None) is None


def test_purge_request_spec_refuses_a_damaged_row():
    """A row missing a key every purge has had is an error, never "0 tags"."""
    with pytest.raises(KeyError, match="tags"):
        PurgeRequestSpec.from_json({k: v for k, v in NOW.items() if k != "tags"})


def test_a_purge_without_a_spec_or_a_deletion_with_one_is_refused():
    from datetime import UTC, datetime

    from bot.core.request_types import DeletionRequest, State

    at = datetime(2026, 1, 1, tzinfo=UTC)
    common = dict(
        id=7, registry="demo", repository="a", tag=None, digest="sha256:" + "b" * 64,
        manifest=False, tags=(), requester="alice", reason="x", created_at=at, expires_at=at,
        required=1, state=State.PENDING,
    )  # fmt: skip
    with pytest.raises(ValueError, match="request 7: a purge has a spec and a deletion none"):
        DeletionRequest(**common, kind="purge")
    with pytest.raises(ValueError, match="request 7"):
        DeletionRequest(**common, spec=PurgeRequestSpec.from_json(NOW))
    assert DeletionRequest(**common, kind="purge", spec=PurgeRequestSpec.from_json(NOW)).is_purge
