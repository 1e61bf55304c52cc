"""The `oci` backend against a real docker-registry (distribution 2.8) on 127.0.0.1."""

import itertools
import json

import httpx
import pytest

from bot.core.errors import NotFound, RegistryError, Unsupported
from bot.core.registry import Registry
from handlers.registries.oci import OciRegistry
from tests.support.distribution import Distribution

_names = itertools.count(1)


def repo(prefix="app"):
    return f"{prefix}{next(_names)}/service"


@pytest.fixture
def oci(distribution):
    return OciRegistry("dist", distribution.url, retries=1)


def test_is_a_registry(oci):
    assert isinstance(oci, Registry)
    assert oci.login_server == oci.url.removeprefix("http://")


def test_catalog_follows_link_pages(distribution):
    names = [repo("cat") for _ in range(5)]
    for name in names:
        distribution.push(name, "v1")
    listed = OciRegistry("dist", distribution.url, page_size=2).repositories()
    assert set(names) <= set(listed)
    assert listed == sorted(listed)


def test_tags_have_digests_from_head(distribution, oci):
    name = repo()
    shared = distribution.push(name, "1.0", label="same")
    assert distribution.push(name, "latest", label="same") == shared
    other = distribution.push(name, "0.9")
    tags = {t.name: t.digest for t in oci.all_tags(name)}
    assert tags == {"0.9": other, "1.0": shared, "latest": shared}
    assert oci.resolve(name, "latest") == shared


def test_image_lists_every_tag_on_the_digest_with_size_and_creation(distribution, oci):
    name = repo()
    digest = distribution.push(name, "a", label="x", created="2024-05-22T00:00:00Z")
    distribution.push(name, "b", label="x", created="2024-05-22T00:00:00Z")
    info = oci.image(name, "a")
    assert info.digest == digest
    assert [t.name for t in oci.tags_on(name, digest)] == ["a", "b"]
    assert info.created.isoformat() == "2024-05-22T00:00:00+00:00"
    assert info.size > 300
    assert oci.image(name, digest) == info


def test_delete_manifest_removes_every_tag_on_it(distribution, oci):
    name = repo()
    digest = distribution.push(name, "a", label="y")
    distribution.push(name, "b", label="y")
    distribution.push(name, "keep")
    oci.delete_manifest(name, digest)
    assert oci.tag_names(name) == ["keep"]
    with pytest.raises(NotFound, match=r"^dist: .* has no manifest"):
        oci.delete_manifest(name, digest)


def test_distribution_cannot_untag(oci):
    assert oci.can_untag is False
    with pytest.raises(Unsupported, match="cannot remove a single tag; use --manifest"):
        oci.untag("x/y", "1")


def test_missing_things_are_not_found(distribution, oci):
    name = repo()
    distribution.push(name, "v1")
    with pytest.raises(NotFound, match=rf"^dist: {name} has no tag `v2`$"):
        oci.resolve(name, "v2")
    with pytest.raises(NotFound, match=r"^dist: no repository `nope/nothing`$"):
        oci.all_tags("nope/nothing")


def test_deletion_disabled_says_so(tmp_path):
    server = Distribution(tmp_path, delete=False).start()
    try:
        digest = server.push("locked/app", "v1")
        with pytest.raises(Unsupported) as exc:
            OciRegistry("ro", server.url).delete_manifest("locked/app", digest)
        assert str(exc.value) == (
            "deletion is disabled on ro: ask its operators to enable it "
            "(distribution: storage.delete.enabled)"
        )
    finally:
        server.stop()


def test_basic_auth(distribution_basic):
    name = repo()
    distribution_basic.push(name, "v1")
    good = OciRegistry("sec", distribution_basic.url, username="bot", password="s3cret-pw")
    assert good.tag_names(name) == ["v1"]
    for bad in (
        OciRegistry("sec", distribution_basic.url, username="bot", password="nope"),
        OciRegistry("sec", distribution_basic.url),
    ):
        with pytest.raises(RegistryError) as exc:
            bad.tag_names(name)
        assert str(exc.value) == (
            "sec rejected the bot's credentials (401); check the "
            "registry's username and password_env/token_env in the config"
        )
        assert "nope" not in str(exc.value)


def test_unreachable_registry(distribution):
    from tests.support.helpers import free_port

    dead = OciRegistry("gone", f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01)
    with pytest.raises(RegistryError) as exc:
        dead.repositories()
    assert str(exc.value).startswith("gone (http://127.0.0.1:")
    assert str(exc.value).endswith(
        "is unreachable (connection refused); check the URL and that the registry is running"
    )


# -- wire-level behaviour a local distribution cannot show: an injected transport -----------


def scripted(*responses):
    """A transport answering with ``responses`` in order, recording the requests."""
    seen = []

    def handler(request):
        seen.append(request)
        return (
            responses[len(seen) - 1](request)
            if callable(responses[len(seen) - 1])
            else responses[len(seen) - 1]
        )

    return httpx.MockTransport(handler), seen


def test_throttling_is_retried_with_retry_after_then_reported():
    transport, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200, json={"repositories": ["a"]}),
    )
    assert OciRegistry("r", "https://r.test", transport=transport).repositories() == ["a"]
    assert len(seen) == 2
    transport, seen = scripted(*[httpx.Response(429, headers={"Retry-After": "0"})] * 3)
    with pytest.raises(RegistryError, match=r"^r is throttling requests \(429\); try again in 0"):
        OciRegistry("r", "https://r.test", transport=transport).repositories()
    assert len(seen) == 3


