"""An approved purge against its peers, in one run, on one docker-registry.

Seeds three repositories of 1,000 tags on 1,000 distinct images each (written straight into the
registry's storage), then times deleting every image of one repository:
- a serial `skopeo delete` loop (what a script around the peer CLI does);
- the raw floor: httpx, a connection pool, HEAD (tag → digest) + DELETE, N in flight;
- the bot: a purge request made and approved as `acrbot run` does it, timed from the
  approval to the last deletion (every item re-checked against the registry first);
and an ACR-path run against the fake ACR whose DELETEs answer 429 with Retry-After in a burst.

    .venv/bin/python bench/purge.py [--images 1000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bot.app import build_dispatcher
from bot.core.config import from_mapping
from bot.core.policy import Grant, Role
from tests.support.distribution import MANIFEST_ACCEPT, Distribution


def seed(registry: Distribution, repo: str, n: int) -> list[tuple[str, str]]:
    images = registry.seed_images(repo, n, tag=lambda i: f"ci-{i}")
    return [(tag, digest) for tag, digest, _ in images]


def time_skopeo(registry: Distribution, repo: str, images: list[tuple[str, str]]) -> float:
    began = time.perf_counter()
    for _, digest in images:
        subprocess.run(
            [
                "skopeo",
                "delete",
                "--tls-verify=false",
                f"docker://127.0.0.1:{registry.port}/{repo}@{digest}",
            ],
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - began


def time_floor(url: str, repo: str, images: list[tuple[str, str]], concurrency: int) -> float:
    client = httpx.Client(
        base_url=url,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )

    def one(tag: str) -> None:
        head = client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        digest = head.headers["Docker-Content-Digest"]
        assert client.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, [tag for tag, _ in images]))
    return time.perf_counter() - began


def time_bot(tmp: Path, url: str, repo: str, n: int, concurrency: int) -> tuple[float, str]:
    config = from_mapping(
        {
            "database": "bench.db",
            "registry": [
                {"name": "dist", "type": "oci", "url": url, "purge_concurrency": concurrency}
            ],
        },
        base=tmp,
        environ={},
    )
    bot = build_dispatcher(config, create=True)
    now = datetime.now(UTC)
    bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="bench", at=now)
    bot.ctx.roles.grant(Grant("bob", Role.OWNER), by="bench", at=now)
    made = bot.handle(f"purge --filter '{repo}:^ci-' --reason bench", user="alice")
    assert made.ok, made.text
    began = time.perf_counter()
    done = bot.handle(f"approve {made.request.id}", user="bob")
    elapsed = time.perf_counter() - began
    assert done.ok and f"{n:,} deleted" in done.text, done.text
    return elapsed, done.text


def acr_burst(concurrency: int) -> str:
    """The ACR path with a burst of 429s on DELETE: the purge must finish with no failure."""
    from tests.support.fake_acr import FakeAcr

    fake = FakeAcr().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ca = fake.write_ca(Path(tmp) / "ca.pem")
            for i in range(200):
                fake.push("ci/app", f"pr-{i}", f"sha256:{i:064x}", offset=i)
            fake.throttle(method="DELETE", times=40, retry_after=1)
            acr = fake.client(ca)
            config = from_mapping(
                {
                    "database": "bench.db",
                    "registry": [
                        {
                            "name": "prod",
                            "type": "acr",
                            "login_server": fake.login_server,
                            "subscription_id": fake.subscription,
                            "resource_group": fake.resource_group,
                            "purge_concurrency": concurrency,
                        }
                    ],
                },
                base=Path(tmp),
                environ={},
            )
            bot = build_dispatcher(config, registries=[acr], create=True)
            now = datetime.now(UTC)
            bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="bench", at=now)
            bot.ctx.roles.grant(Grant("bob", Role.OWNER), by="bench", at=now)
            made = bot.handle("purge --filter 'ci/app:^pr-' --reason bench", user="alice")
            began = time.perf_counter()
            done = bot.handle(f"approve {made.request.id}", user="bob")
            elapsed = time.perf_counter() - began
            throttled = fake.count("DELETE", status=429)
            return f"{done.text} ({throttled} answers were 429; {elapsed:.1f} s)"
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="the bot's default: 8")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    n, c = args.images, args.concurrency
    with tempfile.TemporaryDirectory() as tmp:
        registry = Distribution(Path(tmp) / "registry", in_memory=True).start()
        try:
            began = time.perf_counter()
            sets = {name: seed(registry, f"bench/{name}", n) for name in ("skopeo", "floor", "bot")}
            print(
                f"docker-registry 2.8 on 127.0.0.1: 3 repositories × {n:,} tags on {n:,} "
                f"distinct images (seeded in {time.perf_counter() - began:.1f} s); "
                f"concurrency {c}\n"
            )
            skopeo = time_skopeo(registry, "bench/skopeo", sets["skopeo"])
            floor = time_floor(registry.url, "bench/floor", sets["floor"], c)
            bot, text = time_bot(Path(tmp), registry.url, "bench/bot", n, c)
        finally:
            registry.stop()
    print(f"serial `skopeo delete` loop      {skopeo:7.1f} s   ({n / skopeo:6.0f} images/s)")
    print(f"raw floor, httpx HEAD+DELETE ×{c:<2} {floor:7.1f} s   ({n / floor:6.0f} images/s)")
    print(f"bot, approval → last deletion    {bot:7.1f} s   ({n / bot:6.0f} images/s)")
    print(f"  {text}")
    print()
    print(f"bot vs serial skopeo: ×{skopeo / bot:.1f} faster  (target ≥ ×4)")
    print(f"bot / raw floor:      ×{bot / floor:.2f}        (target ≤ ×1.25)")
    print(f"ACR path, 429 burst:  {acr_burst(c)}")


if __name__ == "__main__":
    main()
