"""`undo`: snapshots taken before every deletion, put back on a real docker-registry.

Against distribution 2.8 (tests/support/distribution.py) through the counting fault proxy:
every tag back on its old digest and the images pull (skopeo), a tag pushed again since is
never overwritten, garbage collection between deletion and undo makes those items "cannot
be restored" with nothing claimed, an image index comes back with its children first.
"""

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from bot.state import liveness
from bot.state.snapshots import Snapshots, Usage
from tests.support.distribution import MANIFEST_ACCEPT, Distribution
from tests.support.fixtures import make_config, seed

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
    assert reply.notes == (f"{repo}:b1: re-pushed since; not overwritten (b1)",)
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
    oci_bot.ctx.roles.revoke(Grant("alice", Role.CONTRIBUTOR))  # the requester, demoted
    oci_bot.ctx.roles.grant(Grant("alice", Role.READER), by="t", at=clock())
    alice = oci_bot.handle("undo 1 --reason x", user="alice")
    assert alice.text.startswith("only the requester of #1 (alice) or an owner of every "), (
        alice.text
    )
    erin = oci_bot.handle("undo 1 --reason x", user="erin")  # an owner, not the requester
    assert erin.text == "Undo of request #1: 2 restored.", erin.text


def test_after_the_window_undo_refuses_with_the_date_and_the_sweep_prunes(oci_bot, clock):
    _purged(oci_bot, clock, 2)
    closes = (clock() + timedelta(days=7)).strftime("%Y-%m-%d %H:%M UTC")
    snapshots = Snapshots(oci_bot.ctx.store, oci_bot.ctx.audit, clock=clock)
    assert snapshots.prune() == 0
    clock.advance(days=7, seconds=1)
    reply = oci_bot.handle("undo 1 --reason x", user="alice")
    assert not reply.ok
    assert reply.text == (
        f"the undo window of request #1 closed on {closes}: its snapshots are gone. Push the "
        "images again from their builds"
    )
    assert snapshots.usage().snapshots == 2
    assert snapshots.prune() == 2
    assert snapshots.usage() == Usage(0, 0, 0)
    assert oci_bot.handle("undo 1 --reason x", user="alice").text == reply.text


def test_garbage_collection_between_deletion_and_undo_claims_nothing(tmp_path, clock):
    """distribution's garbage collection (registry stopped, as its docs require) removes the
    layers: the PUT is refused (MANIFEST_BLOB_UNKNOWN) and undo says so, restoring nothing."""
    registry = Distribution(tmp_path / "gc-registry", in_memory=True).start()
    try:
        bot = _bot_on(registry, tmp_path, clock)
        repo, digests = seed(bot, clock, 3)
        assert bot.handle(f"purge --filter '{repo}:.*' --reason x", user="alice").ok
        assert bot.handle("approve 1", user="bob").ok
        registry.stop()
        collected = subprocess.run(
            ["docker-registry", "garbage-collect", str(registry.root / "config.yml")],
            capture_output=True,
            text=True,
        )
        assert collected.returncode == 0, collected.stderr
        registry.start()
        reply = bot.handle("undo 1 --reason x", user="alice")
        assert not reply.ok
        assert reply.text == "Undo of request #1: 0 restored, 3 cannot be restored.", reply.text
        assert reply.notes[0].startswith(
            f"{repo}:b0: cannot restore: its layers are gone (dist no longer has the layers of "
            f"{repo}@sha256:"
        ), reply.notes
        assert reply.notes[0].endswith(
            "push it again from its build (CI re-run or `docker push` of the same build)"
        )
        assert all(_tag_digest(bot, repo, t) is None for t in digests)
        states = bot.ctx.store.db.execute(
            "select undo_state from undo_snapshots where request_id = 1"
        ).fetchall()
        assert states == [("lost",)] * 3
    finally:
        registry.stop()


def test_an_index_comes_back_whole_children_first(oci_bot, clock):
    repo = f"undo-index{next(_n)}/app"
    amd = oci_bot.registry.push(repo, "amd", label="amd64 build")
    arm = oci_bot.registry.push(repo, "arm", label="arm64 build")
    index = oci_bot.registry.push_index(
        repo, "multi", [amd, arm], platforms=[("linux", "amd64"), ("linux", "arm64")]
    )
    for tag in ("amd", "arm"):  # children untagged: only the index names them
        oci_bot.registry.client().delete(f"/v2/{repo}/manifests/{tag}")
    assert oci_bot.handle(f"delete {repo}:multi --manifest --reason x", user="alice").ok
    assert oci_bot.handle("approve 1", user="bob").ok
    assert _tag_digest(oci_bot, repo, "multi") is None
    oci_bot.registry.client().delete(f"/v2/{repo}/manifests/{arm}")  # a child gone since
    oci_bot.proxy.reset()
    reply = oci_bot.handle("undo 1 --reason x", user="alice")
    assert reply.text == "Undo of request #1: 1 restored.", reply.text
    assert _tag_digest(oci_bot, repo, "multi") == index
    for child in (amd, arm):
        assert _tag_digest(oci_bot, repo, child) == child
    puts = [p for m, p, s in oci_bot.proxy.upstream_statuses if m == "PUT"]
    assert puts == [
        f"/v2/{repo}/manifests/{arm}",  # the missing child first, the one still there not
        f"/v2/{repo}/manifests/{index}",
        f"/v2/{repo}/manifests/multi",
    ]


def _bot_on(registry, tmp_path, clock, **options):
    config = make_config(
        tmp_path, registry=[{"name": "dist", "type": "oci", "url": registry.url, **options}]
    )
    bot = build_dispatcher(config, clock=clock)
    for user, role in (("alice", "contributor"), ("bob", "owner")):
        bot.ctx.roles.grant(Grant(user, Role(role)), by="t", at=clock())
    bot.registry = registry
    return bot


