"""The pure side of the deployed-image check: image names, registry hosts, where-text, the
`[[deployed]]` configuration, the RBAC the deploy kit ships, and a purge's check in memory."""

from pathlib import Path

import pytest
import yaml

from bot.core.config import ConfigError
from bot.core.deployed import ImageName, Use, describe, parse_image_name, registry_hosts
from bot.ops.deployed.kubernetes import KINDS, uses_of
from tests.support.fixtures import make_config

ROOT = Path(__file__).parents[2]
D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("myacr.azurecr.io/payments/api:v1", ImageName("myacr.azurecr.io", "payments/api", "v1")),
        (
            f"docker-pullable://myacr.azurecr.io/api@{D}",
            ImageName("myacr.azurecr.io", "api", None, D),
        ),
        (f"127.0.0.1:5000/a/b:1@{D}", ImageName("127.0.0.1:5000", "a/b", "1", D)),
        ("localhost/x", ImageName("localhost", "x")),
        ("MyACR.azurecr.io/x:1", ImageName("myacr.azurecr.io", "x", "1")),
        ("nginx:1.25", None),
        ("library/nginx", None),
        ("r.io/x@sha256:short", None),
    ],
)
def test_parse_image_name_reads_what_pods_write(text, expected):
    assert parse_image_name(text) == expected


def test_registry_hosts_are_login_servers_and_url_host_ports(tmp_path):
    config = make_config(
        tmp_path,
        registry=[
            {"name": "demo", "type": "oci-layout", "path": "r", "login_server": "Demo.Local"},
            {"name": "dist", "type": "oci", "url": "http://127.0.0.1:5000"},
        ],
    )
    assert registry_hosts(config) == {"demo.local": "demo", "127.0.0.1:5000": "dist"}


def test_describe_groups_by_source_and_namespace():
    uses = [
        Use("aks-prod", "payments", "Deployment", "api", "x", "3 pods"),
        Use("aks-prod", "payments", "ReplicaSet", "api-7f9c", "x", "rollback"),
        Use("aks-prod", "payments", "ReplicaSet", "api-7f9c", "y", "rollback"),
        Use("apps", None, "Container App", "web", "x", "revision web--1"),
    ]
    assert describe(uses) == (
        "in use: aks-prod/payments Deployment api (3 pods), ReplicaSet api-7f9c (rollback); "
        "apps Container App web (revision web--1)"
    )


def test_pods_are_counted_under_their_deployment_and_every_container_kind_counts():
    rs = {
        "metadata": {
            "name": "api-1",
            "namespace": "p",
            "ownerReferences": [{"kind": "Deployment", "name": "api", "controller": True}],
        },
        "spec": {"replicas": 2},
    }
    pods = [
        {
            "metadata": {
                "name": f"api-1-{i}",
                "namespace": "p",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "api-1", "controller": True}],
            },
            "spec": {
                "containers": [{"image": "r.io/a:1"}],
                "initContainers": [{"image": "r.io/i:1"}],
                "ephemeralContainers": [{"image": "r.io/e:1"}],
            },
            "status": {"containerStatuses": [{"image": "r.io/a:1", "imageID": f"r.io/a@{D}"}]},
        }
        for i in range(2)
    ]
    uses = uses_of("c", {"pods": pods, "replicasets": [rs]})
    labels = {(u.image, u.label) for u in uses if u.kind == "Deployment"}
    assert labels == {
        (img, "Deployment api (2 pods)")
        for img in ("r.io/a:1", "r.io/i:1", "r.io/e:1", f"r.io/a@{D}")
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"name": "k", "type": "swarm"},
            'deployed[0].type: expected "kubernetes" or "containerapps"',
        ),
        (
            {"name": "k", "type": "containerapps"},
            "deployed[0].subscription_id: required for type containerapps",
        ),
        (
            {"name": "k", "type": "kubernetes", "subscription_id": "x"},
            "deployed[0].subscription_id: unknown key",
        ),
        (
            {"name": "k", "type": "kubernetes", "registries": ["nope"]},
            "deployed[0].registries: no [[registry]] named 'nope'",
        ),
        (
            {"name": "k", "type": "kubernetes", "cache_seconds": 900},
            "deployed[0].cache_seconds: expected seconds from 0 to 300",
        ),
    ],
)
def test_deployed_config_errors_name_the_key(tmp_path, table, message):
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, deployed=[table])
    assert str(caught.value).startswith(message)


