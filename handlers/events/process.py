"""Process stored registry events: keep the tag index, tell drift apart from the bot's own
work, lock write-once tags, and queue what chat should see.

Each event is processed in one transaction that applies it to the tag index, writes its
audit row, queues its messages (bot/state/outbox.py, keyed by the event) and marks it done
(bot/state/registry_events.py): a worker killed half-way leaves it queued, and the next one
does all of it once. The only effect outside the database, locking a write-once tag, is
idempotent (locking a locked tag changes nothing) and runs before that transaction.

Drift is what happened outside the bot: a manifest or repository deleted, a tag that
disappeared, a protected tag moved, a write-once tag overwritten. It is an alert in
`[slack] security_channel` and an `external.*` audit row. A deletion the bot executed itself
(bot/state/own_deletions.py: same registry, repository, digest or tag, and time) is not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from bot.core.redaction import REDACTOR
from bot.core.registry import Registry
from bot.core.registry_events import Action, RegistryEvent
from bot.kernel.context import Context
from bot.state.announce import POST
from bot.state.own_deletions import bot_deleted
from bot.state.registry_events import EventLog, StoredEvent
from bot.state.tag_index import TagIndex
from handlers.events import messages

log = logging.getLogger(__name__)


class _AlreadyDone(Exception):
    """The event was finished by another worker while this one processed it."""


FOLD_WINDOW = timedelta(minutes=1)
BOT = "acrbot"


@dataclass(frozen=True)
class Outcome:
    """What processing made of one event (stored with it; `events` shows it)."""

    drift: str | None = None  # delete, untag, repo_delete, moved, overwrite
    own: bool = False  # a deletion the bot executed
    posted: tuple[str, ...] = ()  # watch channels it was posted to at once
    folded: tuple[str, ...] = ()  # watch channels it was folded into a summary for
    locked: bool = False
    lock_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "drift": self.drift,
            "own": self.own,
            "posted": list(self.posted),
            "folded": list(self.folded),
            "locked": self.locked,
            "lock_error": self.lock_error,
        }


class EventProcessor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = EventLog(ctx.store, clock=ctx.clock)
        self.index = TagIndex(ctx.store, clock=ctx.clock)

    def registry_for(self, event: RegistryEvent) -> Registry | None:
        """The configured registry whose login server the event's host is; with one registry
        configured, that one (a registry behind a proxy or a load balancer hears another
        host name than the one in its `url`)."""
        registries = list(self.ctx.registries)
        host = (event.host or "").lower()
        for registry in registries:
            if registry.login_server and registry.login_server.lower() == host:
                return registry
        return registries[0] if len(registries) == 1 else None

    def run_once(self, *, limit: int = 200) -> int:
        """Close the folds that are due (so an event after a quiet minute opens a new one and
        is posted at once), then claim and process up to ``limit`` events."""
        self.close_folds()
        claimed = self.log.claim(limit)
        for done, stored in enumerate(claimed):
            try:
                self.process(stored)
            except Exception:  # a locked or full database: nothing of it was kept
                self.log.release([s.event.id for s in claimed[done:]])
                raise
        return len(claimed)

    def process(self, stored: StoredEvent) -> Outcome:
        event = stored.event
        registry = self.registry_for(event)
        name = registry.name if registry is not None else (event.host or "unknown")
        config = self.ctx.config
        locked, lock_error = False, None
        if (
            registry is not None
            and event.action is Action.PUSH
            and event.tag
            and config.protect.is_immutable(event.tag)
            and registry.can_lock
        ):
            locked, lock_error = self._lock(registry, event)
        try:
            return self._record(stored, registry, name, locked=locked, lock_error=lock_error)
        except _AlreadyDone:
            return Outcome()

    def _record(
        self,
        stored: StoredEvent,
        registry: Registry | None,
        name: str,
        *,
        locked: bool,
        lock_error: str | None,
    ) -> Outcome:
        """Everything the event changes in the database, in one transaction."""
        event = stored.event
        with self.ctx.store.transaction():
            old = self.index.digest_of(name, event.repository, event.tag) if event.tag else None
            drift, own = self._drift(name, registry, event, old)
            if registry is not None:
                self.index.apply(name, event)
            posted, folded = self._watch(name, event)
            self._audit(name, event, drift=drift, own=own, old=old)
            if locked or lock_error:
                self.ctx.audit.append(
                    actor=BOT,
                    action="events.lock",
                    target=f"{name}/{event.image} (write-once)",
                    outcome="ok" if locked else "failed",
                    error=lock_error,
                    at=self.ctx.clock(),
                )
            alert = drift
            if lock_error and drift is None:
                alert, old = "lock_failed", lock_error
            if alert is not None:
                self._alert(name, event, kind=alert, old=old)
            outcome = Outcome(
                drift=drift,
                own=own,
                posted=posted,
                folded=folded,
                locked=locked,
                lock_error=lock_error,
            )
            if not self.log.finish(event.id, registry=name, outcome=outcome.as_dict()):
                raise _AlreadyDone  # another worker did it all: roll this copy back
        return outcome

    def _lock(self, registry: Registry, event: RegistryEvent) -> tuple[bool, str | None]:
        assert event.tag is not None
        try:
            registry.set_lock(event.repository, event.tag, delete=None, write=True)
        except Exception as exc:  # the alert says it could not be locked, and why
            log.warning("could not lock %s/%s: %s", registry.name, event.image, exc)
            return False, REDACTOR.redact(str(exc)) or type(exc).__name__
        return True, None

    def _drift(
        self, name: str, registry: Registry | None, event: RegistryEvent, old: str | None
    ) -> tuple[str | None, bool]:
        """(the kind of drift or None, whether it was the bot's own deletion)."""
        protect = self.ctx.config.protect
        if event.action is Action.PUSH:
            if not (event.tag and event.digest and old and old != event.digest):
                return None, False
            if protect.is_immutable(event.tag):
                return "overwrite", False
            if protect.protected(event.tag):
                return "moved", False
            return None, False
        if registry is None:
            return event.action.value, False
        candidates = [event.digest]
        if event.action is Action.UNTAG and old:
            candidates.append(old)  # the index knew the tag's digest: match on it too
        own = any(
            bot_deleted(
                self.ctx.store,
                registry=name,
                repository=event.repository,
                digest=digest,
                tag=event.tag,
                at=event.at,
                since=event.since,
            )
            for digest in candidates
        )
        if own:
            return None, True
        return event.action.value, False

    def _watch(self, name: str, event: RegistryEvent) -> tuple[tuple[str, ...], tuple[str, ...]]:
        posted: list[str] = []
        folded: list[str] = []
        channels = {r.channel for r in self.ctx.config.watches if r.matches(event, name)}
        for channel in sorted(channels):
            opened = self.log.fold(
                channel=channel,
                registry=name,
                repository=event.repository,
                line=messages.short_line(event),
            )
            if opened:
                self.ctx.outbox.put(
                    f"watch:{event.id}:{channel}",
                    POST,
                    {"channel": channel, "text": messages.watch_line(name, event)},
                )
                posted.append(channel)
            else:
                folded.append(channel)
        return tuple(posted), tuple(folded)

    def _alert(self, name: str, event: RegistryEvent, *, kind: str, old: str | None) -> None:
        channel = self.ctx.config.security_channel
        if channel is None:
            log.warning(
                "registry drift in %s (%s %s) and no [slack] security_channel to tell",
                name,
                kind,
                event.image,
            )
            return
        # Alerts fold like watch lines: a manifest deleted with 10,000 tags on it (distribution
        # sends a tag-delete event for each) is one alert and one summary, not 10,001 posts.
        opened = self.log.fold(
            channel=channel,
            registry=f"{name} (drift)",  # a fold of its own, apart from watch lines
            repository=event.repository,
            line=f"{kind}: {messages.short_line(event)}",
        )
        if opened:
            self.ctx.outbox.put(
                f"drift:{event.id}",
                POST,
                {"channel": channel, "text": messages.drift_alert(name, event, kind=kind, old=old)},
            )

    def _audit(
        self, name: str, event: RegistryEvent, *, drift: str | None, own: bool, old: str | None
    ) -> None:
        """Every event in the audit once: `external.*` for drift, `registry.*` otherwise."""
        # The target is `registry/image` (the audit command reads the repository from it);
        # what else the event says goes with the outcome.
        details = []
        if event.digest and event.tag:
            details.append(f"digest={event.digest}")
        if old and drift in ("moved", "overwrite"):
            details.append(f"was={old}")
        if event.addr:
            details.append(f"from={event.addr}")
        details.append(f"via={event.source.value}")
        verdict = "bot's own deletion" if own else ("alert" if drift else "seen")
        action = f"external.{drift}" if drift else f"registry.{event.action.value}"
        self.ctx.audit.append(
            actor=event.actor or "unknown",
            action=action,
            target=f"{name}/{event.image}"[:1000],
            outcome=f"{verdict}: {' '.join(details)}"[:1000],
            at=self.ctx.clock(),
        )

    def close_folds(self) -> int:
        """Post one summary per fold open for a minute, and close it."""
        closed = 0
        for fold in self.log.due_folds(window=FOLD_WINDOW):
            with self.ctx.store.transaction():
                if not self.log.close_fold(fold):
                    continue
                if fold.folded:
                    self.ctx.outbox.put(
                        f"watchsum:{fold.channel}:{fold.registry}:{fold.repository}:"
                        f"{fold.opened_at.isoformat()}",
                        POST,
                        {
                            "channel": fold.channel,
                            "text": messages.summary(
                                fold.registry, fold.repository, fold.folded, fold.lines
                            ),
                        },
                    )
                closed += 1
        return closed
