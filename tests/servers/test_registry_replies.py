"""Issue 18, item 1: a registry reply that does not parse, or is not the digest asked for, is an
error naming the registry, never an empty answer; a deletion that depends on it refuses.

A real docker-registry behind the fault proxy, which answers in its place for the faulted
paths (a tag list cut off mid-way, a manifest that hashes to another digest, an image index
that does not parse, a referrers answer that fails), driven through the bot's own commands.
"""

from __future__ import annotations

import itertools
import json

import httpx
import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from tests.support.distribution import MANIFEST_ACCEPT
from tests.support.fixtures import make_config

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_names = itertools.count(1)


@pytest.fixture
def bot(proxy, tmp_path):
    config = make_config(tmp_path, registry=[{"name": "dist", "type": "oci", "url": proxy.url}])
    bot = build_dispatcher(config)
    for user, role in (("alice", "contributor"), ("bob", "owner"), ("carol", "reader")):
        bot.ctx.roles.grant(Grant(user, Role(role)), by="t", at=bot.ctx.clock())
    return bot


def repo() -> str:
    return f"probe{next(_names)}/app"


def manifest_body(distribution, repository: str, digest: str) -> bytes:
    response = httpx.get(
        f"{distribution.url}/v2/{repository}/manifests/{digest}",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    response.raise_for_status()
    return response.content


def present(distribution, repository: str, digest: str) -> bool:
    response = httpx.head(
        f"{distribution.url}/v2/{repository}/manifests/{digest}",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    return response.status_code == 200


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"name": "R", "tags": [', "not valid JSON (parse error: premature EOF)"),
        (b'{"name": "R", "tags": ["v1", "v2"', "not valid JSON (parse error: premature EOF)"),
        (b"", "not valid JSON (parse error: premature EOF)"),
        (b"<html>Bad gateway</html>", "not valid JSON (lexical error: invalid char in json text.)"),
        (b'["v1"]', "a JSON list, not an object"),
        (b'{"name": "R"}', "no `tags` list"),
        (b'{"name": "R", "tags": "v1"}', "`tags` is a JSON string, not a list"),
        (b'{"name": "R", "tags": [1]}', "`tags` holds a JSON number, not a name"),
        (b'{"name": "R", "tags": ["v1"]} {}', "not valid JSON (parse error: trailing garbage)"),
    ],
)
def test_tags_with_a_malformed_tag_list_is_an_error_naming_the_registry(
    distribution, proxy, bot, body, why
):
    name = repo()
    distribution.push(name, "v1")
    proxy.respond("GET", 200, path=r"/tags/list", body=body.replace(b"R", name.encode()))
    reply = bot.handle(f"tags {name}", user="carol")
    assert not reply.ok
    assert reply.text == (
        f"dist sent a malformed answer for the tag list of {name}: {why}; nothing was read "
        "from it. Try again, or ask the registry's operators to check it"
    )


def test_show_refuses_a_manifest_that_is_another_digest(distribution, proxy, bot):
    name = repo()
    digest = distribution.push(name, "v1", label="one")
    other = distribution.push(name, "v2", label="two")
    proxy.respond(
        "GET",
        200,
        path=rf"/manifests/{digest}$",
        body=manifest_body(distribution, name, other),
        headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest},
    )
    reply = bot.handle(f"show {name}:v1", user="carol")
    assert not reply.ok
    assert reply.text.startswith(
        f"dist sent a malformed answer for the manifest {name}@{digest}: its content hashes "
        f"to sha256:{other[7:19]}…, not the {digest} asked for; nothing was read from it."
    )


def test_show_refuses_a_docker_content_digest_that_is_not_the_one_asked_for(
    distribution, proxy, bot
):
    name = repo()
    digest = distribution.push(name, "v1", label="one")
    other = distribution.push(name, "v2", label="two")
    proxy.respond(
        "GET",
        200,
        path=rf"/manifests/{digest}$",
        body=manifest_body(distribution, name, digest),
        headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": other},
    )
    reply = bot.handle(f"show {name}:v1", user="carol")
    assert not reply.ok
    assert f"its Docker-Content-Digest is {other}, not the {digest} asked for" in reply.text


