"""Undo against the purge it reverses, in one run, on one docker-registry.

Seeds N distinct images (one tag each) written straight into the registry's storage, purges
them all as `acrbot run` does (request, approval: every item re-checked, its snapshot taken,
then deleted), then undoes the purge (every manifest PUT back by digest, then its tag). Prints
both times, their ratio (target: undo ≤ 1.5 × the purge), the process CPU each took, the
requests each sent, and the snapshot bytes per item (stored, compressed; and raw).

    .venv/bin/python bench/undo.py [--images 1000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_dispatcher
from bot.core.config import from_mapping
from bot.core.policy import Grant, Role
from bot.state.snapshots import Snapshots
from tests.support.distribution import Distribution
from tests.support.fault_proxy import FaultProxy


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="the bot's default: 8")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        registry = Distribution(Path(tmp) / "registry", in_memory=True).start()
        proxy = FaultProxy(registry.url).start()
        try:
            repo = "bench/undo"
            registry.seed_images(repo, n, tag=lambda i: f"ci-{i}")
            config = from_mapping(
                {
                    "database": "bench.db",
                    "registry": [
                        {
                            "name": "dist",
                            "type": "oci",
                            "url": proxy.url,
                            "purge_concurrency": args.concurrency,
                        }
                    ],
                },
                base=Path(tmp),
                environ={},
            )
            bot = build_dispatcher(config, create=True)
            now = datetime.now(UTC)
            bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="bench", at=now)
            bot.ctx.roles.grant(Grant("bob", Role.OWNER), by="bench", at=now)
            made = bot.handle(f"purge --filter '{repo}:^ci-' --reason bench", user="alice")
            assert made.ok, made.text
            proxy.reset()
            done, purge_wall, purge_cpu = timed(
                lambda: bot.handle(f"approve {made.request.id}", user="bob")
            )
            assert f"{n:,} deleted" in done.text, done.text
            purge_requests = len(proxy.upstream_statuses)
            proxy.reset()
            undone, undo_wall, undo_cpu = timed(
                lambda: bot.handle(f"undo {made.request.id} --reason bench", user="alice")
            )
            assert undone.text == f"Undo of request #{made.request.id}: {n:,} restored.", (
                undone.text
            )
            undo_requests = len(proxy.upstream_statuses)
            usage = Snapshots(bot.ctx.store, bot.ctx.audit, clock=bot.ctx.clock).usage()
        finally:
            proxy.stop()
            registry.stop()
    print(f"{n:,} images, concurrency {args.concurrency}, one run (2 shared cores: wall is noisy)")
    print(
        f"purge (approval → last DELETE): {purge_wall:.2f} s wall, {purge_cpu:.2f} s CPU, "
        f"{purge_requests:,} requests"
    )
    print(
        f"undo  (command → last PUT):      {undo_wall:.2f} s wall, {undo_cpu:.2f} s CPU, "
        f"{undo_requests:,} requests"
    )
    print(
        f"undo / purge: ×{undo_wall / purge_wall:.2f} wall, ×{undo_cpu / purge_cpu:.2f} CPU "
        "(target ≤ ×1.5)"
    )
    print(
        f"snapshots: {usage.snapshots:,}, {usage.stored_bytes / usage.snapshots:.0f} bytes/item "
        f"stored ({usage.raw_bytes / usage.snapshots:.0f} raw); a 10,000-item purge ≈ "
        f"{usage.stored_bytes / usage.snapshots * 10_000 / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
