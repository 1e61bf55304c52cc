"""Where jobs run: `SlackWorker` (a thread pool and the periodic sweeps), in this process or, for
`acrbot serve`, in a worker process of its own (`WorkerProcess`).

Why a second process: Python runs one thread at a time, so every job step that needs the CPU
(parsing a command, reading the role table, rendering a long tag list, a registry's JSON)
delays the acks of the process that does it. With the work in another process the acking
process only parses, verifies and acks. bench/ack_latency.py, 50 concurrent commands on 2
cores, p99 over 5 runs: HTTP 30–39 ms (34–50 ms with the work in-process), Socket Mode
28–39 ms (36–55 ms).
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient

from bot.app import (
    build_dispatcher,
    configure_logging,
    register_secrets,
    static_groups,
    static_members,
)
from bot.core import redaction
from bot.core.config import Config, SlackSettings
from bot.core.errors import BotError, ConfigError
from bot.kernel import shutdown
from bot.ops import observe
from bot.ops.archive import Shipper
from bot.slack.groups import SlackGroups, is_usergroup
from bot.slack.handoff import DurableSink, Job
from bot.slack.perform import SlackWork
from bot.slack.registry_watch import RegistryWatch
from bot.state import handover, leases, liveness
from bot.state.dbhealth import HEALTH, DatabaseUnavailable
from bot.state.jobqueue import QueuedJob

log = logging.getLogger(__name__)


FIRST_SWEEP_WAIT = 10.0  # seconds new jobs wait at start for the crash-recovery sweep
KEEP_HEARTBEATS = timedelta(days=1)  # a gone worker's heartbeat row is dropped after this
HANDOVER_POLL = 2.0  # seconds between two looks for work another replica gave back or left


class SlackWorker:
    """The core, a WebClient, a thread pool sized for slow registry calls, the job loop, the
    outbox delivery and the sweeps.

    Jobs come from the durable queue (bot/state/jobqueue.py): ``submit`` (in-process use) records a
    job and wakes the loop; in a worker process the acking process records it and rings.
    """

    def __init__(
        self,
        config: Config,
        settings: SlackSettings,
        *,
        workers: int = 16,
        sweep_interval: float = 60.0,
        **context: Any,
    ) -> None:
        redaction.install()
        register_secrets(settings=settings)  # the config's secrets: build_context below
        self.client = WebClient(token=settings.bot_token, base_url=settings.api_url)
        self.groups = SlackGroups(self.client)
        static = static_groups(config)
        members = static_members(config)
        dispatcher = build_dispatcher(
            config,
            groups_of=lambda user: [*static(user), *self.groups.groups_of(user)],
            members_of=lambda principal: (
                self.groups.members(principal) if is_usergroup(principal) else members(principal)
            ),
            **context,
        )
        self.groups.candidates = lambda: dispatcher.ctx.roles.principal_ids(is_usergroup)
        self.work = SlackWork(dispatcher, client=self.client)
        self.queue = self.work.queue
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acr-work")
        prestart(self.pool, workers, warm=lambda: dispatcher.ctx.store.db)
        self._slots = threading.Semaphore(workers)
        self._sweep_interval = sweep_interval
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._swept = threading.Event()  # the first sweep (crash recovery) has run
        self._sweep_now = threading.Event()
        # The singletons (sweep, archive, ordered delivery) run under leases, so that two
        # replicas on one database run each in one place (bot/state/leases.py).
        self.keeper = leases.Keeper(leases.Leases(dispatcher.ctx.store), on_gain=self._gained)
        self.work.delivery.ordered = lambda: self.keeper.holds(leases.DELIVERY)
        self._shipper: Shipper | None = None
        self._threads: list[threading.Thread] = []
        self.sink = DurableSink(self.queue, self._wake.set)
        # Registry events (issue 24): processed here when the receiver is configured.
        self.watch = RegistryWatch(dispatcher.ctx) if config.events is not None else None

    def submit(self, job: Job) -> str:
        """Record a job and wake the loop (the acking side, when both live in one process)."""
        return self.sink.submit(job)

    def wake(self) -> None:
        self._wake.set()
        if self.watch is not None:
            self.watch.wake()

    def start_background(self) -> None:
        """Requeue the jobs a dead worker held, then run jobs, deliver the outbox, sweep
        (expiry, crash recovery) periodically, and ship the audit if an archive is set."""
        requeued = self.queue.requeue_orphans()
        if requeued:
            log.warning("%s job(s) interrupted by a restart will run again", requeued)
        self.keeper.start()
        self.work.delivery.start()
        for target, name in ((self._jobs_loop, "acr-jobs"), (self._sweep_loop, "acr-sweep")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.watch is not None:
            self.watch.start()
        ctx = self.work.ctx
        if ctx.archive is not None:
            self._shipper = Shipper(
                ctx.archive, allowed=lambda: self.keeper.holds(leases.ARCHIVE)
            ).start()
            ctx.audit.on_append = self._shipper.nudge

    def _jobs_loop(self) -> None:
        """Claim queued jobs while a thread is free; wait for a ring (or poll: another
        process may have queued jobs, and a ring can be lost).

        The first claim waits for the first sweep (at most FIRST_SWEEP_WAIT): an approval the
        last worker died in runs again here, and should report the deletion that sweep
        finished, not find it still `executing`.
        """
        self._swept.wait(FIRST_SWEEP_WAIT)
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while not self._stopping.is_set():
                free = 0
                while self._slots.acquire(blocking=False):
                    free += 1
                try:
                    claimed = self.queue.claim(limit=free) if free else []
                except Exception as exc:  # a full disk: wait, the jobs stay queued
                    for _ in range(free):
                        self._slots.release()
                    if not HEALTH.guard(exc, doing="claim jobs"):
                        log.exception("could not claim jobs; trying again")
                    self._stopping.wait(1.0)
                    break
                for _ in range(free - len(claimed)):
                    self._slots.release()
                for job in claimed:
                    self.pool.submit(self._run, job)
                if not claimed:
                    break

    def _run(self, job: QueuedJob) -> None:
        """Run a job; while the database cannot record its end (locked, disk full), run it
        again with backoff (its effects are keyed by the job: they happen once). Stopping
        meanwhile leaves it `running` under this process: the next one runs it again."""
        try:
            delay = 1.0
            while True:
                try:
                    with observe.job_run(job.key, job.kind, job.created_at, attempts=job.attempts):
                        self.work.run(job)
                    HEALTH.ok()
                    return
                except DatabaseUnavailable:
                    if self._stopping.wait(delay):
                        return
                    delay = min(delay * 2, 15.0)
        finally:
            self._slots.release()
            self._wake.set()  # a thread is free: look for more

    def _gained(self, name: str) -> None:
        """A lease was taken (at start, or over from a replica that stopped or died): do
        its work now rather than at the next interval."""
        if name == leases.SWEEP:
            self._sweep_now.set()
        elif name == leases.DELIVERY:
            self.work.delivery.wake()
        elif name == leases.ARCHIVE and self._shipper is not None:
            self._shipper.nudge()

    def sweep(self) -> bool:
        """One sweep if this process holds the sweep lease: requeue the jobs of workers that
        are gone, then expiry, recovery, retention, pruning. False if another replica has it."""
        if not self.keeper.holds(leases.SWEEP):
            return False
        requeued = self.queue.requeue_orphans()
        if requeued:
            log.warning("%s job(s) left by a worker that is gone will run again", requeued)
            self._wake.set()
        self.work.sweep()
        leases.forget_heartbeats(self.work.ctx.store, before=datetime.now(UTC) - KEEP_HEARTBEATS)
        return True

    def _sweep_loop(self) -> None:
        while True:
            self._sweep_now.clear()
            try:
                self.sweep()
            except Exception as exc:
                if not HEALTH.guard(exc, doing="sweep"):
                    log.exception("sweep failed; retrying in %ss", self._sweep_interval)
            self._swept.set()
            if self._wait_for_sweep():
                return

    def _wait_for_sweep(self) -> bool:
        """Until the next sweep is due: its interval, a lease just taken, or (while holding
        the sweep lease) work a stopped or dead replica left. True when stopping."""
        wait = self.next_sweep_in()
        started = time.monotonic()
        while True:
            left = wait - (time.monotonic() - started)
            if left <= 0:
                return self._stopping.is_set()
            if self._sweep_now.wait(min(left, HANDOVER_POLL)):
                self._sweep_now.clear()
                return self._stopping.is_set()
            if self._stopping.is_set():
                return True
            try:
                if self.keeper.holds(leases.SWEEP) and handover.waiting(
                    self.work.ctx.store, now=self.work.ctx.clock()
                ):
                    return False
            except Exception as exc:  # the database: the next sweep says so
                log.debug("could not look for work left over: %s", type(exc).__name__)

    def next_sweep_in(self) -> float:
        """Seconds until the next sweep: the interval, or sooner when a request whose DELETE
        went unanswered comes to the end of its grace period (bot/state/requests.py UNKNOWN_GRACE).

        Its user was told the outcome follows "within a minute": with only the periodic
        sweep it came up to a whole interval after the grace (45 s + 60 s).
        """
        now = self.work.ctx.clock().astimezone(UTC)
        row = self.work.ctx.store.db.execute(
            "select min(exec_retry_after) from requests "
            "where state = 'executing' and exec_retry_after > ?",
            [now.isoformat(timespec="seconds")],
        ).fetchone() or (None,)
        if row[0] is None:
            return self._sweep_interval
        due = (datetime.fromisoformat(row[0]) - now).total_seconds() + 0.5
        return max(0.5, min(self._sweep_interval, due))

    def stop(self) -> None:
        """Finish the jobs already claimed, deliver what they queued, close the database.
        Jobs still queued stay in the database for the next start. (In a worker process a
        purge stops at its next item boundary first: worker_main sets shutdown.STOPPING.)"""
        self._stopping.set()
        self._wake.set()
        self._sweep_now.set()
        self.sink.stop()
        if self.watch is not None:
            self.watch.stop()
        for thread in self._threads:
            thread.join(10)
        if self._shipper is not None:
            self._shipper.stop()
        # The sweep and the archive stopped here: another replica may take them at once.
        self.keeper.stop(release=(leases.SWEEP, leases.ARCHIVE))
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.work.delivery.stop()  # the last messages, the ordered ones if the lease is held
        self.keeper.release_all()
        try:  # nothing runs here any more: what is left goes to another replica now
            given = handover.give_back(self.work.ctx.store, owner=liveness.this_process())
            if given:
                log.warning(
                    "gave back %s unfinished job(s) and %s executing request(s) for another "
                    "replica or the next start",
                    given.jobs,
                    given.requests,
                )
        except Exception as exc:  # the next process (or another replica) finds them anyway
            log.warning("could not give back unfinished work: %s", type(exc).__name__)
        self.work.ctx.store.close()


def prestart(pool: ThreadPoolExecutor, workers: int, *, warm: Any) -> None:
    """Start every worker thread now (with ``warm()`` run in each, e.g. to open SQLite).

    ThreadPoolExecutor starts threads lazily, on submit, and Thread.start() waits until the new
    thread has run: during a burst each of those waits queues behind busy threads for the GIL,
    and the ack that submitted it waits too (bench/ack_latency.py, 50 concurrent commands:
    p99 ~95 ms with lazy threads, ~55 ms prestarted). Blocking every worker on one barrier
    forces all of them to exist.
    """
    barrier = threading.Barrier(workers + 1)

    def hold() -> None:
        warm()
        barrier.wait()

    for _ in range(workers):
        pool.submit(hold)
    barrier.wait()


WORKER_NICE = 10


class WorkerUnavailable(BotError):
    """The worker process could not start."""


class WorkerProcess:
    """A SlackWorker in a child process, fed jobs through a pipe, restarted if it dies.

    The child is spawned (not forked: the parent has threads) and builds its own database
    connections, registry clients and WebClient from the config. It stops when the pipe
    closes, after finishing the jobs it has: SIGINT and SIGTERM are the parent's to handle.
    Jobs live in the database (the acking process records them): a job a dying worker held is
    run again by the next one.
    """

    def __init__(
        self,
        config: Config,
        settings: SlackSettings,
        *,
        start_timeout: float = 60.0,
        restart_delay: float = 1.0,
        **options: Any,
    ) -> None:
        self._args = (config, settings, options, logging.getLogger().getEffectiveLevel())
        self._start_timeout = start_timeout
        self._restart_delay = restart_delay
        self._mp = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_alive(self) -> bool:
        return self._process is not None and not _exited(self._process)

    def start(self) -> WorkerProcess:
        """Start the worker and wait until it is ready; its start-up error is raised here."""
        with self._lock:
            self._spawn()
            conn = self._conn
        assert conn is not None
        try:
            ready = conn.poll(self._start_timeout)
            message = conn.recv() if ready else ("failed", "it did not start in time")
        except EOFError:
            self._process.join(5)  # reap it, so that its exit code is known
            message = ("failed", f"it exited with code {self._process.exitcode}")
        if message[0] != "ready":
            self.stop()
            if message[0] == "config":
                raise ConfigError(message[1])
            raise WorkerUnavailable(f"the worker process failed to start: {message[1]}")
        threading.Thread(target=self._watch, name="acr-worker-watch", daemon=True).start()
        # multiprocessing joins its children at exit; the worker only ends when its pipe
        # closes, so close it first (atexit runs this before multiprocessing's own hook).
        atexit.register(self.stop)
        return self

    def ring(self) -> None:
        """Tell the worker a job is queued. Never blocks: the pipe's write end is
        non-blocking, and a ring lost to a full pipe costs at most the worker's poll interval
        (the job is in the database). A worker found gone is started again."""
        with self._lock:
            if self._stopping.is_set():
                return
            try:
                assert self._conn is not None
                self._conn.send_bytes(b"j")
                return
            except BlockingIOError:
                return  # a wedged or busy worker: it polls the queue anyway
            except OSError:  # the worker is gone (BrokenPipeError): start another
                log.error("the worker process %s is gone; starting a new one", self.pid)
                self._spawn()
                self.restarts += 1

    def stop(self, timeout: float = 60.0) -> None:
        """Close the pipe (the worker finishes its jobs and exits); kill it after ``timeout``."""
        self._stopping.set()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            process = self._process
        if process is None:
            return
        process.join(timeout)
        if not _exited(process):
            log.error("the worker process %s did not stop in %ss; killing it", process.pid, timeout)
            process.kill()
            process.join(5)

    def _spawn(self) -> None:
        """Start a child; the caller holds the lock."""
        parent, child = self._mp.Pipe()
        os.set_blocking(parent.fileno(), False)  # a ring must never block an ack
        process = self._mp.Process(
            target=worker_main, args=(child, *self._args), name="acr-worker", daemon=True
        )
        process.start()
        child.close()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = process, parent
        log.info("worker process %s started", process.pid)

    def _watch(self) -> None:
        """Restart the worker when it dies; its sweeps and archive shipping live there."""
        while True:
            with self._lock:
                process = self._process
            multiprocessing.connection.wait([process.sentinel])
            if self._stopping.is_set():
                return  # stop() joins it
            process.join()  # reap it, and learn its exit code
            with self._lock:
                if self._process is not process:
                    continue  # a submit found it dead first and started another
            log.error(
                "the worker process %s exited with code %s; restarting it in %ss",
                process.pid,
                process.exitcode,
                self._restart_delay,
            )
            if self._stopping.wait(self._restart_delay):
                return
            with self._lock:
                if self._process is process and not self._stopping.is_set():
                    self._spawn()
                    self.restarts += 1


def _exited(process: Any) -> bool:
    """Whether the process has ended, from its sentinel: unlike is_alive(), this does not
    reap it, so it cannot race another thread's join() (the loser of that race sees
    ECHILD and takes the child for alive)."""
    return bool(multiprocessing.connection.wait([process.sentinel], timeout=0))


def worker_main(
    conn: multiprocessing.connection.Connection,
    config: Config,
    settings: SlackSettings,
    options: dict[str, Any],
    level: int,
) -> None:
    """The worker process: build a SlackWorker, say ready, run jobs until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The acking process must win the CPU when both want it: with the work on a real
    # registry (2,000-tag listings, 50 at once) acks took p99 45–95 ms at nice 0 and 26–35 ms
    # at nice 10 on 2 cores (bench/ack_latency.py --modes http-registry).
    os.nice(WORKER_NICE)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(level)
    try:
        worker = SlackWorker(config, settings, **options)
    except ConfigError as exc:
        conn.send(("config", str(exc)))
        return
    except BotError as exc:
        conn.send(("failed", str(exc)))
        return
    except Exception as exc:
        log.exception("the worker could not start")
        conn.send(("failed", f"{type(exc).__name__} (details in the log)"))
        return
    worker.start_background()
    gc.collect()
    gc.freeze()
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                if conn.poll(0.5):
                    while conn.poll():
                        conn.recv_bytes()
                    worker.wake()
            except (EOFError, OSError):  # the parent closed its end, or is gone
                break
    finally:
        shutdown.STOPPING.set()  # the process ends: a purge stops at its next item
        worker.stop()
