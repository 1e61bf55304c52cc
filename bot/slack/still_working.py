""" "Still working on it…": what a Slack user sees while a command takes a while.

Slack gives the user nothing between the ack and the answer. When a command runs longer than
``first_after`` seconds (a 10,000-tag scan on a distribution registry, a slow registry), one
ephemeral note is queued for the response_url, with the scan's progress when the command
reports any, and updated a few times; the answer then replaces it in place. A response_url
takes at most 5 posts, so the note is updated at most ``max_updates`` times.

The notes go through the outbox like the answer, inside ``guard`` (a database transaction):
the answer is written in a transaction too, so a note is either queued before the answer (and
the answer replaces it) or not at all, never after it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

log = logging.getLogger(__name__)
Post = Callable[[str, bool], None]  # (text, replace_original)


class StillWorking:
    """A progress reporter (``(done, total)``) that turns into a note once things are slow."""

    def __init__(
        self,
        post: Post,
        *,
        guard: Callable[[], ContextManager[object]] = contextlib.nullcontext,
        first_after: float = 1.5,
        every: float = 5.0,
        max_updates: int = 2,
        what: str = "tags",
    ) -> None:
        self._post, self._guard = post, guard
        self._first_after, self._every, self._max_updates = first_after, every, max_updates
        self._what = what
        self._stopped = threading.Event()
        self._progress: tuple[int, int] | None = None
        self.posted = 0
        self._thread = threading.Thread(target=self._run, name="acr-still-working", daemon=True)

    def __call__(self, done: int, total: int, /, what: object = None) -> None:
        self._progress = (done, total)

    def start(self) -> StillWorking:
        self._thread.start()
        return self

    def stop(self) -> bool:
        """No more notes; True if one was queued (the answer should then replace it). Call it
        inside the guard that records the answer."""
        self._stopped.set()
        return self.posted > 0

    def _text(self) -> str:
        if self._progress is None:
            return ":hourglass_flowing_sand: Still working on it…"
        done, total = self._progress
        return (
            f":hourglass_flowing_sand: Still working on it: {done:,} of {total:,} "
            f"{self._what} checked…"
        )

    def _run(self) -> None:
        wait = self._first_after
        while not self._stopped.wait(wait):
            try:
                with self._guard():
                    if self._stopped.is_set():
                        return
                    self._post(self._text(), self.posted > 0)
                    self.posted += 1
            except Exception as exc:  # a note is a courtesy: never fail the command
                log.warning("could not queue the progress note: %s", exc)
                return
            if self.posted > self._max_updates:
                return
            wait = self._every
