"""`report` and a purge's "frees" on docker-registry, with layers shared across tags and
repositories: the unique-blob totals equal a direct count over the registry's storage."""

from __future__ import annotations

import os
from pathlib import Path

from bot.core import formatting as fmt


def _storage_bytes(storage: Path, repositories: list[str]) -> dict[str, int]:
    """Per repository, and `*` for all of them together: the bytes of the unique blobs its
    storage links (layers, configs, manifests), each blob once."""
    sizes: dict[str, dict[str, int]] = {}
    for repo in repositories:
        root = storage / "repositories" / repo
        found: dict[str, int] = {}
        for links in (root / "_layers" / "sha256", root / "_manifests" / "revisions" / "sha256"):
            for hexdigest in os.listdir(links):
                data = storage / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
                found[hexdigest] = data.stat().st_size
        sizes[repo] = found
    out = {repo: sum(found.values()) for repo, found in sizes.items()}
    union: dict[str, int] = {}
    for found in sizes.values():
        union.update(found)
    out["*"] = sum(union.values())
    return out


def _push_family(distribution) -> dict[str, str]:
    base = os.urandom(40_000)  # a base layer every image below shares
    tool = os.urandom(9_000)  # shared by two repositories' images
    digests = {}
    for i in range(3):
        digests[f"rpt/web:v{i}"] = distribution.push(
            "rpt/web", f"v{i}", label=f"web{i}", layers=[base, os.urandom(1_000 + i)]
        )
    distribution.add_tags("rpt/web", ["latest", "stable"], digests["rpt/web:v2"])
    digests["rpt/api:1"] = distribution.push(
        "rpt/api", "1", label="api1", layers=[base, tool, os.urandom(2_000)]
    )
    digests["rpt/job:1"] = distribution.push(
        "rpt/job", "1", label="job1", layers=[base, tool], created="2019-01-01T00:00:00Z"
    )
    return digests


def test_report_counts_each_blob_once_as_the_storage_holds_it(oci_bot, distribution):
    _push_family(distribution)
    expected = _storage_bytes(distribution.storage, ["rpt/web", "rpt/api", "rpt/job"])
    reply = oci_bot.handle("report --repo 'rpt/*' --stale 3650d", user="carol")
    assert reply.ok, reply.text
    data = reply.data
    rows = {r["repository"]: r for r in data["repositories"]}
    assert {r: rows[r]["bytes"] for r in rows} == {
        r: expected[r] for r in ("rpt/web", "rpt/api", "rpt/job")
    }
    assert data["bytes"] == expected["*"]
    assert data["shared_bytes"] == sum(rows[r]["bytes"] for r in rows) - expected["*"] > 40_000
    assert rows["rpt/web"]["tags"] == 5 and rows["rpt/web"]["manifests"] == 3
    assert "each blob counted once" in reply.text
    # Nothing older than 10 years: no stale bytes; in 2000 days the 2019 image is (others: 2024)
    assert data["stale_bytes"] == 0
    again = oci_bot.handle("report --repo 'rpt/*' --stale 2000d", user="carol").data
    job = {r["repository"]: r for r in again["repositories"]}["rpt/job"]
    assert job["stale_bytes"] == job["bytes"]  # in its repository, only the old image
    # In the registry, its base and tool layers stay in use by the others: not stale there.
    assert again["stale_bytes"] == job["bytes"] - 40_000 - 9_000
    assert again["bytes"] == expected["*"]


def test_a_purge_dry_run_says_what_it_frees_not_the_sum_of_image_sizes(oci_bot, distribution):
    digests = {}
    base = os.urandom(30_000)
    for i in range(4):
        digests[i] = distribution.push(
            "frees/app", f"pr-{i}", label=f"frees{i}", layers=[base, os.urandom(500)]
        )
    reply = oci_bot.handle("purge --filter 'frees/app:^pr-[012]$' --dry-run", user="carol")
    assert reply.ok, reply.text
    storage = distribution.storage / "blobs" / "sha256"

    def size(digest: str) -> int:
        hexdigest = digest.split(":")[1]
        return (storage / hexdigest[:2] / hexdigest / "data").stat().st_size

    # Three images go; the shared base stays (pr-3 uses it): their own layer, config, body.
    http = distribution.client()
    freed = 0
    for i in range(3):
        manifest = http.get(
            f"/v2/frees/app/manifests/{digests[i]}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
        freed += size(digests[i]) + size(manifest["config"]["digest"])
        freed += size(manifest["layers"][1]["digest"])
    assert reply.data["freed_bytes"] == freed < 30_000
    assert f"freeing {fmt.size(freed)};" in reply.text
    assert any(n.startswith("Frees: the blobs only the deleted images hold") for n in reply.notes)