def test_the_shipped_cluster_role_lists_exactly_the_kinds_read():
    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    )
    granted = {r for rule in role["rules"] for r in rule["resources"]}
    assert granted == {plural for plural, _, _ in KINDS}
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"list"}


def _calls(tree, names):
    """(enclosing top-level function, called attribute) for each call of one of ``names``."""
    import ast

    found = []
    for top in tree.body:
        if isinstance(top, ast.FunctionDef):
            for node in ast.walk(top):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in names
                ):
                    found.append((top.name, node.func.attr))
    return found


def test_no_path_deletes_without_the_in_use_check():
    """Every DELETE the bot sends outside the backends sits in delete.py's execute_delete or
    purge_run.py's per-item step, and both run the in-use hook first (execute_purge computes
    the skips before any item): the doors, retention and recovery all reach them."""
    import ast

    deleting = {}
    for path in sorted([*(ROOT / "handlers").rglob("*.py"), *(ROOT / "bot").rglob("*.py")]):
        if "registries" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for function, _ in _calls(tree, {"delete_manifest", "untag", "delete_tag"}):
            deleting.setdefault(str(path.relative_to(ROOT)), set()).add(function)
        if path.name in ("delete.py", "purge_run.py") and path.parent.name == "requests":
            hooks = {f: a for f, a in _calls(tree, {"check_delete", "execution_skips"})}
            if path.name == "delete.py":
                assert hooks.get("execute_delete") == "check_delete"
                assert hooks.get("delete") == "check_delete"
            else:
                assert hooks.get("execute_purge") == "execution_skips"
    assert deleting == {
        "handlers/requests/delete.py": {"execute_delete"},
        "handlers/requests/purge_run.py": {"_one"},
    }


def test_sources_are_read_concurrently_once_and_cached_for_listings_only(tmp_path):
    import threading
    from datetime import UTC, datetime

    from bot.ops.deployed.reader import DeployedReader

    barrier = threading.Barrier(2, timeout=5)  # both sources must be in flight at once

    class Source:
        def __init__(self, name):
            self.name, self.reads = name, 0

        def read(self):
            self.reads += 1
            barrier.wait()
            return [Use(self.name, "ns", "Pod", "p", f"demo.registry.local/app@{D}")]

    config = make_config(
        tmp_path,
        deployed=[
            {"name": "a", "type": "kubernetes", "cache_seconds": 5},
            {"name": "b", "type": "kubernetes", "cache_seconds": 5},
        ],
    )
    now = [100.0]
    sources = [Source("a"), Source("b")]
    reader = DeployedReader(
        config, sources=sources, now=lambda: datetime.now(UTC), monotonic=lambda: now[0]
    )

    class Demo:
        name = "demo"

    first = reader.in_use([Demo()], fresh=False)
    assert {u.source for u in first.of("demo", "app", D)} == {"a", "b"}
    reader.in_use([Demo()], fresh=False)  # a listing within cache_seconds: no new read
    assert [s.reads for s in sources] == [1, 1]
    reader.in_use([Demo()], fresh=True)  # a request or an execution: always afresh
    now[0] += 6
    reader.in_use([Demo()], fresh=False)  # the cache is past cache_seconds
    assert [s.reads for s in sources] == [3, 3]


def test_warm_up_builds_each_sources_client_in_the_background_and_never_raises(tmp_path):
    import threading
    from datetime import UTC, datetime

    from bot.ops.deployed.reader import DeployedReader

    warmed = threading.Event()

    class Good:
        name = "good"

        def warm(self):
            warmed.set()

    class Broken:
        name = "broken"

        def warm(self):
            raise RuntimeError("no kubeconfig")  # the first read will say so, failing closed

    config = make_config(tmp_path, deployed=[{"name": "good", "type": "kubernetes"}])
    reader = DeployedReader(config, sources=[Broken(), Good()], now=lambda: datetime.now(UTC))
    reader.warm_up()
    assert warmed.wait(5)
