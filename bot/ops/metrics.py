"""Prometheus metrics for `acrbot serve`, across its two processes.

`acrbot serve` is an acking front (bot/slack/service.py) and a worker process
(bot/slack/worker.py) that runs the commands. Both record metrics, and the front serves
`/metrics`. The design is prometheus-client's multiprocess mode: each process writes its
counters and histograms into memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary directory per `acrbot serve` unless given),
and the front merges them at scrape time.

Why this and not the worker reporting through SQLite or the pipe: an increment is a write
into a memory-mapped page (a few microseconds, no system call, no lock shared between the
processes), so the ack path pays nothing measurable (bench/ack_latency.py --metrics on,off);
the worker needs no channel back to the front; and a worker that dies and is restarted keeps
its counts, because its files stay. The environment variable reaches the spawned worker by
inheritance, which is also how prometheus-client picks its mode: before it is imported.

What is a fact about the database (jobs waiting, audit rows not archived, messages not yet
delivered) is not counted anywhere: :class:`Exposition` reads it from SQLite when scraped,
so it is right whichever process changed it. Worker restarts are known to the front that
restarts it, and read from there.

prometheus-client is imported lazily, on the first metric recorded, so that
:func:`enable_multiprocess` can still choose its mode; :func:`disable` turns recording off
in this process and the processes it starts (the bench's "metrics off").
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core import config

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name
SWITCH_ENV = "ACRBOT_METRICS"  # "off": record nothing (this process and its children)

# Slack's limit is 3 s: the buckets are fine below 100 ms, where acks live.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Socket Mode: a reconnect that overlaps takes ~0; the 10 s buckets are the old stall.
GAP_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REGISTRY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class _Metrics:
    """Every metric this process records (the gauges are read at scrape time instead)."""

    commands: Any
    acks: Any
    submitted: Any
    job_wait: Any
    job_run: Any
    registry_calls: Any
    approvals: Any
    executions: Any
    socket_gaps: Any


_lock = threading.Lock()
_metrics: _Metrics | None = None
_local: Any = None  # the CollectorRegistry of this process when not in multiprocess mode
_enabled: bool | None = None


def enabled() -> bool:
    """Whether this process records metrics (on unless :func:`disable` ran here or in the
    process that started this one)."""
    global _enabled
    if _enabled is None:
        _enabled = config.inherited(SWITCH_ENV) != "off"
    return _enabled


def disable() -> None:
    """Record nothing, here and in the worker processes started from now on."""
    global _enabled
    _enabled = False
    config.hand_down(SWITCH_ENV, "off")


def multiprocess_dir() -> Path | None:
    directory = config.inherited(MULTIPROC_ENV)
    return Path(directory) if directory else None


def enable_multiprocess(directory: Path | None = None) -> Path:
    """Share metrics with the worker processes started from now on; return the directory.

    ``directory`` (or an inherited PROMETHEUS_MULTIPROC_DIR) is emptied of old files first,
    as prometheus-client requires between runs; without one, a temporary directory is made
    and removed at exit. Call it before the first metric is recorded.
    """
    global _metrics, _local
    directory = directory or multiprocess_dir()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="acrbot-metrics-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.db"):
            old.unlink(missing_ok=True)
    config.hand_down(MULTIPROC_ENV, str(directory))
    with _lock:
        _metrics, _local = None, None
        values = sys.modules.get("prometheus_client.values")
        if values is not None:  # imported already: choose the mode again, as at import
            values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return directory


def _build() -> _Metrics:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    global _local
    registry = None if multiprocess_dir() else CollectorRegistry(auto_describe=True)
    _local = registry
    return _Metrics(
        commands=Counter(
            "acrbot_commands",
            "Commands handled, by command and outcome (ok, failed, refused, error).",
            ["command", "outcome"],
            registry=registry,
        ),
        acks=Histogram(
            "acrbot_ack_seconds",
            "Time from a Slack request reaching the app to its ack, by kind of request.",
            ["kind"],
            buckets=ACK_BUCKETS,
            registry=registry,
        ),
        submitted=Counter(
            "acrbot_jobs_submitted",
            "Jobs handed over by the acking process, by kind and status "
            "(queued, duplicate: a Slack retry, busy: refused, queue full).",
            ["kind", "status"],
            registry=registry,
        ),
        job_wait=Histogram(
            "acrbot_job_wait_seconds",
            "Time a job waited in the queue before a worker thread took it.",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=registry,
        ),
        job_run=Histogram(
            "acrbot_job_seconds",
            "Time a worker took to run a job, up to its answer being queued.",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=registry,
        ),
        registry_calls=Histogram(
            "acrbot_registry_call_seconds",
            "Registry calls by registry, operation and status, with their latency "
            "(the _count series counts the calls).",
            ["registry", "operation", "status"],
            buckets=REGISTRY_BUCKETS,
            registry=registry,
        ),
        approvals=Counter(
            "acrbot_approvals",
            "Decisions on deletion requests: approved (one approval), denied, expired, cancelled.",
            ["outcome"],
            registry=registry,
        ),
        executions=Counter(
            "acrbot_executions",
            "Approved requests carried out, by action (delete, delete_manifest, purge) and "
            "outcome (done, failed).",
            ["action", "outcome"],
            registry=registry,
        ),
        socket_gaps=Histogram(
            "acrbot_socket_mode_gap_seconds",
            "Socket Mode reconnects, by the reason the previous connection went (Slack's "
            "disconnect reason, or dropped), with the time Slack had no connection to deliver "
            "to (the _count series counts the reconnects, _sum the seconds without one).",
            ["reason"],
            buckets=GAP_BUCKETS,
            registry=registry,
        ),
    )


def _get() -> _Metrics | None:
    global _metrics
    if not enabled():
        return None
    metrics = _metrics
    if metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _build()
            metrics = _metrics
    return metrics


# -- recording (called from bot/ops/observe.py and bot/slack/ack_watch.py) ------------------------


def command(name: str, outcome: str) -> None:
    if (m := _get()) is not None:
        m.commands.labels(name, outcome).inc()


def ack(kind: str, seconds: float) -> None:
    if (m := _get()) is not None:
        m.acks.labels(kind).observe(seconds)


def submitted(kind: str, status: str) -> None:
    if (m := _get()) is not None:
        m.submitted.labels(kind, status).inc()


def job(kind: str, *, waited: float, ran: float) -> None:
    if (m := _get()) is not None:
        m.job_wait.labels(kind).observe(max(waited, 0.0))
        m.job_run.labels(kind).observe(ran)


def registry_call(registry: str, operation: str, status: str, seconds: float) -> None:
    if (m := _get()) is not None:
        m.registry_calls.labels(registry, operation, status).observe(seconds)


def approval(outcome: str) -> None:
    if (m := _get()) is not None:
        m.approvals.labels(outcome).inc()


def execution(action: str, outcome: str) -> None:
    if (m := _get()) is not None:
        m.executions.labels(action, outcome).inc()


def socket_mode_reconnect(reason: str, gap: float) -> None:
    if (m := _get()) is not None:
        m.socket_gaps.labels(reason).observe(max(gap, 0.0))


# -- exposition --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A gauge read at scrape time: name, help, and its samples ({labels}, value)."""

    name: str
    help: str
    samples: tuple[tuple[dict[str, str], float], ...]
    counter: bool = False


