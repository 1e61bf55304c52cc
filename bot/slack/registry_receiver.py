"""`POST /registry/events`: registry notifications in, stored, then 2xx.

Served on the port `acrbot serve` answers Slack on (HTTP mode) or, in Socket Mode, on
`--events-port`. Every request must carry `Authorization: Bearer <secret>` (`[events]
secret_env`), compared in constant time; anything else is 401 before the body is read, and
changes nothing. A body larger than `[events] max_body` is 413, unread.

Stored before the 2xx: senders retry until they get one (distribution in memory, Event Grid
for 24 h), so an event acknowledged is an event in the database. One writer thread parses
and stores what arrives, many bodies per transaction (a group commit): a burst of 10,000
events costs tens of write transactions, not 10,000, so the Slack acks that share the
database (the job queue) and this process's event loop are barely touched
(bench/events.py measures acks with and without a burst).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from bot.core.event_rules import EventsConfig, require_secret
from bot.core.registry_events import EventFormatError, Parsed, parse
from bot.state.dbhealth import HEALTH
from bot.state.registry_events import EventLog

log = logging.getLogger(__name__)
EVENTS_PATH = "/registry/events"
# Bodies one transaction stores at most: each event costs ~40 µs inside it, so the write lock
# an ack may wait for is held a few milliseconds at most.
MAX_BATCH = 100
Send = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Stored:
    parsed: Parsed
    new: int


class EventWriter:
    """One thread that parses bodies and stores their events, a batch per transaction."""

    def __init__(self, log_: EventLog, *, ring: Callable[[], None] = lambda: None) -> None:
        self._log = log_
        self._ring = ring
        self._queue: queue.Queue[tuple[bytes, Future[Stored]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="acr-events-in", daemon=True)
        self._thread.start()

    def submit(self, body: bytes) -> Future[Stored]:
        future: Future[Stored] = Future()
        self._queue.put((body, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while True:  # everything that is waiting, up to a bound
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
            self._store(batch)

    def _store(self, batch: list[tuple[bytes, Future[Stored]]]) -> None:
        parsed: list[tuple[Parsed, Future[Stored]]] = []
        for body, future in batch:
            try:
                parsed.append((parse(body), future))
            except EventFormatError as exc:
                future.set_exception(exc)
        events = [e for p, _ in parsed for e in p.events]
        try:
            counts = self._log.record_bodies([p.events for p, _ in parsed])
        except Exception as exc:  # the database is locked or full: 503, the sender retries
            if not HEALTH.guard(exc, doing="store registry events"):
                log.exception("could not store %s registry event(s)", len(events))
            for _, future in parsed:
                future.set_exception(exc)
            return
        for (p, future), new in zip(parsed, counts, strict=True):
            future.set_result(Stored(p, new))
        if any(counts):
            self._ring()


class Receiver:
    """The ASGI side: authenticate, bound, hand the body to the writer, answer."""

    def __init__(self, config: EventsConfig, writer: EventWriter) -> None:
        self._secret = f"Bearer {require_secret(config)}".encode()
        self.max_body = config.max_body
        self.writer = writer

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        return hmac.compare_digest(given, self._secret)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        headers = dict(scope["headers"])
        method = scope["method"]
        if method not in ("POST", "OPTIONS"):
            await _answer(send, 405, {"error": "use POST"})
            return
        if not self.authorized(headers):
            await _answer(send, 401, {"error": "missing or wrong Authorization: Bearer secret"})
            return
        if method == "OPTIONS":  # CloudEvents webhook validation (abuse protection)
            origin = headers.get(b"webhook-request-origin")
            extra = [(b"webhook-allowed-origin", origin)] if origin else []
            extra.append((b"webhook-allowed-rate", b"*"))
            await _answer(send, 200, {}, extra=extra)
            return
        body = await read_body(scope, receive, self.max_body)
        if body is None:
            await _answer(send, 413, {"error": f"request body larger than {self.max_body} bytes"})
            return
        try:
            stored = await asyncio.wrap_future(self.writer.submit(body))
        except EventFormatError as exc:
            await _answer(send, 400, {"error": str(exc)})
            return
        except Exception:
            await _answer(send, 503, {"error": "cannot store events now; send them again"})
            return
        if stored.parsed.validation_code is not None:  # Event Grid subscription handshake
            await _answer(send, 200, {"validationResponse": stored.parsed.validation_code})
            return
        await _answer(
            send,
            200,
            {
                "stored": stored.new,
                "duplicates": len(stored.parsed.events) - stored.new,
                "ignored": stored.parsed.ignored,
            },
        )


async def read_body(scope: dict[str, Any], receive: Any, max_body: int) -> bytes | None:
    """The body, or None when it is larger than ``max_body`` (from Content-Length before
    reading, or as soon as a chunked body grows past it)."""
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body):
        return None
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(chunks)
        chunks.extend(message.get("body", b""))
        if len(chunks) > max_body:
            return None
        if not message.get("more_body", False):
            return bytes(chunks)


async def _answer(
    send: Send, status: int, body: dict[str, Any], *, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def events_only_app(receiver: Receiver) -> Any:
    """The ASGI app of `--events-port` (Socket Mode has no HTTP port of its own)."""

    async def application(scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == EVENTS_PATH:
            await receiver(scope, receive, send)
        elif scope["path"] == "/healthz" and scope["method"] == "GET":
            await _answer(send, 200, {"ok": True})
        else:
            await _answer(send, 404, {"error": "not found"})

    return application