def test_show_refuses_a_tag_whose_digest_header_is_not_a_digest(distribution, proxy, bot):
    name = repo()
    distribution.push(name, "v1")
    proxy.respond("HEAD", 200, path=r"/manifests/v1$", headers={"Docker-Content-Digest": "x"})
    reply = bot.handle(f"show {name}:v1", user="carol")
    assert not reply.ok
    assert reply.text.startswith(
        f"dist sent a malformed answer for {name}:v1: its Docker-Content-Digest `x` is not a digest"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manif',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}',
        b'{"schemaVersion": 2, "manifests": [{"size": 1}]}',
        b"[]",
    ],
)
def test_delete_manifest_is_refused_when_an_index_does_not_parse(distribution, proxy, bot, body):
    """Before: a truncated index read as {} — an index with no children — so the request for
    the manifest it uses was made."""
    name = repo()
    child = distribution.push(name, "1.24", label="amd64")
    index = distribution.push_index(name, "multi", [child], platforms=[("linux", "amd64")])
    proxy.respond(
        "GET",
        200,
        path=rf"/manifests/{index}$",
        body=body,
        headers={"Content-Type": OCI_INDEX, "Docker-Content-Digest": index},
    )
    reply = bot.handle(f"delete {name}:1.24 --manifest --reason old", user="alice")
    assert not reply.ok
    assert reply.text.startswith(f"dist sent a malformed answer for the manifest {name}@{index}:")
    assert bot.handle("requests", user="bob").text == "0 pending requests."


def test_an_approved_deletion_refuses_when_an_index_pushed_since_does_not_parse(
    distribution, proxy, bot
):
    name = repo()
    child = distribution.push(name, "1.24", label="amd64")
    assert bot.handle(f"delete {name}:1.24 --manifest --reason old", user="alice").ok
    index = distribution.push_index(name, "multi", [child], platforms=[("linux", "amd64")])
    truncated = manifest_body(distribution, name, index)[:40]
    proxy.respond(
        "GET",
        200,
        path=rf"/manifests/{index}$",
        body=truncated,
        headers={"Content-Type": OCI_INDEX, "Docker-Content-Digest": index},
    )
    done = bot.handle("approve 1", user="bob")
    assert not done.ok
    assert f"dist sent a malformed answer for the manifest {name}@{index}:" in done.text
    assert present(distribution, name, child)
    assert proxy.count("DELETE") == 0


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (500, None, "dist failed (HTTP 500); try again later"),
        (200, b'{"manifests": "none"}', "its `manifests` is not a list"),
        (200, b'{"manifests": [', "not valid JSON"),
    ],
)
def test_delete_manifest_is_refused_when_the_referrers_answer_fails(
    distribution, proxy, bot, status, body, why
):
    """Before: any referrers failure read as "nothing attached"."""
    name = repo()
    distribution.push(name, "v1")
    proxy.respond(
        "GET",
        status,
        path=r"/referrers/",
        body=body,
        headers={"Content-Type": OCI_INDEX} if body is not None else None,
    )
    reply = bot.handle(f"delete {name}:v1 --manifest --reason old", user="alice")
    assert not reply.ok
    assert why in reply.text
    assert bot.handle("requests", user="bob").text == "0 pending requests."


def test_a_registry_without_the_referrers_api_still_allows_deletion(distribution, proxy, bot):
    name = repo()
    distribution.push(name, "v1")
    assert bot.handle(f"delete {name}:v1 --manifest --reason old", user="alice").ok
    assert ("GET", f"/v2/{name}/referrers/") in {
        (m, p[: p.rindex("/") + 1]) for m, p in proxy.counts
    }


def test_a_manifest_over_distributions_limit_is_not_read(distribution, proxy, bot):
    name = repo()
    digest = distribution.push(name, "v1")
    huge = json.dumps({"schemaVersion": 2, "pad": "x" * (5 * 1024 * 1024)}).encode()
    proxy.respond(
        "GET",
        200,
        path=rf"/manifests/{digest}$",
        body=huge,
        headers={"Content-Type": OCI_MANIFEST},
    )
    reply = bot.handle(f"show {name}:v1", user="carol")
    assert not reply.ok
    assert reply.text == (
        f"dist sent {len(huge):,}+ bytes for the manifest {name}@{digest}, more than the "
        "4,194,304 the bot reads; nothing was read from it"
    )


def test_a_config_blob_that_is_not_its_digest_is_an_error(distribution, proxy, bot):
    name = repo()
    digest = distribution.push(name, "v1")
    config = json.loads(manifest_body(distribution, name, digest))["config"]["digest"]
    proxy.respond(
        "GET", 200, path=rf"/blobs/{config}$", body=b'{"created": "2020-01-01T00:00:00Z"}'
    )
    reply = bot.handle(f"show {name}:v1", user="carol")
    assert not reply.ok
    assert reply.text.startswith(
        f"dist sent a malformed answer for the config {name}@{config}: its content hashes to"
    )


# -- the same promise on an OCI image layout on disk ---------------------------------------


