"""`undo` on the embedded oci-layout registry: index.json entries (and a manifest's blob)
written back; an image whose layers the layout's gc removed cannot be restored."""

from bot.state.snapshots import Snapshots


def test_an_untag_is_undone_and_a_second_undo_does_nothing(bot):
    repo = "testimages/wordpress"
    digest = bot.registry.resolve(repo, "6.4")
    assert bot.say("alice", f"delete {repo}:6.4 --reason old").ok
    assert bot.say("bob", "approve 1").ok
    assert "6.4" not in {t.name for t in bot.registry.all_tags(repo)}
    reply = bot.say("alice", "undo 1 --reason 'still pulled by staging'")
    assert reply.text == "Undo of request #1: 1 restored.", reply.text
    assert bot.registry.resolve(repo, "6.4") == digest
    again = bot.say("alice", "undo 1 --reason x")
    assert again.text == "Request #1 was already undone: nothing to do (1 restored).", again.text


def test_a_deleted_manifest_comes_back_with_every_tag(bot):
    repo = "testimages/wordpress"
    digest = bot.registry.resolve(repo, "latest")
    assert bot.say("alice", f"delete {repo}:latest --manifest --reason old").ok
    assert bot.say("bob", "approve 1").ok
    assert {t.name for t in bot.registry.all_tags(repo)} == {"6.4"}
    reply = bot.say("erin", "undo 1 --reason x")  # an owner of the repository
    assert reply.text == "Undo of request #1: 1 restored.", reply.text
    assert {t.name: t.digest for t in bot.registry.all_tags(repo) if t.digest == digest} == {
        "6.5": digest,
        "latest": digest,
    }
    assert bot.registry.image(repo, digest).digest == digest  # its blob is back, and reads


def test_layers_removed_by_gc_cannot_be_restored_and_nothing_is_written(bot):
    repo = "webserver/nginx"
    assert bot.say("alice", f"delete {repo}:1.24 --manifest --reason old").ok
    assert bot.say("bob", "approve 1").ok
    bot.registry.gc(repo, grace=0)  # its layers went too
    before = (bot.registry.root / repo / "index.json").read_bytes()
    reply = bot.say("alice", "undo 1 --reason x")
    assert reply.text == "Undo of request #1: 0 restored, 1 cannot be restored.", reply.text
    assert reply.notes[0].startswith(f"{repo}:1.24: cannot restore: its layers are gone (demo: ")
    assert (bot.registry.root / repo / "index.json").read_bytes() == before
    snapshots = Snapshots(bot.ctx.store, bot.ctx.audit, clock=bot.ctx.clock)
    assert [s.undo_state for s in snapshots.for_request(1)] == ["lost"]


def test_doctor_counts_the_snapshots_kept(bot):
    from bot.doctor import undo_checks

    assert bot.say("alice", "delete testimages/wordpress:6.4 --reason old").ok
    assert bot.say("bob", "approve 1").ok
    (check,) = undo_checks(bot.ctx.config)
    assert check.name == "undo snapshots"
    assert check.detail.startswith("1 kept for the 7-day window: 0.0 MB stored (")
