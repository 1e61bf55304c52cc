"""The hooks the core calls to be observable: metrics (bot/ops/metrics.py) and log lines with the
job's id (bot/ops/logs.py), in one place so that the modules they observe carry one line each.

- ``command_done``: the dispatcher, once per command (bot/kernel/dispatch.py).
- ``RequestEvents``: a Requests listener, for approvals and executions (bot/app.py).
- ``metered``: wraps each configured registry, timing every call (bot/app.py).
- ``job_run``: around each job a worker thread runs (bot/slack/worker.py).
- ``delivered``: each outbox item sent (bot/slack/delivery.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from bot.core.config import Config
from bot.core.errors import Conflict, NotFound, OutcomeUnknown, RegistryError, Unsupported
from bot.core.request_types import Change, DeletionRequest, RequestEvent
from bot.ops import logs, metrics
from bot.state import dbhealth
from bot.state.store import Store

log = logging.getLogger("acrbot.jobs")


def command_done(name: str, outcome: str, *, user: str) -> None:
    """A command ran (or was refused): count it, and log it under the current job. An
    `approve` that went through is an approval (Requests announces only the approvals that
    leave a request waiting, not the one that meets the quorum)."""
    metrics.command(name, outcome)
    if name == "approve" and outcome == "ok":
        metrics.approval("approved")
    log.info(
        "command %s by %s: %s", name, user, outcome, extra={"command": name, "outcome": outcome}
    )


class RequestEvents:
    """Counts executions and the decisions that end a request (denied, expired, cancelled)
    from the changes Requests announces, once the change commits: a change rolled back
    never happened."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __call__(self, request: DeletionRequest, event: RequestEvent) -> None:
        if event.change is Change.FINAL:
            state = request.state.value
            if state in ("done", "failed"):
                action = request.action.value
                self._store.after_commit(lambda: metrics.execution(action, state))
            elif state in ("denied", "expired", "cancelled"):
                self._store.after_commit(lambda: metrics.approval(state))


_STATUS: tuple[tuple[type[Exception], str], ...] = (
    (NotFound, "not_found"),
    (Conflict, "conflict"),
    (Unsupported, "unsupported"),
    (OutcomeUnknown, "outcome_unknown"),
    (RegistryError, "error"),
)


def call_status(exc: BaseException | None) -> str:
    """The `status` label of a registry call that ended with ``exc``."""
    if exc is None:
        return "ok"
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), "exception")


class MeteredRegistry:
    """A registry whose public methods are timed and counted by operation and status.

    A proxy rather than code in each backend: the backends stay as they are, every backend
    (and every method a later one adds) is measured the same way, and the measurement is of
    what a command waits for, retries included. Attributes that are not methods (name, kind,
    login_server, can_untag…) are read through.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name: str = inner.name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        value = getattr(self._inner, attr)
        if not callable(value):
            return value
        registry = self.name

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return value(*args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.registry_call(
                    registry, attr, call_status(error), time.perf_counter() - started
                )

        self.__dict__[attr] = timed  # later lookups skip __getattr__
        return timed

    def __repr__(self) -> str:
        return f"MeteredRegistry({self._inner!r})"


def metered(registry: Any) -> Any:
    return MeteredRegistry(registry)


@contextlib.contextmanager
def job_run(key: str, kind: str, created_at: datetime, *, attempts: int = 1) -> Iterator[None]:
    """Around one job in a worker thread: its lines carry its id; its wait and run are timed."""
    waited = (datetime.now(UTC) - created_at).total_seconds()
    with logs.job_context(key):
        log.info(
            "job %s started after %.3f s",
            kind,
            waited,
            extra={"kind": kind, "waited": round(waited, 4), "attempt": attempts},
        )
        started = time.perf_counter()
        try:
            yield
        finally:
            ran = time.perf_counter() - started
            metrics.job(kind, waited=waited, ran=ran)
            log.info(
                "job %s finished in %.3f s", kind, ran, extra={"kind": kind, "ran": round(ran, 4)}
            )


def delivered(key: str, kind: str) -> None:
    """An outbox item reached Slack; when it answers a job, the line carries the job's id."""
    log.info(
        "delivered %s %s", kind, key, extra={"job": logs.job_of_outbox_key(key), "outbox": key}
    )


# -- what /metrics reads when scraped ----------------------------------------------------


def _ours(lease: Any, worker: Any) -> bool:
    """Whether ``lease`` is held by ``worker`` (a WorkerProcess of this replica)."""
    from bot.state import liveness

    if lease is None or worker is None or worker.pid is None:
        return False
    return liveness.on_this_host(lease.owner) and lease.owner.rsplit(":", 2)[1] == str(worker.pid)


def readers(
    store: Store, config: Config, *, worker: Any = None
) -> tuple[Callable[[], list[metrics.Reading]], ...]:
    """The gauges `/metrics` reads at scrape time, in the acking process: jobs in the queue
    by state, messages waiting in the outbox, audit rows not yet archived (from SQLite, so
    right whichever process changed them), and the worker's restarts and liveness (from
    ``worker``, the WorkerProcess this process restarts)."""
    from bot.state.jobqueue import JobQueue
    from bot.state.leases import SINGLETONS, Leases
    from bot.state.outbox import Outbox
    from bot.state.registry_events import EventLog

    queue, outbox, leases = JobQueue(store), Outbox(store), Leases(store)
    archive = None
    if config.archive is not None:
        from bot.ops.archive import AuditArchive

        # pending() reads SQLite only: no Blob client is needed (or built) for the backlog.
        archive = AuditArchive(store, None, prefix=config.archive.prefix)

    def database() -> list[metrics.Reading]:
        counts = queue.counts()
        found = [
            metrics.Reading(
                "acrbot_queue_jobs",
                "Jobs in the durable queue by state (queued: waiting for a worker thread).",
                tuple(({"state": s}, float(counts.get(s, 0))) for s in ("queued", "running")),
            ),
            metrics.Reading(
                "acrbot_outbox_pending_messages",
                "Messages recorded for Slack and not delivered yet.",
                (({}, float(outbox.pending())),),
            ),
            metrics.Reading(
                "acrbot_outbox_failed_messages",
                "Messages given up on (kept a week): Slack refused them for good, or they "
                "expired undelivered.",
                (({}, float(outbox.failed())),),
            ),
            metrics.Reading(
                "acrbot_slack_auth_ok",
                "0 while Slack refuses the bot token (revoked, invalid): the outbox is held.",
                (({}, 0.0 if outbox.held() else 1.0),),
            ),
        ]
        if config.events is not None:
            found.append(
                metrics.Reading(
                    "acrbot_registry_events_pending",
                    "Registry events stored and not processed yet (the worker's backlog).",
                    (({}, float(EventLog(store).depth())),),
                )
            )
        live = leases.live()
        found += [
            metrics.Reading(
                "acrbot_lease_holder",
                "1 for the process (host:pid:start) that holds each singleton's lease now "
                "(sweep, archive, delivery): one replica runs each at a time.",
                tuple(
                    ({"lease": name, "owner": lease.owner}, 1.0)
                    for name, lease in sorted(live.items())
                    if name in SINGLETONS
                ),
            ),
            metrics.Reading(
                "acrbot_lease_held",
                "1 if this replica's worker holds the lease, else 0 (another replica, or "
                "nobody for a moment after a holder died).",
                tuple(
                    ({"lease": name}, 1.0 if _ours(live.get(name), worker) else 0.0)
                    for name in SINGLETONS
                ),
            ),
        ]
        if archive is not None:
            found.append(
                metrics.Reading(
                    "acrbot_archive_backlog_rows",
                    "Audit rows not yet shipped to the Blob archive.",
                    (({}, float(archive.pending())),),
                )
            )
        return found

    def database_health() -> list[metrics.Reading]:
        """From memory: what this process's last writes met (no SQLite lock is taken)."""
        return [
            metrics.Reading(
                "acrbot_database_problem",
                "1 while the database cannot take writes for this reason (locked by another "
                "process, disk full, server unreachable); commands are answered with one "
                "line meanwhile.",
                tuple(
                    ({"problem": p}, 1.0 if dbhealth.HEALTH.problem == p else 0.0)
                    for p in dbhealth.SAYS
                ),
            ),
            metrics.Reading(
                "acrbot_database_refusals",
                "Writes refused by the database, by reason, since the process started.",
                tuple(({"problem": p}, float(n)) for p, n in dbhealth.HEALTH.counts.items()),
                counter=True,
            ),
        ]

    def process() -> list[metrics.Reading]:
        return [
            metrics.Reading(
                "acrbot_worker_restarts",
                "Times the worker process died and was started again.",
                (({}, float(worker.restarts)),),
                counter=True,
            ),
            metrics.Reading(
                "acrbot_worker_up",
                "1 while the worker process runs.",
                (({}, 1.0 if worker.is_alive() else 0.0),),
            ),
        ]

    if worker is None:
        return (database, database_health)
    return (database, database_health, process)
