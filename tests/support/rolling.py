"""A rolling restart under load: signed slash commands at a steady rate, each sent (as a
Kubernetes Service would) to a replica whose /readyz says 200, while each replica in turn gets
SIGTERM and is started again; then what happened to every command.

Used by tests/servers/test_replicas.py (a short run) and bench/ha.py (20 commands/s, 60 s):

    load = RollingLoad(bots, fake, rate=20, duration=60)
    counts = load.run()          # restarts bots[0], then bots[1], … spread over the duration
    counts.problems()            # [] when nothing failed, went unanswered, twice or was lost

Counted once the bot has settled:
- failed: not acked 200 by any replica (Slack would tell the user it failed), or acked with a
  line saying it was not recorded (busy, database locked);
- unanswered: acked, its job recorded, but no answer on its response_url;
- duplicated: answered more than once ("still working" notes aside);
- lost: acked, yet no job was recorded for it (nothing could ever answer it).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.slack import listeners
from tests.support.fake_slack import FakeSlack
from tests.support.served import Sent, ServedBot

NOTE = ":hourglass_flowing_sand:"
REFUSALS = (listeners.BUSY, listeners.LOCKED, listeners.FULL, listeners.AUTH_FAILING)


@dataclass
class RollingCounts:
    sent: int = 0
    acked: int = 0
    failed: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)  # seconds, each acked command
    stops: list[tuple[int | None, float]] = field(default_factory=list)  # (exit code, seconds)
    starts: list[float] = field(default_factory=list)  # seconds until healthy again

    def problems(self) -> list[str]:
        found = [
            f"{name}: {len(value)} {value[:5]}"
            for name in ("failed", "unanswered", "duplicated", "lost")
            if (value := getattr(self, name))
        ]
        found += [f"SIGTERM: exit {code} after {took:.1f} s" for code, took in self.stops if code]
        return found

    def ack_p(self, q: float) -> float:
        ordered = sorted(self.acks)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0

    def lines(self) -> list[str]:
        stops = ", ".join(f"exit {code} in {took:.1f} s" for code, took in self.stops)
        return [
            f"commands: {self.sent} sent, {self.acked} acked; failed {len(self.failed)}, "
            f"unanswered {len(self.unanswered)}, duplicated {len(self.duplicated)}, "
            f"lost {len(self.lost)}",
            f"ack: p50 {self.ack_p(0.5) * 1000:.1f} ms, p99 {self.ack_p(0.99) * 1000:.1f} ms, "
            f"max {max(self.acks, default=0) * 1000:.1f} ms",
            f"restarts: SIGTERM {stops}; healthy again in "
            + ", ".join(f"{s:.1f} s" for s in self.starts),
        ]


class RollingLoad:
    def __init__(
        self,
        bots: list[ServedBot],
        fake: FakeSlack,
        *,
        rate: float = 20.0,
        duration: float = 60.0,
        commands: tuple[tuple[str, str], ...] = (("UCAROL", "tags roll/web"),),
        settle: float = 60.0,
    ) -> None:
        self.bots, self.fake = bots, fake
        self.rate, self.duration, self.commands, self.settle = rate, duration, commands, settle
        self.counts = RollingCounts()
        self._sent: list[Sent] = []
        self._ready = list(bots)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def run(self) -> RollingCounts:
        watcher = threading.Thread(target=self._watch_readiness, daemon=True)
        driver = threading.Thread(target=self._drive, daemon=True)
        watcher.start()
        driver.start()
        began = time.monotonic()
        # Restart each replica in turn, spread over the run: at 1/(n+1), 2/(n+1), …
        for n, bot in enumerate(self.bots, 1):
            due = began + self.duration * n / (len(self.bots) + 1)
            self._stop.wait(max(0.0, due - time.monotonic()))
            stopped = time.monotonic()
            code = bot.stop(timeout=60)
            self.counts.stops.append((code, time.monotonic() - stopped))
            started = time.monotonic()
            bot.start()
            self.counts.starts.append(time.monotonic() - started)
        self._stop.wait(max(0.0, began + self.duration - time.monotonic()))
        self._stop.set()
        driver.join(30)
        watcher.join(5)
        self._count()
        return self.counts

    def _watch_readiness(self) -> None:
        """What the endpoints controller does: probe each replica; route to the ready."""
        while not self._stop.is_set():
            ready = [bot for bot in self.bots if bot.ready()]
            with self._lock:
                self._ready = ready
            time.sleep(0.2)

    def _drive(self) -> None:
        interval = 1.0 / self.rate
        n = 0
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="rolling") as pool:
            next_at = time.monotonic()
            while not self._stop.is_set():
                with self._lock:
                    ready = list(self._ready)
                user, text = self.commands[n % len(self.commands)]
                if ready:
                    pool.submit(self._send, ready[n % len(ready)], user, text)
                else:
                    with self._lock:
                        self.counts.sent += 1
                        self.counts.failed.append("no replica ready")
                n += 1
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send(self, bot: ServedBot, user: str, text: str) -> None:
        sent = bot.command(user, text)
        with self._lock:
            self.counts.sent += 1
            if sent.status != 200 or any(r in sent.answer for r in REFUSALS):
                self.counts.failed.append(f"{sent.name}: {sent.status} {sent.answer[:60]}")
                return
            self.counts.acked += 1
            self.counts.acks.append(sent.took)
            self._sent.append(sent)

    def answers(self, sent: Sent) -> int:
        calls = self.fake.calls_to(f"response_url:{sent.name}")
        return sum(1 for c in calls if NOTE not in str(c))

    def _count(self) -> None:
        deadline = time.monotonic() + self.settle
        while time.monotonic() < deadline and any(self.answers(s) == 0 for s in self._sent):
            time.sleep(0.2)
        time.sleep(1.0)  # a second copy would come now
        keys = {key for (key,) in self.bots[0].query("select key from jobs")}
        for sent in self._sent:
            answered = self.answers(sent)
            if answered > 1:
                self.counts.duplicated.append(sent.name)
            elif answered == 0:
                recorded = f"trigger:{sent.trigger}" in keys
                (self.counts.unanswered if recorded else self.counts.lost).append(sent.name)
