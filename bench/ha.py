"""Two replicas under a rolling restart: 20 signed commands a second for 60 s to two real
`acrbot serve` on one database, each replica SIGTERMed and started again in turn (what a
Deployment's RollingUpdate does); then how many commands failed, went unanswered, were
answered twice or were lost (target: 0 each), and the ack latency. tests/support/rolling.py
says what each count means. docs/benchmarks.md quotes it. Exit status 1 if any count is not 0.

    .venv/bin/python bench/ha.py [--rate 20] [--duration 60]
    .venv/bin/python bench/ha.py --database postgresql://acrbot@127.0.0.1:5432/acrbot

--database is the `database = …` value both replicas share: a SQLite file in a temporary
directory by default; a PostgreSQL URL runs the same load there (the store must have that
engine). Run both, one after the other, to compare the ack p99 of the two engines.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.distribution import Distribution
from tests.support.fake_slack import FakeSlack
from tests.support.rolling import RollingLoad
from tests.support.served import ServedBot

USERS = {"UALICE": "contributor", "UBOB": "owner", "UCAROL": "reader"}
COMMANDS = (  # mostly lookups, some deletion requests (a card each), as a team's day
    ("UCAROL", "tags ha/web"),
    ("UCAROL", "tags ha/web"),
    ("UCAROL", "tags ha/web"),
    ("UALICE", "delete ha/web:1.0 --manifest --reason bench"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--database", help="the shared database (default: a SQLite file)")
    parser.add_argument("--keep", metavar="DIR", help="keep the replicas' logs in DIR")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="acrbot-ha-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        registry = Distribution(root / "registry", in_memory=True).start()
        fake = FakeSlack().start()
        database = args.database or str(root / "replicas.db")
        bots = []
        started = time.monotonic()
        try:
            registry.push("ha/web", "1.0")
            for n in range(args.replicas):
                bots.append(
                    ServedBot(
                        root / f"replica-{n}",
                        fake,
                        registry_url=registry.url,
                        users=USERS if n == 0 else {},
                        database=database,
                        name=f"r{n}",
                    ).start()
                )
            load = RollingLoad(
                bots, fake, rate=args.rate, duration=args.duration, commands=COMMANDS
            )
            counts = load.run()
        finally:
            for bot in bots:
                bot.close()
            fake.stop()
            registry.stop()
        engine = "PostgreSQL" if "://" in database else "SQLite (WAL, one host)"
        print(
            f"bench/ha.py {' '.join(sys.argv[1:])} ({time.monotonic() - started:.0f} s): "
            f"{args.replicas} replicas on {engine}, {args.rate:g} commands/s for "
            f"{args.duration:g} s, each replica restarted in turn (SIGTERM, then start)"
        )
        for line in counts.lines():
            print(line)
        problems = counts.problems()
        print("nothing failed, unanswered, duplicated or lost" if not problems else "BROKEN:")
        for problem in problems:
            print(f"  {problem}")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
