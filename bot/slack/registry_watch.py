"""The worker's side of registry events: process what the receiver stored, close folds, and
keep the tag index (rebuilt, and compared with what the registry now holds, at start and every
`[events] reconcile_every`: handlers/events/reconcile.py).

Runs in the worker process beside the job loop. Woken by the receiver's ring (the same pipe
the jobs use), else it polls every POLL seconds: an event is in chat within a second or two of
being stored, far inside the 15 s the issue asks for.
"""

from __future__ import annotations

import logging
import threading
import time

from bot.kernel.context import Context
from bot.state.dbhealth import HEALTH
from bot.state.registry_events import EventLog
from bot.state.tag_index import TagIndex
from handlers.events.process import EventProcessor
from handlers.events.reconcile import reconcile_repository

log = logging.getLogger(__name__)
POLL = 0.5
RECONCILE_EVERY = 3600.0  # seconds between two full rebuilds (`[events] reconcile_every`)
MAX_REPOSITORIES = 2000  # repositories a reconcile reads per registry (the rest on demand)


class RegistryWatch:
    def __init__(self, ctx: Context, *, reconcile_every: float | None = None) -> None:
        self.ctx = ctx
        self.processor = EventProcessor(ctx)
        self.log = EventLog(ctx.store, clock=ctx.clock)
        self.index = TagIndex(ctx.store, clock=ctx.clock)
        events = ctx.config.events
        if reconcile_every is None:
            reconcile_every = (
                events.reconcile_every.total_seconds() if events is not None else RECONCILE_EVERY
            )
        self._reconcile_every = reconcile_every
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> RegistryWatch:
        requeued = self.log.requeue_orphans()
        if requeued:
            log.warning("%s registry event(s) interrupted by a restart will be processed", requeued)
        for target, name in ((self._loop, "acr-events"), (self._reconcile_loop, "acr-index")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(10)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(POLL)
            self._wake.clear()
            try:
                while not self._stopping.is_set() and self.processor.run_once():
                    pass
            except Exception as exc:
                if not HEALTH.guard(exc, doing="process registry events"):
                    log.exception("could not process registry events; trying again")
                self._stopping.wait(1.0)

    def _reconcile_loop(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            self.reconcile()
            try:
                self.log.prune()  # events older than bot/state/registry_events.py KEEP
            except Exception as exc:
                if not HEALTH.guard(exc, doing="prune registry events"):
                    log.exception("could not prune registry events")
            wait = max(1.0, self._reconcile_every - (time.monotonic() - started))
            if self._stopping.wait(wait):
                return

    def reconcile(self) -> int:
        """Rebuild the index of every repository (up to MAX_REPOSITORIES per registry)."""
        rebuilt = 0
        for registry in self.ctx.registries:
            try:
                names = registry.repositories()[:MAX_REPOSITORIES]
            except Exception as exc:
                log.warning("tag index: cannot list %s's repositories: %s", registry.name, exc)
                continue
            for repository in names:
                if self._stopping.is_set():
                    return rebuilt
                try:
                    reconcile_repository(self.ctx, self.processor, registry, repository)
                except Exception as exc:  # the old entries stay, labelled with their age
                    log.warning("tag index: cannot read %s/%s: %s", registry.name, repository, exc)
                    continue
                rebuilt += 1
        return rebuilt
