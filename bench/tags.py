"""Tag listings at registry scale: the bot against skopeo and a raw floor, in one run.

Starts Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a 10,000-tag repository
(and a 2,000-tag one), written straight into its storage, then measures:
- `skopeo list-tags` on the same repository (the whole process, as a user runs it);
- the raw floor: one `tags/list` GET plus the page's HEADs with httpx, in-process, 16 at once;
- the bot, as `acrbot serve` runs it (uvicorn, the worker process, SQLite), answering a signed
  `/acr tags REPO` through the real Slack path: from the POST of the command to the answer's
  POST on the fake Slack's response_url; warm (digest facts cached), sequential;
- `/acr show` on the 10,000-tag repository: time to the first message the user sees (the
  "still working" note) and to the answer (every tag resolved: distribution has no other way);
- the `acr` backend against the fake ACR with 10,000 tags: requests for one page.

    .venv/bin/python bench/tags.py [--tags 10000] [--runs 10]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.app import build_context
from bot.core.config import SlackSettings, from_mapping
from bot.core.policy import Grant, Role
from bot.slack.handoff import DurableSink
from bot.slack.service import HttpServer, SlackApp, run_in_thread
from bot.slack.worker import WorkerProcess
from bot.state.jobqueue import JobQueue
from bot.state.store import Store
from tests.support.distribution import MANIFEST_ACCEPT, Distribution
from tests.support.fake_slack import FakeSlack

SECRET = "bench-secret"
REPO, SMALL = "loadtest/manytags", "loadtest/some"
PAGE = 25  # the bot's default page


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_skopeo(port: int, runs: int) -> float:
    samples = []
    for _ in range(runs + 2):
        began = time.perf_counter()
        done = subprocess.run(
            ["skopeo", "list-tags", "--tls-verify=false", f"docker://127.0.0.1:{port}/{REPO}"],
            capture_output=True,
            check=True,
        )
        samples.append(time.perf_counter() - began)
        assert done.stdout.count(b'"') > 2
    return median_ms(samples[2:])


def time_floor(url: str, runs: int) -> float:
    """One GET of every name, then HEADs for the first page (sorted by name), 16 at once."""
    client = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=16))
    pool = ThreadPoolExecutor(16)

    def once() -> None:
        names = sorted(client.get(f"/v2/{REPO}/tags/list").json()["tags"])[:PAGE]
        list(
            pool.map(
                lambda t: client.head(
                    f"/v2/{REPO}/manifests/{t}", headers={"Accept": MANIFEST_ACCEPT}
                ),
                names,
            )
        )

    samples = []
    for _ in range(runs + 2):
        began = time.perf_counter()
        once()
        samples.append(time.perf_counter() - began)
    return median_ms(samples[2:])


class Bot:
    """`acrbot serve` as it runs (HTTP, worker process) against the registry, and a way to
    send it signed commands and time their answers on the fake Web API."""

    def __init__(self, tmp: Path, registry_url: str) -> None:
        self.fake = FakeSlack().start()
        config = from_mapping(
            {
                "database": "bench.db",
                "registry": [{"name": "dist", "type": "oci", "url": registry_url}],
            },
            base=tmp,
            environ={},
        )
        ctx = build_context(config, create=True)
        ctx.roles.grant(Grant("UCAROL", Role.READER), by="bench", at=ctx.clock())
        ctx.store.close()
        settings = SlackSettings(
            bot_token="xoxb-bench", signing_secret=SECRET, api_url=self.fake.api_url
        )
        self.worker = WorkerProcess(config, settings).start()
        self.sink = DurableSink(JobQueue(Store(config.database)), self.worker.ring)
        self.server = HttpServer(SlackApp(settings, self.sink), host="127.0.0.1", port=0)
        self.thread = run_in_thread(self.server)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}")
        self.count = 0

    def ask(self, text: str, *, answers: int = 1, timeout: float = 120) -> list[float]:
        """Send `/acr text`; seconds until each of the first ``answers`` response_url posts."""
        self.count += 1
        name = f"b{self.count}"
        body = urlencode(
            {
                "command": "/acr",
                "text": text,
                "user_id": "UCAROL",
                "channel_id": "C1",
                "team_id": "T0001",
                "trigger_id": f"trig.{name}",
                "response_url": self.fake.response_url(name),
            }
        )
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(
                timestamp=ts, body=body
            ),
        }
        began = time.perf_counter()
        assert self.http.post("/slack/events", content=body, headers=headers).status_code == 200
        deadline = began + timeout
        while time.perf_counter() < deadline:
            posts = [c for c in self.fake.calls if c.method == f"response_url:{name}"]
            if len(posts) >= answers:
                return [c.at - began for c in posts[:answers]]
            time.sleep(0.001)
        raise SystemExit(f"no answer to `{text}` within {timeout:.0f} s")

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10)
        self.sink.stop()
        self.worker.stop()
        self.fake.stop()


def acr_requests(tags: int) -> tuple[int, int]:
    """Requests the `acr` backend makes for one page of tags (cold, then warm) on a fake ACR
    repository of ``tags`` tags."""
    from bot.core.registry import Order
    from tests.support.fake_acr import FakeAcr

    fake = FakeAcr().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ca = fake.write_ca(Path(tmp) / "ca.pem")
            for i in range(tags):
                fake.push(REPO, f"build-{i}", f"sha256:{i % 500:064x}", offset=i)
            acr = fake.client(ca)
            counts = []
            for _ in range(2):
                fake.reset_counts()
                acr.list_tags(REPO, order=Order.TIME_DESC, page_size=PAGE)
                counts.append(fake.count("GET", "/acr/v1/"))
            return counts[0], counts[1]
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10_000, help="tags in the big repository")
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        registry = Distribution(Path(tmp) / "registry", in_memory=True).start()
        bot = None
        try:
            began = time.perf_counter()
            digest = registry.push(REPO, "v0")
            registry.add_tags(REPO, (f"v{i}" for i in range(1, args.tags)), digest)
            small = registry.push(SMALL, "v0")
            registry.add_tags(SMALL, (f"v{i}" for i in range(1, 2000)), small)
            print(
                f"docker-registry 2.8 on 127.0.0.1: {REPO} with {args.tags:,} tags, {SMALL} "
                f"with 2,000 (seeded in {time.perf_counter() - began:.1f} s); "
                f"{os.cpu_count()} cores; medians of {args.runs} runs\n"
            )
            skopeo = time_skopeo(registry.port, args.runs)
            floor = time_floor(registry.url, args.runs)
            bot = Bot(Path(tmp), registry.url)
            for _ in range(3):  # warm: code paths, the connection pool, the digest facts
                bot.ask(f"tags {REPO}")
            tags = median_ms([bot.ask(f"tags {REPO}")[0] for _ in range(args.runs)])
            small_tags = median_ms([bot.ask(f"tags {SMALL}")[0] for _ in range(args.runs)])
            first, answer = bot.ask(f"show {REPO}:v0", answers=2)
            print(f"skopeo list-tags (process)            {skopeo:8.1f} ms")
            print(f"raw floor (GET + {PAGE} HEADs, httpx)      {floor:8.1f} ms")
            print(f"bot `tags` via Slack, {args.tags:,} tags       {tags:8.1f} ms")
            print(f"bot `tags` via Slack, 2,000 tags        {small_tags:8.1f} ms")
            print(f"bot `show` via Slack: first message     {first * 1000:8.1f} ms")
            print(f"bot `show` via Slack: answer ({args.tags:,} HEADs) {answer:6.1f} s")
            cold, warm = acr_requests(args.tags)
            print(
                f"acr backend, one page of {args.tags:,} tags   {cold} requests cold, {warm} warm"
            )
            print()
            print(f"bot tags / skopeo:     ×{tags / skopeo:.2f}  (target ≤ ×2, goal ×1)")
            print(f"bot tags / raw floor:  ×{tags / floor:.2f}")
            print(f"show first message ≤ 2 s: {'met' if first <= 2 else 'NOT met'}")
        finally:
            if bot is not None:
                bot.stop()
            registry.stop()


if __name__ == "__main__":
    main()
