"""The whole approval flow on a real distribution registry, configured as `type = "oci"`."""

from bot.app import build_dispatcher
from bot.core.config import from_mapping
from bot.core.policy import Grant, Role


def make_bot(tmp_path, clock, url, **registry):
    config = from_mapping(
        {
            "database": "acrbot.db",
            "registry": [{"name": "dist", "type": "oci", "url": url, **registry}],
        },
        base=tmp_path,
        environ={"DIST_PASSWORD": "s3cret-pw"},
    )
    dispatcher = build_dispatcher(config, clock=clock, create=True)
    for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER), ("carol", Role.READER)):
        dispatcher.ctx.roles.grant(Grant(user, role), by="test", at=clock())
    return dispatcher


def test_manifest_deletion_on_distribution(tmp_path, clock, distribution):
    digest = distribution.push("flow/web", "1.0", label="release")
    distribution.push("flow/web", "stable", label="release")
    distribution.push("flow/web", "2.0")
    bot = make_bot(tmp_path, clock, distribution.url)
    assert bot.handle("delete flow/web:1.0 --reason old", user="alice").text == (
        "dist cannot remove a single tag; add --manifest to delete the image and every tag on "
        "it (the request will list them)"
    )
    created = bot.handle("delete flow/web:1.0 --manifest --reason old", user="alice")
    assert dict(created.fields)["deletes"] == "manifest and tags: 1.0, stable"
    assert dict(created.fields)["digest"] == digest
    done = bot.handle("approve 1", user="bob")
    assert done.text == "Request #1 approved and done: deleted 1.0, stable from dist/flow/web."
    assert [row[0] for row in bot.handle("tags flow/web", user="carol").table.rows] == ["2.0"]


def test_login_server_of_an_oci_registry_selects_it(tmp_path, clock, distribution):
    distribution.push("flow/api", "v1")
    bot = make_bot(tmp_path, clock, distribution.url)
    host = distribution.url.removeprefix("http://")
    assert bot.handle(f"show {host}/flow/api:v1", user="carol").data["tags"] == ["v1"]


def test_basic_auth_password_comes_from_the_environment(tmp_path, clock, distribution_basic):
    distribution_basic.push("flow/private", "v1")
    bot = make_bot(
        tmp_path, clock, distribution_basic.url, username="bot", password_env="DIST_PASSWORD"
    )
    assert bot.handle("tags flow/private", user="carol").text == "1 tag in dist/flow/private"
