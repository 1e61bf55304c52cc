"""A local stand-in for Slack's Socket Mode WebSocket endpoint, as strict as Slack.

It speaks the documented protocol: `apps.connections.open` (answered by FakeSlack through
:meth:`FakeSocketMode.issue_url`) hands out a URL whose ticket works once — a reused or
unknown ticket is refused at the handshake; each connection gets `hello`, then envelopes
(`slash_commands`, `interactive`, `events_api`) the test queues, each delivered to one
connection that may receive them; acks are matched by envelope_id. The server pings every
connection (``ping_interval``) and drops one that does not answer (``ping_timeout``).
:meth:`disconnect` sends `{"type": "disconnect", "reason": …}`: from then on that connection
gets no envelopes and the server closes it ``close_after`` seconds later, as Slack does
("refresh_requested", "warning"); "link_disabled" (Socket Mode turned off for the app)
closes every connection and refuses new ones. An 11th open connection is told
"too_many_websockets" (Slack allows 10 per app) and closed.

The server keeps the history of every connection, so a test can ask for the windows in
which Slack had nowhere to deliver an envelope (:meth:`gaps`).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

MAX_CONNECTIONS = 10  # per app, Slack's documented limit


@dataclass
class Connection:
    """One WebSocket connection as the server saw it (times from time.monotonic())."""

    id: int
    ticket: str
    opened_at: float
    hello_at: float | None = None
    told: str | None = None  # the reason of the disconnect message sent to it
    told_at: float | None = None
    closed_at: float | None = None
    closed_by: str | None = None  # "server" (its close after a disconnect) or "client"
    closing: bool = False
    envelopes: list[str] = field(default_factory=list)

    @property
    def deliverable(self) -> bool:
        """Whether Slack would deliver an envelope here: hello'd, open, not told to go."""
        return self.hello_at is not None and self.told is None and self.closed_at is None


