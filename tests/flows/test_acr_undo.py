"""`undo` on ACR (the fake ACR, tests/support/fake_acr.py): a removed tag is re-tagged, a
deleted manifest comes back through soft delete's restore when it is on, and is PUT back from
the snapshot when it is off; reclaimed layers are "cannot be restored"."""

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from tests.support.fixtures import acr_config


@pytest.fixture
def bot(tmp_path, clock, fake_acr, make_acr):
    dispatcher = build_dispatcher(
        acr_config(tmp_path, fake_acr), clock=clock, registries=[make_acr()]
    )
    for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER)):
        dispatcher.ctx.roles.grant(Grant(user, role), by="t", at=clock())
    return dispatcher


def _tags(fake_acr, repo):
    return {name: tag.digest for name, tag in fake_acr.state.repositories.get(repo, {}).items()}


def test_a_purge_of_tags_is_undone_by_re_tagging(bot, fake_acr):
    digests = {f"pr-{i}": fake_acr.push_image("ci/app", f"pr-{i}", offset=i) for i in range(5)}
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice").ok
    assert bot.handle("approve 1", user="bob").text.endswith("5 deleted, 0 skipped, 0 failed.")
    assert _tags(fake_acr, "ci/app") == {}
    fake_acr.reset_counts()
    reply = bot.handle("undo 1 --reason 'not merged after all'", user="alice")
    assert reply.text == "Undo of request #1: 5 restored.", reply.text
    assert _tags(fake_acr, "ci/app") == digests
    assert fake_acr.count("PUT", "/v2/ci/app/manifests/pr-") == 5  # one re-tag each
    assert fake_acr.count("PUT", "/v2/ci/app/manifests/sha256:") == 0  # the manifests stayed


def test_with_soft_delete_a_deleted_manifest_is_restored_not_pushed(bot, fake_acr):
    fake_acr.state.soft_delete = True
    digest = fake_acr.push_image("team/api", "1.0")
    assert bot.handle("delete team/api:1.0 --manifest --reason old", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    assert digest in fake_acr.state.recycle["team/api"]
    fake_acr.reset_counts()
    reply = bot.handle("undo 1 --reason x", user="alice")
    assert reply.text == "Undo of request #1: 1 restored.", reply.text
    assert _tags(fake_acr, "team/api") == {"1.0": digest}
    assert fake_acr.count("POST", "/acr/v1/_deleted/team/api/_manifests/") == 1
    assert fake_acr.count("PUT") == 0  # a push of a soft-deleted digest is refused anyway
    assert fake_acr.state.recycle["team/api"] == {}


def test_without_soft_delete_the_snapshot_is_put_back(bot, fake_acr):
    digest = fake_acr.push_image("team/api", "1.0")
    fake_acr.push("team/api", "stable", digest)
    assert bot.handle("delete team/api:1.0 --manifest --reason old", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    assert _tags(fake_acr, "team/api") == {}
    fake_acr.reset_counts()
    reply = bot.handle("undo 1 --reason x", user="alice")
    assert reply.text == "Undo of request #1: 1 restored.", reply.text
    assert _tags(fake_acr, "team/api") == {"1.0": digest, "stable": digest}
    assert fake_acr.count("POST", "/acr/v1/_deleted/") == 1  # asked, nothing in the bin: 404
    assert fake_acr.count("PUT", f"/v2/team/api/manifests/{digest}") == 1


def test_reclaimed_layers_cannot_be_restored(bot, fake_acr):
    digest = fake_acr.push_image("team/api", "1.0")
    assert bot.handle("delete team/api:1.0 --manifest --reason old", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    fake_acr.state.reclaimed.add(digest)
    reply = bot.handle("undo 1 --reason x", user="alice")
    assert reply.text == "Undo of request #1: 0 restored, 1 cannot be restored.", reply.text
    assert reply.notes == (
        "team/api:1.0: cannot restore: its layers are gone (prod no longer has the layers of "
        f"team/api@{digest} (MANIFEST_BLOB_UNKNOWN: the registry reclaimed their storage since "
        "the deletion)); push it again from its build (CI re-run or `docker push` of the same "
        "build)",
    )
    assert _tags(fake_acr, "team/api") == {}
