"""Remaining pages of long replies, kept briefly in memory for the "More" button."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from bot.slack.blocks import Message


class PageCache:
    """Token → remaining pages. Bounded and short-lived: a stale button just says so."""

    def __init__(
        self, *, ttl: float = 900, capacity: int = 500, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl, self._capacity, self._clock = ttl, capacity, clock
        self._pages: OrderedDict[str, tuple[float, list[Message]]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, pages: list[Message]) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._pages[token] = (self._clock() + self._ttl, list(pages))
            while len(self._pages) > self._capacity:
                self._pages.popitem(last=False)
        return token

    def take(self, token: str) -> list[Message] | None:
        """The pages stored under ``token`` (removed), or None if expired or unknown."""
        with self._lock:
            entry = self._pages.pop(token, None)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]
