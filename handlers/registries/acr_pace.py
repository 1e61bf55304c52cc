"""Reads paced to the registry's tier, so a scan stays under ACR's ReadOps a minute.

ACR documents per-minute operation limits by SKU (ReadOps Basic 1,000 / Standard 3,000 /
Premium 10,000). A command makes a handful of reads and never waits: the pace allows a burst
of BURST_SECONDS at the lowest tier's rate. A scan that uses the burst up (a purge plan over
many repositories, sizes of a cold page, untagged manifests read one by one) makes the backend
read its SKU from ARM, once, and goes on at its tier's rate less a margin. An explicit
`read_rate` skips all that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from bot.core.pace import Pace
from bot.core.registry import Limits

BURST_SECONDS = 5.0  # reads at the pace's rate a command may make at once
READS = frozenset({"GET", "HEAD"})


class ReadPace:
    """One registry's read pace: fixed (``rate``), or the tier's once ``limits`` is read."""

    def __init__(
        self,
        rate: float | None,
        *,
        lowest: Limits,
        limits: Callable[[], Limits],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._pending: Callable[[], Limits] | None = None if rate else limits
        rate = rate or lowest.read_rate
        self.pace = Pace(rate, burst=rate * BURST_SECONDS, clock=clock, sleep=sleep)
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self._pending is not None and self.pace.delay() > 0:
            with self._lock:
                read, self._pending = self._pending, None
            if read is not None:
                rate = read().read_rate
                self.pace.set_rate(rate, burst=rate * BURST_SECONDS)
        self.pace.wait()


class ReadPacePolicy(SansIOHTTPPolicy):
    """Waits for the read pace before each data-plane GET/HEAD (every attempt)."""

    def __init__(self, reads: ReadPace) -> None:
        self._reads = reads

    def on_request(self, request: PipelineRequest) -> None:
        http = request.http_request
        if http.method in READS and not urlsplit(http.url).path.startswith("/oauth2/"):
            self._reads.wait()
