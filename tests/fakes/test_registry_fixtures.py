"""The fast docker-registry fixtures: tags and images written into the storage, then served
by the running registry like pushed ones (and listed by skopeo, a peer client)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.distribution import (
    DOCKER_MANIFEST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Distribution,
)

TAGS = [f"t{i:05d}" for i in range(10_000)]
START = datetime(2023, 6, 1, tzinfo=UTC)

# Every test here runs against a docker-registry process of this module's own.
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    server = Distribution(tmp_path_factory.mktemp("fixtures-registry"), in_memory=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(dist):
    with httpx.Client(base_url=dist.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def many_tags(dist):
    """One image under 10,000 tags: one pushed, 9,999 written as links."""
    digest = dist.push("fixtures/many", TAGS[0])
    started = time.perf_counter()
    written = dist.add_tags("fixtures/many", TAGS[1:], digest)
    return digest, written, time.perf_counter() - started


@pytest.fixture(scope="module")
def seeded(dist):
    """1,000 distinct images, dated out of order (a day apart, shuffled by a stride)."""
    started = time.perf_counter()
    images = dist.seed_images(
        "fixtures/seeded", 1000, created=lambda i: START + timedelta(days=(i * 379) % 1000)
    )
    return images, time.perf_counter() - started


def manifest(http: httpx.Client, repository: str, reference: str) -> httpx.Response:
    return http.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})


def tag_list(http: httpx.Client, repository: str) -> list[str]:
    response = http.get(f"/v2/{repository}/tags/list")
    response.raise_for_status()
    return response.json()["tags"] or []


def skopeo_tags(dist: Distribution, repository: str) -> list[str]:
    port = dist.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [
            shutil.which("skopeo") or "skopeo",
            "list-tags",
            "--tls-verify=false",
            f"docker://127.0.0.1:{port}/{repository}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)["Tags"]


# -- add_tags ---------------------------------------------------------------------------------


def test_ten_thousand_tags_are_written_in_seconds_and_listed(http, many_tags):
    _, written, seconds = many_tags
    assert written == 9_999
    assert seconds < 15
    listed = tag_list(http, "fixtures/many")
    assert len(listed) == 10_000
    assert sorted(listed) == TAGS


def test_a_written_tag_resolves_like_a_pushed_one(http, many_tags):
    digest = many_tags[0]
    head = http.head("/v2/fixtures/many/manifests/t09999", headers={"Accept": MANIFEST_ACCEPT})
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert manifest(http, "fixtures/many", "t04242").json()["mediaType"] == OCI_MANIFEST


def test_add_tags_moves_an_existing_tag(dist, http):
    first = dist.push("fixtures/move", "a")
    second = dist.push("fixtures/move", "b")
    dist.add_tags("fixtures/move", ["a", "c"], second)
    for tag in ("a", "b", "c"):
        assert manifest(http, "fixtures/move", tag).headers["Docker-Content-Digest"] == second
    assert manifest(http, "fixtures/move", first).status_code == 200  # now untagged


def test_add_tags_refuses_unknown_manifests_and_bad_names(dist):
    digest = dist.push("fixtures/refuse", "v1")
    with pytest.raises(ValueError, match="not in the registry"):
        dist.add_tags("fixtures/refuse", ["x"], "sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="tag"):
        dist.add_tags("fixtures/refuse", ["../escape"], digest)
    with pytest.raises(ValueError, match="repository"):
        dist.add_tags("../fixtures", ["x"], digest)
    with pytest.raises(ValueError, match="digest"):
        dist.add_tags("fixtures/refuse", ["x"], "v1")


# -- seed_images ------------------------------------------------------------------------------


def test_a_thousand_distinct_dated_images_are_seeded_fast(http, seeded):
    images, seconds = seeded
    assert seconds < 10
    assert len(images) == 1000
    assert len({image.digest for image in images}) == 1000
    assert len({image.created for image in images}) == 1000
    assert sorted(tag_list(http, "fixtures/seeded")) == [image.tag for image in images]


def test_seeded_images_are_served_with_their_dates(http, seeded):
    images, _ = seeded
    # Every 10th and the last: each request costs ~2-4 ms here, all 2,000 would take seconds.
    for tag, digest, created in [*images[::10], images[-1]]:
        response = manifest(http, "fixtures/seeded", tag)
        assert response.status_code == 200
        assert response.headers["Docker-Content-Digest"] == digest
        config = http.get(f"/v2/fixtures/seeded/blobs/{response.json()['config']['digest']}")
        assert config.status_code == 200
        assert datetime.fromisoformat(config.json()["created"]) == created
    tag, digest, _ = images[123]
    head = http.head(f"/v2/fixtures/seeded/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    assert (head.status_code, head.headers["Docker-Content-Digest"]) == (200, digest)
    assert manifest(http, "fixtures/seeded", digest).status_code == 200
    layer = manifest(http, "fixtures/seeded", digest).json()["layers"][0]["digest"]
    assert http.get(f"/v2/fixtures/seeded/blobs/{layer}").content == f"layer of {tag}".encode()


def test_a_seeded_image_deletes_by_digest_and_leaves_the_tag_list(dist, http):
    images = dist.seed_images("fixtures/delete", 5, tag=lambda i: f"d{i}")
    doomed = images[2]
    deleted = http.delete(f"/v2/fixtures/delete/manifests/{doomed.digest}")
    assert deleted.status_code == 202
    assert sorted(tag_list(http, "fixtures/delete")) == ["d0", "d1", "d3", "d4"]
    assert manifest(http, "fixtures/delete", doomed.digest).status_code == 404
    assert manifest(http, "fixtures/delete", "d3").headers["Docker-Content-Digest"] == (
        images[3].digest
    )


def test_seeding_gives_what_a_push_gives(dist):
    pushed = dist.push("fixtures/same", "v1", created="2024-03-04T05:06:07Z")
    (image,) = dist.seed_images("fixtures/same", 1, tag=["v1"], created=["2024-03-04T05:06:07Z"])
    assert image.digest == pushed
    assert image.created == datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_untagged_and_docker_images(dist, http):
    images = dist.seed_images(
        "fixtures/kinds",
        3,
        tag=[None, "docker", None],
        created=[datetime(2024, 1, 1, 12), "2024-02-01T00:00:00+02:00", START],
        media_type=DOCKER_MANIFEST,
    )
    assert tag_list(http, "fixtures/kinds") == ["docker"]
    assert [image.tag for image in images] == [None, "docker", None]
    assert images[0].created == datetime(2024, 1, 1, 12, tzinfo=UTC)  # naive read as UTC
    assert images[1].created == datetime(2024, 1, 31, 22, tzinfo=UTC)
    for image in images:
        response = manifest(http, "fixtures/kinds", image.digest)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == DOCKER_MANIFEST


# -- push_index -------------------------------------------------------------------------------


def test_an_index_references_seeded_images(dist, http):
    platforms = [("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")]
    children = dist.seed_images("fixtures/multi", 3, platform=lambda i: platforms[i])
    digest = dist.push_index("fixtures/multi", "latest", [child.digest for child in children])

    response = manifest(http, "fixtures/multi", "latest")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Type"] == OCI_INDEX
    listed = response.json()["manifests"]
    assert [m["digest"] for m in listed] == [child.digest for child in children]
    assert [(m["platform"]["os"], m["platform"]["architecture"]) for m in listed] == platforms
    for entry in listed:
        child = manifest(http, "fixtures/multi", entry["digest"])
        assert (child.status_code, len(child.content)) == (200, entry["size"])

    explicit = dist.push_index(
        "fixtures/multi", "pinned", [children[0].digest], platforms=[("linux", "s390x")]
    )
    pinned = manifest(http, "fixtures/multi", explicit).json()["manifests"]
    assert pinned[0]["platform"] == {"architecture": "s390x", "os": "linux"}


def test_an_index_of_unknown_manifests_is_refused(dist):
    with pytest.raises(httpx.HTTPStatusError):
        dist.push_index(
            "fixtures/multi", "broken", ["sha256:" + "1" * 64], platforms=[("linux", "amd64")]
        )


# -- a peer client ----------------------------------------------------------------------------


def test_skopeo_lists_every_written_tag(dist, many_tags):
    assert sorted(skopeo_tags(dist, "fixtures/many")) == TAGS


def test_skopeo_lists_every_seeded_image(dist, seeded):
    images, _ = seeded
    assert sorted(skopeo_tags(dist, "fixtures/seeded")) == [image.tag for image in images]
