"""Local HTTPS stand-ins for ACR's data plane and ARM, answering with the recorded wire shapes.

The shapes come from ../shared/reference/acr-wire/ (recorded from Azure): the 401 challenge →
/oauth2/exchange → /oauth2/token flow, `/acr/v1` listings paged by a relative `Link` header that
ends in an empty `orderby=`, `{registry, imageName, tag:{…}}` wrappers, 404 TAG_UNKNOWN /
MANIFEST_UNKNOWN bodies without detail, 202 on deletes, and ARM's PATCH long-running operation
(201 + Azure-AsyncOperation → poll {"status": "Succeeded"} → final GET), listCredentials and
regenerateCredential. A trustme certificate makes it HTTPS, as the SDKs require for tokens.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import trustme

ARM_TOKEN = "arm-test-token"  # what the tests' static credential hands out
ACR_PREFIX = "/providers/Microsoft.ContainerRegistry/registries/"


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking 3-part JWT: the SDK only reads `exp` from the payload."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def acr_time(offset: int = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.1234567Z", time.gmtime(1_700_000_000 + offset))


@dataclass
class Tag:
    digest: str
    created: str
    delete_enabled: bool = True
    write_enabled: bool = True


@dataclass
class FakeAcrState:
    repositories: dict[str, dict[str, Tag]] = field(default_factory=dict)
    admin_enabled: bool = True
    passwords: dict[str, str] = field(
        default_factory=lambda: {
            "password": secrets.token_urlsafe(24),
            "password2": secrets.token_urlsafe(24),
        }
    )
    throttle: int = 0  # answer this many next data-plane requests with 429
    fail_status: int | None = None  # answer every data-plane request with this status
    issued: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)


class FakeAcr:
    """One HTTPS server on 127.0.0.1 playing both the registry and management.azure.com."""

    def __init__(
        self,
        *,
        registry_name: str = "testreg",
        subscription: str = "0" * 8 + "-0000-0000-0000-" + "0" * 12,
        resource_group: str = "rg-test",
    ) -> None:
        self.state = FakeAcrState()
        self.registry_name, self.subscription = registry_name, subscription
        self.resource_group = resource_group
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self._lock = threading.Lock()
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
    def login_server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.login_server}"

    def write_ca(self, path: Any) -> str:
        self.ca.cert_pem.write_to_path(str(path))
        return str(path)

    def start(self) -> FakeAcr:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def push(self, repository: str, tag: str, digest: str, *, offset: int = 0) -> None:
        with self._lock:
            self.state.repositories.setdefault(repository, {})[tag] = Tag(digest, acr_time(offset))

    # -- responses -------------------------------------------------------------------------

    def _registry_body(self) -> dict[str, Any]:
        rid = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"{ACR_PREFIX}{self.registry_name}"
        )
        return {
            "sku": {"name": "Premium", "tier": "Premium"},
            "type": "Microsoft.ContainerRegistry/registries",
            "id": rid,
            "name": self.registry_name,
            "location": "eastus",
            "tags": {},
            "properties": {
                "loginServer": self.login_server,
                "creationDate": "2021-12-17T22:41:58.7907023Z",
                "provisioningState": "Succeeded",
                "adminUserEnabled": self.state.admin_enabled,
                "publicNetworkAccess": "Enabled",
                "zoneRedundancy": "Disabled",
                "anonymousPullEnabled": False,
            },
        }

    def _credentials(self) -> dict[str, Any]:
        return {
            "username": self.registry_name,
            "passwords": [{"name": n, "value": v} for n, v in self.state.passwords.items()],
        }

    def _tag_json(self, name: str, tag: Tag) -> dict[str, Any]:
        return {
            "name": name,
            "digest": tag.digest,
            "createdTime": tag.created,
            "lastUpdateTime": tag.created,
            "signed": False,
            "changeableAttributes": {
                "deleteEnabled": tag.delete_enabled,
                "writeEnabled": tag.write_enabled,
                "readEnabled": True,
                "listEnabled": True,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self,
                status: int,
                body: Any = None,
                headers: dict[str, str] | None = None,
                content_type: str = "application/json; charset=utf-8",
            ) -> None:
                data = (
                    b""
                    if body is None
                    else (body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode())
                )
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

            def do_DELETE(self) -> None:
                self._route("DELETE")

            def do_HEAD(self) -> None:
                self._route("HEAD")

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                path, query = parts.path, parse_qs(parts.query)
                body = self._body() if method in ("POST", "PATCH") else b""
                with fake._lock:
                    fake.state.calls.append((method, self.path))
                if path.startswith("/subscriptions/"):
                    return self._arm(method, path, body)
                if path.startswith("/oauth2/"):
                    return self._oauth(path, body)
                return self._data_plane(method, path, query, body)

            # -- ACR token flow ----------------------------------------------------------------

            def _oauth(self, path: str, body: bytes) -> None:
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                now = int(time.time())
                if path == "/oauth2/exchange":
                    if form.get("access_token") != ARM_TOKEN:
                        return self._send(
                            401,
                            {
                                "errors": [
                                    {"code": "UNAUTHORIZED", "message": "authentication required"}
                                ]
                            },
                        )
                    refresh = jwt(
                        {
                            "exp": now + 11700,
                            "iat": now,
                            "iss": "Azure Container Registry",
                            "aud": form.get("service"),
                            "grant_type": "refresh_token",
                        }
                    )
                    return self._send(200, {"refresh_token": refresh})
                access = jwt(
                    {
                        "exp": now + 4500,
                        "iat": now,
                        "aud": form.get("service"),
                        "access": [
                            {"Type": "repository", "Name": "*", "Actions": [form.get("scope", "")]}
                        ],
                    }
                )
                with fake._lock:
                    fake.state.issued.add(access)
                return self._send(200, {"access_token": access})

            def _challenge(self, scope: str) -> None:
                realm = f"https://{fake.login_server}/oauth2/token"
                self._send(
                    401,
                    {
                        "errors": [
                            {
                                "code": "UNAUTHORIZED",
                                "message": "authentication required",
                                "detail": [
                                    {
                                        "Type": scope.split(":")[0],
                                        "Name": scope.split(":")[1],
                                        "Action": scope.split(":")[2],
                                    }
                                ],
                            }
                        ]
                    },
                    headers={
                        "WWW-Authenticate": f'Bearer realm="{realm}",service="{fake.login_server}",'
                        f'scope="{scope}"'
                    },
                )

            # -- data plane ----------------------------------------------------------------

            def _data_plane(self, method: str, path: str, query: dict, body: bytes) -> None:
                state = fake.state
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token not in state.issued:
                    name = "catalog" if "_catalog" in path else "repo"
                    kind = "registry" if name == "catalog" else "repository"
                    action = {
                        "GET": "metadata_read",
                        "PATCH": "metadata_write",
                        "DELETE": "delete",
                    }.get(method, "pull")
                    return self._challenge(f"{kind}:{name}:{'*' if kind == 'registry' else action}")
                if state.fail_status:
                    return self._send(
                        state.fail_status, {"errors": [{"code": "UNKNOWN", "message": "failure"}]}
                    )
                if state.throttle:
                    with fake._lock:
                        state.throttle -= 1
                    return self._send(
                        429,
                        {"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests"}]},
                        headers={"Retry-After": "0"},
                    )
                segments = [unquote(s) for s in path.split("/") if s]
                if segments[:3] == ["acr", "v1", "_catalog"]:
                    names = sorted(state.repositories)
                    return self._page(
                        "/acr/v1/_catalog", names, query, lambda page: {"repositories": page}
                    )
                if segments[:2] == ["acr", "v1"] and "_tags" in segments:
                    at = segments.index("_tags")
                    repo = "/".join(segments[2:at])
                    tags = state.repositories.get(repo)
                    if len(segments) == at + 1:
                        if tags is None:
                            return self._send(
                                404,
                                {
                                    "errors": [
                                        {
                                            "code": "NAME_UNKNOWN",
                                            "message": "repository name not known to registry",
                                        }
                                    ]
                                },
                            )
                        order = query.get("orderby", [""])[0]
                        items = (
                            sorted(
                                tags.items(),
                                key=lambda kv: (kv[1].created, kv[0]),
                                reverse=order == "timedesc",
                            )
                            if order
                            else sorted(tags.items())
                        )
                        rows = [fake._tag_json(n, t) for n, t in items]
                        return self._page(
                            f"/acr/v1/{quote(repo, safe='')}/_tags",
                            rows,
                            query,
                            lambda page: {
                                "registry": fake.login_server,
                                "imageName": repo,
                                "tags": page,
                            },
                            key=lambda row: row["name"],
                        )
                    tag_name = segments[at + 1]
                    tag = (tags or {}).get(tag_name)
                    if tag is None:
                        return self._send(
                            404,
                            {
                                "errors": [
                                    {
                                        "code": "TAG_UNKNOWN",
                                        "message": "the specified tag does not exist",
                                    }
                                ]
                            },
                        )
                    if method == "DELETE":
                        with fake._lock:
                            del tags[tag_name]
                        return self._send(
                            202, headers={"X-Ms-Int-Docker-Content-Digest": tag.digest}
                        )
                    if method == "PATCH":
                        changes = json.loads(body or b"{}")
                        tag.delete_enabled = changes.get("deleteEnabled", tag.delete_enabled)
                        tag.write_enabled = changes.get("writeEnabled", tag.write_enabled)
                    return self._send(
                        200,
                        {
                            "registry": fake.login_server,
                            "imageName": repo,
                            "tag": fake._tag_json(tag_name, tag),
                        },
                    )
                if segments[:2] == ["acr", "v1"] and "_manifests" in segments:
                    at = segments.index("_manifests")
                    repo, digest = "/".join(segments[2:at]), segments[at + 1]
                    tagged = {
                        n: t
                        for n, t in (state.repositories.get(repo) or {}).items()
                        if t.digest == digest
                    }
                    if not tagged:
                        return self._send(
                            404,
                            {
                                "errors": [
                                    {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}
                                ]
                            },
                        )
                    first = next(iter(tagged.values()))
                    return self._send(
                        200,
                        {
                            "registry": fake.login_server,
                            "imageName": repo,
                            "manifest": {
                                "digest": digest,
                                "imageSize": 5325,
                                "createdTime": first.created,
                                "lastUpdateTime": first.created,
                                "architecture": "amd64",
                                "os": "linux",
                                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                "tags": sorted(tagged),
                                "changeableAttributes": {
                                    "deleteEnabled": True,
                                    "writeEnabled": True,
                                    "readEnabled": True,
                                    "listEnabled": True,
                                },
                            },
                        },
                    )
                if segments[:1] == ["v2"] and "manifests" in segments and method == "DELETE":
                    at = segments.index("manifests")
                    repo, digest = "/".join(segments[1:at]), segments[at + 1]
                    tags = state.repositories.get(repo) or {}
                    gone = [n for n, t in tags.items() if t.digest == digest]
                    if not gone:
                        return self._send(
                            404,
                            {
                                "errors": [
                                    {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}
                                ]
                            },
                        )
                    with fake._lock:
                        for name in gone:
                            del tags[name]
                    return self._send(202)
                return self._send(404, b"404 page not found\n", content_type="text/plain")

            def _page(
                self, base: str, items: list, query: dict, wrap: Any, key: Any = lambda item: item
            ) -> None:
                n = int(query.get("n", ["100"])[0])
                last = query.get("last", [None])[0]
                if last is not None:
                    keys = [key(i) for i in items]
                    items = items[keys.index(last) + 1 :] if last in keys else []
                page, rest = items[:n], items[n:]
                headers = {}
                if rest:
                    headers["Link"] = (
                        f'<{base}?last={quote(key(page[-1]), safe="")}&n={n}&orderby=>; rel="next"'
                    )
                return self._send(200, wrap(page), headers=headers)

            # -- ARM -----------------------------------------------------------------------

            def _arm(self, method: str, path: str, body: bytes) -> None:
                if self.headers.get("Authorization") != f"Bearer {ARM_TOKEN}":
                    return self._send(
                        401,
                        {
                            "error": {
                                "code": "InvalidAuthenticationToken",
                                "message": "The access token is invalid.",
                            }
                        },
                    )
                if fake.state.fail_status:
                    return self._send(
                        fake.state.fail_status,
                        {"error": {"code": "InternalServerError", "message": "failure"}},
                    )
                base = (
                    f"/subscriptions/{fake.subscription}/resourceGroups/"
                    f"{fake.resource_group}{ACR_PREFIX}{fake.registry_name}"
                )
                if not path.startswith(base):
                    return self._send(
                        404,
                        {
                            "error": {
                                "code": "ResourceNotFound",
                                "message": "The Resource was not found.",
                            }
                        },
                    )
                rest = path[len(base) :]
                if rest == "" and method == "GET":
                    return self._send(200, fake._registry_body())
                if rest == "" and method == "PATCH":
                    changes = json.loads(body or b"{}").get("properties", {})
                    if "adminUserEnabled" in changes:
                        fake.state.admin_enabled = bool(changes["adminUserEnabled"])
                    operation = (
                        f"https://{fake.login_server}{base}/operationStatuses/"
                        f"registries-{uuid.uuid4()}?api-version=2025-11-01"
                    )
                    updating = fake._registry_body()
                    updating["properties"]["provisioningState"] = "Updating"
                    return self._send(201, updating, headers={"Azure-AsyncOperation": operation})
                if rest.startswith("/operationStatuses/"):
                    return self._send(200, {"status": "Succeeded"})
                if rest == "/listCredentials" and method == "POST":
                    if not fake.state.admin_enabled:
                        return self._send(
                            400,
                            {
                                "error": {
                                    "code": "AdminUserDisabled",
                                    "message": "Admin user is disabled.",
                                }
                            },
                        )
                    return self._send(200, fake._credentials())
                if rest == "/regenerateCredential" and method == "POST":
                    which = json.loads(body or b"{}").get("name")
                    if which not in fake.state.passwords:
                        return self._send(
                            400, {"error": {"code": "InvalidParameter", "message": "bad name"}}
                        )
                    fake.state.passwords[which] = secrets.token_urlsafe(24)
                    return self._send(200, fake._credentials())
                return self._send(404, {"error": {"code": "NotFound", "message": "no such"}})

        return Handler
