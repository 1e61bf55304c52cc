"""Socket Mode that never leaves Slack without a connection.

Slack recycles Socket Mode connections routinely: it sends `{"type": "disconnect", "reason":
…}` and closes the socket a few seconds later. slack_sdk 3.48's clients leave a gap there
(tests/flows/test_slack_socket_mode.py measures it; docs/slack.md quotes the figures):

- the websocket-client one closes the old socket and opens the new one from a single session
  thread, which stays blocked in `select` on the socket it closed until its 10 s connection
  monitor runs: refreshes at 0.5 s into its cycle left no connection for 10.5 s;
- the built-in one opens the new socket first, but its one reader thread goes on waiting on
  the old socket (3 s receive timeout) before it reads the new one: envelopes Slack delivered
  on the new connection waited up to 1.6 s for their ack, and longer when Slack is quiet;
- neither tells the disconnect reasons apart: both reconnect on `link_disabled` (Socket Mode
  turned off for the app) for ever, and on `too_many_websockets` at once.

No upstream issue names this gap (slackapi/python-slack-sdk#1379 and #1462 are earlier
reconnect bugs of the websocket-client one). When slack_sdk's client overlaps connections and
tells the reasons apart, delete this module for it: the tests above say when it does.

So this module keeps the connections itself, on websocket-client's `WebSocket` (frames,
pings, TLS, proxies) and slack_sdk's `BaseSocketModeClient` (the request listeners Bolt
plugs into, the message workers): each connection has its own reader thread, a new
connection is opened *before* the old one is let go (Slack allows 10 per app and delivers
each envelope to one of them), and each ack goes back on the connection its envelope came
in on. What each disconnect reason does, as Slack documents them (too_many_websockets is not
in Slack's page: its meaning, more than the 10 connections an app may hold, is from Slack's
SDK maintainers, slackapi/node-slack-sdk#1654):

- `refresh_requested`, `warning` (and a reason we do not know): open a new connection now;
  the old one keeps being read until Slack closes it (`DRAIN` seconds at most), so nothing
  Slack still sends on it is lost.
- `too_many_websockets`: the app holds more connections than Slack allows (another replica,
  connections leaked elsewhere). Opening another at once would add to the count, so the
  replacement waits (`TOO_MANY_BACKOFF`, doubling while Slack keeps saying it), and the old
  one is read until Slack closes it.
- `link_disabled`: Socket Mode was turned off in the app's settings; no connection can work
  until someone turns it back on. Stop: close everything, open nothing, and tell ``on_fatal``
  (`acrbot serve` exits with one line saying so).

:class:`LinkStatus` is what the health check and the metrics read: since when there has been
no connection Slack can deliver to, how many reconnects, how long each gap lasted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any

import websocket
from slack_bolt import App
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from bot.ops import metrics

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0  # seconds from opening a socket to Slack's hello
DRAIN = 10.0  # seconds an old connection is still read after its replacement said hello
PING_INTERVAL = 5.0  # we ping each connection this often…
STALE_AFTER = 20.0  # …and drop one that has sent nothing (not even a pong) for this long
RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # backoff between failed attempts to connect
TOO_MANY_BACKOFF = 2.0  # first wait after too_many_websockets (doubles, up to RETRY_MAX)
STOP_REASONS = frozenset({"link_disabled"})
KNOWN_REASONS = frozenset({"refresh_requested", "warning", "too_many_websockets", "link_disabled"})


class SocketModeStopped(Exception):
    """Slack said no connection can work (`link_disabled`, a refused app token): the message
    is the one line `acrbot serve` stops with."""


@dataclass
class LinkStatus:
    """Whether Slack has a connection to deliver to, for the health check and the metrics.

    Times are time.monotonic() except ``*_wall`` (time.time(), for another process)."""

    deliverable: int = 0  # connections that said hello and were not told to go
    down_since: float | None = field(default_factory=time.monotonic)  # None while connected
    down_since_wall: float | None = field(default_factory=time.time)
    reconnects: int = 0
    gap_seconds: float = 0.0  # total time without a deliverable connection, after the first
    last_gap: float = 0.0
    stopped: str | None = None  # why the client stopped for good
    last_reason: str | None = None  # the last disconnect reason, or "dropped"

    def snapshot(self) -> dict[str, Any]:
        return {
            "deliverable": self.deliverable,
            "down_since_wall": self.down_since_wall,
            "reconnects": self.reconnects,
            "gap_seconds": round(self.gap_seconds, 3),
            "stopped": self.stopped,
            "last_reason": self.last_reason,
        }


class _Connection:
    """One WebSocket to Slack and the thread that reads it."""

    def __init__(self, number: int, ws: websocket.WebSocket) -> None:
        self.number = number
        self.ws = ws
        self.hello = threading.Event()
        self.told: str | None = None  # the disconnect reason Slack sent on it
        self.told_at = 0.0
        self.closed = threading.Event()
        self.last_frame = time.monotonic()
        self.thread: threading.Thread | None = None

    @property
    def deliverable(self) -> bool:
        return self.hello.is_set() and self.told is None and not self.closed.is_set()

    def send(self, text: str) -> None:
        self.ws.send(text)  # websocket-client serialises senders with its own lock

    def close(self) -> None:
        """Say goodbye and wake the reader: `abort` shuts the socket down, which wakes a
        thread blocked in recv (closing it alone does not — the upstream stall)."""
        with contextlib.suppress(Exception):
            self.ws.send_close(websocket.STATUS_NORMAL)
        with contextlib.suppress(Exception):
            self.ws.abort()


class SocketModeLink(BaseSocketModeClient):
    """A Socket Mode client for Bolt that overlaps connections (see the module docstring).

    ``connect()`` opens the first connection and returns once Slack said hello (raising on
    failure, for bot/slack/startup.py to retry); after that the client keeps a connection
    open by itself until ``close()``.
    """

    def __init__(
        self,
        *,
        app_token: str,
        web_client: WebClient,
        concurrency: int = 1,
        on_fatal: Callable[[str], None] | None = None,
        drain: float = DRAIN,
        ping_interval: float = PING_INTERVAL,
        stale_after: float = STALE_AFTER,
        status_path: Path | None = None,
    ) -> None:
        self.app_token = app_token
        self.web_client = web_client
        self.logger = log
        self.wss_uri = ""
        self.message_queue = Queue()  # unused: envelopes go straight to the workers
        self.message_listeners = []
        self.socket_mode_request_listeners = []
        self.message_workers = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="acr-socket-ack"
        )
        self.closed = False
        self.connect_operation_lock = threading.Lock()
        self.status = LinkStatus()
        self.on_fatal = on_fatal
        self.drain = drain
        self.ping_interval = ping_interval
        self.stale_after = stale_after
        self.status_path = status_path
        self._lock = threading.RLock()
        self._connections: list[_Connection] = []
        self._numbers = 0
        self._ever_connected = False
        self._origin: dict[str, _Connection] = {}  # envelope_id -> connection it came on
        self._wake = threading.Event()  # the supervisor: something changed
        self._replace_at: float | None = None  # when to open a replacement
        self._too_many = 0  # consecutive too_many_websockets
        self._failures = 0  # consecutive failed attempts to connect
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- BaseSocketModeClient ------------------------------------------------------------------

    def is_connected(self) -> bool:
        with self._lock:
            return any(c.deliverable for c in self._connections)

    def connect(self) -> None:
        """Open a connection and wait for its hello; start keeping one open after that."""
        if self.status.stopped:
            raise SocketModeStopped(self.status.stopped)
        self._open()
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, name="acr-socket-supervisor", daemon=True
            )
            self._supervisor.start()

    def disconnect(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close()

    def close(self) -> None:
        """Stop reconnecting, let the acks in hand go out on the open connections, then close
        them (an envelope read but not acked would fail for its user)."""
        self.closed = True
        self._stop.set()
        self._wake.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        self.message_workers.shutdown(wait=True, cancel_futures=False)
        self.disconnect()

    def readings(self) -> list[metrics.Reading]:
        """The scrape-time gauges (bot/ops/metrics.py Exposition.add_reader)."""
        with self._lock:
            status = self.status
            down = 0.0 if status.down_since is None else time.monotonic() - status.down_since
            return [
                metrics.Reading(
                    "acrbot_socket_mode_connections",
                    "Socket Mode connections Slack can deliver to (said hello, not told to go).",
                    (({}, float(status.deliverable)),),
                ),
                metrics.Reading(
                    "acrbot_socket_mode_down_seconds",
                    "Seconds since Slack last had a Socket Mode connection to deliver to "
                    "(0 while it has one).",
                    (({}, round(down, 3)),),
                ),
            ]

    def send_message(self, message: str) -> None:
        self._send(None, message)

    def send_socket_mode_response(self, response: dict[str, Any] | SocketModeResponse) -> None:
        """The ack goes back on the connection its envelope came in on, if it is still open."""
        body = response.to_dict() if isinstance(response, SocketModeResponse) else response
        with self._lock:
            origin = self._origin.pop(str(body.get("envelope_id")), None)
        self._send(origin, json.dumps(body))

    # -- connections ---------------------------------------------------------------------------

    def _send(self, origin: _Connection | None, text: str) -> None:
        with self._lock:
            candidates = [c for c in self._connections if not c.closed.is_set()]
        if origin is not None and origin in candidates:
            candidates.remove(origin)
            candidates.insert(0, origin)
        else:
            candidates.reverse()  # the newest first
        for conn in candidates:
            try:
                conn.send(text)
                return
            except Exception as exc:  # closed under us: the next one
                log.debug("Socket Mode: send on connection %s failed: %s", conn.number, exc)
        raise ConnectionError("no open Socket Mode connection to send on")

    def _open(self) -> _Connection:
        """apps.connections.open (a fresh single-use URL every time), the handshake, hello."""
        url = self.issue_new_wss_url()
        self.wss_uri = url
        try:
            ws = websocket.create_connection(
                url, timeout=HELLO_TIMEOUT, enable_multithread=True, skip_utf8_validation=True
            )
        except websocket.WebSocketException as exc:
            raise ConnectionError(f"Socket Mode handshake refused: {exc}") from None
        with self._lock:
            self._numbers += 1
            conn = _Connection(self._numbers, ws)
            self._connections.append(conn)
        conn.thread = threading.Thread(
            target=self._read, args=(conn,), name=f"acr-socket-{conn.number}", daemon=True
        )
        conn.thread.start()
        if not conn.hello.wait(HELLO_TIMEOUT) or conn.closed.is_set():
            conn.close()
            if self.status.stopped:
                raise SocketModeStopped(self.status.stopped)
            raise TimeoutError(f"no hello from Slack within {HELLO_TIMEOUT:g} s")
        return conn

    def _read(self, conn: _Connection) -> None:
        ws = conn.ws
        ws.settimeout(None)  # woken by abort() or by Slack; staleness is the supervisor's
        try:
            while not self._stop.is_set():
                opcode, frame = ws.recv_data_frame(True)  # answers pings itself
                conn.last_frame = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._on_text(conn, frame.data.decode("utf-8"))
        except Exception as exc:
            if not self._stop.is_set() and conn.told is None:
                log.info("Socket Mode: connection %s ended: %s", conn.number, exc)
        finally:
            conn.closed.set()
            with contextlib.suppress(Exception):
                ws.shutdown()
            self._forget(conn)

    def _on_text(self, conn: _Connection, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("Socket Mode: a message that is not JSON, ignored (%d bytes)", len(raw))
            return
        kind = message.get("type")
        if kind == "hello":
            self._hello(conn)
            return
        if kind == "disconnect":
            self._disconnect(conn, str(message.get("reason") or "unknown"))
            return
        envelope_id = message.get("envelope_id")
        if envelope_id:
            with self._lock:
                self._origin[str(envelope_id)] = conn
        self.message_workers.submit(self.run_message_listeners, message, raw)

    def _hello(self, conn: _Connection) -> None:
        with self._lock:
            conn.hello.set()
            self._failures = 0
            self._update()
        log.info("Socket Mode: connection %s ready", conn.number)

    def _disconnect(self, conn: _Connection, reason: str) -> None:
        with self._lock:
            conn.told, conn.told_at = reason, time.monotonic()
            self.status.last_reason = reason if reason in KNOWN_REASONS else "other"
            if reason in STOP_REASONS:
                self._fatal(
                    "Slack turned Socket Mode off for this app (disconnect: link_disabled): "
                    "turn it on again under Socket Mode in the app's settings, or unset "
                    "SLACK_APP_TOKEN to serve over HTTP"
                )
                return
            if reason == "too_many_websockets":
                self._too_many += 1
                wait = min(TOO_MANY_BACKOFF * 2 ** (self._too_many - 1), RETRY_MAX)
                log.warning(
                    "Socket Mode: Slack says the app has too many connections (more than 10: "
                    "another replica?); opening a replacement in %.0f s",
                    wait,
                )
                self._schedule(time.monotonic() + wait)
            else:
                self._too_many = 0
                log.info("Socket Mode: disconnect (%s) on connection %s", reason, conn.number)
                self._schedule(time.monotonic())
            self._update()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
            for envelope_id in [e for e, c in self._origin.items() if c is conn]:
                del self._origin[envelope_id]
            # A connection that never said hello is a failed attempt: _replace backs off.
            dropped = conn.hello.is_set() and conn.told is None
            if dropped and not self._stop.is_set() and not self.status.stopped:
                self.status.last_reason = "dropped"
                self._schedule(time.monotonic())
            self._update()

    def _schedule(self, at: float) -> None:
        """Open a replacement at ``at`` unless another connection is deliverable by then."""
        if self._replace_at is None or at < self._replace_at:
            self._replace_at = at
        self._wake.set()

    def _update(self) -> None:
        """Recompute the status after a change (with the lock held)."""
        status = self.status
        status.deliverable = sum(1 for c in self._connections if c.deliverable)
        now = time.monotonic()
        if status.deliverable and status.down_since is not None:
            gap = now - status.down_since
            if self._ever_connected:  # a reconnect, not the first connection
                status.reconnects += 1
                status.gap_seconds += gap
                status.last_gap = gap
                metrics.socket_mode_reconnect(status.last_reason or "dropped", gap)
            status.down_since = status.down_since_wall = None
            self._ever_connected = True
        elif not status.deliverable and status.down_since is None:
            status.down_since, status.down_since_wall = now, time.time()

    def _fatal(self, why: str) -> None:
        self.status.stopped = why
        self._replace_at = None
        self._write_status()
        self._stop.set()
        self._wake.set()
        log.error("Socket Mode: %s", why)
        for conn in list(self._connections):
            conn.close()
        if self.on_fatal is not None:
            threading.Thread(target=self.on_fatal, args=(why,), daemon=True).start()

    # -- the supervisor ------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Opens replacements when due, retires drained connections, pings, drops the stale."""
        while not self._stop.is_set():
            with self._lock:
                at = self._replace_at
            self._wake.wait(timeout=1.0 if at is None else min(1.0, at - time.monotonic()))
            self._wake.clear()
            self._write_status()
            if self._stop.is_set():
                return
            now = time.monotonic()
            with self._lock:
                connections = list(self._connections)
                if self._replace_at is None and not any(c.deliverable for c in connections):
                    self._replace_at = now  # nothing to deliver to and nothing planned
                due = self._replace_at is not None and now >= self._replace_at
                if due:
                    self._replace_at = None
            for conn in connections:
                self._tend(conn, now)
            if due:
                self._replace()

    def _write_status(self) -> None:
        """For deploy/healthcheck.py (the exec probe: Socket Mode has no HTTP server): the
        status as JSON, replaced atomically, at least once a second — so a stale file also
        says the front is stuck."""
        if self.status_path is None:
            return
        with self._lock:
            body = {**self.status.snapshot(), "written_wall": time.time()}
        scratch = self.status_path.with_suffix(".tmp")
        try:
            scratch.write_text(json.dumps(body))
            os.replace(scratch, self.status_path)
        except OSError as exc:
            log.warning("Socket Mode: cannot write %s: %s", self.status_path, exc)

    def _tend(self, conn: _Connection, now: float) -> None:
        if conn.closed.is_set():
            return
        if now - conn.last_frame > self.stale_after:
            log.warning(
                "Socket Mode: connection %s silent for %.0f s; replacing it",
                conn.number,
                now - conn.last_frame,
            )
            conn.close()
            return
        if conn.told is not None and now - conn.told_at > self.drain and self.is_connected():
            conn.close()  # Slack had DRAIN seconds to close it; we do
            return
        if now - conn.last_frame > self.ping_interval:
            with contextlib.suppress(Exception):
                conn.ws.ping("acrbot")

    def _replace(self) -> None:
        """Open a new connection; on failure, plan the next attempt with backoff (the
        supervisor goes on tending the others and writing the status meanwhile)."""
        if self._stop.is_set() or self.is_connected():
            return
        try:
            self._open()
            return
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error in _REFUSALS:
                from bot.slack.startup import APP_TOKEN, refusal

                with self._lock:
                    self._fatal(refusal(APP_TOKEN, error))
                return
            reason = error
        except SocketModeStopped:
            return
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        self._failures += 1
        wait = min(RETRY_FIRST * 2 ** (self._failures - 1), RETRY_MAX) * random.uniform(0.8, 1.2)
        log.warning("Socket Mode: cannot connect (%s); trying again in %.1f s", reason, wait)
        with self._lock:
            self._schedule(time.monotonic() + wait)


# apps.connections.open answers that no retry can fix.
_REFUSALS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)


class SocketModeHandler(BaseSocketModeHandler):
    """Bolt's Socket Mode adapter on :class:`SocketModeLink` (as Bolt's own adapters do it:
    each request runs through the app and its response is the ack)."""

    def __init__(self, app: App, client: SocketModeLink) -> None:
        self.app = app
        self.client = client
        client.socket_mode_request_listeners.append(self.handle)

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        started = time.time()
        send_response(client, req, run_bolt_app(self.app, req), started)
