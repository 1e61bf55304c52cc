"""Readiness of `acrbot serve`: whether it should be sent traffic now, and if not, why.

`GET /readyz` answers from memory, never from the database: a lock held by another process
must not make the probe wait (a liveness or readiness probe that times out restarts or
unroutes a pod that is only waiting). What needs the database (is the outbox held because
Slack refuses the token?) is read by a background thread once a second, and a failed read
keeps the last answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from bot.state.dbhealth import HEALTH, SAYS, DatabaseHealth
from bot.state.outbox import Outbox
from bot.state.store import Store

log = logging.getLogger(__name__)


class Readiness:
    def __init__(
        self, store: Store, *, health: DatabaseHealth = HEALTH, refresh: float = 1.0
    ) -> None:
        self.health = health
        self.stopping = threading.Event()  # set at SIGTERM: not ready any more, at once
        self._outbox = Outbox(store)
        self._held: dict[str, str] | None = None
        self._refresh = refresh
        self._closed = threading.Event()

    def start(self) -> Readiness:
        threading.Thread(target=self._watch, name="acr-readiness", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a locked database: keep the last answer
                self._held = self._outbox.held()
            if self._closed.wait(self._refresh):
                return

    @property
    def held(self) -> dict[str, str] | None:
        """The outbox hold (Slack refusing the token) as last read, or None."""
        return self._held

    def problems(self) -> list[str]:
        """One line per reason not to send traffic here (503); empty when ready."""
        if self.stopping.is_set():
            return ["stopping (SIGTERM): acks still work until the listener closes"]
        return []

    def degraded(self) -> list[str]:
        """One line per thing that does not work now although traffic should still come
        here: with one replica, a pod taken out of the Service would leave every user with
        Slack's generic failure instead of the one line the bot answers meanwhile. Shown by
        /readyz (200, "degraded: …") and alerted on through /metrics."""
        found = []
        if self.health.problem is not None:
            found.append(f"{SAYS[self.health.problem]} (since {self.health.since:%H:%M:%S} UTC)")
        held = self._held
        if held is not None:
            found.append(
                f"Slack refuses the bot token ({held['error']}) since {held['since'][:19]}: "
                "messages wait in the outbox"
            )
        return found
