"""The ACR fake, driven through the real azure-containerregistry client: server-side sorting and
paging with ACR's Link header, repository and manifest properties, locks, and fault injection."""

import json
import ssl
import threading
import time
import urllib.parse
import urllib.request

import pytest
from azure.containerregistry import (
    ArtifactManifestOrder,
    ArtifactTagOrder,
    ContainerRegistryClient,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError

from tests.support.fake_acr import StaticCredential

D = {c: "sha256:" + c * 64 for c in "0123456789abcdef"}


@pytest.fixture
def make_client(fake_acr):
    def make(**overrides):
        options = {"connection_verify": fake_acr.ca_path, "retry_total": 0, **overrides}
        return ContainerRegistryClient(
            fake_acr.url, StaticCredential(), audience="https://management.azure.com", **options
        )

    return make


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def raw(fake_acr):
    """GET a data-plane path with a token the fake issued: (status, headers, JSON body)."""
    fake_acr.state.issued.add("raw-token")
    context = ssl.create_default_context(cafile=fake_acr.ca_path)

    def get(path):
        request = urllib.request.Request(
            fake_acr.url + path, headers={"Authorization": "Bearer raw-token"}
        )
        try:
            with urllib.request.urlopen(request, context=context) as response:
                return response.status, response.headers, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.headers, json.loads(error.read() or b"null")

    return get


def names(items):
    return [item.name for item in items]


# -- paging ------------------------------------------------------------------------------------


def test_250_tags_in_pages_of_100_take_three_list_requests(fake_acr, client):
    for i in range(250):
        fake_acr.push("team/big", f"tag-{i:03}", D["1"], offset=i)
    fake_acr.reset_counts()

    tags = names(client.list_tag_properties("team/big", results_per_page=100))

    assert tags == [f"tag-{i:03}" for i in range(250)]
    assert fake_acr.count("GET", "/acr/v1/team/big/_tags") == 3
    assert fake_acr.count("GET", "/acr/v1/team/big/_tags", challenges=True) == 6  # 401s first
    # The SDK replays ACR's Link verbatim: relative, name %2F-encoded, ending in `orderby=`.
    assert [r.raw for r in fake_acr.requests if r.method == "GET" and r.status == 200] == [
        "/acr/v1/team%2Fbig/_tags?n=100",
        "/acr/v1/team%2Fbig/_tags?last=tag-099&n=100&orderby=",
        "/acr/v1/team%2Fbig/_tags?last=tag-199&n=100&orderby=",
    ]


def test_stopping_after_the_first_page_costs_one_request(fake_acr, client):
    for i in range(250):
        fake_acr.push("big", f"tag-{i:03}", D["1"], offset=i)
    fake_acr.reset_counts()

    pages = client.list_tag_properties(
        "big", order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING, results_per_page=100
    ).by_page()
    first = names(next(pages))

    assert first == [f"tag-{i:03}" for i in range(249, 149, -1)]
    assert fake_acr.count("GET", "/acr/v1/big/_tags") == 1
    assert fake_acr.count("GET") == 1  # (the token round trips are POSTs)


@pytest.fixture
def timed(fake_acr):
    """Tags whose names and times disagree; `b` and `d` were pushed at the same time."""
    for tag, offset in {"a": 30, "b": 10, "c": 40, "d": 10, "e": 20}.items():
        fake_acr.push("app", tag, D["1"], offset=offset)
    return fake_acr


@pytest.mark.parametrize("per_page", [None, 1, 2, 10])
def test_tag_orders(timed, client, per_page):
    def listed(order):
        return names(client.list_tag_properties("app", order_by=order, results_per_page=per_page))

    assert listed(None) == ["a", "b", "c", "d", "e"]
    assert listed("none") == ["a", "b", "c", "d", "e"]
    assert listed(ArtifactTagOrder.LAST_UPDATED_ON_ASCENDING) == ["b", "d", "e", "a", "c"]
    assert listed(ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING) == ["c", "a", "e", "d", "b"]


def test_time_order_continues_after_the_named_tag_and_keeps_the_order_in_link(timed, raw):
    status, headers, body = raw("/acr/v1/app/_tags?n=2&orderby=timedesc")
    assert (status, [t["name"] for t in body["tags"]]) == (200, ["c", "a"])
    assert headers["Link"] == '</acr/v1/app/_tags?last=a&n=2&orderby=timedesc>; rel="next"'
    _, headers, body = raw("/acr/v1/app/_tags?last=a&n=2&orderby=timedesc")
    assert [t["name"] for t in body["tags"]] == ["e", "d"]
    _, headers, body = raw("/acr/v1/app/_tags?last=d&n=2&orderby=timedesc")
    assert [t["name"] for t in body["tags"]] == ["b"]
    assert "Link" not in headers


def test_a_time_ordered_walk_survives_deleting_as_it_goes(timed, client):
    """A cleanup that deletes each page's tags before asking for the next one."""
    seen = []
    pages = client.list_tag_properties(
        "app", order_by=ArtifactTagOrder.LAST_UPDATED_ON_ASCENDING, results_per_page=2
    ).by_page()
    for page in pages:
        batch = names(page)
        seen += batch
        for tag in batch:
            client.delete_tag("app", tag)
    assert seen == ["b", "d", "e", "a", "c"]
    assert timed.state.repositories["app"] == {}


def test_digest_filter_is_kept_across_pages(fake_acr, client):
    for i in range(5):
        fake_acr.push("app", f"t{i}", D["1"] if i % 2 else D["2"], offset=i)
    tags = names(client.list_tag_properties("app", digest=D["2"], results_per_page=1))
    assert tags == ["t0", "t2", "t4"]


def test_catalog_is_sorted_and_paged(fake_acr, client, raw):
    for repo in ["zeta", "library/busybox", "alpha", "library/alpine", "mid"]:
        fake_acr.push(repo, "v1", D["1"])
    fake_acr.reset_counts()

    repos = list(client.list_repository_names(results_per_page=2))

    assert repos == ["alpha", "library/alpine", "library/busybox", "mid", "zeta"]
    assert fake_acr.count("GET", "/acr/v1/_catalog") == 3
    _, headers, body = raw("/acr/v1/_catalog?n=2&last=alpha")
    assert body == {"repositories": ["library/alpine", "library/busybox"]}
    assert headers["Link"] == '</acr/v1/_catalog?last=library%2Fbusybox&n=2&orderby=>; rel="next"'
    _, headers, body = raw("/acr/v1/_catalog?last=library%2Fbusybox&n=2&orderby=")
    assert body == {"repositories": ["mid", "zeta"]}
    assert "Link" not in headers


def test_default_page_size_is_100(fake_acr, client):
    for i in range(150):
        fake_acr.push(f"repo{i:03}", "v1", D["1"])
    fake_acr.reset_counts()
    assert len(list(client.list_repository_names())) == 150
    assert [r.raw for r in fake_acr.requests if r.method == "GET" and r.status == 200] == [
        "/acr/v1/_catalog",
        "/acr/v1/_catalog?last=repo099&n=100&orderby=",
    ]


def test_an_unknown_repository_is_name_unknown(fake_acr, client, raw):
    with pytest.raises(ResourceNotFoundError):
        list(client.list_tag_properties("nope"))
    with pytest.raises(ResourceNotFoundError):
        list(client.list_manifest_properties("nope"))
    with pytest.raises(ResourceNotFoundError):
        client.get_repository_properties("nope")
    status, _, body = raw("/acr/v1/nope/_tags")
    assert (status, body["errors"][0]["code"]) == (404, "NAME_UNKNOWN")


def test_an_unknown_order_is_refused(timed, raw):
    status, _, body = raw("/acr/v1/app/_tags?orderby=bogus")
    assert (status, body["errors"][0]["code"]) == (400, "BAD_REQUEST")


# -- manifests and repository properties ---------------------------------------------------------


@pytest.fixture
def images(fake_acr):
    fake_acr.push("app", "v1", D["3"], offset=10)
    fake_acr.push("app", "latest", D["3"], offset=50)
    fake_acr.push_manifest("app", D["1"], offset=5)  # untagged
    fake_acr.push_index(
        "app",
        D["9"],
        [(D["a"], "amd64", "linux"), (D["b"], "arm64", "linux")],
        tags=["multi"],
        offset=40,
    )
    return fake_acr


def test_repository_properties_count_tags_and_every_manifest(images, client):
    props = client.get_repository_properties("app")
    assert (props.name, props.tag_count, props.manifest_count) == ("app", 3, 5)
    assert props.created_on.year == 2023 and props.last_updated_on > props.created_on
    assert props.can_delete and props.can_write


def test_manifest_listing_includes_untagged_and_index_children(images, client):
    manifests = {m.digest: m for m in client.list_manifest_properties("app")}
    assert list(manifests) == sorted(manifests) == [D["1"], D["3"], D["9"], D["a"], D["b"]]
    assert manifests[D["3"]].tags == ["latest", "v1"]
    assert manifests[D["1"]].tags is None  # untagged: no `tags` key, as ACR answers
    assert manifests[D["9"]].architecture is None  # a manifest list has no platform
    assert (manifests[D["b"]].architecture, manifests[D["b"]].operating_system) == (
        "arm64",
        "linux",
    )


def test_manifest_orders_and_paging(images, client, fake_acr):
    def listed(order, per_page=2):
        pages = client.list_manifest_properties("app", order_by=order, results_per_page=per_page)
        return [m.digest for m in pages]

    fake_acr.reset_counts()
    assert listed(ArtifactManifestOrder.LAST_UPDATED_ON_ASCENDING) == [
        D["1"],
        D["9"],
        D["a"],
        D["b"],
        D["3"],  # re-pushed as `latest` at 50
    ]
    assert fake_acr.count("GET", "/acr/v1/app/_manifests") == 3
    assert listed(ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING, per_page=3) == [
        D["3"],
        D["b"],
        D["a"],
        D["9"],
        D["1"],
    ]


def test_manifest_link_carries_the_encoded_digest(images, raw):
    _, headers, body = raw("/acr/v1/app/_manifests?n=1")
    assert [m["digest"] for m in body["manifests"]] == [D["1"]]
    assert headers["Link"] == (
        f'</acr/v1/app/_manifests?last=sha256%3A{"1" * 64}&n=1&orderby=>; rel="next"'
    )


def test_manifest_properties_by_tag_and_the_index_references(images, client, raw):
    props = client.get_manifest_properties("app", "multi")
    assert (props.digest, props.tags, props.size_in_bytes) == (D["9"], ["multi"], 5325)
    _, _, body = raw(f"/acr/v1/app/_manifests/{D['9']}")
    assert body["manifest"]["references"] == [
        {"digest": D["a"], "architecture": "amd64", "os": "linux"},
        {"digest": D["b"], "architecture": "arm64", "os": "linux"},
    ]
    assert body["manifest"]["mediaType"].endswith("manifest.list.v2+json")


def test_untag_leaves_the_manifest_and_delete_manifest_takes_its_tags(images, client):
    client.delete_tag("app", "v1")
    manifests = {m.digest: m.tags for m in client.list_manifest_properties("app")}
    assert manifests[D["3"]] == ["latest"]
    client.delete_tag("app", "latest")
    manifests = {m.digest: m.tags for m in client.list_manifest_properties("app")}
    assert manifests[D["3"]] is None  # still there, untagged

    client.delete_manifest("app", "multi")
    assert names(client.list_tag_properties("app")) == []
    assert D["9"] not in {m.digest for m in client.list_manifest_properties("app")}
    assert client.get_repository_properties("app").manifest_count == 4  # children stay


def test_deleting_the_last_manifest_removes_the_repository(fake_acr, client):
    fake_acr.push("solo", "v1", D["1"])
    fake_acr.push("other", "v1", D["1"])
    client.delete_manifest("solo", D["1"])
    assert list(client.list_repository_names()) == ["other"]


# -- locks ------------------------------------------------------------------------------------


def test_tag_lock_is_listed_and_refuses_deletes(images, client, raw):
    client.update_tag_properties("app", "v1", can_delete=False)
    tags = {t.name: t for t in client.list_tag_properties("app")}
    assert (tags["v1"].can_delete, tags["v1"].can_write) == (False, True)
    assert tags["latest"].can_delete is True

    with pytest.raises(HttpResponseError) as refused:
        client.delete_tag("app", "v1")
    assert refused.value.status_code == 405
    assert b"REGISTRY_DISALLOWED_OPERATION" in refused.value.response.body()
    # Deleting the manifest would take the locked tag with it: refused too.
    with pytest.raises(HttpResponseError) as refused:
        client.delete_manifest("app", D["3"])
    assert refused.value.status_code == 405
    assert set(images.state.repositories["app"]) == {"v1", "latest", "multi"}

    client.update_tag_properties("app", "v1", can_delete=True)
    client.delete_tag("app", "v1")
    assert "v1" not in names(client.list_tag_properties("app"))


def test_write_lock_also_blocks_delete(images, client):
    client.update_tag_properties("app", "latest", can_write=False)
    with pytest.raises(HttpResponseError) as refused:
        client.delete_tag("app", "latest")
    assert refused.value.status_code == 405


def test_manifest_lock_is_listed_and_refuses_delete(images, client):
    props = client.update_manifest_properties("app", D["1"], can_write=False)
    assert (props.can_write, props.can_delete) == (False, True)
    listed = {m.digest: m for m in client.list_manifest_properties("app")}
    assert listed[D["1"]].can_write is False and listed[D["3"]].can_write is True
    with pytest.raises(HttpResponseError) as refused:
        client.delete_manifest("app", D["1"])
    assert refused.value.status_code == 405
    images.set_attributes("app", D["1"], write_enabled=True)
    client.delete_manifest("app", D["1"])


def test_list_disabled_items_are_hidden_but_readable(images, client):
    images.set_attributes("app", "v1", list_enabled=False)
    assert "v1" not in names(client.list_tag_properties("app"))
    assert client.get_tag_properties("app", "v1").can_list is False


# -- faults and counting ----------------------------------------------------------------------


def test_throttle_answers_429_with_retry_after(fake_acr, client):
    fake_acr.push("app", "v1", D["1"])
    fake_acr.throttle(method="DELETE", times=1, retry_after=7)
    with pytest.raises(HttpResponseError) as throttled:
        client.delete_tag("app", "v1")
    assert throttled.value.status_code == 429
    assert throttled.value.response.headers["Retry-After"] == "7"
    client.delete_tag("app", "v1")  # only one was asked for
    assert fake_acr.count("DELETE", status=429) == 1
    assert fake_acr.count("DELETE", status=202) == 1


@pytest.mark.slow  # waits out Retry-After
def test_the_sdk_honours_retry_after(fake_acr, make_client):
    fake_acr.push("app", "v1", D["1"])
    client = make_client(retry_total=3)
    fault = fake_acr.throttle(method="GET", path_prefix="/acr/v1/app/_tags", times=1, retry_after=1)
    started = time.monotonic()
    assert names(client.list_tag_properties("app")) == ["v1"]
    assert time.monotonic() - started >= 0.95
    assert fault.hits == 1
    assert fake_acr.count("GET", "/acr/v1/app/_tags", status=429) == 1
    assert fake_acr.count("GET", "/acr/v1/app/_tags", status=200) == 1


def test_throttle_matches_method_and_path(fake_acr, client):
    fake_acr.push("app", "v1", D["1"])
    fake_acr.push("other", "v1", D["1"])
    fake_acr.throttle(path_prefix="/acr/v1/other/", times=None, retry_after=None)
    assert names(client.list_tag_properties("app")) == ["v1"]
    with pytest.raises(HttpResponseError) as throttled:
        client.get_tag_properties("other", "v1")
    assert "Retry-After" not in throttled.value.response.headers
    fake_acr.clear_faults()
    assert client.get_tag_properties("other", "v1").digest == D["1"]


@pytest.mark.slow  # waits out delays or expiries
def test_delay_applies_to_its_method_only(fake_acr, client):
    fake_acr.push("app", "v1", D["1"])
    fake_acr.push("app", "v2", D["1"])
    fake_acr.delay(method="DELETE", seconds=0.5)
    started = time.monotonic()
    client.get_tag_properties("app", "v1")
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    client.delete_tag("app", "v1")
    assert time.monotonic() - started >= 0.5


@pytest.mark.slow  # waits out delays or expiries
def test_a_delay_longer_than_the_client_timeout(fake_acr, make_client):
    fake_acr.push("app", "v1", D["1"])
    fake_acr.delay(method="DELETE", seconds=30)
    client = make_client(read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ServiceResponseError):
        client.delete_tag("app", "v1")
    assert time.monotonic() - started < 5


@pytest.mark.slow  # waits out delays or expiries
def test_counting_is_thread_safe(fake_acr, client):
    fake_acr.push("app", "v1", D["1"])
    fake_acr.reset_counts()

    def work():
        for _ in range(5):
            client.get_tag_properties("app", "v1")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake_acr.count("GET", "/acr/v1/app/_tags/v1") == 40
    assert fake_acr.count(path_prefix="/oauth2/token") == 40


# -- tokens ------------------------------------------------------------------------------------


def _post(fake_acr, path, form):
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(fake_acr.url + path, data=body, method="POST")
    context = ssl.create_default_context(cafile=fake_acr.ca_path)
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _get(fake_acr, path, token):
    request = urllib.request.Request(
        fake_acr.url + path, headers={"Authorization": f"Bearer {token}"}
    )
    context = ssl.create_default_context(cafile=fake_acr.ca_path)
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def _access(fake_acr, scope):
    from tests.support.fake_acr import ARM_TOKEN

    service = fake_acr.login_server
    _, body = _post(
        fake_acr,
        "/oauth2/exchange",
        {"grant_type": "access_token", "service": service, "access_token": ARM_TOKEN},
    )
    status, body = _post(
        fake_acr,
        "/oauth2/token",
        {
            "grant_type": "refresh_token",
            "service": service,
            "scope": scope,
            "refresh_token": body["refresh_token"],
        },
    )
    assert status == 200
    return body["access_token"]


def test_an_access_token_serves_only_its_scope(fake_acr):
    fake_acr.push("a", "1", D["1"])
    fake_acr.push("b", "1", D["1"])
    token = _access(fake_acr, "repository:a:metadata_read")
    assert _get(fake_acr, "/acr/v1/a/_tags/1", token)[0] == 200
    status, headers = _get(fake_acr, "/acr/v1/b/_tags/1", token)
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        f'Bearer realm="{fake_acr.url}/oauth2/token",service="{fake_acr.login_server}",'
        'scope="repository:b:metadata_read",error="invalid_token"'
    )
    assert _get(fake_acr, "/acr/v1/_catalog", token)[0] == 401


