"""`undo ID --force` (the fake ACR): the tags undo skips because they were pushed again since
the deletion become a request, approved like a deletion and never by its requester, that moves
exactly the pinned tags from the digest read when it was filed back to the snapshot's."""

import json

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from bot.core.request_types import Action, State
from tests.support.fixtures import acr_config, make_config


@pytest.fixture
def bot(tmp_path, clock, fake_acr, make_acr):
    dispatcher = build_dispatcher(
        acr_config(tmp_path, fake_acr), clock=clock, registries=[make_acr()]
    )
    for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER), ("carol", Role.OWNER)):
        dispatcher.ctx.roles.grant(Grant(user, role), by="t", at=clock())
    return dispatcher


def _tags(fake_acr, repo):
    return {name: tag.digest for name, tag in fake_acr.state.repositories.get(repo, {}).items()}


def _purged(bot, fake_acr):
    return _purged_with(bot, fake_acr, reason="merged")


def _purged_with(bot, fake_acr, *, reason):
    """Three tags purged by request #1; pr-1 then pushed again to another image."""
    old = {f"pr-{i}": fake_acr.push_image("ci/app", f"pr-{i}", offset=i) for i in range(3)}
    assert bot.handle(f"purge --filter 'ci/app:^pr-' --reason {reason}", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    new = fake_acr.push_image("ci/app", "pr-1", label="rebuilt", offset=50)
    assert new != old["pr-1"]
    return old, new


def test_force_restores_what_it_can_and_files_a_request_for_the_re_pushed_tag(bot, fake_acr):
    old, new = _purged(bot, fake_acr)
    reply = bot.handle("undo 1 --force --reason 'not merged after all'", user="alice")
    assert reply.text == (
        "Undo of request #1: 2 restored, 1 skipped (re-pushed). --force: 1 re-pushed tag "
        f"(ci/app:pr-1 {new[:19]} → {old['pr-1'][:19]}) filed as request #2: it needs "
        "1 approval, not yours."
    ), reply.text
    assert _tags(fake_acr, "ci/app") == {**old, "pr-1": new}  # nothing overwritten yet
    forced = bot.ctx.requests.get(2)
    assert forced.action is Action.UNDO_FORCE and forced.state is State.PENDING
    assert [(i.tag, i.from_digest, i.to_digest) for i in forced.forced.items] == [
        ("pr-1", new, old["pr-1"])
    ]
    assert bot.handle("approve 2 --reason mine", user="alice").text == (
        "you cannot approve request #2: you made it (separation of duties)"
    )
    assert _tags(fake_acr, "ci/app")["pr-1"] == new
    done = bot.handle("approve 2", user="bob")
    assert bot.ctx.requests.get(2).state is State.DONE, done.text
    assert _tags(fake_acr, "ci/app") == old
    assert bot.ctx.requests.get(2).note == "Forced undo of #1: 1 restored."
    actions = [(e.action, e.outcome) for e in bot.ctx.audit.entries()]
    assert ("request.create", "pending") in actions and ("undo.force", "moved") in actions
    shown = bot.handle("request 2", user="alice")
    assert dict(shown.fields)["moves"] == f"ci/app:pr-1 {new[:19]} → {old['pr-1'][:19]}"
    assert shown.table.rows == (("ci/app:pr-1", new, old["pr-1"]),)


def test_without_force_nothing_is_filed(bot, fake_acr):
    _old, new = _purged(bot, fake_acr)
    reply = bot.handle("undo 1 --reason x", user="alice")
    assert reply.text == "Undo of request #1: 2 restored, 1 skipped (re-pushed).", reply.text
    assert [r.id for r in bot.ctx.requests.list()] == [1]
    assert _tags(fake_acr, "ci/app")["pr-1"] == new


def test_force_after_a_plain_undo_files_the_request_once(bot, fake_acr):
    _purged(bot, fake_acr)
    assert bot.handle("undo 1 --reason x", user="alice").ok
    reply = bot.handle("undo 1 --force --reason x", user="alice")
    assert reply.text.startswith(
        "Request #1 was already undone: nothing to do (2 restored, 1 skipped (re-pushed)). "
        "--force: 1 re-pushed tag ("
    ), reply.text
    again = bot.handle("undo 1 --force --reason x", user="alice")
    assert again.text.endswith(
        " Already asked by pending request #2. --force: no tag was re-pushed since, so no "
        "request was filed."
    ), again.text
    assert [r.id for r in bot.ctx.requests.list()] == [2, 1]


def test_force_with_nothing_re_pushed_says_so_and_files_nothing(bot, fake_acr):
    fake_acr.push_image("ci/app", "pr-0")
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    reply = bot.handle("undo 1 --force --reason x", user="alice")
    assert reply.text == (
        "Undo of request #1: 1 restored. --force: no tag was re-pushed since, so no request "
        "was filed."
    ), reply.text
    assert [r.id for r in bot.ctx.requests.list()] == [1]


def test_a_tag_moved_again_after_the_request_is_skipped_and_said(bot, fake_acr):
    _old, new = _purged(bot, fake_acr)
    assert bot.handle("undo 1 --force --reason x", user="alice").ok
    newer = fake_acr.push_image("ci/app", "pr-1", label="again", offset=77)
    bot.handle("approve 2", user="bob")
    request = bot.ctx.requests.get(2)
    assert request.state is State.DONE
    assert request.note == (
        "Forced undo of #1: 0 restored, 1 skipped (moved again since the request; not "
        f"overwritten: ci/app:pr-1 (now {newer[:19]}))."
    ), request.note
    assert _tags(fake_acr, "ci/app")["pr-1"] == newer
    assert new != newer


def test_the_executed_restore_is_said_in_both_threads(bot, fake_acr):
    fake_acr.push_image("ci/app", "pr-0")
    kw = {"channel": "CREQ"}
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice", **kw).ok
    assert bot.handle("approve 1", user="bob", **kw).ok
    fake_acr.push_image("ci/app", "pr-0", label="rebuilt", offset=5)
    assert bot.handle("undo 1 --force --reason x", user="alice", **kw).ok
    assert bot.handle("approve 2", user="bob", **kw).ok
    lines = {
        key: json.loads(payload)
        for key, payload in bot.ctx.store.db.execute(
            "select key, payload from outbox where key in (?, ?)",
            ["line:2:forced", "line:1:undo:forced:2"],
        ).fetchall()
    }
    assert lines["line:2:forced"]["text"] == "Forced undo of #1: 1 restored."
    assert lines["line:1:undo:forced:2"]["text"] == "#2: Forced undo of #1: 1 restored."
    assert lines["line:1:undo:forced:2"]["request"] == 1


def test_finishing_after_a_crash_reads_first_and_puts_nothing_twice(bot, fake_acr):
    from handlers.requests.undo_force import reconcile_forced

    old, _new = _purged(bot, fake_acr)
    assert bot.handle("undo 1 --force --reason x", user="alice").ok
    assert bot.handle("approve 2", user="bob").ok
    fake_acr.reset_counts()
    # What recovery runs for a request a crash left `executing` after its PUT landed.
    assert reconcile_forced(bot.ctx, bot.ctx.requests.get(2)) == "Forced undo of #1: 1 restored."
    assert fake_acr.count("PUT") == 0
    assert _tags(fake_acr, "ci/app") == old


@pytest.fixture
def ruled(tmp_path, clock, fake_acr, make_acr):
    """`[[policy]]` on ci/*: one approval for a purge, two for a manifest delete."""
    config = make_config(
        tmp_path,
        registry=[
            {
                "name": "prod",
                "type": "acr",
                "login_server": fake_acr.login_server,
                "subscription_id": fake_acr.subscription,
                "resource_group": fake_acr.resource_group,
            }
        ],
        policy=[
            {
                "name": "ci",
                "repos": ["ci/*"],
                "approvals": {"delete": 1, "delete_manifest": 2, "purge": 1},
                "reason_min": 10,
            }
        ],
    )
    dispatcher = build_dispatcher(config, clock=clock, registries=[make_acr()])
    for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER), ("carol", Role.OWNER)):
        dispatcher.ctx.roles.grant(Grant(user, role), by="t", at=clock())
    return dispatcher


def test_a_forced_undo_needs_the_approvals_of_a_manifest_delete(ruled, fake_acr):
    old, new = _purged_with(ruled, fake_acr, reason="'merged long ago'")
    short = ruled.handle("undo 1 --force --reason x", user="alice")
    assert not short.ok
    assert short.text == (
        "Undo of request #1: 2 restored, 1 skipped (re-pushed). --force: rule ci needs a "
        "--reason of at least 10 characters (yours has 1); nothing was requested"
    ), short.text
    assert [r.id for r in ruled.ctx.requests.list()] == [1]
    assert ruled.handle("undo 1 --force --reason 'the purge was wrong'", user="alice").ok
    assert ruled.ctx.requests.get(2).required == 2
    assert ruled.handle("approve 2", user="bob").ok
    assert _tags(fake_acr, "ci/app")["pr-1"] == new  # one of two
    assert ruled.handle("approve 2", user="carol").ok
    assert _tags(fake_acr, "ci/app") == old
