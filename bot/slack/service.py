"""Wire the listeners to Slack and run them: HTTP on uvicorn, or Socket Mode.

`acrbot serve` runs two processes: this one talks to Slack, records each job in the
database and acks (Bolt, the listeners); a worker process runs the jobs
(bot/slack/worker.py). Bolt's built-in server
(`app.start()`) answers one request at a time from a 5-slot listen queue, so a burst of slash
commands waits for seconds; uvicorn (httptools, uvloop) parses HTTP in C and answers from one
event loop with a deep backlog.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.app import register_secrets
from bot.core.config import Config, SlackSettings
from bot.core.event_rules import require_secret
from bot.ops import metrics, observe
from bot.slack import startup
from bot.slack.ack_watch import ObservedApp, ObservedSink
from bot.slack.handoff import DurableSink, JobSink
from bot.slack.listeners import AUTH_FAILING, Listeners
from bot.slack.manifest import EVENTS_PATH
from bot.slack.readiness import Readiness
from bot.slack.registry_receiver import EVENTS_PATH as REGISTRY_EVENTS_PATH
from bot.slack.registry_receiver import EventWriter, Receiver, events_only_app, read_body
from bot.slack.socket_mode import SocketModeHandler, SocketModeLink
from bot.slack.worker import WorkerProcess, prestart
from bot.state.jobqueue import JobQueue
from bot.state.registry_events import EventLog
from bot.state.store import Store

log = logging.getLogger(__name__)
ACK_BUSY_TIMEOUT = 2.0  # seconds an ack waits for a database another process has locked


class SlackApp:
    """The Bolt app and its listeners; jobs go to ``sink`` (a SlackWorker or WorkerProcess).

    Listeners run with process_before_response=True: Bolt answers Slack when the listener
    returns, and ours return right after ack() and handing the job over.
    """

    def __init__(self, settings: SlackSettings, sink: JobSink) -> None:
        self.settings = settings
        # The token, not a client: Bolt also reads SLACK_BOT_TOKEN from the environment, and
        # given a client too it warns that the token is unused. `acrbot serve` checked the
        # token already (bot/slack/startup.py); Bolt's own auth.test runs on the first request.
        self.app = ObservedApp(
            token=settings.bot_token,
            signing_secret=settings.signing_secret or "unused-in-socket-mode",
            request_verification_enabled=settings.signing_secret is not None,
            token_verification_enabled=False,
            process_before_response=True,
            user_facing_authorize_error_message=AUTH_FAILING,
        )
        self.client = self.app.client
        self.client.base_url = settings.api_url
        self.ack_threads: int = getattr(sink, "ack_threads", 1)  # see DurableSink
        Listeners(ObservedSink(sink)).register(self.app)
        # Everything built so far lives as long as the process: move it out of the collector's
        # sight, so full collections during a burst of acks stay short.
        gc.collect()
        gc.freeze()


# The largest body Slack sends: a view_submission carries its view (up to 100 blocks of up to
# 3,000 characters, ~300 KB of text) form-encoded, which at worst triples it; block_actions
# carry their message (50 blocks). 2 MiB is above anything Slack sends and bounds what a
# stranger can make this process read (the signature is checked only once it is read).
MAX_BODY = 2 * 1024 * 1024
ACK_THREADS = 32


def asgi_app(
    front: SlackApp,
    *,
    healthy: Callable[[], bool] = lambda: True,
    readiness: Readiness | None = None,
    max_body: int = MAX_BODY,
    events: Receiver | None = None,
) -> Any:
    """`POST /slack/events` for Slack (commands, interactivity, events); `GET /healthz`
    (liveness: 503 while the worker is down; it never touches the database); `GET /readyz`
    (readiness: 503 while stopping or with the worker down; 200 with a `degraded: …` line
    per problem that users are told about meanwhile — database locked or full, Slack
    refusing the token; read from memory, never from a lock). Nothing else: this is the port
    Slack (the internet) reaches, and `/metrics` names registries and reads the database per
    scrape, so it is served only on `--metrics-port` (`Exposition.serve`).

    Bolt runs in a pool of threads, not on the event loop: an ack that waits for the
    database (at most the store's busy timeout) then holds one thread, and the loop goes on
    answering other acks and probes. A body larger than ``max_body`` is answered 413 before
    it is read (from Content-Length), or as soon as it grows past it (chunked).
    """
    from concurrent.futures import ThreadPoolExecutor

    from slack_bolt.adapter.asgi.http_response import AsgiHttpResponse
    from slack_bolt.request import BoltRequest

    pool = ThreadPoolExecutor(max_workers=ACK_THREADS, thread_name_prefix="acr-ack")
    prestart(pool, ACK_THREADS, warm=lambda: None)

    async def text(send: Any, status: int, body: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method == "GET":
            ok = healthy()
            await text(send, 200 if ok else 503, "ok\n" if ok else "worker down\n")
        elif path == "/readyz" and method == "GET":
            problems = readiness.problems() if readiness is not None else []
            if not healthy():
                problems.append("the worker process is down")
            degraded = readiness.degraded() if readiness is not None else []
            if problems:
                await text(send, 503, "".join(f"not ready: {p}\n" for p in problems))
            else:
                lines = "".join(f"degraded: {d}\n" for d in degraded)
                await text(send, 200, "ready\n" + lines)
        elif path == REGISTRY_EVENTS_PATH and events is not None:
            await events(scope, receive, send)  # registry notifications (issue 24)
        elif path == EVENTS_PATH and method == "POST":
            body = await read_body(scope, receive, max_body)
            if body is None:
                await text(send, 413, f"request body larger than {max_body} bytes\n")
                return
            request = BoltRequest(
                body=body.decode("utf-8", errors="replace"),
                query=scope["query_string"].decode("latin-1"),
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            )
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(pool, front.app.dispatch, request)
            response = AsgiHttpResponse(
                status=answer.status, headers=answer.headers, body=answer.body
            )
            await send(response.get_response_start())
            await send(response.get_response_body())
        else:
            await text(send, 404, "Not Found\n")

    return application


# SIGTERM, in seconds from the signal: the listener stays open LISTEN_AFTER_TERM (readiness
# fails at once, so the load balancer stops sending; what still arrives is acked and recorded
# for the next process), then uvicorn finishes the requests in flight (DRAIN_REQUESTS). The
# worker stops claiming jobs at the signal; its running jobs finish or stop at an item
# boundary (a purge resumes in the next process), and it is killed at WORKER_STOP. The
# deploy manifests' terminationGracePeriodSeconds (30) covers STOP_WITHIN with room to spare.
LISTEN_AFTER_TERM = 5.0
DRAIN_REQUESTS = 3
WORKER_STOP = 18.0
STOP_WITHIN = 25.0


class HttpServer:
    """uvicorn serving :func:`asgi_app` on a socket bound at construction (port 0 works).

    ``run()`` serves until ``stop()`` (from another thread) or, in the main thread, SIGINT or
    SIGTERM. SIGINT stops at once (uvicorn finishes the requests in flight). SIGTERM — how
    Kubernetes and docker stop a container — first marks the process not ready and calls
    ``on_term`` (the worker stops taking jobs), keeps acking for ``listen_after_term``
    seconds, then stops like SIGINT; a second SIGTERM stops at once.
    """

    def __init__(
        self,
        front: SlackApp,
        *,
        host: str,
        port: int,
        healthy: Callable[[], bool] = lambda: True,
        readiness: Readiness | None = None,
        on_term: Callable[[], None] | None = None,
        listen_after_term: float = LISTEN_AFTER_TERM,
        events: Receiver | None = None,
    ) -> None:
        import uvicorn

        self.socket = socket.create_server((host, port), backlog=1024)
        self.port: int = self.socket.getsockname()[1]
        self.readiness = readiness
        self._on_term = on_term
        self._listen_after_term = listen_after_term
        self.terminated_at: float | None = None
        config = uvicorn.Config(
            asgi_app(front, healthy=healthy, readiness=readiness, events=events),
            loop="uvloop",
            http="httptools",
            lifespan="off",
            backlog=1024,
            access_log=False,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through ours: text or JSON, redacted
            timeout_graceful_shutdown=DRAIN_REQUESTS,
        )
        http = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if not http._terminate(sig):
                    super().handle_exit(sig, frame)

        self.server = Server(config)

    def _terminate(self, sig: int) -> bool:
        """The first SIGTERM: not ready, tell the worker, close the listener later. True if
        handled here (uvicorn must not stop yet)."""
        if sig != signal.SIGTERM or self.terminated_at is not None:
            return False
        self.terminated_at = time.monotonic()
        if self.readiness is not None:
            self.readiness.stopping.set()
        log.warning(
            "acr-chatops: SIGTERM: not ready any more; acking for %.0f s more, then stopping",
            self._listen_after_term,
        )
        if self._on_term is not None:
            self._on_term()
        timer = threading.Timer(self._listen_after_term, self.stop)
        timer.daemon = True
        timer.start()
        return True

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def stop(self) -> None:
        self.server.should_exit = True


def socket_mode_handler(
    front: SlackApp,
    *,
    concurrency: int | None = None,
    on_fatal: Callable[[str], None] | None = None,
    status_path: Path | None = None,
) -> SocketModeHandler:
    """Bolt on our Socket Mode client (bot/slack/socket_mode.py: it overlaps connections, so
    Slack's routine refreshes leave no gap), its message worker started.

    One message worker: our listeners never block (ack, hand the job over), so more threads
    only take turns at the GIL; 10 threads gave p99 40–60 ms, one 23–33 ms. On PostgreSQL
    each ack waits a round trip to the server: the sink says how many may overlap
    (``front.ack_threads``).
    """
    concurrency = concurrency or front.ack_threads
    client = SocketModeLink(
        app_token=front.settings.app_token or "",
        web_client=front.client,
        concurrency=concurrency,
        on_fatal=on_fatal,
        status_path=status_path,
    )
    handler = SocketModeHandler(front.app, client)
    prestart(client.message_workers, concurrency, warm=lambda: None)
    return handler


def serve(
    config: Config,
    settings: SlackSettings,
    *,
    host: str,
    port: int,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    events_port: int | None = None,
    startup_wait: float = startup.STARTUP_WAIT,
) -> None:
    """Run until interrupted: Socket Mode if an app token is set, else HTTP. Slack is checked
    first: a refused token, or Slack unreachable for ``startup_wait`` seconds, stops here
    with one line (bot/slack/startup.py). `/metrics` is served only on ``metrics_port``, at
    ``metrics_host`` (default: ``host``), never on the port Slack reaches."""
    register_secrets(config, settings)  # before anything can log a request
    if config.events is not None:
        require_secret(config.events)  # a missing receiver secret stops here, in one line
    startup.verify_bot_token(settings, within=startup_wait)
    worker = WorkerProcess(config, settings).start()
    # SIGTERM in Socket Mode stops like Ctrl-C; in HTTP mode uvicorn's handler takes it
    # (HttpServer: readiness fails, acks go on for a moment, then the listener closes).
    signal.signal(signal.SIGTERM, _interrupt)
    store = Store(config.database)
    # Acks wait for the database at most ACK_BUSY_TIMEOUT, then answer "busy, try again":
    # Slack gives up at 3 s. (The store was opened, and migrated, with the long timeout.)
    store.busy_timeout = ACK_BUSY_TIMEOUT
    sink = DurableSink(JobQueue(store), worker.ring)
    readiness = Readiness(store).start()
    stopping: list[threading.Thread] = []
    receiver = registry_receiver(config, store, ring=worker.ring)

    def stop_worker() -> None:
        thread = threading.Thread(
            target=worker.stop, kwargs={"timeout": WORKER_STOP}, name="acr-stop", daemon=True
        )
        thread.start()
        stopping.append(thread)

    try:
        front = SlackApp(settings, sink)
        exposition = None
        if metrics_port is not None:
            exposition = metrics.Exposition(observe.readers(store, config, worker=worker))
            where = metrics_host or host
            scrape = exposition.serve(host=where, port=metrics_port)
            log.warning("acr-chatops: metrics on http://%s:%s/metrics", where, scrape.server_port)
        if settings.socket_mode:
            log.warning("acr-chatops: Socket Mode (no public URL needed)")
            if receiver is not None and events_port is not None:
                serve_events(receiver, host=host, port=events_port)
            elif receiver is not None:
                log.warning(
                    "acr-chatops: [events] is configured but Socket Mode has no HTTP port: "
                    "pass --events-port PORT to receive registry events"
                )
            elif events_port is not None:
                log.warning("acr-chatops: --events-port ignored: no [events] in the config")
            run_socket_mode(front, settings, startup_wait=startup_wait, exposition=exposition)
        else:
            server = HttpServer(
                front,
                host=host,
                port=port,
                healthy=worker.is_alive,
                readiness=readiness,
                on_term=stop_worker,
                events=receiver,
            )
            log.warning("acr-chatops: HTTP on http://%s:%s%s", host, server.port, EVENTS_PATH)
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        readiness.stopping.set()
        log.warning("acr-chatops: stopping; the worker finishes or interrupts the jobs it has")
        if stopping:
            stopping[0].join(WORKER_STOP + 6)
        else:
            worker.stop(timeout=WORKER_STOP)
        readiness.close()
        sink.stop()
        if receiver is not None:
            receiver.writer.stop()


def registry_receiver(config: Config, store: Store, *, ring: Callable[[], None]) -> Receiver | None:
    """`POST /registry/events` when `[events]` is configured (bot/slack/registry_receiver.py)."""
    if config.events is None:
        return None
    return Receiver(config.events, EventWriter(EventLog(store), ring=ring))


def serve_events(receiver: Receiver, *, host: str, port: int) -> Any:
    """Socket Mode's `--events-port`: uvicorn serving only the registry-event receiver, from
    a daemon thread; returns the uvicorn server (``should_exit = True`` stops it)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            events_only_app(receiver),
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name="acr-events-http", daemon=True)
    thread.start()
    log.warning("acr-chatops: registry events on http://%s:%s%s", host, port, REGISTRY_EVENTS_PATH)
    return server


def run_socket_mode(
    front: SlackApp,
    settings: SlackSettings,
    *,
    startup_wait: float,
    exposition: metrics.Exposition | None = None,
) -> None:
    """Connect, then keep connected until interrupted; if Slack says no connection can work
    (Socket Mode turned off for the app, the app token revoked), stop with that one line."""
    stopped: list[str] = []
    done = threading.Event()

    def fatal(why: str) -> None:
        stopped.append(why)
        done.set()

    status = socket_mode_status_path()
    handler = socket_mode_handler(front, on_fatal=fatal, status_path=status)
    if exposition is not None:
        exposition.add_reader(handler.client.readings)
    try:
        startup.connect_socket_mode(handler, settings, within=startup_wait)
        done.wait()  # until interrupted, or Slack says stop
    finally:
        handler.close()
        status.unlink(missing_ok=True)
    raise startup.StartupFailed(stopped[0])


def socket_mode_status_path(pid: int | None = None) -> Path:
    """Where `acrbot serve` (process ``pid``) writes its Socket Mode status for
    deploy/healthcheck.py, which knows the same name."""
    return Path(tempfile.gettempdir()) / f"acrbot-socket-mode-{pid or os.getpid()}.json"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_in_thread(server: HttpServer) -> threading.Thread:
    """Serve from a daemon thread (tests, the bench); stop with ``server.stop()``."""
    thread = threading.Thread(target=server.run, name="acr-http", daemon=True)
    thread.start()
    return thread
