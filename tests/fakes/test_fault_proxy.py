"""The fault-injection proxy, in front of a real docker-registry, driven with httpx."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.distribution import MANIFEST_ACCEPT, Distribution
from tests.support.fault_proxy import FaultProxy

ACCEPT = {"Accept": MANIFEST_ACCEPT}

# Every test here runs against a docker-registry process of this module's own.
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    server = Distribution(tmp_path_factory.mktemp("proxied-registry"), in_memory=True).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(dist):
    server = FaultProxy(dist.url).start()
    yield server
    server.stop()


@pytest.fixture
def client(proxy):
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        yield http


def exists(dist: Distribution, repository: str, digest: str) -> bool:
    """Asked of the registry itself, not through the proxy."""
    response = httpx.head(f"{dist.url}/v2/{repository}/manifests/{digest}", headers=ACCEPT)
    return response.status_code == 200


# -- pass-through -----------------------------------------------------------------------------


def test_head_get_delete_pass_through_on_one_connection(dist, proxy, client):
    digest = dist.push("proxied/app", "v1")
    path = f"/v2/proxied/app/manifests/{digest}"

    head = client.head("/v2/proxied/app/manifests/v1", headers=ACCEPT)
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.content == b""
    get = client.get(path, headers=ACCEPT)
    assert get.status_code == 200
    assert int(head.headers["Content-Length"]) == len(get.content)
    assert hashlib.sha256(get.content).hexdigest() == digest.removeprefix("sha256:")
    assert client.delete(path).status_code == 202
    assert client.get(path, headers=ACCEPT).status_code == 404
    assert not exists(dist, "proxied/app", digest)

    assert proxy.connections_accepted == 1  # keep-alive, HEAD's missing body included
    assert proxy.upstream_statuses == [
        ("HEAD", "/v2/proxied/app/manifests/v1", 200),
        ("GET", path, 200),
        ("DELETE", path, 202),
        ("GET", path, 404),
    ]
    assert proxy.count("GET", path) == 2
    assert proxy.counts["DELETE", path] == 1
    assert proxy.count() == 4


def test_head_without_accept_reaches_the_registry_unchanged(dist, client):
    """No Accept header is added on the way (distribution answers such a HEAD 404)."""
    dist.push("proxied/plain", "v1")
    direct = httpx.head(f"{dist.url}/v2/proxied/plain/manifests/v1")
    proxied = client.head("/v2/proxied/plain/manifests/v1")
    assert proxied.status_code == direct.status_code


def test_uploads_keep_location_chunked_bodies_and_stream(dist, proxy, client):
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    start = client.post("/v2/proxied/blob/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["Location"]
    assert urlsplit(location).netloc in ("", urlsplit(proxy.url).netloc)  # back to the proxy

    def pieces():  # no length: httpx sends Transfer-Encoding: chunked
        for offset in range(0, len(data), 100_000):
            yield data[offset : offset + 100_000]

    patch = client.patch(location, content=pieces())
    assert patch.status_code == 202
    assert patch.headers["Range"] == f"0-{len(data) - 1}"
    done = client.put(f"{patch.headers['Location']}&digest={digest}")
    assert done.status_code == 201
    assert done.headers["Docker-Content-Digest"] == digest

    received = bytearray()
    with client.stream("GET", f"/v2/proxied/blob/blobs/{digest}") as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(data)
        for piece in response.iter_raw():
            received += piece
    assert bytes(received) == data
    assert proxy.connections_accepted == 1


def test_a_chunked_answer_and_link_headers_pass_through(dist, client):
    digest = dist.push("proxied/tags", "v0")
    dist.add_tags("proxied/tags", [f"v{i}" for i in range(1, 3000)], digest)
    direct = httpx.get(f"{dist.url}/v2/proxied/tags/tags/list")
    proxied = client.get("/v2/proxied/tags/tags/list")
    assert direct.headers.get("Transfer-Encoding") == "chunked"  # distribution streams it
    assert proxied.headers.get("Transfer-Encoding") == "chunked"
    assert sorted(proxied.json()["tags"]) == sorted(direct.json()["tags"])
    assert len(proxied.json()["tags"]) == 3000

    dist.push("proxied/tags2", "v0")
    page = client.get("/v2/_catalog", params={"n": 1})
    assert page.headers["Link"] == httpx.get(f"{dist.url}/v2/_catalog?n=1").headers["Link"]
    assert page.headers["Link"].startswith("</v2/_catalog?")


# -- injected answers -------------------------------------------------------------------------


def test_an_injected_429_with_retry_after_then_the_real_answer(dist, proxy, client):
    dist.push("proxied/throttled", "v1")
    rule = proxy.respond("GET", 429, path=r"/tags/list$", times=1, retry_after=2)

    throttled = client.get("/v2/proxied/throttled/tags/list")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert throttled.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    answered = client.get("/v2/proxied/throttled/tags/list")
    assert (answered.status_code, answered.json()["tags"]) == (200, ["v1"])

    assert rule.applied == 1
    assert proxy.count("GET", "/v2/proxied/throttled/tags/list") == 2
    assert proxy.upstream_statuses == [("GET", "/v2/proxied/throttled/tags/list", 200)]
    assert [(e.fault, e.forwarded, e.status) for e in proxy.exchanges] == [
        ("respond", False, 429),
        (None, True, 200),
    ]


def test_an_always_failing_method_until_the_rules_are_cleared(dist, proxy, client):
    digest = dist.push("proxied/failing", "v1")
    proxy.respond("DELETE", 503)
    proxy.respond("HEAD", 500, body=b"")
    for _ in range(3):
        assert client.delete(f"/v2/proxied/failing/manifests/{digest}").status_code == 503
    head = client.head("/v2/proxied/failing/manifests/v1", headers=ACCEPT)
    assert (head.status_code, head.content) == (500, b"")
    assert client.get("/v2/proxied/failing/manifests/v1", headers=ACCEPT).status_code == 200
    assert exists(dist, "proxied/failing", digest)
    proxy.clear()
    assert client.delete(f"/v2/proxied/failing/manifests/{digest}").status_code == 202
    assert proxy.count("DELETE") == 4
    assert [s for m, _, s in proxy.upstream_statuses if m == "DELETE"] == [202]


def test_a_limited_rule_is_shared_exactly_between_threads(dist, proxy):
    dist.push("proxied/busy", "v1")
    proxy.respond("GET", 503, times=5)

    def fetch(_: int) -> int:
        return httpx.get(f"{proxy.url}/v2/proxied/busy/tags/list").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(fetch, range(40)))
    assert sorted(statuses) == [200] * 35 + [503] * 5
    assert proxy.count("GET") == 40


# -- delays -----------------------------------------------------------------------------------


def test_a_delayed_delete_lands_after_the_client_gave_up(dist, proxy, client):
    digest = dist.push("proxied/late", "v1")
    path = f"/v2/proxied/late/manifests/{digest}"
    proxy.delay("DELETE", 1.0, path=r"/manifests/sha256:")

    with pytest.raises(httpx.ReadTimeout):
        client.delete(path, timeout=0.2)
    assert exists(dist, "proxied/late", digest)  # the proxy still holds it
    assert proxy.wait_forwarded("DELETE", path, timeout=10)
    assert not exists(dist, "proxied/late", digest)
    assert proxy.upstream_statuses == [("DELETE", path, 202)]


def test_a_delayed_answer_hides_a_delete_that_already_happened(dist, proxy, client):
    digest = dist.push("proxied/slow-answer", "v1")
    path = f"/v2/proxied/slow-answer/manifests/{digest}"
    proxy.delay_response("DELETE", 2.0, times=1)

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.delete(path, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert proxy.wait_forwarded("DELETE", path, timeout=1)
    assert not exists(dist, "proxied/slow-answer", digest)
    # The rule is spent: a retry goes straight through and meets the missing manifest.
    assert client.delete(path).status_code == 404


def test_a_delayed_request_is_answered_late_when_the_client_waits(dist, proxy, client):
    dist.push("proxied/patient", "v1")
    proxy.delay("GET", 0.3, path=r"/tags/list$")
    started = time.monotonic()
    assert client.get("/v2/proxied/patient/tags/list").status_code == 200
    assert time.monotonic() - started >= 0.3


# -- dropped connections ----------------------------------------------------------------------


def test_a_dropped_connection_then_recovery(dist, proxy, client):
    dist.push("proxied/dropped", "v1")
    proxy.drop("GET", path=r"/tags/list$", times=1)

    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v2/proxied/dropped/tags/list")
    assert client.get("/v2/proxied/dropped/tags/list").json()["tags"] == ["v1"]
    assert [(e.fault, e.forwarded, e.status) for e in proxy.exchanges] == [
        ("drop", False, None),
        (None, True, 200),
    ]
    assert proxy.connections_accepted == 2
    assert proxy.upstream_statuses == [("GET", "/v2/proxied/dropped/tags/list", 200)]


def test_a_connection_dropped_after_the_delete_reached_the_registry(dist, proxy, client):
    digest = dist.push("proxied/lost-answer", "v1")
    path = f"/v2/proxied/lost-answer/manifests/{digest}"
    proxy.drop("DELETE", after_forward=True, times=1)

    with pytest.raises(httpx.RemoteProtocolError):
        client.delete(path)
    assert not exists(dist, "proxied/lost-answer", digest)
    assert proxy.upstream_statuses == [("DELETE", path, 202)]


# -- life cycle -------------------------------------------------------------------------------


def test_stop_wakes_a_delayed_request_and_frees_the_port(dist):
    proxy = FaultProxy(dist.url).start()
    proxy.delay("GET", 60)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            httpx.get(f"{proxy.url}/v2/", timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert _eventually(lambda: proxy.count("GET") == 1)
    started = time.monotonic()
    proxy.stop()
    waiter.join(timeout=5)
    assert time.monotonic() - started < 3
    assert not waiter.is_alive()
    assert len(errors) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proxy.url}/v2/", timeout=2)


def test_an_unreachable_upstream_is_a_502(dist):
    with FaultProxy("http://127.0.0.1:9") as proxy:
        response = httpx.get(f"{proxy.url}/v2/", timeout=5)
    assert response.status_code == 502
    assert proxy.exchanges[0].status is None


def _eventually(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False
