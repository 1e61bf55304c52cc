"""`undo ID --force` on a real docker-registry (distribution 2.8): a tag pushed again since the
deletion goes back to the snapshot's digest only through a request approved by someone else,
and a tag that moved again between the request and its approval is left alone, said so."""

from bot.core.request_types import State
from tests.support.distribution import MANIFEST_ACCEPT
from tests.support.fixtures import seed


def _tag_digest(bot, repo, tag):
    response = bot.registry.client().head(
        f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
    )
    return response.headers.get("Docker-Content-Digest") if response.is_success else None


def _purged_and_re_pushed(bot, clock):
    repo, digests = seed(bot, clock, 3)
    assert bot.handle(f"purge --filter '{repo}:.*' --reason 'CI leftovers'", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    new = bot.registry.push(repo, "b1", label="rebuilt since")
    return repo, digests, new


def test_force_files_a_request_that_another_user_approves(oci_bot, clock):
    repo, digests, new = _purged_and_re_pushed(oci_bot, clock)
    reply = oci_bot.handle("undo 1 --force --reason 'wrong purge'", user="alice")
    assert reply.text.startswith(
        "Undo of request #1: 2 restored, 1 skipped (re-pushed). --force: 1 re-pushed tag "
        f"({repo}:b1 {new[:19]} → {digests['b1'][:19]}) filed as request #2"
    ), reply.text
    assert _tag_digest(oci_bot, repo, "b1") == new  # nothing overwritten by the undo itself
    assert _tag_digest(oci_bot, repo, "b0") == digests["b0"]
    refused = oci_bot.handle("approve 2", user="alice")
    assert refused.text == "you cannot approve request #2: you made it (separation of duties)"
    assert _tag_digest(oci_bot, repo, "b1") == new
    oci_bot.handle("approve 2", user="bob")
    request = oci_bot.ctx.requests.get(2)
    assert request.state is State.DONE, request.error
    assert request.note == "Forced undo of #1: 1 restored."
    assert {t: _tag_digest(oci_bot, repo, t) for t in digests} == digests


def test_a_tag_moved_again_before_the_approval_is_skipped(oci_bot, clock):
    repo, _digests, _new = _purged_and_re_pushed(oci_bot, clock)
    assert oci_bot.handle("undo 1 --force --reason 'wrong purge'", user="alice").ok
    newer = oci_bot.registry.push(repo, "b1", label="rebuilt again")
    oci_bot.handle("approve 2", user="bob")
    request = oci_bot.ctx.requests.get(2)
    assert request.state is State.DONE, request.error
    assert request.note == (
        "Forced undo of #1: 0 restored, 1 skipped (moved again since the request; not "
        f"overwritten: {repo}:b1 (now {newer[:19]}))."
    ), request.note
    assert _tag_digest(oci_bot, repo, "b1") == newer
