"""Wire the core to Slack and run it: HTTP on waitress, or Socket Mode.

Bolt's built-in server (`app.start()`) answers one request at a time from a 5-slot listen
queue, so a burst of slash commands waits for seconds; waitress is a production WSGI server
with a thread pool and a deep backlog. Listeners run with process_before_response=True: each
acks and hands off to our own worker pool, sized for slow registry calls, so acks never queue
behind registry work.
"""

from __future__ import annotations

import gc
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot import redaction
from bot.app import build_dispatcher, static_groups
from bot.archive import Shipper
from bot.config import Config, SlackSettings
from bot.slack.groups import SlackGroups, is_usergroup
from bot.slack.listeners import SlackBot

log = logging.getLogger(__name__)


class SlackService:
    """The Bolt app, our listeners, the worker pool and the expiry sweep of one bot."""

    def __init__(
        self,
        config: Config,
        settings: SlackSettings,
        *,
        workers: int = 16,
        sweep_interval: float = 60.0,
        **context: Any,
    ) -> None:
        self.settings = settings
        redaction.install()
        self.client = WebClient(token=settings.bot_token, base_url=settings.api_url)
        self.groups = SlackGroups(self.client)
        static = static_groups(config)
        dispatcher = build_dispatcher(
            config, groups_of=lambda user: [*static(user), *self.groups.groups_of(user)], **context
        )
        self.groups.candidates = lambda: dispatcher.ctx.roles.principal_ids(is_usergroup)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acr-work")
        _prestart(self.pool, workers, warm=lambda: dispatcher.ctx.store.db)
        self.app = App(
            client=self.client,
            signing_secret=settings.signing_secret or "unused-in-socket-mode",
            request_verification_enabled=settings.signing_secret is not None,
            process_before_response=True,
        )
        self.bot = SlackBot(dispatcher, client=self.client, workers=self.pool)
        self.bot.register(self.app)
        self._sweep_interval = sweep_interval
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._shipper: Shipper | None = None
        # Everything built so far lives as long as the process: move it out of the collector's
        # sight, so full collections during a burst of acks stay short.
        gc.collect()
        gc.freeze()

    def start_sweeper(self) -> None:
        """Announce outcomes reached while we were down, then expire requests periodically;
        ship the audit to its archive in the background, if one is configured."""

        def loop() -> None:
            while True:
                try:
                    self.bot.sweep()
                except Exception:
                    log.exception("expiry sweep failed; retrying in %ss", self._sweep_interval)
                if self._stopping.wait(self._sweep_interval):
                    return

        self._sweeper = threading.Thread(target=loop, name="acr-sweep", daemon=True)
        self._sweeper.start()
        ctx = self.bot.ctx
        if ctx.archive is not None:
            self._shipper = Shipper(ctx.archive).start()
            ctx.audit.on_append = self._shipper.nudge

    def stop(self) -> None:
        self._stopping.set()
        if self._shipper is not None:
            self._shipper.stop()
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.bot.ctx.store.close()

    def wsgi(self) -> Any:
        """`/slack/events` for Slack (commands, interactivity, events), `GET /healthz`."""
        slack = SlackRequestHandler(self.app, path="/slack/events")

        def application(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO") == "/healthz" and environ["REQUEST_METHOD"] == "GET":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            return slack(environ, start_response)

        return application


def _prestart(pool: ThreadPoolExecutor, workers: int, *, warm: Any) -> None:
    """Start every worker thread now, each with its SQLite connection open.

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


def make_http_server(service: SlackService, *, host: str, port: int, threads: int = 4) -> Any:
    """A waitress server for the service (.run() serves; stop_http_server() stops).

    Four threads: an ack is ~1 ms of CPU under the GIL, so more threads only contend (on 2
    cores, bench/ack_latency.py gave the lowest p99 with 4). The deep backlog keeps bursts in
    the kernel queue instead of refusing them.
    """
    from waitress.server import create_server

    return create_server(
        service.wsgi(),
        host=host,
        port=port,
        threads=threads,
        backlog=1024,
        connection_limit=1000,
        channel_timeout=30,
        ident="acr-chatops",
    )


def socket_mode_handler(service: SlackService, *, concurrency: int = 10) -> Any:
    """slack_sdk's Socket Mode client on websocket-client, its worker threads started.

    slack_sdk ships several Socket Mode clients; on a burst of 50 envelopes the one on
    websocket-client acked with p99 ~60 ms here, the built-in one ~105 ms (and ~180 ms with
    its default 1 KiB receive buffer) (bench/ack_latency.py).
    """
    from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler

    handler = SocketModeHandler(
        service.app,
        app_token=service.settings.app_token,
        web_client=service.client,
        concurrency=concurrency,
    )
    _prestart(handler.client.message_workers, concurrency, warm=lambda: None)
    return handler


def serve(config: Config, settings: SlackSettings, *, host: str, port: int) -> None:
    """Run until interrupted: Socket Mode if an app token is set, else HTTP."""
    service = SlackService(config, settings)
    service.start_sweeper()
    try:
        if settings.socket_mode:
            log.warning("acr-chatops: Socket Mode (no public URL needed)")
            socket_mode_handler(service).start()
        else:
            server = make_http_server(service, host=host, port=port)
            log.warning("acr-chatops: HTTP on http://%s:%s/slack/events", host, port)
            server.run()
    finally:
        service.stop()


def stop_http_server(server: Any) -> None:
    """Stop a server made by make_http_server whose .run() is in another thread.

    The closing runs inside waitress's own loop (through its trigger): closing sockets from
    another thread races the loop's select() and fails with EBADF.
    """
    from waitress import wasyncore

    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    server.task_dispatcher.shutdown()