class FakeSocketMode:
    def __init__(
        self,
        *,
        ping_interval: float = 2.0,
        ping_timeout: float = 3.0,
        close_after: float = 3.0,
        app_id: str = "A0001",
        spread: bool = False,
    ) -> None:
        # ``spread``: hand each envelope to one of the deliverable connections at random, as
        # Slack does with several (two replicas); without it the first connection to look
        # takes whatever is queued (enough with one client, and the timing older tests know).
        self.spread = spread
        self._random = random.Random(20)
        self.close_after = close_after
        self.app_id = app_id
        self.acks: dict[str, tuple[dict[str, Any], float]] = {}
        self.sent_at: dict[str, float] = {}  # perf_counter() when it went on a connection
        self.queued_at: dict[str, float] = {}  # perf_counter() when the test queued it
        self.delivered_to: dict[str, int] = {}  # envelope_id -> connection id
        self.refused: list[tuple[str, str]] = []  # (ticket, why) refused at the handshake
        self.ack_errors: list[str] = []  # acks for envelopes never sent
        self.history: list[Connection] = []
        self.link_disabled = False
        self.down = False  # outage(): handshakes refused, connections dropped
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._outbox: list[dict[str, Any]] = []
        self._live: dict[int, ServerConnection] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._server = serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=1,
            compression=None,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def attach(self, fake_slack: Any) -> FakeSocketMode:
        """Let ``fake_slack`` answer apps.connections.open with a fresh URL each time."""
        fake_slack.socket_url = self.issue_url
        return self

    def issue_url(self) -> str:
        """A new single-use WebSocket URL, as apps.connections.open returns."""
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets[ticket] = False
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- what a test does --------------------------------------------------------------------

    def send(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        """Queue an envelope for the next connection that may receive it; its id."""
        envelope_id = str(uuid.uuid4())
        with self._lock:
            self.queued_at[envelope_id] = time.perf_counter()
            self._outbox.append(
                {
                    "envelope_id": envelope_id,
                    "type": kind,
                    "payload": payload,
                    "accepts_response_payload": kind == "slash_commands",
                    **extra,
                }
            )
            self._lock.notify_all()
        return envelope_id

    def disconnect(
        self, reason: str = "refresh_requested", *, connection: int | None = None
    ) -> int:
        """Tell a connection (by default the newest deliverable one) to go; its id.

        "link_disabled" tells every connection, closes them and refuses new ones."""
        with self._lock:
            if reason == "link_disabled":
                self.link_disabled = True
                targets = [c for c in self.history if c.closed_at is None]
            else:
                pick = [c for c in self.history if c.deliverable]
                if connection is not None:
                    pick = [c for c in self.history if c.id == connection]
                assert pick, "no connection to disconnect"
                targets = [pick[-1]]
            for conn in targets:
                self._tell(conn, reason)
            return targets[-1].id if targets else 0

    def outage(self, down: bool = True) -> None:
        """Slack's Socket Mode goes away (every connection dropped without a word, handshakes
        answered 503) or comes back."""
        with self._lock:
            self.down = down
            victims = [c.id for c in self.history if c.closed_at is None] if down else []
        for conn_id in victims:
            with self._lock:
                ws = self._live.get(conn_id)
            if ws is not None:
                ws.close_socket()

    def wait_ack(self, envelope_id: str, timeout: float = 10) -> tuple[dict[str, Any], float]:
        """The ack's body and the seconds from sending the envelope to receiving the ack."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while envelope_id not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no ack for {envelope_id}")
                self._lock.wait(left)
            body, at = self.acks[envelope_id]
            return body, at - self.sent_at[envelope_id]

    @property
    def connections(self) -> int:
        """How many connections have said hello (the count the old tests waited on)."""
        with self._lock:
            return sum(1 for c in self.history if c.hello_at is not None)

    def wait_connections(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.connections < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
        assert self.connections >= count, f"{self.connections} connections, expected {count}"

    def deliverable(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.history if c.deliverable]

    def open_connections(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.history if c.closed_at is None]

    def gaps(self, since: float, until: float | None = None) -> list[tuple[float, float]]:
        """The windows in [since, until] with no deliverable connection: (start, seconds)."""
        until = time.monotonic() if until is None else until
        with self._lock:
            spans = []
            for c in self.history:
                if c.hello_at is None:
                    continue
                end = min(t for t in (c.told_at, c.closed_at, until) if t is not None)
                if end > since and c.hello_at < until:
                    spans.append((max(c.hello_at, since), min(end, until)))
        spans.sort()
        gaps, covered = [], since
        for start, end in spans:
            if start > covered:
                gaps.append((covered, start - covered))
            covered = max(covered, end)
        if covered < until:
            gaps.append((covered, until - covered))
        return gaps

    # -- the server --------------------------------------------------------------------------

    def _check_ticket(self, ws: ServerConnection, request: Request) -> Response | None:
        ticket = parse_qs(urlparse(request.path).query).get("ticket", [""])[0]
        with self._lock:
            if self.down:
                self.refused.append((ticket, "outage"))
                return ws.respond(503, "outage\n")
            if self.link_disabled:
                why = "link_disabled"
            elif ticket not in self._tickets:
                why = "unknown ticket"
            elif self._tickets[ticket]:
                why = "ticket already used"
            else:
                self._tickets[ticket] = True
                return None
            self.refused.append((ticket, why))
        return ws.respond(401, f"{why}\n")

    def _tell(self, conn: Connection, reason: str) -> None:
        """Send the disconnect message and schedule the close (with the lock held)."""
        if conn.told is not None or conn.closed_at is not None:
            return
        conn.told, conn.told_at = reason, time.monotonic()
        ws = self._live.get(conn.id)
        if ws is None:
            return
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-test"}}
        try:
            ws.send(json.dumps(message))
        except ConnectionClosed:
            return
        delay = 0.0 if reason == "link_disabled" else self.close_after
        timer = threading.Timer(delay, self._close, args=(conn.id,))
        timer.daemon = True
        timer.start()

    def _close(self, conn_id: int) -> None:
        with self._lock:
            ws = self._live.get(conn_id)
            for conn in self.history:
                if conn.id == conn_id and conn.closed_at is None:
                    conn.closing = True
        if ws is not None:
            ws.close(1000, "bye")

    def _handle(self, ws: ServerConnection) -> None:
        ticket = parse_qs(urlparse(ws.request.path).query).get("ticket", [""])[0]
        with self._lock:
            conn = Connection(next(self._ids), ticket, time.monotonic())
            self.history.append(conn)
            self._live[conn.id] = ws
            open_count = sum(1 for c in self.history if c.closed_at is None)
        try:
            with self._lock:  # hello and hello_at together: a client that read its hello
                # always finds its connection deliverable (disconnect() may come next)
                ws.send(
                    json.dumps(
                        {
                            "type": "hello",
                            "num_connections": open_count,
                            "connection_info": {"app_id": self.app_id},
                            "debug_info": {
                                "host": "applink-test",
                                "approximate_connection_time": 18060,
                            },
                        }
                    )
                )
                conn.hello_at = time.monotonic()
                if open_count > MAX_CONNECTIONS:
                    self._tell(conn, "too_many_websockets")
                self._lock.notify_all()
            self._serve(ws, conn)
        finally:
            with self._lock:
                conn.closed_at = time.monotonic()
                conn.closed_by = "server" if conn.closing else "client"
                self._live.pop(conn.id, None)
                self._lock.notify_all()

    def _mine(self, conn: Connection) -> bool:
        """Whether ``conn`` takes the next envelope: one deliverable connection in N, at
        random (the caller holds the lock)."""
        others = sum(1 for c in self.history if c.deliverable and c is not conn)
        return self._random.random() < 1 / (others + 1)

    def _serve(self, ws: ServerConnection, conn: Connection) -> None:
        while True:
            with self._lock:
                while conn.deliverable and self._outbox:
                    if self.spread and not self._mine(conn):
                        break  # another connection's turn: it looks again within 5 ms
                    message = self._outbox.pop(0)
                    envelope_id = message["envelope_id"]
                    self.sent_at[envelope_id] = time.perf_counter()
                    self.delivered_to[envelope_id] = conn.id
                    conn.envelopes.append(envelope_id)
                    try:
                        ws.send(json.dumps(message))
                    except ConnectionClosed:
                        self._outbox.insert(0, message)  # another connection takes it
                        return
            try:
                raw = ws.recv(timeout=0.005)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            body = json.loads(raw)
            with self._lock:
                envelope_id = body.get("envelope_id")
                if envelope_id not in self.sent_at:
                    self.ack_errors.append(str(envelope_id))
                elif envelope_id not in self.acks:
                    self.acks[envelope_id] = (body, time.perf_counter())
                self._lock.notify_all()
