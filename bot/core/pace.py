"""A shared pace: at most `rate` events a second after a burst, and a pause everyone honours.

Used for a purge's DELETEs (a 429's Retry-After pauses every worker, like regclient's per-host
backoff) and for an ACR backend's reads (scans kept under the tier's ReadOps). Hand-written:
the rate part is a few lines of GCRA (the "virtual scheduling" form of a token bucket), and
the shared Retry-After pause is what generic limiters lack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pace:
    """At most ``rate`` events a second (None: no cap), allowing ``burst`` at once."""

    def __init__(
        self,
        rate: float | None,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0  # the theoretical time of the next event at an even pace
        self.set_rate(rate, burst=burst)

    @property
    def rate(self) -> float | None:
        return 1.0 / self._interval if self._interval else None

    def set_rate(self, rate: float | None, *, burst: float = 1.0) -> None:
        with self._lock:
            self._interval = 1.0 / rate if rate else 0.0
            self._slack = max(burst - 1.0, 0.0) * self._interval

    def delay(self) -> float:
        """Seconds the next event would wait now (0: it may go at once)."""
        with self._lock:
            return max(self._next - self._slack - self._clock(), 0.0)

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next - self._slack)
            self._next = max(now, self._next) + self._interval
            if start <= now:
                return
        self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        """Nobody goes for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds + self._slack)