def test_server_errors_are_retried_then_reported():
    transport, seen = scripted(*[httpx.Response(503)] * 3)
    with pytest.raises(RegistryError, match=r"^r failed \(HTTP 503\); try again later$"):
        OciRegistry("r", "https://r.test", transport=transport, backoff=0).repositories()
    assert len(seen) == 3


def test_bearer_challenge_token_per_scope_is_cached():
    challenge = (
        'Bearer realm="https://auth.test/token",service="r.test",scope="repository:team/app:pull"'
    )

    def registry(request):
        if request.url.host == "auth.test":
            assert request.url.params["scope"] == "repository:team/app:pull"
            assert request.headers["Authorization"].startswith("Basic ")
            return httpx.Response(200, json={"token": "tok-1", "expires_in": 300})
        if request.headers.get("Authorization") != "Bearer tok-1":
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"name": "team/app", "tags": ["b", "a"]})

    seen = []
    transport = httpx.MockTransport(lambda r: (seen.append(r.url.host), registry(r))[1])
    oci = OciRegistry(
        "r",
        "https://r.test",
        username="u",
        password="p",
        token_realms=("https://auth.test",),
        transport=transport,
    )
    assert oci.tag_names("team/app") == ["a", "b"]
    assert oci.tag_names("team/app") == ["a", "b"]
    assert seen == ["r.test", "auth.test", "r.test", "r.test"]


@pytest.mark.parametrize(
    ("realm", "configured", "sent"),
    [
        ("https://r.test/token", (), True),  # the registry's own host
        ("https://r.test:8443/token", (), False),  # same host, another port: another server
        ("https://evil.test/token", (), False),  # a host the challenge chose
        ("https://evil.test/token", ("https://auth.test",), False),
        ("https://auth.test/token", ("https://auth.test",), True),  # a configured realm
        ("http://auth.test/token", ("https://auth.test",), False),  # never in clear
        ("http://127.0.0.1:9/token", (), False),  # loopback is not the registry either
    ],
)
def test_basic_credentials_go_only_to_the_registry_or_a_configured_realm(realm, configured, sent):
    """The challenge used to choose: any https realm got the password. Another realm is
    asked for an anonymous token instead."""
    seen = []

    def handler(request):
        if request.url.path == "/token":
            seen.append(request.headers.get("Authorization"))
            return httpx.Response(200, json={"token": "tok"})
        if request.headers.get("Authorization") != "Bearer tok":
            challenge = f'Bearer realm="{realm}",service="r.test"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"repositories": ["a"]})

    oci = OciRegistry(
        "r",
        "https://r.test",
        username="u",
        password="secret-pw",
        token_realms=configured,
        transport=httpx.MockTransport(handler),
    )
    assert oci.repositories() == ["a"]
    assert len(seen) == 1
    assert (seen[0] is not None and seen[0].startswith("Basic ")) is sent


def test_tokens_are_cached_under_the_scope_asked_for_not_the_challenges():
    """A challenge naming another repository's scope (or a wider action) used to cache the
    token under that scope, where later requests for that repository would send it."""
    tokens = []

    def handler(request):
        if request.url.host == "auth.test":
            tokens.append(request.url.params["scope"])
            return httpx.Response(200, json={"token": f"tok-{len(tokens)}"})
        auth = request.headers.get("Authorization")
        if request.url.path.startswith("/v2/team/app/"):
            if auth != "Bearer tok-1":
                challenge = (
                    'Bearer realm="https://auth.test/token",service="r.test",'
                    'scope="repository:other/repo:pull"'
                )
                return httpx.Response(401, headers={"WWW-Authenticate": challenge})
            return httpx.Response(200, json={"name": "team/app", "tags": ["a"]})
        if auth is None:
            challenge = (
                'Bearer realm="https://auth.test/token",service="r.test",'
                'scope="repository:other/repo:pull"'
            )
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"name": "other/repo", "tags": [auth]})

    oci = OciRegistry("r", "https://r.test", transport=httpx.MockTransport(handler))
    assert oci.tag_names("team/app") == ["a"]
    # other/repo never had its own token: it is challenged and gets one, not team/app's.
    assert oci.tag_names("other/repo") == ["Bearer tok-2"]
    assert tokens == ["repository:other/repo:pull"] * 2


def test_link_header_pagination_with_relative_urls():
    pages = {
        "/v2/team/app/tags/list?n=2": (
            ["a", "b"],
            '</v2/team/app/tags/list?n=2&last=b>; rel="next"',
        ),
        "/v2/team/app/tags/list?n=2&last=b": (["c"], None),
    }

    def handler(request):
        path = request.url.raw_path.decode()
        tags, link = pages[path]
        return httpx.Response(200, json={"tags": tags}, headers={"Link": link} if link else {})

    oci = OciRegistry("r", "https://r.test", transport=httpx.MockTransport(handler), page_size=2)
    assert oci.tag_names("team/app") == ["a", "b", "c"]


def test_error_bodies_are_read_not_shown_raw():
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access denied"}]})
    transport, _ = scripted(httpx.Response(403, content=body))
    with pytest.raises(RegistryError) as exc:
        OciRegistry("r", "https://r.test", transport=transport).repositories()
    assert str(exc.value) == (
        "r denied the bot access to the catalog (403); give the bot's "
        "account pull and delete rights"
    )
