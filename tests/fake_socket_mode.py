"""A local stand-in for Slack's Socket Mode WebSocket endpoint.

It speaks the real protocol to slack_sdk's built-in client: `hello` on connect, envelopes
(`slash_commands`, `interactive`, `events_api`) the test queues, acks matched by envelope_id,
and `disconnect` to make the client reconnect through apps.connections.open.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    def __init__(self) -> None:
        self.connections = 0
        self.acks: dict[str, tuple[dict[str, Any], float]] = {}
        self.sent_at: dict[str, float] = {}
        self._outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket=test"

    def start(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def send(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        envelope_id = str(uuid.uuid4())
        self._outbox.put(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind == "slash_commands",
                **extra,
            }
        )
        return envelope_id

    def disconnect(self) -> None:
        self._outbox.put(
            {
                "type": "disconnect",
                "reason": "refresh_requested",
                "debug_info": {"host": "applink-test"},
            }
        )

    def wait_ack(self, envelope_id: str, timeout: float = 10) -> tuple[dict[str, Any], float]:
        """The ack's body and the seconds from sending the envelope to receiving the ack."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if envelope_id in self.acks:
                    body, at = self.acks[envelope_id]
                    return body, at - self.sent_at[envelope_id]
            time.sleep(0.002)
        raise AssertionError(f"no ack for {envelope_id}")

    def wait_connections(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.connections < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.connections >= count, f"{self.connections} connections, expected {count}"

    def _handle(self, ws: ServerConnection) -> None:
        with self._lock:
            self.connections += 1
        ws.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "connection_info": {"app_id": "A0001"},
                    "debug_info": {"host": "applink-test", "approximate_connection_time": 18060},
                }
            )
        )
        while True:
            try:
                while True:
                    message = self._outbox.get_nowait()
                    if "envelope_id" in message:
                        self.sent_at[message["envelope_id"]] = time.perf_counter()
                    ws.send(json.dumps(message))
                    if message["type"] == "disconnect":
                        return
            except queue.Empty:
                pass
            try:
                raw = ws.recv(timeout=0.005)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            body = json.loads(raw)
            if "envelope_id" in body:
                with self._lock:
                    self.acks[body["envelope_id"]] = (body, time.perf_counter())
