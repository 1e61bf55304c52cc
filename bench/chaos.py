"""Chaos for as long as you like: a real `acrbot serve` on docker-registry behind the fault
proxy, a burst of signed commands (lookups, deletions, approvals by other users, grants,
replays), SIGKILLs of its worker and of the whole service, Slack answering 429/500 and the
registry slow or failing; then the counts of every promise (tests/support/chaos.py says what
each means). docs/benchmarks.md quotes them. Exit status 1 if a promise broke.

    .venv/bin/python bench/chaos.py [--duration 120] [--seed 1] [--delete-faults]
    .venv/bin/python bench/chaos.py --socket-mode [--duration 120] [--seed 1]
    .venv/bin/python bench/chaos.py --duration 120 [--db-locks] [--token-revoked]
    .venv/bin/python bench/chaos.py --duration 120 --replicas 2

--delete-faults adds faults inside the DELETE itself (held before the registry, its answer
held back, held past the client's timeout), so that kills land where the outcome is unknown;
the bot then waits its 45 s grace period before it reads the registry again, so allow for it
(--settle).

--socket-mode runs `acrbot serve` in Socket Mode instead, against the strict fake Socket Mode
server, with a stream of slash commands while Slack recycles the connection every 0.5–3 s
(refresh_requested, warning, too_many_websockets, dropped); tests/support/chaos_socket.py says
what it counts: every envelope acked within 3 s, every command answered once, no gap over 1 s
after a refresh.

--replicas 2 runs two `acrbot serve` on one database (SQLite in WAL): commands, clicks and
replays spread over both, kills of either; the same counts must hold.

--db-locks takes the database's write lock from another process for 5 s every 12–20 s (acks
must still come within 3 s: "busy, try again", nothing recorded); --token-revoked makes Slack
refuse the bot token for 30 s once (nothing may be lost: everything goes out once it works).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.chaos import Chaos, ChaosOptions
from tests.support.distribution import Distribution
from tests.support.fake_slack import FakeSlack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of chaos")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--images", type=int, default=60, help="images that may be deleted")
    parser.add_argument(
        "--delete-faults", action="store_true", help="also fault the DELETEs themselves"
    )
    parser.add_argument(
        "--db-locks", action="store_true", help="lock the database for 5 s every 12-20 s"
    )
    parser.add_argument(
        "--token-revoked", action="store_true", help="Slack refuses the token for 30 s, once"
    )
    parser.add_argument(
        "--settle", type=float, default=None, help="seconds allowed to finish (default: auto)"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the database and serve.log in DIR (for a post-mortem)"
    )
    parser.add_argument(
        "--socket-mode", action="store_true", help="Socket Mode refreshes instead (see above)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="acrbot serve replicas on one database"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.socket_mode:
        return socket_mode(args)
    options = ChaosOptions(
        duration=args.duration,
        seed=args.seed,
        images=args.images,
        delete_faults=args.delete_faults,
        lock_database=args.db_locks,
        revoke_token=args.token_revoked,
        settle=args.settle if args.settle is not None else (120.0 if args.delete_faults else 60),
        replicas=args.replicas,
    )
    with tempfile.TemporaryDirectory(prefix="acrbot-chaos-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        registry = Distribution(root / "registry", in_memory=True).start()
        fake = FakeSlack().start()
        started = time.monotonic()
        try:
            counts = Chaos(root, fake, registry, options).run()
        finally:
            fake.stop()
            registry.stop()
        print(f"bench/chaos.py {' '.join(sys.argv[1:])} ({time.monotonic() - started:.0f} s)")
        for line in counts.lines():
            print(line)
        problems = counts.problems()
        rejected = fake.rejected()
        if rejected:
            problems.append(f"Slack refused {len(rejected)} payloads: {rejected[0].error}")
        print("every promise held" if not problems else "BROKEN:\n  " + "\n  ".join(problems))
        return 1 if problems else 0


def socket_mode(args: argparse.Namespace) -> int:
    from tests.support.chaos_socket import SocketChaos, SocketChaosOptions

    options = SocketChaosOptions(duration=args.duration, seed=args.seed)
    options.settle = args.settle if args.settle is not None else options.settle
    with tempfile.TemporaryDirectory(prefix="acrbot-chaos-socket-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        fake = FakeSlack().start()
        started = time.monotonic()
        try:
            counts = SocketChaos(root, fake, options).run()
        finally:
            fake.stop()
        print(f"bench/chaos.py {' '.join(sys.argv[1:])} ({time.monotonic() - started:.0f} s)")
        for line in counts.lines():
            print(line)
        problems = counts.problems()
        print("every promise held" if not problems else "BROKEN:\n  " + "\n  ".join(problems))
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
