"""A reverse HTTP proxy for fault injection, in front of a real server (the registry).

    proxy = FaultProxy(registry.url).start()        # http://127.0.0.1:FREE_PORT
    proxy.respond("GET", 429, retry_after=2, times=1)
    proxy.delay("DELETE", 1.0, path=r"/manifests/")  # the DELETE reaches upstream 1 s late
    proxy.delay_response("DELETE", 1.0)              # upstream now, the answer 1 s late
    proxy.drop("GET", path=r"/tags/list$", times=1)  # close the connection, no answer
    ...
    proxy.count("DELETE"), proxy.upstream_statuses, proxy.wait_forwarded("DELETE")
    proxy.stop()

Rules are tried in the order they were added; the first that matches a request (method, or "*",
and ``path``: `re.search` on the request target, query included) and has uses left applies to
it, and only it. ``times=None`` means every matching request. Rules and records may be changed
and read from any thread while the proxy runs.

Requests are forwarded with http.client on one upstream connection per client connection, so
headers go through as sent (no Accept or Accept-Encoding added), Host included: the registry
builds its Location URLs from Host, so they point back at the proxy. Hop-by-hop headers are
dropped; bodies stream both ways (chunked request bodies are re-chunked, a response without
Content-Length is chunked to the client); HEAD, 204 and 304 answers carry no body; client
connections are kept alive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
NO_BODY_STATUSES = frozenset({204, 304})
ERROR_CODES = {429: "TOOMANYREQUESTS", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 503: "UNAVAILABLE"}
PIECE = 64 * 1024


@dataclass
class Rule:
    """One fault. ``action`` is "delay", "delay_response", "respond" or "drop"."""

    action: str
    method: str
    path: re.Pattern[str] | None
    times: int | None
    seconds: float = 0.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    after_forward: bool = False
    applied: int = 0

    def matches(self, method: str, target: str) -> bool:
        return (
            (self.times is None or self.applied < self.times)
            and self.method in ("*", method)
            and (self.path is None or self.path.search(target) is not None)
        )


@dataclass(frozen=True)
class Exchange:
    """One request the proxy received: what it did, and the status (upstream or injected)."""

    method: str
    path: str
    target: str
    fault: str | None  # the rule's action, or None when passed through untouched
    forwarded: bool
    status: int | None  # None: no answer (dropped, or the upstream could not be reached)
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    def __init__(self, upstream: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FaultProxy forwards to http:// URLs, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.timeout = timeout
        self._lock = threading.Condition()
        self._rules: list[Rule] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._exchanges: list[Exchange] = []
        self._connections: set[socket.socket] = set()
        self._accepted = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.url = ""

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        server = _Server(("127.0.0.1", 0), handler, bind_and_activate=False)
        server.daemon_threads = True
        server.request_queue_size = 128
        server.server_bind()
        server.server_activate()
        self._server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down: wake delayed requests, close client connections."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules -----------------------------------------------------------------------------

    def delay(
        self, method: str, seconds: float, *, path: str | None = None, times: int | None = None
    ) -> Rule:
        """Hold matching requests ``seconds`` before forwarding them (even if the client has
        given up meanwhile: the upstream still gets the request)."""
        return self._add(Rule("delay", method.upper(), _compile(path), times, seconds=seconds))

    def delay_response(
        self, method: str, seconds: float, *, path: str | None = None, times: int | None = None
    ) -> Rule:
        """Forward matching requests at once, then hold the upstream's answer ``seconds``."""
        return self._add(
            Rule("delay_response", method.upper(), _compile(path), times, seconds=seconds)
        )

    def respond(
        self,
        method: str,
        status: int,
        *,
        path: str | None = None,
        times: int | None = None,
        retry_after: float | str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> Rule:
        """Answer ``status`` (after ``delay`` seconds) without forwarding. The default body is
        a distribution-style JSON error; ``retry_after`` sets the Retry-After header."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = _retry_after(retry_after)
        if body is None:
            code = ERROR_CODES.get(status, "UNKNOWN")
            message = f"injected {status} by the fault proxy"
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            extra.setdefault("Content-Type", "application/json; charset=utf-8")
        return self._add(
            Rule(
                "respond",
                method.upper(),
                _compile(path),
                times,
                seconds=delay,
                status=status,
                headers=extra,
                body=body,
            )
        )

    def drop(
        self,
        method: str,
        *,
        path: str | None = None,
        times: int | None = None,
        after_forward: bool = False,
        delay: float = 0.0,
    ) -> Rule:
        """Close the client connection without an answer (after ``delay`` seconds); with
        ``after_forward`` the request reaches the upstream first and only its answer is lost."""
        return self._add(
            Rule(
                "drop",
                method.upper(),
                _compile(path),
                times,
                seconds=delay,
                after_forward=after_forward,
            )
        )

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Drop every rule (records stay; see `reset`)."""
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """Drop every rule and forget every record."""
        with self._lock:
            self._rules.clear()
            self._counts.clear()
            self._exchanges.clear()
            self._accepted = 0

    # -- records ---------------------------------------------------------------------------

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        """Requests received per (method, path without query), faulted ones included."""
        with self._lock:
            return Counter(self._counts)

    def count(self, method: str = "*", path: str | None = None) -> int:
        """Requests received for ``method`` ("*": any) and exactly ``path`` (None: any)."""
        method = method.upper()
        with self._lock:
            return sum(
                n
                for (m, p), n in self._counts.items()
                if method in ("*", m) and (path is None or p == path)
            )

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    @property
    def upstream_statuses(self) -> list[tuple[str, str, int]]:
        """(method, path, upstream status) of each request the upstream answered, in order."""
        with self._lock:
            return [
                (e.method, e.path, e.status)
                for e in self._exchanges
                if e.forwarded and e.status is not None
            ]

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted: fewer than requests when clients keep alive."""
        with self._lock:
            return self._accepted

    def wait_forwarded(
        self, method: str = "*", path: str | None = None, *, count: int = 1, timeout: float = 5.0
    ) -> bool:
        """Wait until the upstream has answered ``count`` requests for ``method`` (and exactly
        ``path``). Returns False on timeout."""
        method = method.upper()

        def done() -> bool:
            return (
                sum(
                    1
                    for e in self._exchanges
                    if e.forwarded
                    and e.status is not None
                    and method in ("*", e.method)
                    and (path is None or e.path == path)
                )
                >= count
            )

        with self._lock:
            return self._lock.wait_for(done, timeout=timeout)

    # -- used by the handler ---------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _received(self, method: str, path: str, target: str) -> Rule | None:
        with self._lock:
            self._counts[method, path] += 1
            for rule in self._rules:
                if rule.matches(method, target):
                    rule.applied += 1
                    return rule
            return None

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)
            self._lock.notify_all()

    def _connected(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            self._accepted += 1

    def _disconnected(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the proxy stops meanwhile; True when it should carry on."""
        return not self._stopping.wait(seconds) if seconds > 0 else True


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that died mid-connection (a SIGKILLed bot) is not the proxy's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"
    upstream: http.client.HTTPConnection | None = None
    upstream_used = False

    def setup(self) -> None:
        super().setup()
        self.proxy._connected(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.proxy._disconnected(self.connection)
            if self.upstream is not None:
                self.upstream.close()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_one(self) -> None:
        try:
            self._handle_one()
        except OSError:  # The client went away mid-request.
            self._abort()

    def _handle_one(self) -> None:
        method, target = self.command, self.path
        path = urlsplit(target).path
        rule = self.proxy._received(method, path, target)
        action = rule.action if rule else None

        def record(forwarded: bool, status: int | None) -> None:
            self.proxy._record(Exchange(method, path, target, action, forwarded, status))

        body = self._request_body()
        if action == "respond" or (action == "drop" and not rule.after_forward):
            for _ in body:  # Read the request out, so that the close is a clean one.
                pass
            if not self.proxy._sleep(rule.seconds) or action == "drop":
                record(False, None)
                return self._abort()
            record(False, rule.status)
            headers = [*rule.headers.items(), ("Content-Length", str(len(rule.body)))]
            return self._answer(rule.status, None, headers, rule.body, method)
        if action == "delay" and not self.proxy._sleep(rule.seconds):
            record(False, None)
            return self._abort()
        if action not in ("delay_response", "drop"):
            return self._forward(method, target, body, record)
        answer = self._exchange(method, target, body, record)
        if not self.proxy._sleep(rule.seconds) or action == "drop":
            return self._abort()
        if answer is None:
            return self._bad_gateway(method)
        return self._answer(*answer, method)

    # -- the request -----------------------------------------------------------------------

    def _request_body(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunks()
        length = int(self.headers.get("Content-Length") or 0)
        return self._pieces(length)

    def _pieces(self, length: int) -> Iterator[bytes]:
        while length > 0:
            piece = self.rfile.read(min(PIECE, length))
            if not piece:
                raise ConnectionError("client closed the connection mid-body")
            length -= len(piece)
            yield piece

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield from self._pieces(size)
            self.rfile.readline(1024)

    def _has_body(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower() or bool(
            int(self.headers.get("Content-Length") or 0)
        )

    def _send_upstream(self, method: str, target: str, body: Iterator[bytes]) -> None:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection(
                self.proxy.upstream_host, self.proxy.upstream_port, timeout=self.proxy.timeout
            )
            self.upstream_used = False
        conn = self.upstream
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if "Host" not in self.headers:
            conn.putheader("Host", f"{self.proxy.upstream_host}:{self.proxy.upstream_port}")
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or (chunked and lower == "content-length"):
                continue
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in body:
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            conn.send(b"0\r\n\r\n")

    def _upstream_response(
        self, method: str, target: str, body: Iterator[bytes]
    ) -> http.client.HTTPResponse:
        """Send the request upstream; retry once on a kept-alive connection the upstream had
        closed meanwhile, when there is no body that would have to be sent again."""
        retry = self.upstream is not None and self.upstream_used and not self._has_body()
        try:
            self._send_upstream(method, target, body)
            response = self.upstream.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._close_upstream()
            if not retry:
                raise
            self._send_upstream(method, target, iter(()))
            response = self.upstream.getresponse()
        self.upstream_used = True
        return response

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def _exchange(self, method, target, body, record):
        """Forward and read the whole answer (for faults that hold or lose it)."""
        try:
            response = self._upstream_response(method, target, body)
            content = response.read()
        except (OSError, http.client.HTTPException):
            self._close_upstream()
            record(True, None)
            return None
        record(True, response.status)
        if response.will_close:
            self._close_upstream()
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        if (
            not self._bodyless(method, response.status)
            and response.getheader("Content-Length") is None
        ):
            headers.append(("Content-Length", str(len(content))))
        return response.status, response.reason, headers, content

    def _forward(self, method, target, body, record) -> None:
        """Forward and stream the answer back as it comes."""
        try:
            response = self._upstream_response(method, target, body)
        except (OSError, http.client.HTTPException):
            self._close_upstream()
            record(True, None)
            self._bad_gateway(method)
            return
        record(True, response.status)
        bodyless = self._bodyless(method, response.status)
        length = response.getheader("Content-Length")
        chunked = not bodyless and length is None and self.request_version == "HTTP/1.1"
        try:
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif not bodyless and length is None:
                self.close_connection = True  # HTTP/1.0 client: the close ends the body
            self.end_headers()
            if not bodyless:
                while piece := response.read1(PIECE):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            response.read()  # Marks the answer done (read1 leaves an empty one open).
            self.wfile.flush()
        except OSError:  # The client left (or the upstream broke off mid-body).
            self._close_upstream()
            self.close_connection = True
            return
        if response.will_close:
            self._close_upstream()

    # -- the answer ------------------------------------------------------------------------

    @staticmethod
    def _bodyless(method: str, status: int) -> bool:
        return method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200

    def _answer(self, status, reason, headers, content, method) -> None:
        try:
            self.send_response_only(status, reason)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if not self._bodyless(method, status):
                self.wfile.write(content)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _bad_gateway(self, method: str) -> None:
        message = "fault proxy: no answer from the upstream"
        content = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": message}]}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(content)))]
        self._answer(502, None, headers, content, method)

    def _abort(self) -> None:
        """Close without answering: the client sees the connection end (no status line)."""
        self.close_connection = True
        self._close_upstream()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_one


def _compile(path: str | None) -> re.Pattern[str] | None:
    return re.compile(path) if path is not None else None


def _retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
