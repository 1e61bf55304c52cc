"""Jobs: what a listener hands over once it has acked.

A job is plain data (no clients, no callbacks), so it can cross into the worker process; the
worker rebuilds what it needs (a `Respond` from the response_url, the user from the ids).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.state import dbhealth
from bot.state.dbhealth import HEALTH, DatabaseHealth, problem_of
from bot.state.jobqueue import JobQueue

COMMAND = "command"  # /acr …; data: the command payload
DECIDE = "decide"  # approve/deny as a user; data: user, channel, command
OPEN_DENY = "open_deny"  # open the deny modal; data: trigger_id, request, channel
OPEN_CONFIRM = "open_confirm"  # the type-the-repository modal ([[policy]] confirm = "type")
PAGE = "page"  # Previous/Next on a listing; data: user, value, response_url, ephemeral
MORE = "more"  # the "More" button of an earlier release; data: response_url
THREAD_REPLY = "thread_reply"  # a message in a thread; data: the message event
HOME = "home"  # publish the App Home tab; data: user
KINDS = frozenset({COMMAND, DECIDE, OPEN_DENY, OPEN_CONFIRM, PAGE, MORE, THREAD_REPLY, HOME})


@dataclass(frozen=True)
class Job:
    """One unit of work, and the delivery ids that tell a Slack retry from a new request.

    Its key (``event_id`` for events, ``trigger_id`` for commands and clicks, else a hash of
    the payload) is the job's primary key in the database, so a retried or replayed delivery
    is recognised across restarts (bot/state/jobqueue.py).
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None
    trigger_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")

    @property
    def key(self) -> str:
        if self.event_id:
            return f"event:{self.event_id}"
        if self.trigger_id:
            return f"trigger:{self.trigger_id}"
        digest = hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()
        return f"{self.kind}:{digest[:32]}"


QUEUED, DUPLICATE, BUSY = "queued", "duplicate", "busy"
# The database could not take the job (locked, its disk full, its server unreachable):
# nothing recorded.
LOCKED, FULL, UNREACHABLE = "locked", "full", "unreachable"
RECORDED = frozenset({QUEUED, DUPLICATE})
NETWORKED_ACK_THREADS = 8  # below the store's pool (10 connections a process)


class JobSink(Protocol):
    """Where listeners put jobs. ``submit`` answers QUEUED (recorded: ack it), DUPLICATE (a
    retry or replay of one recorded before: ack, do nothing), BUSY (too many waiting), LOCKED
    (another process held the database past the ack's budget) or FULL (the database's disk
    is full); after the last three nothing was recorded."""

    def submit(self, job: Job) -> str: ...


class DurableSink:
    """Record the job in the database, then ring the worker; refuse when the queue is full.

    The queue depth is read by a background thread twice a second, so the ack path pays one
    INSERT and no COUNT: a wedged worker makes acks say "busy", never makes them wait. A
    database that cannot take the INSERT (locked past the store's busy timeout, its disk
    full) is reported to ``health`` and answered LOCKED or FULL; while that lasts the same
    thread probes with a one-row write, so the state clears without waiting for a command.
    """

    def __init__(
        self,
        queue: JobQueue,
        ring: Callable[[], None],
        *,
        max_queued: int = 500,
        refresh: float = 0.5,
        health: DatabaseHealth | None = None,
    ) -> None:
        self.queue, self._ring, self.max_queued = queue, ring, max_queued
        self.health = health if health is not None else HEALTH
        self.depth = 0
        self.busy_refusals = 0
        self._refresh = refresh
        self._stopping = threading.Event()
        threading.Thread(target=self._watch, name="acr-queue-depth", daemon=True).start()

    @property
    def ack_threads(self) -> int:
        """Threads that may ack at once (Socket Mode's message workers). On SQLite one: the
        write is local and quick, more threads only take turns at the GIL. On PostgreSQL
        each ack waits a network round trip, which other acks can overlap."""
        return NETWORKED_ACK_THREADS if self.queue.networked else 1

    def submit(self, job: Job) -> str:
        if self.depth >= self.max_queued:
            self.busy_refusals += 1
            return BUSY
        try:
            recorded = self.queue.enqueue(job.key, job.kind, job.data)
        except Exception as exc:
            problem = problem_of(exc)
            if problem is None:
                raise
            self.health.failed(problem)
            return {dbhealth.LOCKED: LOCKED, dbhealth.FULL: FULL}.get(problem, UNREACHABLE)
        self.health.ok()
        if not recorded:
            return DUPLICATE
        self.depth += 1
        self._ring()
        return QUEUED

    def _watch(self) -> None:
        while not self._stopping.wait(self._refresh):
            try:
                if self.health.problem is not None:
                    self.queue.probe()
                    self.health.ok()
                self.depth = self.queue.depth()
            except Exception as exc:  # a busy database: keep the last reading
                if self.health.problem is not None:
                    self.health.guard(exc, doing="write to the database (probe)")
                continue

    def stop(self) -> None:
        self._stopping.set()
