"""The embedded oci-layout backend on a real layout directory."""

import json
import threading

import pytest

from bot.core.errors import Conflict, NotFound
from bot.core.registry import Registry
from handlers.registries.oci_layout import REF_NAME, OciLayoutRegistry


def index(registry, repository):
    return json.loads((registry.root / repository / "index.json").read_text())


def test_is_a_registry(registry):
    assert isinstance(registry, Registry)


def test_lists_the_demo_repositories(registry):
    assert registry.repositories() == [
        "baseimages/alpine",
        "baseimages/fedora",
        "testimages/nginx",
        "testimages/wordpress",
        "webserver/nginx",
        "webservers/nginx",
    ]


def test_tags_carry_digest_size_and_creation_time(registry):
    tags = {t.name: t for t in registry.all_tags("baseimages/alpine")}
    assert set(tags) == {"3.19", "3.20", "latest"}
    assert tags["3.20"].digest == tags["latest"].digest != tags["3.19"].digest
    assert tags["3.20"].created.isoformat() == "2024-05-22T00:00:00+00:00"
    assert tags["3.20"].size > 500


def test_image_lists_every_tag_on_its_digest(registry):
    info = registry.image("baseimages/alpine", "latest")
    assert [t.name for t in registry.tags_on("baseimages/alpine", info.digest)] == [
        "3.20",
        "latest",
    ]
    assert registry.image("baseimages/alpine", info.digest) == info


def test_untag_keeps_a_shared_manifest_and_leaves_a_lone_one_untagged(registry):
    shared = registry.resolve("baseimages/alpine", "latest")
    registry.untag("baseimages/alpine", "latest")
    assert [t.name for t in registry.tags_on("baseimages/alpine", shared)] == ["3.20"]
    lone = registry.resolve("baseimages/alpine", "3.19")
    registry.untag("baseimages/alpine", "3.19")
    assert registry.tags_on("baseimages/alpine", lone) == ()
    assert registry.image("baseimages/alpine", lone).digest == lone
    assert [
        d.get("annotations", {}).get(REF_NAME)
        for d in index(registry, "baseimages/alpine")["manifests"]
    ] == ["3.20", None]


def test_delete_manifest_removes_every_tag_and_the_blob(registry):
    digest = registry.resolve("baseimages/alpine", "latest")
    registry.delete_manifest("baseimages/alpine", digest)
    assert [t.name for t in registry.all_tags("baseimages/alpine")] == ["3.19"]
    assert not (registry.root / "baseimages/alpine/blobs/sha256" / digest[7:]).exists()
    with pytest.raises(NotFound, match="has no manifest"):
        registry.image("baseimages/alpine", digest)


def test_locked_tags_refuse_untag_and_manifest_delete(registry):
    registry.set_lock("baseimages/fedora", "24", delete=True, write=True)
    assert registry.tag_locked("baseimages/fedora", "24") is True
    assert registry.tag_locked("baseimages/fedora", "latest") is False
    with pytest.raises(Conflict, match="is locked"):
        registry.untag("baseimages/fedora", "24")
    with pytest.raises(Conflict, match="are locked"):
        registry.delete_manifest("baseimages/fedora", registry.resolve("baseimages/fedora", "24"))
    registry.set_lock("baseimages/fedora", "24", delete=False, write=False)
    registry.untag("baseimages/fedora", "24")


def test_not_found_messages_name_the_registry(registry):
    with pytest.raises(NotFound, match=r"^demo: no repository `nope`$"):
        registry.all_tags("nope")
    with pytest.raises(NotFound, match=r"^demo: baseimages/fedora has no tag `99`$"):
        registry.resolve("baseimages/fedora", "99")


def test_rewrites_leave_no_temporary_files(registry):
    registry.untag("baseimages/alpine", "latest")
    leftovers = [
        p.name
        for p in (registry.root / "baseimages/alpine").iterdir()
        if p.name.startswith(".index.json")
    ]
    assert leftovers == []


