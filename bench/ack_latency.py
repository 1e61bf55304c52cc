"""Ack latency of /acr under a burst, while every registry call takes 2 seconds.

Fires N concurrent signed slash commands at the HTTP endpoint and N Socket Mode envelopes, and
prints p50/p99/max ack latency and the number of non-200s for what `acrbot serve` runs (the
acking process on uvicorn or Socket Mode, the work in a worker process), beside the same
burst with the work in the acking process, and against Bolt's built-in development server
(app.start) as the baseline. Everything runs on 127.0.0.1: the fake Slack Web API from
tests/, the real Bolt app, uvicorn, slack_sdk's Socket Mode client.

    .venv/bin/python bench/ack_latency.py [--n 50] [--delay 2.0] [--runs 3]
        [--metrics on,off]   # each mode with metrics on and off, interleaved, in one run
        [--database sqlite,postgresql]   # each mode on both engines, interleaved, in one run
                                         # (PostgreSQL: a local server from tests/support)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slack_sdk.signature import SignatureVerifier

from bot.app import build_context
from bot.core.config import Config, SlackSettings, from_mapping
from bot.core.policy import Grant, Role
from bot.demo import seed_registry
from bot.ops import metrics
from bot.slack.handoff import DurableSink
from bot.slack.service import HttpServer, SlackApp, run_in_thread, socket_mode_handler
from bot.slack.worker import SlackWorker, WorkerProcess
from bot.state.jobqueue import JobQueue
from bot.state.store import Store
from tests.support.fake_slack import FakeSlack
from tests.support.fake_socket_mode import FakeSocketMode
from tests.support.slack_support import SlowRegistry

SECRET = "bench-secret"
PG_PASSWORD_ENV = "ACRBOT_BENCH_PG_PASSWORD"
# The `database` options of this process's bench (`_isolated` sets them): SQLite by default.
DATABASE: dict[str, Any] = {"database": "bench.db"}
ENVIRON: dict[str, str] = {}


@contextlib.contextmanager
def bot(
    tmp: Path,
    fake: FakeSlack,
    delay: float,
    *,
    in_process: bool,
    app_token: str | None = None,
    registry_url: str | None = None,
) -> Iterator[SlackApp]:
    """The bot as `acrbot serve` builds it (or with its worker in this process): on the demo
    registry slowed down to ``delay`` seconds a call, or on a real registry at
    ``registry_url`` (the `oci` backend, built by the worker from the config)."""
    registry_table = (
        {"name": "dist", "type": "oci", "url": registry_url}
        if registry_url
        else {"name": "demo", "type": "oci-layout", "path": "registry"}
    )
    config = from_mapping({**DATABASE, "registry": [registry_table]}, base=tmp, environ=ENVIRON)
    settings = SlackSettings(
        bot_token="xoxb-bench", signing_secret=SECRET, app_token=app_token, api_url=fake.api_url
    )
    options = (
        {}
        if registry_url
        else {"registries": [SlowRegistry(seed_registry(tmp / "registry"), delay)]}
    )
    grant(config, "UCAROL", Role.READER)
    if in_process:
        worker = SlackWorker(config, settings, **options)
        worker.start_background()
        try:
            yield SlackApp(settings, worker)
        finally:
            worker.stop()
        return
    process = WorkerProcess(config, settings, **options).start()
    sink = DurableSink(JobQueue(Store(config.database)), process.ring)
    try:
        yield SlackApp(settings, sink)
    finally:
        sink.stop()
        process.stop()


def grant(config: Config, user: str, role: Role) -> None:
    ctx = build_context(config, create=True)
    ctx.roles.grant(Grant(user, role), by="bench", at=ctx.clock())
    ctx.store.close()


WARM_UP = "help"  # answered without a registry call
BURST = "tags baseimages/fedora"


class LoadGenerator:
    """Bursts fired from a separate process with one asyncio loop: the load generator's own
    threads would compete for a GIL and delay its timestamps; Slack's traffic comes from
    elsewhere too. The same process fires every burst of a run, so that only the first
    (the warm-up) pays for its cold start."""

    def __init__(self, port: int, fake: FakeSlack) -> None:
        import multiprocessing

        self.port, self.fake_port = port, fake.port
        self._pool = multiprocessing.get_context("spawn").Pool(1)

    def fire(self, n: int, tag: str, text: str = BURST) -> tuple[list[float], int]:
        return self._pool.apply(_fire_async, (self.port, n, self.fake_port, tag, text))

    def close(self) -> None:
        self._pool.terminate()


def _fire_async(
    port: int, n: int, fake_port: int, tag: str, text: str = BURST
) -> tuple[list[float], int]:
    import asyncio

    def request(i: int) -> bytes:
        body = urlencode(
            {
                "command": "/acr",
                "text": text,
                "user_id": "UCAROL",
                "channel_id": "C1",
                "team_id": "T0001",
                "response_url": f"http://127.0.0.1:{fake_port}/response/{tag}-{i}",
                "trigger_id": f"{tag}.{i}",
            }
        )
        ts = str(int(time.time()))
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
        head = (
            f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return (head + body).encode()

    async def one(raw: bytes, start: asyncio.Event) -> tuple[float, int]:
        await start.wait()
        began = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=10)
            elapsed = time.perf_counter() - began
            writer.close()
            return elapsed, int(status_line.split()[1])
        except (TimeoutError, OSError, IndexError, ValueError):
            return time.perf_counter() - began, 0

    async def burst() -> list[tuple[float, int]]:
        start = asyncio.Event()
        tasks = [asyncio.create_task(one(request(i), start)) for i in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(burst())
    return [r[0] for r in results], sum(1 for r in results if r[1] != 200)


def wait_answers(fake: FakeSlack, tag: str, n: int, timeout: float = 120) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        done = sum(1 for c in fake.calls if c.method.startswith(f"response_url:{tag}-"))
        if done >= n:
            return time.perf_counter() - began
        time.sleep(0.05)
    return float("nan")


def summary(name: str, latencies: list[float], failures: int) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    row = {"p50": statistics.median(ms), "p99": p99, "max": ms[-1], "fail": failures}
    print(
        f"{name:<44} p50 {row['p50']:8.1f} ms   p99 {row['p99']:8.1f} ms   "
        f"max {row['max']:8.1f} ms   non-200 {failures}"
    )
    return row


REGISTRY_TAGS = 2000
REGISTRY_BURST = "tags loadtest/manytags --registry dist"


def bench_http_registry(n: int, delay: float, fake: FakeSlack) -> dict[str, float]:
    """`acrbot serve` (HTTP, worker process) on a real docker-registry whose repository has
    2,000 tags: the burst's acks, and when the last of the n answers arrived."""
    from tests.support.distribution import Distribution

    with tempfile.TemporaryDirectory() as tmp:
        registry = Distribution(Path(tmp) / "registry", in_memory=True).start()
        try:
            digest = registry.push("loadtest/manytags", "v0")
            registry.add_tags(
                "loadtest/manytags", (f"v{i}" for i in range(1, REGISTRY_TAGS)), digest
            )
            return bench_http(
                n, delay, fake, in_process=False, registry_url=registry.url, text=REGISTRY_BURST
            )
        finally:
            registry.stop()


def bench_http(
    n: int,
    delay: float,
    fake: FakeSlack,
    *,
    in_process: bool,
    registry_url: str | None = None,
    text: str = BURST,
) -> dict[str, float]:
    tag = "h" if in_process else ("r" if registry_url else "w")
    with (
        tempfile.TemporaryDirectory() as tmp,
        bot(Path(tmp), fake, delay, in_process=in_process, registry_url=registry_url) as front,
    ):
        server = HttpServer(front, host="127.0.0.1", port=0)
        thread = run_in_thread(server)
        # A running bot has served before: a first burst of `help` (no registry call) warms
        # both processes' code paths, as earlier traffic would.
        load = LoadGenerator(server.port, fake)
        load.fire(n, f"{tag}.warm", WARM_UP)
        wait_answers(fake, f"{tag}.warm", n)
        time.sleep(0.5)
        latencies, failures = load.fire(n, tag, text)
        load.close()
        where = "work in-process" if in_process else "worker process"
        if registry_url:
            where += f", {REGISTRY_TAGS:,}-tag docker-registry"
        row = summary(f"HTTP, uvicorn, {where}{_metrics_label()}", latencies, failures)
        row["answers"] = wait_answers(fake, tag, n)
        print(f"{'':<44} all {n} answers via response_url in {row['answers']:.1f} s")
        if metrics.enabled():
            scrape = metrics.Exposition().serve(host="127.0.0.1", port=0)  # --metrics-port
            acks = _scraped_acks(scrape.server_port)
            scrape.shutdown()
            print(f"{'':<44} /metrics: acrbot_ack_seconds_count{{kind=command}} {acks:g}")
        server.stop()
        thread.join(timeout=15)
        return row


def _metrics_label() -> str:
    return "" if metrics.enabled() else ", metrics off"


def _scraped_acks(port: int) -> float:
    """The ack count /metrics reports (the warm-up and the burst): metrics were really on."""
    import http.client

    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "acrbot_ack_seconds_count" and sample.labels == {"kind": "command"}:
                return sample.value
    return 0.0


def bench_builtin(n: int, delay: float, fake: FakeSlack) -> dict[str, float]:
    """The same app on Bolt's built-in server (http.server.HTTPServer, one request at a time)."""
    import http.server

    import slack_bolt.app.app as bolt_app_module

    class LoopbackHTTPServer(http.server.HTTPServer):
        # The built-in server binds 0.0.0.0; the bench stays on 127.0.0.1. Same class otherwise.
        def __init__(self, address: tuple[str, int], handler: Any) -> None:
            super().__init__(("127.0.0.1", address[1]), handler)

    with (
        tempfile.TemporaryDirectory() as tmp,
        bot(Path(tmp), fake, delay, in_process=False) as front,
    ):
        original = bolt_app_module.HTTPServer
        bolt_app_module.HTTPServer = LoopbackHTTPServer  # type: ignore[misc]
        try:
            dev = bolt_app_module.SlackAppDevelopmentServer(
                port=0, path="/slack/events", app=front.app
            )
        finally:
            bolt_app_module.HTTPServer = original  # type: ignore[misc]
        port = dev._server.server_address[1]
        thread = threading.Thread(target=dev._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        with contextlib.redirect_stderr(io.StringIO()):  # it logs every request to stderr
            load = LoadGenerator(port, fake)
            load.fire(2, "b.warm", WARM_UP)  # a short warm-up: this server takes seconds a burst
            latencies, failures = load.fire(n, "b")
            load.close()
        row = summary(f"HTTP, Bolt built-in server{_metrics_label()}", latencies, failures)
        dev._server.shutdown()
        dev._server.server_close()
        return row


def _socket_server(conn: Any, n: int, fake_port: int) -> None:
    """In a child process: a Socket Mode endpoint that, when the parent says (tag, text),
    sends ``n`` envelopes at once and reports each ack's latency (its own clock, its own GIL).
    """
    ws = FakeSocketMode().start()
    conn.send([ws.issue_url() for _ in range(20)])  # single-use tickets, one per connection
    ws.wait_connections(1)
    while (order := conn.recv()) != "stop":
        tag, text = order
        envelopes = [
            ws.send(
                "slash_commands",
                {
                    "command": "/acr",
                    "text": text,
                    "user_id": "UCAROL",
                    "channel_id": "C1",
                    "team_id": "T0001",
                    "trigger_id": f"{tag}.{i}",
                    "response_url": f"http://127.0.0.1:{fake_port}/response/{tag}-{i}",
                },
            )
            for i in range(n)
        ]
        latencies, failures = [], 0
        for envelope in envelopes:
            try:
                latencies.append(ws.wait_ack(envelope, timeout=10)[1])
            except AssertionError:
                failures += 1
        conn.send((latencies, failures))
    ws.stop()


def bench_socket_mode(
    n: int, delay: float, fake: FakeSlack, *, in_process: bool
) -> dict[str, float]:
    import multiprocessing

    os.environ["HTTPS_PROXY"] = ""  # the built-in client ignores NO_PROXY
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    tag = "t" if in_process else "s"
    server = context.Process(target=_socket_server, args=(child, n, fake.port))
    server.start()
    fake.socket_url = iter(parent.recv()).__next__
    with (
        tempfile.TemporaryDirectory() as tmp,
        bot(Path(tmp), fake, delay, in_process=in_process, app_token="xapp-bench") as front,
    ):
        handler = socket_mode_handler(front)
        handler.connect()
        time.sleep(0.5)  # let the hello settle
        parent.send((f"{tag}.warm", WARM_UP))  # as in bench_http
        parent.recv()
        wait_answers(fake, f"{tag}.warm", n)
        time.sleep(0.5)
        parent.send((tag, BURST))
        latencies, failures = parent.recv()
        where = "work in-process" if in_process else "worker process"
        row = summary(f"Socket Mode, {where}{_metrics_label()}", latencies, failures)
        print(f"{'':<44} all {n} answers via response_url in {wait_answers(fake, tag, n):.1f} s")
        parent.send("stop")
        handler.close()
    server.join(timeout=10)
    return row


def _isolated(
    name: str,
    n: int,
    delay: float,
    conn: Any,
    metrics_on: bool = True,
    database_url: str | None = None,
) -> None:
    """Run one bench in a fresh process with its own fake Web API: one server mode per
    process, as in production, so earlier runs' threads and garbage do not skew the next.
    Metrics on is what `acrbot serve` runs (multiprocess mode, shared with the worker
    process); off records nothing in either process."""
    scratch = tempfile.mkdtemp(prefix="bench-metrics-")
    if database_url is not None:
        from tests.support.postgres import PASSWORD

        DATABASE.update(database=database_url, database_password_env=PG_PASSWORD_ENV)
        ENVIRON[PG_PASSWORD_ENV] = PASSWORD
    if metrics_on:
        metrics.enable_multiprocess(Path(scratch))
    else:
        metrics.disable()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("websocket").setLevel(logging.CRITICAL)  # "close status: 1001" at the end
    fake = FakeSlack().start()
    benches = {
        "http": lambda *a: bench_http(*a, in_process=False),
        "socket": lambda *a: bench_socket_mode(*a, in_process=False),
        "http-inprocess": lambda *a: bench_http(*a, in_process=True),
        "socket-inprocess": lambda *a: bench_socket_mode(*a, in_process=True),
        "builtin": bench_builtin,
        "http-registry": bench_http_registry,
    }
    try:
        conn.send(benches[name](n, delay, fake))
    except BaseException:
        import traceback

        traceback.print_exc()
        conn.send(None)
    finally:
        fake.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        sys.stdout.flush()
        os._exit(0)  # do not wait for library threads (Bolt's, the SDK clients') to wind down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="concurrent commands (default 50)")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per registry call")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument(
        "--modes",
        default="http,socket,http-inprocess,socket-inprocess,builtin",
        help="comma-separated, of: http, socket (as `acrbot serve` runs them), http-inprocess, "
        "socket-inprocess (the work in the acking process), builtin (Bolt's dev server), "
        "http-registry (`tags` on a real 2,000-tag docker-registry, no delay)",
    )
    parser.add_argument(
        "--metrics",
        default="on",
        help="on, off, or on,off: run each mode with /metrics recording on and/or off "
        "(interleaved in each run), to see what metrics cost the acks",
    )
    parser.add_argument(
        "--database",
        default="sqlite",
        help="sqlite, postgresql, or sqlite,postgresql: run each mode on each engine "
        "(interleaved in each run; PostgreSQL is a local server started for the bench, a "
        "fresh database each time), and print the ratio of their p99",
    )
    args = parser.parse_args()
    switches = [m.strip() == "on" for m in args.metrics.split(",")]
    engines = [e.strip() for e in args.database.split(",")]
    cluster = None
    if "postgresql" in engines:
        from tests.support.postgres import PostgresCluster

        cluster = PostgresCluster().start()
    try:
        _main(args, switches, engines, cluster)
    finally:
        if cluster is not None:
            cluster.destroy()


def _main(args: Any, switches: list[bool], engines: list[str], cluster: Any) -> None:
    import multiprocessing

    print(
        f"{args.n} concurrent /acr commands, every registry call takes {args.delay:.1f} s, "
        f"{os.cpu_count()} cores; each run in a fresh process; metrics {args.metrics}; "
        f"database {args.database}\n",
        flush=True,
    )
    names = args.modes.split(",")
    keys = [_key(name, on) for name in names for on in switches]
    rows: dict[str, list[dict[str, float]]] = {key: [] for key in keys}
    on_pg: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    on_sqlite: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    context = multiprocessing.get_context("spawn")
    for _ in range(args.runs):
        for name in names:
            for engine in engines:
                for on in switches:
                    url = cluster.url(cluster.new_database()) if engine == "postgresql" else None
                    print(f"[{name}, {engine}]", flush=True)
                    parent, child = context.Pipe()
                    process = context.Process(
                        target=_isolated, args=(name, args.n, args.delay, child, on, url)
                    )
                    process.start()
                    row = parent.recv()
                    process.join()
                    if row is None:
                        raise SystemExit(f"the {name} bench failed (its traceback is above)")
                    if on == switches[0]:
                        (on_pg if url else on_sqlite)[name].append(row)
                    if engine == engines[0]:
                        rows[_key(name, on)].append(row)
    if len(engines) == 2:
        for name in names:
            pg = statistics.median(r["p99"] for r in on_pg[name])
            lite = statistics.median(r["p99"] for r in on_sqlite[name])
            print(
                f"PostgreSQL vs SQLite, {name}: median p99 {pg:.1f} vs {lite:.1f} ms "
                f"(×{pg / lite:.2f}); non-200 {sum(r['fail'] for r in on_pg[name])} vs "
                f"{sum(r['fail'] for r in on_sqlite[name])}"
            )
    print(f"\np99 in each of {args.runs} runs, worst last:")
    for name, runs in rows.items():
        p99s = ", ".join(f"{r['p99']:.1f}" for r in runs)
        print(f"  {name:<29} {p99s}  (worst {max(r['p99'] for r in runs):.1f} ms)")
    median = {name: statistics.median(r["p99"] for r in runs) for name, runs in rows.items()}
    if len(switches) == 2:
        for name in names:
            on, off = median[_key(name, True)], median[_key(name, False)]
            print(
                f"metrics on vs off, {name}: median p99 {on:.1f} vs {off:.1f} ms "
                f"({on - off:+.1f} ms)"
            )
    median = {
        name: statistics.median(r["p99"] for r in rows[_key(name, switches[0])]) for name in names
    }
    rows = {name: rows[_key(name, switches[0])] for name in names}
    for slower, faster in (
        ("builtin", "http"),
        ("http-inprocess", "http"),
        ("socket-inprocess", "socket"),
    ):
        if slower in median and faster in median:
            ratio = median[slower] / median[faster]
            print(f"{slower} / {faster}: p99 ×{ratio:.1f} (medians over the runs)")
    target = 50.0
    if "http-registry" in rows:
        slowest = max(r["answers"] for r in rows["http-registry"])
        print(
            f"http-registry: every answer within 10 s in every run: "
            f"{'met' if slowest <= 10 else 'NOT met'} (slowest burst {slowest:.1f} s)"
        )
    served = [name for name in ("http", "socket", "http-registry") if name in rows]
    if not served:
        return
    met = all(r["p99"] <= target and r["fail"] == 0 for name in served for r in rows[name])
    print(
        f"target p99 ≤ {target:.0f} ms and zero failures in every run ({', '.join(served)}): "
        f"{'met' if met else 'NOT met'}"
    )


def _key(name: str, metrics_on: bool) -> str:
    return name if metrics_on else f"{name} (metrics off)"


if __name__ == "__main__":
    main()
