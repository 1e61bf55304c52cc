"""The in-use set of a big cluster: 5,000 pods and 1,000 ReplicaSets (plus Deployments and
CronJobs) in the strict fake Kubernetes API server (HTTPS, bearer token, 500-object pages with
`continue`, as the real one pages), read through the bot's source (the official `kubernetes`
client, the seven kinds concurrently) against a raw floor in the same run (the same lists,
the same pages, fetched with plain httpx on one pooled client and `json.loads`, also
concurrently). Then a purge of 1,000 items checked against that set in memory: one source
read, one tag listing per repository, zero calls per item.

    .venv/bin/python bench/deployed.py [--pods 5000] [--replicasets 1000] [--runs 3]

Prints wall and CPU seconds (median of the runs) and the ratio to the floor. Wall-clock figures
on a shared machine are noisy: the ratio and the counts are the figures to compare.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bot.core.config import DeployedConfig, from_mapping
from bot.core.purge_spec import MANIFEST, Item
from bot.core.registry import TagInfo
from bot.ops.deployed.kubernetes import KINDS, PAGE, KubernetesSource
from bot.ops.deployed.reader import DeployedReader
from handlers.requests import in_use
from tests.support.fake_kube import GROUPS, FakeKube, cronjob, deployment, pod, replicaset

HOST = "bench.azurecr.io"
REPOS = 50


def digest(i: int) -> str:
    return f"sha256:{i:064x}"


def populate(kube: FakeKube, pods: int, replicasets: int) -> None:
    kube.add(
        "replicasets",
        *[
            replicaset(
                f"app{i % REPOS}-{i:05}",
                f"ns{i % 40}",
                [f"{HOST}/app{i % REPOS}@{digest(i)}"],
                replicas=0 if i >= REPOS else 1,
                deployment=f"app{i % REPOS}",
            )
            for i in range(replicasets)
        ],
    )
    kube.add(
        "pods",
        *[
            pod(
                f"app{i % REPOS}-{i % REPOS:05}-{i:05}",
                f"ns{i % 40}",
                [f"{HOST}/app{i % REPOS}:v{i % 7}", f"{HOST}/sidecar:1"],
                image_ids=[
                    f"docker-pullable://{HOST}/app{i % REPOS}@{digest(10_000 + i % 300)}",
                    f"docker-pullable://{HOST}/sidecar@{digest(99_999)}",
                ],
                owner=("ReplicaSet", f"app{i % REPOS}-{i % REPOS:05}"),
            )
            for i in range(pods)
        ],
    )
    kube.add(
        "deployments",
        *[deployment(f"app{i}", f"ns{i % 40}", [f"{HOST}/app{i}:v1"]) for i in range(REPOS)],
    )
    kube.add(
        "cronjobs", *[cronjob(f"job{i}", "batch", [f"{HOST}/app{i}:nightly"]) for i in range(20)]
    )


def serve(conn, pods: int, replicasets: int, ca: str) -> None:
    """The fake API server in a process of its own (its CPU is not the client's)."""
    kube = FakeKube().start()
    kube.ca.cert_pem.write_to_path(ca)
    populate(kube, pods, replicasets)
    for plural in kube.objects:  # encode every object once, before the clock starts
        for obj in kube.objects[plural]:
            kube._encoded(obj)
    conn.send((kube.port, kube.token, sum(len(v) for v in kube.objects.values())))
    conn.recv()  # until the parent is done
    kube.stop()


def raw_floor(kube, ca: str) -> int:
    """The same seven lists, the same 500-object pages, with plain httpx: the floor."""
    headers = {"Authorization": f"Bearer {kube.token}"}
    with httpx.Client(verify=ca, headers=headers, limits=httpx.Limits(max_connections=8)) as http:

        def one(plural: str) -> int:
            prefix = GROUPS[plural][0]
            n, token = 0, None
            while True:
                params = {"limit": PAGE, **({"continue": token} if token else {})}
                body = http.get(f"{kube.url}{prefix}/{plural}", params=params).json()
                n += len(body["items"])
                token = body["metadata"].get("continue")
                if not token:
                    return n

        with ThreadPoolExecutor(max_workers=len(KINDS)) as pool:
            return sum(pool.map(one, [k[0] for k in KINDS]))


class TagsOnly:
    """A registry that answers tag listings from memory and counts them."""

    name, login_server, can_untag = "bench", HOST, True

    def __init__(self) -> None:
        self.listings = 0

    def all_tags(self, repository: str, **_: object) -> list[TagInfo]:
        self.listings += 1
        now = datetime.now(UTC)
        return [TagInfo(f"v{i}", digest(20_000 + i), now, now) for i in range(7)] + [
            TagInfo("nightly", digest(30_000), now, now),
            TagInfo("1", digest(99_999), now, now),
        ]

    def references(self, repository: str, digests: list[str]) -> dict[str, tuple[str, ...]]:
        return {}


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--replicasets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ca = str(tmp / "ca.pem")
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(
        target=serve, args=(child, args.pods, args.replicasets, ca), daemon=True
    )
    server.start()
    port, token, objects = parent.recv()
    kube = SimpleNamespace(url=f"https://127.0.0.1:{port}", token=token)
    kubeconfig = tmp / "kc"
    kubeconfig.write_text(kubeconfig_text(kube.url, token, Path(ca).read_bytes()))
    source = KubernetesSource(
        DeployedConfig(name="aks", type="kubernetes", kubeconfig=kubeconfig, context="test")
    )
    _, cold, _ = timed(source.read)  # the first read: client import, model warm-up, TLS
    raw_floor(kube, ca)
    ours, floor = [], []
    for _ in range(args.runs):
        uses, wall, cpu = timed(source.read)
        ours.append((wall, cpu))
        n, fwall, fcpu = timed(lambda: raw_floor(kube, ca))
        floor.append((fwall, fcpu))
        assert n == objects
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    print(
        f"cluster: {objects:,} objects ({args.pods:,} pods, {args.replicasets:,} ReplicaSets), "
        f"pages of <= {PAGE}; {len(uses):,} uses"
    )
    print(f"first read in a fresh process (client import and warm-up, TLS): {cold:.2f} s")
    print(f"bot source (kubernetes client): wall {med(ours, 0):.2f} s, cpu {med(ours, 1):.2f} s")
    print(f"raw floor (httpx + json):       wall {med(floor, 0):.2f} s, cpu {med(floor, 1):.2f} s")
    print(
        f"ratio bot/floor: wall x{med(ours, 0) / med(floor, 0):.2f}, "
        f"cpu x{med(ours, 1) / med(floor, 1):.2f}"
    )

    # A purge of 1,000 items against the in-use set, in memory.
    config = from_mapping(
        {
            "database": str(tmp / "db"),
            "registry": [{"name": "bench", "type": "oci", "url": f"https://{HOST}"}],
            "protect": {"tags": ["^latest$"]},
        },
        base=tmp,
        environ={},
    )

    class Cached:
        name = "aks"

        def read(self):
            return uses

    registry = TagsOnly()
    reader = DeployedReader(config, sources=[Cached()], now=lambda: datetime.now(UTC))
    ctx = SimpleNamespace(config=config, deployed=reader, clock=lambda: datetime.now(UTC))
    items = [
        Item(f"app{i % REPOS}", MANIFEST, digest(i if i % 2 else 50_000 + i), tags=(f"t{i}",))
        for i in range(1000)
    ]
    (kept, skipped, _), wall, cpu = timed(
        lambda: in_use.plan_skips(ctx, registry, items, fresh=True, refusing=in_use.DELETED)
    )
    print(
        f"purge of {len(items):,} items checked in memory: {len(skipped):,} skipped (in use), "
        f"{len(kept):,} may go; wall {wall:.3f} s, cpu {cpu:.3f} s; {reader.reads} source read, "
        f"{registry.listings} tag listings (one per repository referenced by tag), 0 calls per item"
    )
    parent.send("done")
    server.join(5)


def kubeconfig_text(url: str, token: str, ca: bytes) -> str:
    import base64
    import json

    cluster = {"server": url, "certificate-authority-data": base64.b64encode(ca).decode()}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "bot", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "bot"}}],
            "current-context": "test",
        }
    )


if __name__ == "__main__":
    main()