def test_concurrent_untags_all_land(tmp_path):
    registry = OciLayoutRegistry("t", tmp_path)
    names = [f"v{i}" for i in range(20)]
    for name in names:
        registry.push("app", name, config={"v": name}, layers=[])
    threads = [threading.Thread(target=registry.untag, args=("app", n)) for n in names[:10]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(t.name for t in registry.all_tags("app")) == sorted(names[10:])


def test_corrupt_index_is_reported_not_raised_as_a_traceback(registry):
    (registry.root / "webserver/nginx/index.json").write_text("{not json")
    with pytest.raises(Conflict, match=r"index\.json is unreadable"):
        registry.all_tags("webserver/nginx")


def test_rewrites_keep_file_modes_and_new_blobs_are_readable(registry):
    """A deletion used to turn index.json 0644 into 0600 (mkstemp), locking skopeo out."""
    import stat

    index = registry.root / "baseimages/alpine/index.json"
    index.chmod(0o644)
    registry.untag("baseimages/alpine", "3.19")
    assert stat.S_IMODE(index.stat().st_mode) == 0o644
    index.chmod(0o664)
    registry.untag("baseimages/alpine", "3.20")
    assert stat.S_IMODE(index.stat().st_mode) == 0o664
    blobs = list((registry.root / "baseimages/alpine/blobs/sha256").iterdir())
    assert {stat.S_IMODE(b.stat().st_mode) & 0o044 for b in blobs} == {0o044}  # world-readable


def test_gc_reclaims_unreferenced_blobs_and_never_a_referenced_one(registry):
    from handlers.registries.oci_layout import make_layer

    shared = make_layer({"etc/shared": b"shared\n"})
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
    a = registry.push(
        "gc/app", "a", config={**config, "x": 1}, layers=[shared, make_layer({"a": b"a"})]
    )
    registry.push("gc/app", "b", config={**config, "x": 2}, layers=[shared])
    blobs = registry.root / "gc/app/blobs/sha256"
    before = {p.name for p in blobs.iterdir()}
    registry.delete_manifest("gc/app", a)
    removed = registry.gc("gc/app", grace=0)
    after = {p.name for p in blobs.iterdir()}
    assert len(removed) == 2  # a's config and its own layer (its manifest went at once)
    assert before - after == {d[7:] for d in removed} | {a[7:]}
    assert [t.name for t in registry.all_tags("gc/app")] == ["b"]
    info = registry.image("gc/app", "b")  # b is whole: its manifest, config and layers remain
    assert info.size > 0 and registry.gc("gc/app", grace=0) == []


@pytest.mark.parametrize(
    "digest",
    ["sha256:/dev/zero", "sha256:../../../../etc/passwd", "../index.json", "sha256:" + "A" * 64],
)
def test_layout_digest_from_index_is_checked_before_it_becomes_a_path(registry, digest):
    """index.json is the layout writer's: `sha256:/dev/zero` used to read /dev/zero (a
    MemoryError), `..` to leave the layout. Each is now one clear error naming the file."""
    path = registry.root / "webserver/nginx/index.json"
    data = json.loads(path.read_text())
    data["manifests"][0]["digest"] = digest
    path.write_text(json.dumps(data))
    for call in (registry.all_tags, registry.manifests, registry.gc):
        with pytest.raises(Conflict, match=r"index\.json names `.*`, not a valid OCI digest"):
            call("webserver/nginx")


@pytest.mark.parametrize("part", ["config", "layers"])
def test_layout_digest_in_a_manifest_is_checked_and_gc_refuses(registry, part):
    """A manifest's config or layer digest is checked too: gc refuses rather than guessing
    what the manifest keeps (it would have deleted the blobs it could not follow)."""
    import hashlib

    repo = registry.root / "webserver/nginx"
    data = json.loads((repo / "index.json").read_text())
    desc = data["manifests"][0]
    blob = repo / "blobs/sha256" / desc["digest"][7:]
    manifest = json.loads(blob.read_bytes())
    bad = {"mediaType": "x", "digest": "sha256:/dev/zero", "size": 1}
    if part == "config":
        manifest["config"] = bad
    else:
        manifest["layers"].append(bad)
    body = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (repo / "blobs/sha256" / digest[7:]).write_bytes(body)
    desc["digest"] = digest
    desc.setdefault("annotations", {}).pop("org.opencontainers.image.created", None)
    (repo / "index.json").write_text(json.dumps(data))
    before = sorted(p.name for p in (repo / "blobs/sha256").iterdir())
    with pytest.raises(Conflict, match=r"refers to `sha256:/dev/zero`, not a valid OCI digest"):
        registry.gc("webserver/nginx", grace=0)
    assert sorted(p.name for p in (repo / "blobs/sha256").iterdir()) == before
    if part == "config":
        with pytest.raises(Conflict, match="not a valid OCI digest"):
            registry.all_tags("webserver/nginx")


def test_layout_reads_only_small_regular_files_as_manifests(registry):
    """A blob that is a FIFO or a symlink to a device is not read (it would hang or fill
    memory): the manifest is unreadable, said at once, and nothing is changed."""
    import os

    repo = registry.root / "webserver/nginx"
    desc = json.loads((repo / "index.json").read_text())["manifests"][0]
    blob = repo / "blobs/sha256" / desc["digest"][7:]
    blob.unlink()
    blob.symlink_to("/dev/zero")
    with pytest.raises(Conflict, match="is unreadable in the layout; nothing was changed"):
        registry.manifests("webserver/nginx")
    blob.unlink()
    os.mkfifo(blob)
    with pytest.raises(Conflict, match="is unreadable in the layout; nothing was changed"):
        registry.manifests("webserver/nginx")
