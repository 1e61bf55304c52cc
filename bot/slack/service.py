"""Wire the listeners to Slack and run them: HTTP on uvicorn, or Socket Mode.

`acrbot serve` runs two processes: this one talks to Slack, records each job in the
database and acks (Bolt, the listeners); a worker process runs the jobs
(bot/slack/worker.py). Bolt's built-in server
(`app.start()`) answers one request at a time from a 5-slot listen queue, so a burst of slash
commands waits for seconds; uvicorn (httptools, uvloop) parses HTTP in C and answers from one
event loop with a deep backlog.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot import metrics, observe
from bot.app import register_secrets
from bot.config import Config, SlackSettings
from bot.jobqueue import JobQueue
from bot.slack import startup
from bot.slack.jobs import DurableSink, JobSink
from bot.slack.listeners import Listeners
from bot.slack.manifest import EVENTS_PATH
from bot.slack.observe import ObservedApp, ObservedSink
from bot.slack.socket_mode import SocketModeHandler, SocketModeLink
from bot.slack.worker import WorkerProcess, prestart
from bot.store import Store

log = logging.getLogger(__name__)


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
        )
        self.client = self.app.client
        self.client.base_url = settings.api_url
        Listeners(ObservedSink(sink)).register(self.app)
        # Everything built so far lives as long as the process: move it out of the collector's
        # sight, so full collections during a burst of acks stay short.
        gc.collect()
        gc.freeze()


def asgi_app(front: SlackApp, *, healthy: Callable[[], bool] = lambda: True) -> Any:
    """`POST /slack/events` for Slack (commands, interactivity, events) and `GET /healthz`,
    which answers 503 while the worker is down. Nothing else: this is the port Slack (the
    internet) reaches, and `/metrics` names registries and reads the database per scrape, so
    it is served only on `--metrics-port` (`Exposition.serve`)."""
    from slack_bolt.adapter.asgi import SlackRequestHandler

    slack = SlackRequestHandler(front.app, path=EVENTS_PATH)

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz" and scope["method"] == "GET":
            ok = healthy()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200 if ok else 503,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok\n" if ok else b"worker down\n"})
            return
        await slack(scope, receive, send)

    return application


class HttpServer:
    """uvicorn serving :func:`asgi_app` on a socket bound at construction (port 0 works).

    ``run()`` serves until ``stop()`` (from another thread) or, in the main thread, SIGINT or
    SIGTERM; uvicorn then finishes the requests in flight.
    """

    def __init__(
        self,
        front: SlackApp,
        *,
        host: str,
        port: int,
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        import uvicorn

        self.socket = socket.create_server((host, port), backlog=1024)
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            asgi_app(front, healthy=healthy),
            loop="uvloop",
            http="httptools",
            lifespan="off",
            backlog=1024,
            access_log=False,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through ours: text or JSON, redacted
            timeout_graceful_shutdown=10,
        )
        self.server = uvicorn.Server(config)

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def stop(self) -> None:
        self.server.should_exit = True


def socket_mode_handler(
    front: SlackApp,
    *,
    concurrency: int = 1,
    on_fatal: Callable[[str], None] | None = None,
    status_path: Path | None = None,
) -> SocketModeHandler:
    """Bolt on our Socket Mode client (bot/slack/socket_mode.py: it overlaps connections, so
    Slack's routine refreshes leave no gap), its message worker started.

    One message worker: our listeners never block (ack, hand the job over), so more threads
    only take turns at the GIL; 10 threads gave p99 40–60 ms, one 23–33 ms.
    """
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
    startup_wait: float = startup.STARTUP_WAIT,
) -> None:
    """Run until interrupted: Socket Mode if an app token is set, else HTTP. Slack is checked
    first: a refused token, or Slack unreachable for ``startup_wait`` seconds, stops here
    with one line (bot/slack/startup.py). `/metrics` is served only on ``metrics_port``, at
    ``metrics_host`` (default: ``host``), never on the port Slack reaches."""
    register_secrets(config, settings)  # before anything can log a request
    startup.verify_bot_token(settings, within=startup_wait)
    worker = WorkerProcess(config, settings).start()
    # SIGTERM (docker stop, systemd) stops like Ctrl-C: uvicorn finishes the requests in
    # flight and then re-raises the signal it caught; the worker finishes its jobs.
    signal.signal(signal.SIGTERM, _interrupt)
    store = Store(config.database)
    sink = DurableSink(JobQueue(store), worker.ring)
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
            run_socket_mode(front, settings, startup_wait=startup_wait, exposition=exposition)
        else:
            server = HttpServer(front, host=host, port=port, healthy=worker.is_alive)
            log.warning("acr-chatops: HTTP on http://%s:%s%s", host, server.port, EVENTS_PATH)
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        log.warning("acr-chatops: stopping; the worker finishes the jobs it has")
        worker.stop()


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