@pytest.mark.slow
def test_a_process_killed_mid_undo_resumes_and_puts_each_once(oci_bot, clock, tmp_path):
    """SIGKILL `acrbot run undo` of a 500-item purge; running it again finishes the job and
    no manifest or tag receives a second PUT."""
    repo, digests = seed(oci_bot, clock, 500)
    real_time = build_dispatcher(oci_bot.config)  # the processes below run on the real clock
    assert real_time.handle(f"purge --filter '{repo}:.*' --reason x", user="alice").ok
    done = real_time.handle("approve 1", user="bob")
    assert "500 deleted" in done.text, done.text
    real_time.ctx.store.close()
    oci_bot.ctx.store.close()
    oci_bot.proxy.reset()
    oci_bot.proxy.delay_response("PUT", 0.2)  # each PUT lands at once, answers late
    config_file = tmp_path / "acrbot.toml"
    config_file.write_text(
        f'database = "acrbot.db"\n[[registry]]\nname = "dist"\ntype = "oci"\n'
        f'url = "{oci_bot.proxy.url}"\npurge_concurrency = 4\ntimeout = 1\n'
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = [sys.executable, "-m", "bot", "run", "--config", str(config_file), "--user", "alice"]
    worker = subprocess.Popen(
        [*run, "undo 1 --reason 'wrong keep'"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while oci_bot.proxy.count("PUT") < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    out, err = worker.communicate()
    sent = oci_bot.proxy.count("PUT")
    assert 100 <= sent < 1000, (out + err).decode()[-2000:]
    oci_bot.proxy.clear()
    resumed = subprocess.run(
        [*run, "undo 1 --reason 'wrong keep'"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith("Undo of request #1 resumed: "), resumed.stdout
    paths = [p for m, p, s in oci_bot.proxy.upstream_statuses if m == "PUT"]
    assert len(paths) == len(set(paths)) == 1000  # each manifest and each tag PUT once
    check = build_dispatcher(oci_bot.config)
    assert {t.name: t.digest for t in check.ctx.registries.default.all_tags(repo)} == digests
    again = subprocess.run([*run, "undo 1 --reason x"], env=env, capture_output=True, text=True)
    assert again.stdout.startswith("Request #1 was already undone: nothing to do (500 restored"), (
        again.stdout
    )


def test_no_snapshot_no_deletion(oci_bot, clock):
    """A manifest that cannot be read for its snapshot is not deleted: the item fails saying
    why, and no DELETE leaves for it. Every item that was deleted has its snapshot."""
    repo, digests = seed(oci_bot, clock, 3)
    assert oci_bot.handle(f"purge --filter '{repo}:.*' --reason x", user="alice").ok
    oci_bot.proxy.reset()
    oci_bot.proxy.respond("GET", 500, path=rf"/manifests/{digests['b1']}$")
    done = oci_bot.handle("approve 1", user="bob")
    assert done.text == (
        "Purge request #1 approved and done: 2 deleted, 0 skipped, 1 failed (1 dist failed "
        "(HTTP 500); try again later)."
    ), done.text
    deleted = [p for m, p, s in oci_bot.proxy.upstream_statuses if m == "DELETE"]
    assert sorted(deleted) == sorted(f"/v2/{repo}/manifests/{digests[t]}" for t in ("b0", "b2"))
    assert _tag_digest(oci_bot, repo, "b1") == digests["b1"]
    snapshots = Snapshots(oci_bot.ctx.store, oci_bot.ctx.audit, clock=clock)
    kept = snapshots.for_request(1)
    assert sorted((s.digest, s.tags) for s in kept) == sorted(
        (digests[t], (t,)) for t in ("b0", "b2")
    )
    assert all(s.manifest.digest == s.digest and s.manifest_deleted for s in kept)


def test_the_sweep_finishes_an_undo_whose_process_died(oci_bot, clock):
    """Items a dead process left `restoring` are finished by the next sweep (recover), as
    whoever ran the undo, reading first: the tag whose PUT had landed is not PUT again."""
    repo, digests = _purged(oci_bot, clock, 3)
    host = liveness.this_process().rsplit(":", 2)[0]
    dead = f"{host}:999999:0"  # no such process
    with oci_bot.ctx.store.transaction() as db:
        db.execute(
            "update undo_snapshots set undo_state = 'restoring', undo_owner = ?, undo_by = ? "
            "where request_id = 1",
            [dead, "alice"],
        )
    landed = Snapshots(oci_bot.ctx.store, oci_bot.ctx.audit, clock=clock).for_request(1)[0]
    oci_bot.ctx.registries.default.put_manifest(repo, landed.digest, landed.manifest)
    oci_bot.ctx.registries.default.put_manifest(repo, landed.tags[0], landed.manifest)
    oci_bot.proxy.reset()
    oci_bot.recover()
    assert {t: _tag_digest(oci_bot, repo, t) for t in digests} == digests
    puts = [p for m, p, s in oci_bot.proxy.upstream_statuses if m == "PUT"]
    assert len(puts) == 4 and f"/v2/{repo}/manifests/{landed.tags[0]}" not in puts
    rows = [e for e in oci_bot.ctx.audit.entries(last=50, request_id=1) if e.action == "undo.item"]
    assert sorted((e.actor, e.outcome) for e in rows) == [("alice", "restored")] * 3
    again = oci_bot.handle("undo 1 --reason x", user="alice")
    assert again.text == "Request #1 was already undone: nothing to do (3 restored).", again.text
