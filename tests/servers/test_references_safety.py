"""A manifest an image index still uses is never deleted: not by `delete --manifest`, not by
`purge`; checked when the request is made and again when it runs (issue: `multi` broken)."""

import itertools

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from tests.support.fixtures import make_config

_names = itertools.count(1)


def oci_bot(distribution, tmp_path):
    config = make_config(
        tmp_path, registry=[{"name": "dist", "type": "oci", "url": distribution.url}]
    )
    bot = build_dispatcher(config)
    for user, role in (("alice", "contributor"), ("bob", "owner")):
        bot.ctx.roles.grant(Grant(user, Role(role)), by="t", at=bot.ctx.clock())
    return bot


def test_delete_manifest_of_an_index_child_is_refused_on_docker_registry(distribution, tmp_path):
    repo = f"multi{next(_names)}/nginx"
    amd = distribution.push(repo, "1.24", label="amd64")
    arm = distribution.push(repo, "1.24-arm", label="arm64")
    distribution.push_index(repo, "multi", [amd, arm])
    bot = oci_bot(distribution, tmp_path)
    reply = bot.handle(f"delete {repo}:1.24 --manifest --reason old", user="alice")
    assert not reply.ok
    assert reply.text.startswith(f"{repo}@{amd[:19]} is used by the image index multi (sha256:")
    assert reply.text.endswith("Delete the index first; nothing was requested")
    dry = bot.handle(f"purge --filter '{repo}:^1' --dry-run", user="alice")
    assert dry.data["items"] == []
    assert {s["reason"] for s in dry.data["skipped"]} == {"an image index that stays uses it"}


def test_an_index_pushed_after_the_request_stops_the_deletion(distribution, tmp_path):
    repo = f"multi{next(_names)}/nginx"
    amd = distribution.push(repo, "1.24", label="amd64")
    bot = oci_bot(distribution, tmp_path)
    assert bot.handle(f"delete {repo}:1.24 --manifest --reason old", user="alice").ok
    distribution.push_index(repo, "multi", [amd])
    done = bot.handle("approve 1", user="bob")
    assert not done.ok and "is used by the image index multi" in done.text
    assert "nothing was deleted" in done.text
    assert bot.ctx.registries.default.image(repo, amd).digest == amd


def test_oci_layout_refuses_too_and_a_whole_index_can_go(bot, registry):
    child = registry.resolve("webserver/nginx", "1.24")
    index = registry.push_index("webserver/nginx", "multi", [child])
    reply = bot.say("alice", "delete webserver/nginx:1.24 --manifest --reason old")
    assert "is used by the image index multi" in reply.text and not reply.ok
    assert bot.say("alice", "delete webserver/nginx:multi --manifest --reason old").ok
    assert bot.say("bob", "approve 1").ok
    assert [t.name for t in registry.all_tags("webserver/nginx")] == ["1.24"]
    assert registry.image("webserver/nginx", child).digest == child
    assert index not in {m.digest for m in registry.manifests("webserver/nginx")}