def corrupt(registry, repository: str, digest: str, data: bytes | None) -> None:
    blob = registry.root / repository / "blobs" / "sha256" / digest[len("sha256:") :]
    if data is None:
        blob.unlink()
    else:
        blob.write_bytes(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"schemaVersion": 2, "manifests": [', "does not match its digest (corrupt blob)"),
        (None, "is missing in the layout"),
    ],
)
def test_layout_refuses_to_delete_when_an_index_blob_is_unreadable(registry, make_bot, data, why):
    """Before: an unreadable index read as an index without children."""
    layout_bot = make_bot()
    child = registry.resolve("webserver/nginx", "1.24")
    index = registry.push_index("webserver/nginx", "multi", [child])
    corrupt(registry, "webserver/nginx", index, data)
    reply = layout_bot.say("alice", "delete webserver/nginx:1.24 --manifest --reason old")
    assert not reply.ok
    assert reply.text == (f"demo: webserver/nginx's manifest {index} {why}; nothing was changed")
    assert registry.image("webserver/nginx", child).digest == child


def test_layout_gc_removes_nothing_when_a_manifest_cannot_be_read(registry):
    """Before: the blobs of a manifest that did not parse counted as unused and went."""
    from bot.core.errors import Conflict

    digest = registry.resolve("webserver/nginx", "1.24")
    blobs = registry.root / "webserver/nginx/blobs/sha256"
    before = sorted(p.name for p in blobs.iterdir())
    corrupt(registry, "webserver/nginx", digest, b"{")
    with pytest.raises(Conflict, match="does not match its digest"):
        registry.gc("webserver/nginx", grace=0)
    assert sorted(p.name for p in blobs.iterdir()) == before


# -- and on Azure Container Registry (the SDK behind the local HTTPS fake) -----------------


def test_acr_a_manifest_body_that_is_not_its_digest_stops_a_deletion(
    tmp_path, clock, acr, fake_acr
):
    """Before: the SDK's DigestValidationError escaped as a bug (a generic line)."""
    tagged, untagged = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    fake_acr.push("team/api", "1.0", tagged)
    fake_acr.push_manifest("team/api", untagged)
    acr_bot = build_dispatcher(make_config(tmp_path), clock=clock, registries=[acr])
    acr_bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="t", at=clock())
    # every GET /v2/… manifest answers 200 with a body that is not the manifest asked for
    fake_acr.throttle(method="GET", path_prefix="/v2/", status=200, times=None, retry_after=None)
    reply = acr_bot.handle("delete team/api:1.0 --manifest --reason old", user="alice")
    assert not reply.ok
    assert reply.text == (
        f"prod sent a malformed answer for the manifest team/api@{untagged}: The content of "
        "retrieved manifest digest does not match the requested digest.; nothing was read "
        "from it. Try again, or ask the registry's operators to check it"
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"repositories": ["a", "b"', "not valid JSON (parse error: premature EOF)"),
        (b'{"repos": []}', "no `repositories` list"),
    ],
)
def test_repos_with_a_malformed_catalog_is_an_error(proxy, bot, body, why):
    proxy.respond("GET", 200, path=r"/_catalog", body=body)
    reply = bot.handle("repos", user="carol")
    assert not reply.ok
    assert reply.text == (
        f"dist sent a malformed answer for the catalog: {why}; nothing was read from it. Try "
        "again, or ask the registry's operators to check it"
    )


def test_a_tag_list_that_breaks_off_mid_body_is_an_error():
    from bot.core.errors import RegistryError
    from bot.core.registry import Order
    from handlers.registries.oci import OciRegistry
    from tests.support.huge_registry import HugeRegistry

    with HugeRegistry(tags=200_000, break_after=300_000) as huge:
        oci = OciRegistry("dist", huge.url, retries=1)
        with pytest.raises(RegistryError) as exc:
            oci.list_tags("huge/app", order=Order.NAME, page_size=25)
        oci.close()
    assert str(exc.value).startswith("dist broke off its answer for the tag list of huge/app (")


def test_purge_is_refused_when_an_index_does_not_parse(distribution, proxy, bot):
    """Before: the index read as having no children, so its child was planned for deletion."""
    name = repo()
    child = distribution.push(name, "1.24", label="amd64")
    index = distribution.push_index(name, "multi", [child], platforms=[("linux", "amd64")])
    proxy.respond(
        "GET",
        200,
        path=rf"/manifests/{index}$",
        body=b'{"schemaVersion": 2, "manifests": [',
        headers={"Content-Type": OCI_INDEX, "Docker-Content-Digest": index},
    )
    dry = bot.handle(f"purge --filter '{name}:^1' --ago 0d --dry-run", user="alice")
    assert not dry.ok
    assert dry.text.startswith(f"dist sent a malformed answer for the manifest {name}@{index}:")
