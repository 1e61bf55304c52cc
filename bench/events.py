"""Registry events: a burst accepted beside Slack acks, and `show` from the live tag index.

1. acks: a real `acrbot serve` (HTTP; the fake Slack from tests/) takes a stream of signed
   slash commands, alone and then during a burst of registry events POSTed to
   /registry/events (distribution's shape, one event per POST as distribution sends them,
   8 senders). Prints the acks' p50/p99/max in both phases and their ratio, the events
   accepted per second, and how long the worker took to process them all.
2. show: `show` of an image whose digest carries 10,000 tags on a real docker-registry, in
   this process, from the registry (a HEAD per tag) and from the index.

Everything shares this machine's cores: the senders too. Figures are from one run, compared
within it.

    .venv/bin/python bench/events.py [--events 10000] [--commands 300] [--tags 10000]
        [--only acks|show]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.distribution import Distribution
from tests.support.fake_slack import FakeSlack
from tests.support.registry_payloads import distribution_event
from tests.support.served import ServedBot

SECRET = "bench-events-secret-0123456789abcdef"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (its own, not its children's)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def acks(bot: ServedBot, n: int, *, stop: threading.Event | None = None) -> list[float]:
    """``n`` slash commands from 4 threads (or until ``stop``): each ack's seconds."""
    took: list[float] = []

    def one(_: int) -> None:
        sent = bot.command("UBOB", "whoami")
        assert sent.status == 200, sent
        took.append(sent.took)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))
    return took


def burst(bot: ServedBot, count: int, host: str, *, senders: int = 8) -> float:
    """POST ``count`` events, one per request, from ``senders`` keep-alive connections;
    return the seconds until every one was answered 2xx."""
    per = count // senders

    def send(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", bot.port, timeout=30)
        for i in range(per):
            event = distribution_event(
                id=f"burst-{k}-{i}", repository=f"ci/app{k}", tag=f"build-{i}", host=host
            )
            conn.request(
                "POST",
                "/registry/events",
                body=json.dumps({"events": [event]}),
                headers={
                    "Authorization": f"Bearer {SECRET}",
                    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
                },
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, range(senders)))
    return time.perf_counter() - started


def bench_acks(root: Path, *, events: int, commands: int) -> None:
    fake = FakeSlack().start()
    registry = Distribution(root / "registry", in_memory=True).start()
    bot = ServedBot(
        root / "bot",
        fake,
        registry_url=registry.url,
        users={"UBOB": "owner"},
        extra_config=(
            '[events]\nsecret_env = "ACRBOT_EVENTS_SECRET"\n'
            '[[watch]]\nrepos = ["ci/*"]\nchannel = "C0WATCH"\n'
        ),
        extra_env={"ACRBOT_EVENTS_SECRET": SECRET},
    )
    try:
        bot.start()
        acks(bot, 20)  # warm up
        assert bot.proc is not None
        serve_pid = bot.proc.pid
        cpu0 = cpu_seconds(serve_pid)
        quiet = acks(bot, commands)
        per_ack = (cpu_seconds(serve_pid) - cpu0) / commands
        cpu0 = cpu_seconds(serve_pid)
        during: list[float] = []
        seconds: list[float] = []
        sender = threading.Thread(
            target=lambda: seconds.append(burst(bot, events, registry.url.removeprefix("http://")))
        )
        started = time.perf_counter()
        sender.start()
        while sender.is_alive():
            during += acks(bot, 8)
        sender.join()
        burst_cpu = cpu_seconds(serve_pid) - cpu0 - per_ack * len(during)
        stored = bot.query("select count(*) from registry_events")[0][0]
        while bot.query("select count(*) from registry_events where state != 'done'")[0][0]:
            time.sleep(0.2)
        processed = time.perf_counter() - started
        posted = len(fake.calls_to("chat.postMessage"))
        print(
            f"events: {stored:,} stored of {events:,} sent in {seconds[0]:.2f} s = "
            f"{events / seconds[0]:,.0f} events/s accepted; all processed after "
            f"{processed:.1f} s; {posted} Slack posts (8 repositories: first + fold)"
        )
        print(
            f"the acking process's CPU: {per_ack * 1e3:.2f} ms an ack; "
            f"{burst_cpu / events * 1e6:,.0f} µs an event (its share of the burst) = "
            f"{events / burst_cpu:,.0f} events/s per core"
        )
        for name, values in (("acks alone", quiet), ("acks during the burst", during)):
            print(
                f"{name:>24}: n={len(values):4d}  p50 {statistics.median(values) * 1000:6.1f} "
                f"ms  p99 {percentile(values, 0.99) * 1000:6.1f} ms  max "
                f"{max(values) * 1000:6.1f} ms"
            )
        print(f"{'p99 ratio':>24}: {percentile(during, 0.99) / percentile(quiet, 0.99):.2f}x")
    finally:
        bot.close()
        registry.stop()
        fake.stop()


def bench_show(root: Path, *, tags: int) -> None:
    from bot.app import build_dispatcher
    from bot.core.config import from_mapping
    from bot.core.policy import Grant, Role
    from bot.slack.registry_watch import RegistryWatch

    registry = Distribution(root / "show-registry", in_memory=True).start()
    try:
        digest = registry.push("big/app", "base", label="big")
        registry.add_tags("big/app", [f"t{i:05d}" for i in range(tags - 1)], digest)
        timings = {}
        for mode in ("registry", "index"):
            data = {
                "database": f"{mode}.db",
                "registry": [{"name": "dist", "type": "oci", "url": registry.url}],
            }
            if mode == "index":
                data["events"] = {"secret_env": "EV"}
            config = from_mapping(data, base=root, environ={"EV": SECRET})
            dispatcher = build_dispatcher(config, create=True)
            dispatcher.ctx.roles.grant(Grant("u", Role.READER), by="b", at=dispatcher.ctx.clock())
            if mode == "index":
                t0 = time.perf_counter()
                RegistryWatch(dispatcher.ctx).reconcile()
                print(
                    f"index rebuilt from the registry in {time.perf_counter() - t0:.2f} s "
                    "(at start and hourly, in the worker)"
                )
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                reply = dispatcher.handle("show big/app:base", user="u")
                runs.append(time.perf_counter() - t0)
                assert reply.ok and f"({tags:,} in all)" in dict(reply.fields)["tags"], reply
            timings[mode] = min(runs)
            print(f"show at {tags:,} tags from the {mode}: best of 3 {min(runs) * 1000:,.0f} ms")
            dispatcher.ctx.store.close()
        print(f"speed-up: {timings['registry'] / timings['index']:,.0f}x")
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--only", choices=("acks", "show"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        if args.only in (None, "acks"):
            bench_acks(root, events=args.events, commands=args.commands)
        if args.only in (None, "show"):
            bench_show(root, tags=args.tags)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
