"""A local fake of Slack's Web API that records every call, for the real WebClient to talk to.

It answers the methods acr-chatops uses with Slack's response shapes, plus `response_url`
posts (`/response/<id>`). Bound to 127.0.0.1 on a free port; a threading server with a
128-deep listen queue so bursts from the bench do not stall in the kernel.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.usergroups: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}  # method -> Slack error code to answer with
        self.socket_url: str | None = None
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    # -- reading what was called -----------------------------------------------------------

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c.params for c in self.calls if c.method == method]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Block until ``method`` has been called ``count`` times; return those calls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls_to(method)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(
            f"{method} called {len(self.calls_to(method))} times, "
            f"expected {count}; calls: {[c.method for c in self.calls]}"
        )

    def all_text(self) -> str:
        """Every body received, as text: for scanning for secrets."""
        with self._lock:
            return "\n".join(json.dumps(c.params, default=str) for c in self.calls)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- answering -------------------------------------------------------------------------

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method in self.errors:
            return {"ok": False, "error": self.errors[method]}
        ts = f"1700000000.{next(self._ts):06d}"
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "T",
                "user": "acrbot",
                "team_id": "T0001",
                "user_id": "UBOT",
                "bot_id": "BBOT",
            }
        if method == "chat.postMessage":
            return {
                "ok": True,
                "channel": params.get("channel"),
                "ts": ts,
                "message": {"text": params.get("text"), "ts": ts},
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method in ("views.publish", "views.open"):
            return {"ok": True, "view": {"id": "V0001", **(params.get("view") or {})}}
        if method == "usergroups.users.list":
            group = params.get("usergroup")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.usergroups[group]}
        if method == "conversations.replies":
            thread = params.get("ts")
            messages = [
                c.params
                for c in self.calls
                if c.method == "chat.postMessage" and c.params.get("thread_ts") == thread
            ]
            return {"ok": True, "messages": messages, "has_more": False}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        return {"ok": False, "error": "unknown_method"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "view", "users"):
                        if isinstance(params.get(key), str) and params[key][:1] in "[{":
                            params[key] = json.loads(params[key])
                if self.path.startswith("/api/"):
                    method = self.path[len("/api/") :].split("?")[0]
                    answer = fake._answer(method, params)
                else:
                    method = "response_url:" + self.path.rsplit("/", 1)[-1]
                    answer = {"ok": True}
                with fake._lock:
                    fake.calls.append(ApiCall(method, params, dict(self.headers)))
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
