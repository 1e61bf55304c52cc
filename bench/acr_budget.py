"""What the `acr` backend spends at ACR, counted at the fake by kind, in one run.

1. A session — listings, an approved untag, a 41-tag purge, a lock — through the real
   azure-containerregistry client, with the bot's token cache and with the SDK's own flow:
   requests by kind (token exchange, token, challenge 401, data plane) and per data-plane call.
2. A purge of `--tags` tags (default 1,000) on a Standard-tier registry, paced by the tier
   (write_rate left unset: 500 WriteOps/min less 10 % = 7.5 deletions/s), with a burst of 429s
   on DELETE: how long it takes against what the card promised, requests per deleted tag, and
   throttled failures (0 expected).

    .venv/bin/python bench/acr_budget.py [--tags 1000] [--throttle 5]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_dispatcher
from bot.core.config import from_mapping
from bot.core.policy import Grant, Role
from tests.support.fake_acr import FakeAcr

KINDS = ("exchange", "token", "challenge", "data")


def digest(i: int) -> str:
    return f"sha256:{i:064x}"


def bot_on(fake: FakeAcr, tmp: Path, **acr_options: Any) -> Any:
    ca = fake.write_ca(tmp / "ca.pem")
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
                }
            ],
        },
        base=tmp,
        environ={},
    )
    bot = build_dispatcher(config, registries=[fake.client(ca, **acr_options)], create=True)
    now = datetime.now(UTC)
    bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="bench", at=now)
    bot.ctx.roles.grant(Grant("bob", Role.OWNER), by="bench", at=now)
    return bot


def session(*, reuse_tokens: bool) -> dict[str, int]:
    fake = FakeAcr().start()
    try:
        for i in range(41):
            fake.push("ci/app", f"pr-{i}", digest(i), offset=i)
        fake.push("ci/app", "main", digest(99), offset=100)
        fake.push("team/api", "1.0", digest(50))
        fake.push("team/api", "stable", digest(51))
        with tempfile.TemporaryDirectory() as tmp:
            bot = bot_on(fake, Path(tmp), reuse_tokens=reuse_tokens, retry_total=0)
            fake.reset_counts()
            for user, command in (
                ("alice", "repos"),
                ("alice", "tags team/api"),
                ("alice", "tags ci/app"),
                ("alice", "show team/api:stable"),
                ("alice", "delete team/api:1.0 --reason bench"),
                ("bob", "approve 1"),
                ("alice", "purge --filter 'ci/app:^pr-' --reason bench"),
                ("bob", "approve 2"),
                ("bob", "lock team/api:stable --delete"),
            ):
                reply = bot.handle(command, user=user)
                assert reply.ok, (command, reply.text)
            return fake.kinds()
    finally:
        fake.stop()


def paced_purge(n: int, throttle: int) -> str:
    fake = FakeAcr().start()
    fake.state.sku = "Standard"
    try:
        for i in range(n):
            fake.push("ci/app", f"pr-{i}", digest(i), offset=i)
        fake.push("ci/app", "main", digest(n), offset=n)
        with tempfile.TemporaryDirectory() as tmp:
            bot = bot_on(fake, Path(tmp))
            made = bot.handle("purge --filter 'ci/app:^pr-' --reason bench", user="alice")
            assert made.ok, made.text
            promised = dict(made.fields)["pace"]
            if throttle:
                fake.throttle(method="DELETE", times=throttle, retry_after=2)
            fake.reset_counts()
            began = time.perf_counter()
            done = bot.handle(f"approve {made.request.id}", user="bob")
            elapsed = time.perf_counter() - began
            kinds = fake.kinds()
            throttled = fake.count("DELETE", status=429)
            total = sum(kinds[k] for k in KINDS)
            return (
                f"card: {promised}\n"
                f"ran:  {elapsed / 60:.2f} min ({n / elapsed:.2f} deletions/s); {done.text}\n"
                f"      {throttled} DELETEs answered 429 (each paused every worker for its "
                f"Retry-After, then went again)\n"
                f"      requests: {', '.join(f'{k} {kinds[k]:,}' for k in KINDS)} = "
                f"{total / n:.3f} a deleted tag (data plane {kinds['data'] / n:.3f})"
            )
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--throttle", type=int, default=5, help="429s injected on DELETE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print("1. a session: 4 listings, an approved untag, a 41-tag purge, a lock (fake ACR)\n")
    print(f"{'':24}{'exchange':>9}{'token':>7}{'challenge':>10}{'data':>6}  per data-plane call")
    for label, reuse in (("the bot's token cache", True), ("the SDK alone", False)):
        kinds = session(reuse_tokens=reuse)
        per = (kinds["exchange"] + kinds["token"]) / kinds["data"]
        print(
            f"{label:24}{kinds['exchange']:>9}{kinds['token']:>7}{kinds['challenge']:>10}"
            f"{kinds['data']:>6}  token calls {per:.3f}, challenges "
            f"{kinds['challenge'] / kinds['data']:.3f}"
        )
    print(f"\n2. a purge of {args.tags:,} tags on a Standard-tier registry, paced by the tier\n")
    print(paced_purge(args.tags, args.throttle))


if __name__ == "__main__":
    main()