class Exposition:
    """What `/metrics` answers: this process's metrics (or, in multiprocess mode, every
    process's), plus readings taken at scrape time (``readers``: callables returning
    :class:`Reading`s, e.g. the queue depth from SQLite)."""

    def __init__(self, readers: tuple[Callable[[], list[Reading]], ...] = ()) -> None:
        self._readers = readers
        self._registry: Any = None
        self._lock = threading.Lock()

    def add_reader(self, reader: Callable[[], list[Reading]]) -> None:
        """Read ``reader`` at every scrape from now on (what exists only once serving
        started, e.g. the Socket Mode connections)."""
        self._readers = (*self._readers, reader)

    def _collector_registry(self) -> Any:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        directory = multiprocess_dir()
        if directory is not None and enabled():
            MultiProcessCollector(registry, path=str(directory))
        else:
            registry.register(_LocalCollector())
        registry.register(_ReadingCollector(lambda: self._readers))
        return registry

    def render(self) -> tuple[bytes, str]:
        """The exposition in the text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        with self._lock:
            if self._registry is None:
                self._registry = self._collector_registry()
            registry = self._registry
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def serve(self, *, host: str, port: int) -> Any:
        """Serve `/metrics` from a thread on its own port (Socket Mode has no HTTP server);
        return the server (``.shutdown()`` stops it; ``.server_port`` is the port)."""
        from prometheus_client import start_http_server

        with self._lock:
            if self._registry is None:
                self._registry = self._collector_registry()
        server, _ = start_http_server(port, addr=host, registry=self._registry)
        return server


class _LocalCollector:
    """This process's registry, whichever one is current (tests build several bots)."""

    def collect(self) -> Iterator[Any]:
        _get()
        if _local is not None:
            yield from _local.collect()


class _ReadingCollector:
    def __init__(self, readers: Callable[[], tuple[Callable[[], list[Reading]], ...]]) -> None:
        self._readers = readers

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for reader in self._readers():
            try:
                readings = reader()
            except Exception:  # a busy or missing database: leave the reading out this time
                continue
            for reading in readings:
                labels = sorted(reading.samples[0][0]) if reading.samples else []
                family_type = CounterMetricFamily if reading.counter else GaugeMetricFamily
                family = family_type(reading.name, reading.help, labels=labels)
                for sample_labels, value in reading.samples:
                    family.add_metric([sample_labels[k] for k in labels], value)
                yield family


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Record nothing inside the block (tests of code paths that must work with metrics off)."""
    global _enabled
    before = enabled()
    _enabled = False
    try:
        yield
    finally:
        _enabled = before
