"""A strict fake Kubernetes API server: HTTPS with its own CA (trustme), a bearer token, list
endpoints paged as the real one pages, the real objects' JSON shapes.

What it refuses, as kube-apiserver does:
- no or a wrong `Authorization: Bearer` → 401 `Status` (reason Unauthorized);
- a kind in ``forbidden`` → 403 `Status` ("pods is forbidden: User … cannot list resource …
  at the cluster scope", reason Forbidden);
- a `continue` token older than ``continue_ttl`` seconds, or any issued before `expire()` →
  410 `Status` (reason Expired, the real message): the client must restart its list;
- anything but GET on a known list path → 405; an unknown path → 404.

Lists: `/api/v1/pods`, `/apis/apps/v1/{replicasets,deployments,statefulsets,daemonsets}`,
`/apis/batch/v1/{jobs,cronjobs}`, and the `/namespaces/NS/…` forms. `limit` pages (any
limit is honoured, as the real server does); `continue` is an opaque base64 token carrying the
list's resourceVersion and the next key.

Builders for the objects (`pod`, `replicaset`, `deployment`, `cronjob`, …) return the JSON
shapes the API server sends; `kubeconfig()` writes a kubeconfig file for the real client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

GROUPS = {
    "pods": ("/api/v1", "PodList", "v1"),
    "replicasets": ("/apis/apps/v1", "ReplicaSetList", "apps/v1"),
    "deployments": ("/apis/apps/v1", "DeploymentList", "apps/v1"),
    "statefulsets": ("/apis/apps/v1", "StatefulSetList", "apps/v1"),
    "daemonsets": ("/apis/apps/v1", "DaemonSetList", "apps/v1"),
    "jobs": ("/apis/batch/v1", "JobList", "batch/v1"),
    "cronjobs": ("/apis/batch/v1", "CronJobList", "batch/v1"),
}
EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)


def _status(code: int, reason: str, message: str, kind: str | None = None) -> dict:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if kind:
        body["details"] = {"kind": kind}
    return body


class FakeKube:
    """The server; ``objects[plural]`` is the list it serves (sorted by namespace/name)."""

    def __init__(self, *, token: str = "test-token-kube") -> None:
        self.token = token
        self.objects: dict[str, list[dict]] = {k: [] for k in GROUPS}
        self.forbidden: set[str] = set()
        self.continue_ttl = 300.0
        self.expire_next = 0  # the next N requests carrying a continue token answer 410
        self.requests: list[tuple[str, str]] = []  # (path, query)
        self.resource_version = 1
        self._epoch = 0  # tokens issued before expire() are 410
        self._encoding: dict[int, tuple[dict, bytes]] = {}
        self._connections: set[Any] = set()
        self._lock = threading.Lock()
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.request_queue_size = 64
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

    def start(self) -> FakeKube:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down as a dead API server is: no listener, and every kept-alive connection cut
        (a client's pool would otherwise keep talking to the handler threads)."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
            self._connections.clear()

    def add(self, plural: str, *objs: dict) -> None:
        with self._lock:
            self.objects[plural] += objs
            self.objects[plural].sort(
                key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            )
            self.resource_version += 1

    def expire(self) -> None:
        """Every continue token issued so far answers 410 Gone from now on."""
        with self._lock:
            self._epoch += 1

    def kubeconfig(self, path: Path, *, context: str = "test", token: str | None = None) -> Path:
        """A kubeconfig file naming this server, its CA (inline) and a bearer token."""
        ca = base64.b64encode(self.ca.cert_pem.bytes()).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "fake", "cluster": {"server": self.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "bot", "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "bot"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(doc))  # JSON is YAML
        return path

    # -- the HTTP side -----------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str | None] | None:
        for plural, (prefix, _, _) in GROUPS.items():
            if path == f"{prefix}/{plural}":
                return plural, None
            head = f"{prefix}/namespaces/"
            if path.startswith(head) and path.endswith(f"/{plural}"):
                ns = path[len(head) : -len(plural) - 1]
                if ns and "/" not in ns:
                    return plural, ns
        return None

    def _list(
        self, plural: str, ns: str | None, query: dict[str, list[str]]
    ) -> tuple[int, dict | bytes]:
        if plural in self.forbidden:
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            group = GROUPS[plural][2].split("/")[0] if "/" in GROUPS[plural][2] else ""
            return 403, _status(
                403,
                "Forbidden",
                f'{plural} is forbidden: User "system:serviceaccount:acrbot:acrbot" cannot list '
                f'resource "{plural}" in API group "{group}" {scope}',
                plural,
            )
        limit = int(query.get("limit", ["0"])[0] or 0)
        if limit < 0:
            return 400, _status(400, "BadRequest", "limit must be non-negative")
        start = 0
        with self._lock:
            rv = self.resource_version
            if "continue" in query:
                try:
                    token = json.loads(base64.b64decode(query["continue"][0]))
                    epoch, issued, start, rv = token["e"], token["t"], token["o"], token["rv"]
                except Exception:
                    return 400, _status(400, "BadRequest", "continue key is not valid")
                if self.expire_next > 0:
                    self.expire_next -= 1
                    return 410, _status(410, "Expired", EXPIRED)
                if epoch != self._epoch or time.monotonic() - issued > self.continue_ttl:
                    return 410, _status(410, "Expired", EXPIRED)
            items = [
                o
                for o in self.objects[plural]
                if ns is None or o["metadata"].get("namespace") == ns
            ]
            epoch = self._epoch
        end = len(items) if not limit else min(len(items), start + limit)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if end < len(items):
            token = {"e": epoch, "t": time.monotonic(), "o": end, "rv": rv}
            meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        _, kind, api_version = GROUPS[plural]
        head = json.dumps({"kind": kind, "apiVersion": api_version, "metadata": meta})
        # Each object is encoded once (objects are not changed once added): a page costs a
        # join, so a bench measures the client, not this server's json.dumps.
        page = b",".join(self._encoded(o) for o in items[start:end])
        return 200, head[:-1].encode() + b',"items":[' + page + b"]}"

    def _encoded(self, obj: dict) -> bytes:
        key = id(obj)
        found = self._encoding.get(key)
        if found is None or found[0] is not obj:
            found = self._encoding[key] = (obj, json.dumps(obj, separators=(",", ":")).encode())
        return found[1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def _send(self, code: int, body: dict | bytes) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _any(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append((parts.path, parts.query))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                route = fake._route(parts.path)
                if route is None:
                    return self._send(
                        404,
                        _status(
                            404, "NotFound", "the server could not find the requested resource"
                        ),
                    )
                if self.command != "GET":
                    return self._send(405, _status(405, "MethodNotAllowed", "method not allowed"))
                code, body = fake._list(*route, parse_qs(parts.query))
                self._send(code, body)

            do_GET = do_POST = do_DELETE = do_PUT = _any

        return Handler


# -- the objects' JSON shapes ----------------------------------------------------------------


def _meta(name: str, namespace: str, owner: tuple[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "resourceVersion": "1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app": name.split("-")[0]},
    }
    if owner is not None:
        kind, owner_name = owner
        meta["ownerReferences"] = [
            {
                "apiVersion": "batch/v1" if kind in ("Job", "CronJob") else "apps/v1",
                "kind": kind,
                "name": owner_name,
                "uid": f"uid-{namespace}-{owner_name}",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def _pod_spec(images: list[str], init: list[str] = (), ephemeral: list[str] = ()) -> dict:
    spec: dict[str, Any] = {
        "containers": [
            {"name": f"c{i}", "image": img, "imagePullPolicy": "IfNotPresent", "resources": {}}
            for i, img in enumerate(images)
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
    }
    if init:
        spec["initContainers"] = [{"name": f"init{i}", "image": img} for i, img in enumerate(init)]
    if ephemeral:
        spec["ephemeralContainers"] = [
            {"name": f"debug{i}", "image": img} for i, img in enumerate(ephemeral)
        ]
    return spec


def _template(images: list[str], init: list[str] = ()) -> dict:
    return {"metadata": {"labels": {"app": "x"}}, "spec": _pod_spec(images, init)}


def pod(
    name: str,
    namespace: str,
    images: list[str],
    *,
    image_ids: list[str] | None = None,
    init: list[str] = (),
    ephemeral: list[str] = (),
    owner: tuple[str, str] | None = None,
) -> dict:
    """A running Pod; ``image_ids`` are the `status.containerStatuses[].imageID` (the digest
    the node pulled, `docker-pullable://host/repo@sha256:…`), one per container."""
    ids = image_ids or [""] * len(images)
    return {
        "metadata": _meta(name, namespace, owner),
        "spec": {**_pod_spec(images, init, ephemeral), "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [
                {
                    "name": f"c{i}",
                    "image": img,
                    "imageID": ids[i],
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
                for i, img in enumerate(images)
            ],
        },
    }


def replicaset(
    name: str,
    namespace: str,
    images: list[str],
    *,
    replicas: int = 0,
    deployment: str | None = None,
) -> dict:
    return {
        "metadata": _meta(name, namespace, ("Deployment", deployment) if deployment else None),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": _template(images),
        },
        "status": {"replicas": replicas, "observedGeneration": 1},
    }


def _workload(kind_spec: dict, name: str, namespace: str) -> dict:
    return {"metadata": _meta(name, namespace), "spec": kind_spec, "status": {}}


def deployment(name: str, namespace: str, images: list[str], *, replicas: int = 1) -> dict:
    return _workload(
        {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": _template(images),
        },
        name,
        namespace,
    )


def statefulset(name: str, namespace: str, images: list[str]) -> dict:
    return _workload(
        {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": "x"}},
            "template": _template(images),
        },
        name,
        namespace,
    )


def daemonset(name: str, namespace: str, images: list[str]) -> dict:
    return _workload(
        {"selector": {"matchLabels": {"app": "x"}}, "template": _template(images)}, name, namespace
    )


def job(name: str, namespace: str, images: list[str]) -> dict:
    spec = _template(images)
    spec["spec"]["restartPolicy"] = "Never"
    return _workload({"backoffLimit": 6, "template": spec}, name, namespace)


def cronjob(name: str, namespace: str, images: list[str], *, schedule: str = "0 2 * * *") -> dict:
    spec = _template(images)
    spec["spec"]["restartPolicy"] = "OnFailure"
    return _workload(
        {"schedule": schedule, "jobTemplate": {"spec": {"template": spec}}, "suspend": False},
        name,
        namespace,
    )
