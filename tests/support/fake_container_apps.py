"""A strict fake of ARM's Microsoft.App provider for azure-mgmt-appcontainers: Container Apps,
their revisions, and Container Apps jobs, with ARM's wire shapes.

HTTPS with its own CA (trustme; the SDK refuses bearer tokens over http), a bearer token
(`Authorization: Bearer <token>`, else 401 with ARM's `AuthenticationFailed` body), the
`api-version` query parameter required (400 `MissingApiVersionParameter`), lists paged by an
absolute `nextLink` (``page`` items a page, small by default so tests cross pages), a
subscription or resource group the identity may not read → 403 `AuthorizationFailed`, an
unknown app → 404 `ResourceNotFound`, anything but GET → 405.

    GET /subscriptions/S/providers/Microsoft.App/containerApps
    GET /subscriptions/S/resourceGroups/RG/providers/Microsoft.App/containerApps
    GET /subscriptions/S/resourceGroups/RG/providers/Microsoft.App/containerApps/APP/revisions
    GET /subscriptions/S/providers/Microsoft.App/jobs
    GET /subscriptions/S/resourceGroups/RG/providers/Microsoft.App/jobs
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import trustme

from tests.support.fake_acr import ARM_TOKEN

SUB = "00000000-0000-0000-0000-000000000000"
_PATH = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+))?/providers/Microsoft\.App/"
    r"(?P<kind>containerApps|jobs)(?:/(?P<app>[^/]+)/(?P<revisions>revisions))?$",
    re.IGNORECASE,
)


@dataclass
class App:
    name: str
    resource_group: str
    revisions: list[tuple[str, bool, list[str], list[str]]] = field(default_factory=list)
    # (revision name, active, images, init images)


@dataclass
class Job:
    name: str
    resource_group: str
    images: list[str]
    init: list[str] = field(default_factory=list)
    cron: str = "0 2 * * *"


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _containers(images: list[str], prefix: str = "c") -> list[dict]:
    return [
        {"name": f"{prefix}{i}", "image": img, "resources": {"cpu": 0.5, "memory": "1Gi"}}
        for i, img in enumerate(images)
    ]


class FakeContainerApps:
    def __init__(self, *, subscription: str = SUB, page: int = 2) -> None:
        self.subscription, self.page = subscription, page
        self.apps: list[App] = []
        self.jobs: list[Job] = []
        self.forbidden: set[str] = set()  # "subscription" or resource group names
        self.requests: list[str] = []
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> FakeContainerApps:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_ca(self, path: Any) -> str:
        self.ca.cert_pem.write_to_path(str(path))
        return str(path)

    # -- shapes --------------------------------------------------------------------------

    def _id(self, rg: str, kind: str, name: str) -> str:
        scope = f"/subscriptions/{self.subscription}/resourceGroups/{rg}"
        return f"{scope}/providers/Microsoft.App/{kind}/{name}"

    def _app(self, app: App) -> dict:
        latest = app.revisions[-1][0] if app.revisions else None
        images = app.revisions[-1][2] if app.revisions else []
        return {
            "id": self._id(app.resource_group, "containerApps", app.name),
            "name": app.name,
            "type": "Microsoft.App/containerApps",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "latestRevisionName": latest,
                "configuration": {"activeRevisionsMode": "Single"},
                "template": {"containers": _containers(images)},
            },
        }

    def _revision(self, app: App, rev: tuple[str, bool, list[str], list[str]]) -> dict:
        name, active, images, init = rev
        template: dict[str, Any] = {"containers": _containers(images)}
        if init:
            template["initContainers"] = _containers(init, "init")
        return {
            "id": self._id(app.resource_group, "containerApps", app.name) + f"/revisions/{name}",
            "name": name,
            "type": "Microsoft.App/containerapps/revisions",
            "properties": {
                "createdTime": "2026-01-01T00:00:00+00:00",
                "active": active,
                "replicas": 1 if active else 0,
                "trafficWeight": 100 if active else 0,
                "healthState": "Healthy",
                "provisioningState": "Provisioned",
                "template": template,
            },
        }

    def _job(self, job: Job) -> dict:
        template: dict[str, Any] = {"containers": _containers(job.images)}
        if job.init:
            template["initContainers"] = _containers(job.init, "init")
        return {
            "id": self._id(job.resource_group, "jobs", job.name),
            "name": job.name,
            "type": "Microsoft.App/jobs",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "configuration": {
                    "triggerType": "Schedule",
                    "replicaTimeout": 1800,
                    "scheduleTriggerConfig": {"cronExpression": job.cron},
                },
                "template": template,
            },
        }

    # -- HTTP ----------------------------------------------------------------------------

    def _answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        match = _PATH.match(path)
        if match is None:
            return 404, _error("InvalidResourceType", f"no route for {path}")
        if "api-version" not in query:
            return 400, _error(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        sub, rg, kind, app_name = match["sub"], match["rg"], match["kind"], match["app"]
        if sub != self.subscription:
            return 404, _error(
                "SubscriptionNotFound", f"The subscription '{sub}' could not be found."
            )
        if "subscription" in self.forbidden or (rg and rg in self.forbidden):
            return 403, _error(
                "AuthorizationFailed",
                "The client 'acrbot' does not have authorization to perform action "
                f"'Microsoft.App/{kind}/read' over scope '{path}' or the scope is invalid.",
            )
        if match["revisions"]:
            app = next(
                (a for a in self.apps if a.name == app_name and a.resource_group == rg), None
            )
            if app is None:
                return 404, _error("ResourceNotFound", f"containerApps/{app_name} not found")
            items = [self._revision(app, r) for r in app.revisions]
        elif kind.lower() == "containerapps":
            items = [self._app(a) for a in self.apps if rg is None or a.resource_group == rg]
        else:
            items = [self._job(j) for j in self.jobs if rg is None or j.resource_group == rg]
        start = int(query.get("$skiptoken", ["0"])[0])
        body: dict[str, Any] = {"value": items[start : start + self.page]}
        if start + self.page < len(items):
            params = {"api-version": query["api-version"][0], "$skiptoken": start + self.page}
            body["nextLink"] = f"{self.url}{path}?{urlencode(params)}"
        return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-ms-request-id", "00000000-0000-0000-0000-000000000001")
                self.end_headers()
                self.wfile.write(data)

            def _any(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append(self.command + " " + parts.path)
                if self.headers.get("Authorization") != f"Bearer {ARM_TOKEN}":
                    return self._send(401, _error("AuthenticationFailed", "Authentication failed."))
                if self.command != "GET":
                    return self._send(405, _error("MethodNotAllowed", "not allowed"))
                self._send(*fake._answer(parts.path, parse_qs(parts.query)))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler
