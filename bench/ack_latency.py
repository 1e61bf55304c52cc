"""Ack latency of /acr under a burst, while every registry call takes 2 seconds.

Fires N concurrent signed slash commands at the HTTP endpoint and N Socket Mode envelopes, and
prints p50/p99/max ack latency and the number of non-200s, beside the same burst against
Bolt's built-in development server (app.start) as the baseline. Everything runs on 127.0.0.1:
the fake Slack Web API from tests/, the real Bolt app, waitress, slack_sdk's Socket Mode client.

    .venv/bin/python bench/ack_latency.py [--n 50] [--delay 2.0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slack_sdk.signature import SignatureVerifier

from bot.config import SlackSettings, from_mapping
from bot.demo import seed_registry
from bot.policy import Grant, Role
from bot.slack.service import (
    SlackService,
    make_http_server,
    socket_mode_handler,
    stop_http_server,
)
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode

SECRET = "bench-secret"


class SlowRegistry:
    """The demo layout, but every registry call takes ``delay`` seconds (a slow ACR)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner, self._delay = inner, delay
        self.name, self.kind = inner.name, inner.kind
        self.login_server, self.can_untag = inner.login_server, inner.can_untag

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._delay)
            return attr(*args, **kwargs)

        return slow


def make_service(
    tmp: Path,
    fake: FakeSlack,
    delay: float,
    *,
    app_token: str | None = None,
) -> SlackService:
    config = from_mapping(
        {
            "database": "bench.db",
            "registry": [{"name": "demo", "type": "oci-layout", "path": "registry"}],
        },
        base=tmp,
        environ={},
    )
    settings = SlackSettings(
        bot_token="xoxb-bench", signing_secret=SECRET, app_token=app_token, api_url=fake.api_url
    )
    registry = SlowRegistry(seed_registry(tmp / "registry"), delay)
    service = SlackService(config, settings, registries=[registry])
    service.bot.ctx.roles.grant(
        Grant("UCAROL", Role.READER), by="bench", at=service.bot.ctx.clock()
    )
    return service


def fire_elsewhere(port: int, n: int, fake: FakeSlack, tag: str) -> tuple[list[float], int]:
    """Run the burst from a separate process with one asyncio loop: the load generator's own
    threads would compete for a GIL and delay its timestamps; Slack's traffic comes from
    elsewhere too."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_fire_async, (port, n, fake.port, tag))


def _fire_async(port: int, n: int, fake_port: int, tag: str) -> tuple[list[float], int]:
    import asyncio

    def request(i: int) -> bytes:
        body = urlencode(
            {
                "command": "/acr",
                "text": "tags baseimages/fedora",
                "user_id": "UCAROL",
                "channel_id": "C1",
                "team_id": "T0001",
                "response_url": f"http://127.0.0.1:{fake_port}/response/{tag}{i}",
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
        done = sum(1 for c in fake.calls if c.method.startswith(f"response_url:{tag}"))
        if done >= n:
            return time.perf_counter() - began
        time.sleep(0.05)
    return float("nan")


def summary(name: str, latencies: list[float], failures: int) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    row = {"p50": statistics.median(ms), "p99": p99, "max": ms[-1], "fail": failures}
    print(
        f"{name:<34} p50 {row['p50']:8.1f} ms   p99 {row['p99']:8.1f} ms   "
        f"max {row['max']:8.1f} ms   non-200 {failures}"
    )
    return row


def bench_waitress(n: int, delay: float, fake: FakeSlack) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        service = make_service(Path(tmp), fake, delay)
        server = make_http_server(service, host="127.0.0.1", port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        _fire_async(server.effective_port, 2, fake.port, "warm")  # auth.test on first request
        latencies, failures = fire_elsewhere(server.effective_port, n, fake, "w")
        row = summary("HTTP, waitress + worker pool", latencies, failures)
        print(f"{'':<34} all {n} answers via response_url in {wait_answers(fake, 'w', n):.1f} s")
        stop_http_server(server)
        service.stop()
        return row


def bench_builtin(n: int, delay: float, fake: FakeSlack) -> dict[str, float]:
    """The same app on Bolt's built-in server (http.server.HTTPServer, one request at a time)."""
    import http.server

    import slack_bolt.app.app as bolt_app_module

    class LoopbackHTTPServer(http.server.HTTPServer):
        # The built-in server binds 0.0.0.0; the bench stays on 127.0.0.1. Same class otherwise.
        def __init__(self, address: tuple[str, int], handler: Any) -> None:
            super().__init__(("127.0.0.1", address[1]), handler)

    with tempfile.TemporaryDirectory() as tmp:
        service = make_service(Path(tmp), fake, delay)
        original = bolt_app_module.HTTPServer
        bolt_app_module.HTTPServer = LoopbackHTTPServer  # type: ignore[misc]
        try:
            dev = bolt_app_module.SlackAppDevelopmentServer(
                port=0, path="/slack/events", app=service.app
            )
        finally:
            bolt_app_module.HTTPServer = original  # type: ignore[misc]
        port = dev._server.server_address[1]
        thread = threading.Thread(target=dev._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        with contextlib.redirect_stderr(io.StringIO()):  # it logs every request to stderr
            _fire_async(port, 2, fake.port, "bwarm")
            latencies, failures = fire_elsewhere(port, n, fake, "b")
        row = summary("HTTP, Bolt built-in server", latencies, failures)
        dev._server.shutdown()
        dev._server.server_close()
        service.stop()
        return row


def _socket_server(conn: Any, n: int, fake_port: int) -> None:
    """In a child process: a Socket Mode endpoint that sends ``n`` envelopes at once when the
    client has connected, and reports each ack's latency (its own clock, its own GIL)."""
    ws = FakeSocketMode().start()
    conn.send(ws.url)
    ws.wait_connections(1)
    conn.recv()  # the parent says go
    envelopes = [
        ws.send(
            "slash_commands",
            {
                "command": "/acr",
                "text": "tags baseimages/fedora",
                "user_id": "UCAROL",
                "channel_id": "C1",
                "team_id": "T0001",
                "trigger_id": f"s.{i}",
                "response_url": f"http://127.0.0.1:{fake_port}/response/s{i}",
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
    conn.recv()
    ws.stop()


def bench_socket_mode(n: int, delay: float, fake: FakeSlack) -> dict[str, float]:
    import multiprocessing

    os.environ["HTTPS_PROXY"] = ""  # the built-in client ignores NO_PROXY
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_socket_server, args=(child, n, fake.port))
    server.start()
    fake.socket_url = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        service = make_service(Path(tmp), fake, delay, app_token="xapp-bench")
        handler = socket_mode_handler(service)
        handler.connect()
        time.sleep(0.5)  # let the hello settle
        parent.send("go")
        latencies, failures = parent.recv()
        row = summary("Socket Mode, SDK client + pool", latencies, failures)
        print(f"{'':<34} all {n} answers via response_url in {wait_answers(fake, 's', n):.1f} s")
        parent.send("stop")
        handler.close()
        service.stop()
    server.join(timeout=10)
    return row


def _isolated(name: str, n: int, delay: float, conn: Any) -> None:
    """Run one bench in a fresh process with its own fake Web API: one server mode per
    process, as in production, so earlier runs' threads and garbage do not skew the next."""
    logging.basicConfig(level=logging.ERROR)
    fake = FakeSlack().start()
    benches = {"waitress": bench_waitress, "builtin": bench_builtin, "socket": bench_socket_mode}
    try:
        conn.send(benches[name](n, delay, fake))
    except BaseException:
        import traceback

        traceback.print_exc()
        conn.send(None)
    finally:
        fake.stop()
        sys.stdout.flush()
        os._exit(0)  # do not wait for library threads (Bolt's, the SDK clients') to wind down


def main() -> None:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="concurrent commands (default 50)")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per registry call")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    print(
        f"{args.n} concurrent /acr commands, every registry call takes {args.delay:.1f} s, "
        f"{os.cpu_count()} cores; each run in a fresh process\n",
        flush=True,
    )
    rows: dict[str, list[dict[str, float]]] = {"waitress": [], "builtin": [], "socket": []}
    context = multiprocessing.get_context("spawn")
    for _ in range(args.runs):
        for name in rows:
            parent, child = context.Pipe()
            process = context.Process(target=_isolated, args=(name, args.n, args.delay, child))
            process.start()
            row = parent.recv()
            process.join()
            if row is None:
                raise SystemExit(f"the {name} bench failed (its traceback is above)")
            rows[name].append(row)
    worst = {name: max(runs, key=lambda r: r["p99"]) for name, runs in rows.items()}
    print(
        f"\nworst of {args.runs}: waitress p99 {worst['waitress']['p99']:.1f} ms, "
        f"Socket Mode p99 {worst['socket']['p99']:.1f} ms, "
        f"built-in p99 {worst['builtin']['p99']:.1f} ms"
    )
    print(
        f"built-in / waitress (worst runs): p99 ×"
        f"{worst['builtin']['p99'] / worst['waitress']['p99']:.1f}"
    )
    target = 50.0
    met = all(
        r["p99"] <= target and r["fail"] == 0 for name in ("waitress", "socket") for r in rows[name]
    )
    print(
        f"target p99 ≤ {target:.0f} ms and zero failures in every run (HTTP and Socket Mode): "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
