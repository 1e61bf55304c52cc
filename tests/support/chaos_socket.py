"""Socket Mode chaos: a real `acrbot serve` in Socket Mode against the strict fake Socket Mode
server, a stream of slash commands as envelopes while Slack recycles the connection at random
moments (`refresh_requested`, `warning`, `too_many_websockets`, and connections dropped
without a word); then it counts what issue 28 promises.

Used by tests/flows/test_slack_socket_mode.py (a short run) and `bench/chaos.py --socket-mode`:

    counts = SocketChaos(root, fake, SocketChaosOptions(duration=30, seed=7)).run()
    counts.problems()  # [] when every promise held

What is counted, once the refreshes stop and the bot has settled:
- every envelope is acked, within Slack's 3 s;
- every command is answered exactly once on its response_url;
- no window longer than 1 s without a connection Slack can deliver to (refreshes overlap;
  a dropped connection or a too_many_websockets backoff is allowed longer: counted apart);
- no ticket used twice, no ack for an envelope that was never sent, `acrbot serve` still up.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fake_slack import FakeSlack
from tests.support.fake_socket_mode import FakeSocketMode
from tests.support.helpers import REPO_ROOT, wait_until

NOTE = ":hourglass_flowing_sand:"
SLACK_ACK_DEADLINE = 3.0
MAX_GAP = 1.0  # after a refresh (refresh_requested, warning)


@dataclass
class SocketChaosOptions:
    duration: float = 30.0
    seed: int = 1
    pace: tuple[float, float] = (0.02, 0.15)  # seconds between two commands
    refresh_every: tuple[float, float] = (0.5, 3.0)
    # How often each kind of recycling is picked.
    reasons: tuple[tuple[str, int], ...] = (
        ("refresh_requested", 6),
        ("warning", 3),
        ("too_many_websockets", 1),
        ("dropped", 1),
    )
    settle: float = 30.0


@dataclass
class SocketCounts:
    duration: float = 0.0
    refreshes: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    envelopes: int = 0
    acked: int = 0
    unacked: list[str] = field(default_factory=list)
    late_acks: list[float] = field(default_factory=list)  # over Slack's 3 s
    ack_p99: float = 0.0
    ack_max: float = 0.0
    waited_max: float = 0.0  # the longest an envelope waited for a connection to take it
    answered_once: int = 0
    unanswered: list[str] = field(default_factory=list)
    answered_twice: list[str] = field(default_factory=list)
    refresh_gaps: list[float] = field(default_factory=list)  # after refresh_requested/warning
    other_gaps: list[float] = field(default_factory=list)  # after a drop or too_many
    refused_tickets: list[str] = field(default_factory=list)
    ack_errors: list[str] = field(default_factory=list)
    serve_exited: int | None = None

    def problems(self) -> list[str]:
        found = []
        for name in ("unacked", "late_acks", "unanswered", "answered_twice"):
            value = getattr(self, name)
            if value:
                found.append(f"{name}: {value[:10]}{' …' if len(value) > 10 else ''}")
        long_gaps = [g for g in self.refresh_gaps if g > MAX_GAP]
        if long_gaps:
            found.append(f"gaps over {MAX_GAP:g} s after a refresh: {long_gaps[:10]}")
        if self.refused_tickets:
            found.append(f"tickets refused: {self.refused_tickets[:5]}")
        if self.ack_errors:
            found.append(f"acks for envelopes never sent: {self.ack_errors[:5]}")
        if self.serve_exited is not None:
            found.append(f"acrbot serve exited with {self.serve_exited}")
        return found

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.refreshes.items()))
        worst = max(self.refresh_gaps, default=0.0)
        other = max(self.other_gaps, default=0.0)
        return [
            f"socket mode chaos: {self.duration:.0f} s, {sum(self.refreshes.values())} "
            f"recyclings ({reasons}), {self.connections} connections opened",
            f"envelopes: {self.envelopes} sent, {self.acked} acked ({len(self.unacked)} not), "
            f"ack p99 {self.ack_p99 * 1000:.0f} ms, max {self.ack_max * 1000:.0f} ms, "
            f"{len(self.late_acks)} over Slack's 3 s; the longest wait for a connection "
            f"{self.waited_max * 1000:.0f} ms",
            f"answers: {self.answered_once} of {self.envelopes} commands answered exactly once, "
            f"{len(self.unanswered)} never, {len(self.answered_twice)} twice or more",
            f"gaps without a connection Slack can deliver to: longest {worst * 1000:.0f} ms "
            f"after a refresh or warning ({len(self.refresh_gaps)} of them), longest "
            f"{other * 1000:.0f} ms after a drop or too_many_websockets (which backs off "
            "2 s, doubling)",
        ]


class SocketChaos:
    def __init__(self, root: Path, fake: FakeSlack, options: SocketChaosOptions) -> None:
        self.root, self.fake, self.options = root, fake, options
        self.random = random.Random(options.seed)
        self.ws = FakeSocketMode().start().attach(fake)
        self.counts = SocketCounts()
        self.sent: list[tuple[str, str]] = []  # (envelope_id, response_url name)
        self.recycled: list[tuple[float, str]] = []  # (monotonic, reason)
        self._stop = threading.Event()
        self.proc: subprocess.Popen | None = None

    def run(self) -> SocketCounts:
        try:
            self._start()
            started = time.monotonic()
            threads = [
                threading.Thread(target=self._drive, name="socket-chaos-drive", daemon=True),
                threading.Thread(target=self._recycle, name="socket-chaos-recycle", daemon=True),
            ]
            for thread in threads:
                thread.start()
            self._stop.wait(self.options.duration)
            self._stop.set()
            for thread in threads:
                thread.join(30)
            self.counts.duration = time.monotonic() - started
            self._settle()
            self._count(started)
            return self.counts
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(timeout=30)
            self.ws.stop()

    def _start(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "bot", "demo", "--dir", str(self.root)],
            input="",
            text=True,
            check=True,
            capture_output=True,
        )
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_APP_TOKEN": "xapp-test",
            "SLACK_API_URL": self.fake.api_url,
            "ACRBOT_CONFIG": str(self.root / "acrbot.toml"),
            "HTTPS_PROXY": "",
            "HTTP_PROXY": "",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        env.pop("SLACK_SIGNING_SECRET", None)
        log = open(self.root / "serve.log", "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], env=env, stdout=log, stderr=log
        )
        log.close()
        self.ws.wait_connections(1, timeout=30)

    def _drive(self) -> None:
        number = 0
        while not self._stop.wait(self.random.uniform(*self.options.pace)):
            number += 1
            name = f"sm{number}"
            text = self.random.choice(["tags baseimages/fedora", "whoami", "help"])
            envelope = self.ws.send(
                "slash_commands",
                {
                    "command": "/acr",
                    "text": text,
                    "user_id": "carol",
                    "channel_id": "C1",
                    "team_id": "T0001",
                    "trigger_id": f"trig.{name}",
                    "response_url": self.fake.response_url(name),
                },
            )
            self.sent.append((envelope, name))

    def _recycle(self) -> None:
        names = [r for r, _ in self.options.reasons]
        weights = [w for _, w in self.options.reasons]
        while not self._stop.wait(self.random.uniform(*self.options.refresh_every)):
            if not self.ws.deliverable():
                continue  # a backoff in progress: Slack would not recycle what is not there
            reason = self.random.choices(names, weights)[0]
            self.recycled.append((time.monotonic(), reason))
            if reason == "dropped":
                self.ws._close(self.ws.deliverable()[-1].id)
            else:
                self.ws.disconnect(reason)
            self.counts.refreshes[reason] += 1

    def _settle(self) -> None:
        def answered() -> bool:
            return all(self._answers(name) for _, name in self.sent)

        with contextlib.suppress(AssertionError):  # counted below
            wait_until(answered, timeout=self.options.settle, what="every command answered")

    def _answers(self, name: str) -> list[dict]:
        posts = self.fake.calls_to(f"response_url:{name}")
        return [p for p in posts if not str(p.get("text", "")).startswith(NOTE)]

    def _count(self, started: float) -> None:
        counts, ws = self.counts, self.ws
        counts.envelopes = len(self.sent)
        latencies = []
        for envelope, name in self.sent:
            if envelope in ws.acks:
                counts.acked += 1
                latency = ws.acks[envelope][1] - ws.sent_at[envelope]
                latencies.append(latency)
                waited = ws.sent_at[envelope] - ws.queued_at[envelope]
                counts.waited_max = max(counts.waited_max, waited)
                if latency > SLACK_ACK_DEADLINE:
                    counts.late_acks.append(round(latency, 3))
            else:
                counts.unacked.append(name)
            answers = self._answers(name)
            if len(answers) == 1:
                counts.answered_once += 1
            elif not answers:
                counts.unanswered.append(name)
            else:
                counts.answered_twice.append(name)
        latencies.sort()
        if latencies:
            counts.ack_p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            counts.ack_max = latencies[-1]
        counts.connections = len(ws.history)
        for at, seconds in ws.gaps(started, started + counts.duration):
            cause = [r for t, r in self.recycled if t <= at + 0.05]
            last = cause[-1] if cause else "start"
            if last in ("refresh_requested", "warning"):
                counts.refresh_gaps.append(round(seconds, 3))
            else:
                counts.other_gaps.append(round(seconds, 3))
        counts.refused_tickets = [why for _, why in ws.refused]
        counts.ack_errors = list(ws.ack_errors)
        if self.proc is not None and self.proc.poll() is not None:
            counts.serve_exited = self.proc.returncode
