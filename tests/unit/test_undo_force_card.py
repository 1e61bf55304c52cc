"""A forced undo request's card and facts: what it moves, from and to, within Slack's limits,
whatever the number of tags; a stored spec round-trips, a damaged one is refused."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.request_types import (
    Action,
    DeletionRequest,
    ForcedTag,
    ForceUndoSpec,
    State,
)
from bot.slack import blocks
from tests.support.fake_slack import validate_blocks


def _forced(n: int, state: State = State.PENDING) -> DeletionRequest:
    spec = ForceUndoSpec(
        source=7,
        items=tuple(
            ForcedTag(
                repository=f"team/{'x' * 120}",
                tag=f"v{i}-{'y' * 100}",
                from_digest="sha256:" + "a" * 64,
                to_digest="sha256:" + "b" * 64,
                seq=i,
            )
            for i in range(n)
        ),
    )
    return DeletionRequest(
        id=9,
        registry="demo",
        repository="team/x",
        tag=None,
        digest="sha256:" + "c" * 64,
        manifest=False,
        tags=(),
        requester="UALICE",
        reason="wrong purge",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=datetime(2026, 1, 2, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 1, tzinfo=UTC),
        decided_by="acrbot",
        required=2,
        state=state,
        kind="undo_force",
        forced=spec,
    )


@pytest.mark.parametrize("n", [1, 500])
def test_forced_undo_card_names_the_moves_within_slack_limits(n):
    request = _forced(n)
    assert request.action is Action.UNDO_FORCE
    card = blocks.request_card(request, undo_window=timedelta(days=7))
    assert validate_blocks(card.blocks) == []
    fields = " ".join(f["text"] for b in card.blocks for f in b.get("fields", []))
    assert "*Undo --force*" in fields and "#7" in fields
    assert "sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb" in fields
    assert card.blocks[0]["text"]["text"] == "Forced undo request #9"


def test_a_done_forced_undo_has_no_undo_button():
    card = blocks.request_card(_forced(1, State.DONE), undo_window=timedelta(days=7))
    assert blocks.UNDO not in json.dumps(card.blocks)


def test_the_spec_round_trips_and_a_damaged_one_is_refused():
    spec = _forced(3).forced
    assert ForceUndoSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    damaged = spec.to_json()
    del damaged["items"][0]["from"]
    with pytest.raises(KeyError):
        ForceUndoSpec.from_json(damaged)