@pytest.mark.slow  # waits out delays or expiries
def test_tokens_expire(fake_acr):
    fake_acr.push("a", "1", D["1"])
    fake_acr.token_ttl(refresh=0.5, access=0.5)
    token = _access(fake_acr, "repository:a:metadata_read")
    assert _get(fake_acr, "/acr/v1/a/_tags/1", token)[0] == 200
    time.sleep(0.6)
    assert _get(fake_acr, "/acr/v1/a/_tags/1", token)[0] == 401


def test_an_expired_refresh_token_gets_no_access_token(fake_acr):
    from tests.support.fake_acr import ARM_TOKEN

    fake_acr.token_ttl(refresh=0.1)
    form = {"grant_type": "access_token", "service": "x", "access_token": ARM_TOKEN}
    refresh = _post(fake_acr, "/oauth2/exchange", form)[1]["refresh_token"]
    time.sleep(0.2)
    form = {"grant_type": "refresh_token", "service": "x", "scope": "registry:catalog:*"}
    assert _post(fake_acr, "/oauth2/token", {**form, "refresh_token": refresh})[0] == 401


def test_requests_are_counted_by_kind(fake_acr, client):
    """The SDK alone (no token cache): four requests for each call that does the work."""
    fake_acr.push("a", "1", D["1"])
    fake_acr.reset_counts()
    client.get_tag_properties("a", "1")
    client.get_tag_properties("a", "1")
    assert fake_acr.kinds() == {"exchange": 2, "token": 2, "challenge": 2, "data": 2, "arm": 0}
