"""`undo`: snapshots taken before every deletion, put back on a real docker-registry.

Against distribution 2.8 (tests/support/distribution.py) through the counting fault proxy:
every tag back on its old digest and the images pull (skopeo), a tag pushed again since is
never overwritten, garbage collection between deletion and undo makes those items "cannot
be restored" with nothing claimed, an image index comes back with its children first.
"""

import itertools
import shutil
import subprocess

from tests.support.distribution import MANIFEST_ACCEPT
from tests.support.fixtures import seed

_n = itertools.count(1)


def _purged(bot, clock, n):
    repo, digests = seed(bot, clock, n)
    assert bot.handle(f"purge --filter '{repo}:.*' --reason 'CI leftovers'", user="alice").ok
    done = bot.handle("approve 1", user="bob")
    assert done.text.startswith(f"Purge request #1 approved and done: {n} deleted"), done.text
    return repo, digests


def _tag_digest(bot, repo, tag):
    response = bot.registry.client().head(
        f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
    )
    return response.headers.get("Docker-Content-Digest") if response.is_success else None


def test_undo_of_a_40_image_purge_puts_every_tag_back_on_its_digest(oci_bot, clock, tmp_path):
    repo, digests = _purged(oci_bot, clock, 40)
    assert all(_tag_digest(oci_bot, repo, t) is None for t in digests)
    oci_bot.proxy.reset()
    reply = oci_bot.handle("undo 1 --reason 'wrong regex'", user="alice")  # the requester
    assert reply.text == "Undo of request #1: 40 restored.", reply.text
    assert {t: _tag_digest(oci_bot, repo, t) for t in digests} == digests
    puts = [p for m, p, s in oci_bot.proxy.upstream_statuses if m == "PUT"]
    assert len(puts) == len(set(puts)) == 80  # each manifest once by digest, each tag once
    pulled = subprocess.run(
        [
            shutil.which("skopeo") or "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{oci_bot.registry.url.split('://')[1]}/{repo}:b7",
            f"oci:{tmp_path / 'pulled'}:b7",
        ],
        capture_output=True,
        text=True,
    )
    assert pulled.returncode == 0, pulled.stderr
    again = oci_bot.handle("undo 1 --reason 'twice'", user="alice")
    assert again.text == "Request #1 was already undone: nothing to do (40 restored).", again.text
    rows = oci_bot.ctx.audit.entries(last=200, request_id=1)
    assert sum(1 for e in rows if e.action == "undo.item" and e.outcome == "restored") == 40
    assert [e.error for e in rows if e.action == "undo.run"] == ["reason: wrong regex"]
    assert oci_bot.ctx.audit.verify().ok


def test_a_tag_pushed_again_since_is_not_overwritten(oci_bot, clock):
    repo, digests = _purged(oci_bot, clock, 3)
    new = oci_bot.registry.push(repo, "b1", label="rebuilt since")
    reply = oci_bot.handle("undo 1 --reason x", user="alice")
    assert reply.text == "Undo of request #1: 2 restored, 1 skipped (re-pushed).", reply.text
    assert _tag_digest(oci_bot, repo, "b1") == new
    assert _tag_digest(oci_bot, repo, "b0") == digests["b0"]


def test_only_restores_the_items_it_matches_and_a_later_undo_the_rest(oci_bot, clock):
    repo, _ = _purged(oci_bot, clock, 4)
    part = oci_bot.handle(f"undo 1 --only '{repo}:b[12]$' --reason x", user="alice")
    assert part.text == "Undo of request #1: 2 restored.", part.text
    assert _tag_digest(oci_bot, repo, "b0") is None
    rest = oci_bot.handle("undo 1 --reason x", user="alice")
    assert rest.text == ("Undo of request #1: 2 restored. 2 items were already undone before."), (
        rest.text
    )


def test_who_may_undo(oci_bot, clock):
    _purged(oci_bot, clock, 2)
    carol = oci_bot.handle("undo 1 --reason x", user="carol")  # a reader
    assert not carol.ok
    erin = oci_bot.handle("undo 1 --reason x", user="erin")  # an owner, not the requester
    assert erin.text == "Undo of request #1: 2 restored.", erin.text


def test_after_the_window_undo_refuses_with_the_date(oci_bot, clock):
    _purged(oci_bot, clock, 2)
    clock.advance(days=8)
    reply = oci_bot.handle("undo 1 --reason x", user="alice")
    assert not reply.ok
    assert "the undo window of request #1 closed on" in reply.text, reply.text
