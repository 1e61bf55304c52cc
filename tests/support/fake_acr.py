"""Local HTTPS stand-ins for ACR's data plane and ARM, answering with the recorded wire shapes.

The shapes come from ../shared/reference/acr-wire/ (recorded from Azure): the 401 challenge →
/oauth2/exchange → /oauth2/token flow, `/acr/v1` listings paged by a relative `Link` header,
`{registry, imageName, tag:{…}}` wrappers, 404 TAG_UNKNOWN / MANIFEST_UNKNOWN bodies without
detail, 202 on deletes, and ARM's PATCH long-running operation (201 + Azure-AsyncOperation →
poll {"status": "Succeeded"} → final GET), listCredentials and regenerateCredential. A trustme
certificate makes it HTTPS, as the SDKs require for tokens.

Listings are sorted and paged by the server, as ACR does:

- `GET /acr/v1/_catalog?n=&last=`: names in lexical order.
- `GET /acr/v1/{name}/_tags?n=&last=&orderby=&digest=`: by name (orderby absent, empty or
  `none`), or by lastUpdateTime then name (`timeasc`; `timedesc` is its exact reverse).
- `GET /acr/v1/{name}/_manifests?n=&last=&orderby=`: by digest, or by lastUpdateTime then digest.

`n` defaults to 100. `last` is the name (digest for manifests) of the previous page's last item
and the next page starts right after it in the chosen order. While more items remain, the
response carries `Link: </acr/v1/…?last=<url-encoded>&n=<n>&orderby=<order as sent>>;
rel="next"` (relative, the repository name `%2F`-encoded); the last page has none.

The model: a repository holds manifests (`Manifest`, by digest) and tags (`Tag`, by name, each
pointing at a digest). `push()` tags a manifest, creating it if needed; `push_manifest()` adds an
untagged (or tagged) one; `push_index()` adds a manifest list whose `references[]` are child
manifests. Untagging leaves the manifest; deleting a manifest removes every tag on it, and the
repository itself goes when its last manifest does.

Locks: a tag or manifest with deleteEnabled or writeEnabled false can't be deleted (ACR answers
405 REGISTRY_DISALLOWED_OPERATION, as seen in Azure/acr-cli#70; writeEnabled=false blocks
deletes too, Azure/acr-cli#134). A manifest can't be deleted while any tag on it is locked either.
A tag or manifest with listEnabled false is left out of listings but can still be read.

Tokens, as ACR issues them: `/oauth2/exchange` turns the AAD token into a refresh token
(`refresh_ttl`, 11,700 s as recorded), `/oauth2/token` turns a live refresh token into an access
token for exactly the challenge's scope (`access_ttl`, 4,500 s). A data-plane request passes
only with a live access token whose scope covers it (same repository, the action among its
actions); otherwise it gets the 401 challenge naming the scope it needs, with
`error="invalid_token"` when a token was sent. `token_ttl()` shortens the lifetimes so a test
can outlive its tokens. (`state.issued` holds test-only tokens that pass everywhere.)

Manifest bytes: `push_image()` stores a real manifest (its digest is the sha256 of its bytes),
served by `GET /v2/{repo}/manifests/{tag|digest}` and written back by `PUT` (by digest, or a
tag: the bytes must hash to a digest, and the blobs must not have been reclaimed, else 404
MANIFEST_BLOB_UNKNOWN, as distribution answers). Manifests made up by digest alone (`push()`,
`push_manifest()`) have no bytes: a GET of one answers 404 MANIFEST_UNKNOWN.

Soft delete (`state.soft_delete = True`, off by default as in Azure): a deleted manifest goes to
the recycle bin with the tags it carried: `GET /acr/v1/_deleted/{repo}/_manifests` lists it,
`POST /acr/v1/_deleted/{repo}/_manifests/{digest}?force=false` with `{"tag": T}` (the shape
`az acr manifest restore` sends, Azure/azure-cli's acr tests) restores it under T, and a PUT of
the same digest while it is soft-deleted is refused (ACR: restore it instead).

Fault injection and counting for tests: `throttle()`, `delay()`, `count()`, `kinds()`,
`requests`; the old `state.throttle` / `state.fail_status` knobs still work.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import trustme

ARM_TOKEN = "arm-test-token"  # what the tests' static credential hands out
ACR_PREFIX = "/providers/Microsoft.ContainerRegistry/registries/"
DEFAULT_PAGE_SIZE = 100  # what ACR puts in Link (`n=100`) when the client sent no `n`
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIME_ORDERS = ("timeasc", "timedesc")
NAME_ORDERS = ("", "none")


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking 3-part JWT: the SDK only reads `exp` from the payload."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def acr_time(offset: int = 0) -> str:
    """ACR's timestamp form (7-digit fraction, Z); fixed width, so strings sort by time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.1234567Z", time.gmtime(1_700_000_000 + offset))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


NAME_UNKNOWN = _error("NAME_UNKNOWN", "repository name not known to registry")
TAG_UNKNOWN = _error("TAG_UNKNOWN", "the specified tag does not exist")
MANIFEST_UNKNOWN = _error("MANIFEST_UNKNOWN", "manifest unknown")
# The body ACR sent for DELETE of a locked tag (Azure/acr-cli#70), with its 405.
DISALLOWED = {
    "errors": [
        {
            "code": "REGISTRY_DISALLOWED_OPERATION",
            "detail": {},
            "message": "The operation is disallowed on this registry, repository or image. View "
            "troubleshooting steps at https://aka.ms/acr/faq/#why-does-my-pull-or-push-request-"
            "fail-with-disallowed-operation",
        }
    ]
}
TOO_MANY_REQUESTS = _error("TOOMANYREQUESTS", "too many requests")


@dataclass
class Tag:
    digest: str
    created: str
    delete_enabled: bool = True
    write_enabled: bool = True
    read_enabled: bool = True
    list_enabled: bool = True
    updated: str = ""  # lastUpdateTime; empty means the same as created

    @property
    def last_update(self) -> str:
        return self.updated or self.created

    @property
    def locked(self) -> bool:
        return not (self.delete_enabled and self.write_enabled)


@dataclass
class Manifest:
    digest: str
    created: str
    updated: str = ""  # lastUpdateTime; empty means the same as created
    size: int = 5325
    media_type: str = DOCKER_MANIFEST
    architecture: str | None = "amd64"  # None for a manifest list, which has no platform
    os: str | None = "linux"
    references: list[dict[str, str]] | None = None  # a manifest list's children
    delete_enabled: bool = True
    write_enabled: bool = True
    read_enabled: bool = True
    list_enabled: bool = True
    body: bytes | None = None  # the manifest's bytes (push_image); None: made up by digest

    @property
    def last_update(self) -> str:
        return self.updated or self.created

    @property
    def locked(self) -> bool:
        return not (self.delete_enabled and self.write_enabled)


@dataclass
class Deleted:
    """A soft-deleted manifest and the tags it carried when it went."""

    manifest: Manifest
    tags: list[str]
    deleted_at: str


@dataclass(frozen=True)
class Request:
    """One request the fake answered. `path` is decoded (`/acr/v1/library/hello-world/_tags`);
    `raw` is the request target as sent, query included."""

    method: str
    path: str
    raw: str
    status: int
    challenge: bool  # a 401 answered with WWW-Authenticate (the SDK's first, bare attempt)

    @property
    def kind(self) -> str:
        """`exchange` (AAD → refresh token), `token` (refresh → access token), `challenge`
        (a data-plane 401 with WWW-Authenticate), `data` (a data-plane call past
        authentication) or `arm`."""
        if self.path.startswith("/oauth2/exchange"):
            return "exchange"
        if self.path.startswith("/oauth2/"):
            return "token"
        if self.path.startswith("/subscriptions/"):
            return "arm"
        return "challenge" if self.challenge else "data"


@dataclass
class Fault:
    """An injected fault: `throttle()` answers with `status` (+ Retry-After), `delay()` sleeps
    before answering. `times` None means every matching request; `hits` counts the matches."""

    method: str | None
    path_prefix: str | None
    times: int | None
    status: int | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str, *, registry: bool) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path_prefix is None:
            return registry  # no prefix: the registry's data plane only, not oauth2 or ARM
        return path.startswith(self.path_prefix)


class StaticCredential:
    """A TokenCredential that hands out the fake ARM token (what DefaultAzureCredential gets)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from datetime import UTC, datetime

        from azure.core.credentials import AccessToken

        return AccessToken(ARM_TOKEN, int(datetime.now(UTC).timestamp()) + 3600)


@dataclass
class FakeAcrState:
    repositories: dict[str, dict[str, Tag]] = field(default_factory=dict)  # repo -> tag -> Tag
    manifests: dict[str, dict[str, Manifest]] = field(default_factory=dict)  # repo -> digest
    admin_enabled: bool = True
    passwords: dict[str, str] = field(
        default_factory=lambda: {
            "password": secrets.token_urlsafe(24),
            "password2": secrets.token_urlsafe(24),
        }
    )
    throttle: int = 0  # answer this many next data-plane requests with 429
    fail_status: int | None = None  # answer every data-plane request with this status
    issued: set[str] = field(default_factory=set)  # test-only tokens: any scope, no expiry
    refresh_tokens: dict[str, float] = field(default_factory=dict)  # token -> exp
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # -> (scope, exp)
    refresh_ttl: float = 11700.0  # seconds, as recorded
    access_ttl: float = 4500.0
    sku: str = "Premium"
    calls: list[tuple[str, str]] = field(default_factory=list)
    soft_delete: bool = False  # ACR's soft delete policy (a preview, off by default)
    recycle: dict[str, dict[str, Deleted]] = field(default_factory=dict)  # repo -> digest
    reclaimed: set[str] = field(default_factory=set)  # digests whose blobs are gone


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a delayed answer has closed its socket: not worth a
        # traceback. Anything else is a bug in the fake and is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


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
        # ARM's listUsages answer (`report`): the SKU's included storage and what is used.
        self.usages: list[dict[str, Any]] = [
            {"name": "Size", "limit": 10 * 1024**3, "currentValue": 0, "unit": "Bytes"},
            {"name": "Webhooks", "limit": 2, "currentValue": 0, "unit": "Count"},
        ]
        self.registry_name, self.subscription = registry_name, subscription
        self.resource_group = resource_group
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._faults: list[Fault] = []
        self._log: list[Request] = []
        # (repo, "tag" | "manifest", name) -> lastUpdateTime of something deleted, so that a
        # time-ordered walk can still continue after an item deleted since the previous page.
        self._deleted: dict[tuple[str, str, str], str] = {}
        self._server = _Server(("127.0.0.1", 0), self._handler())
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

    def client(self, ca_path: str, name: str = "prod", **overrides: Any) -> Any:
        """The real AcrRegistry (azure SDK clients) pointed at this fake, trusting its CA."""
        from handlers.registries.acr import AcrRegistry

        options: dict[str, Any] = {
            "login_server": self.login_server,
            "subscription_id": self.subscription,
            "resource_group": self.resource_group,
            "registry_name": self.registry_name,
            "credential": StaticCredential(),
            "arm_endpoint": self.url,
            "audience": "https://management.azure.com",
            "connection_verify": ca_path,
            "retry_total": 0,
        }
        return AcrRegistry(name, **{**options, **overrides})

    def start(self) -> FakeAcr:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests sleeping in delay()
        self._server.shutdown()
        self._server.server_close()

    # -- seeding ---------------------------------------------------------------------------

    def push(self, repository: str, tag: str, digest: str, *, offset: int = 0) -> None:
        """Point `tag` at `digest` at time `offset` (seconds after a fixed epoch), creating the
        manifest if needed. A re-push of an existing manifest moves its lastUpdateTime forward;
        moving an existing tag keeps its createdTime and locks."""
        with self._lock:
            self._put_manifest(repository, Manifest(digest, acr_time(offset)))
            self._tag(repository, tag, digest, acr_time(offset))

    def push_image(
        self, repository: str, tag: str | None, *, label: str | None = None, offset: int = 0
    ) -> str:
        """Store a real (tiny) OCI image manifest, tagged ``tag``; return its digest."""
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": "sha256:"
                    + hashlib.sha256((label or f"{repository}:{tag}").encode()).hexdigest(),
                    "size": 2,
                },
                "layers": [],
            },
            sort_keys=True,
        ).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        with self._lock:
            self._put_manifest(
                repository,
                Manifest(
                    digest, acr_time(offset), size=len(body), media_type=OCI_MANIFEST, body=body
                ),
            )
            if tag is not None:
                self._tag(repository, tag, digest, acr_time(offset))
        return digest

    def push_manifest(
        self,
        repository: str,
        digest: str,
        *,
        tags: Iterable[str] = (),
        offset: int = 0,
        size: int = 5325,
        media_type: str = DOCKER_MANIFEST,
        architecture: str | None = "amd64",
        os: str | None = "linux",
    ) -> Manifest:
        """Add a manifest, untagged unless `tags` are given. Returns the stored Manifest."""
        when = acr_time(offset)
        with self._lock:
            manifest = self._put_manifest(
                repository,
                Manifest(
                    digest,
                    when,
                    size=size,
                    media_type=media_type,
                    architecture=architecture,
                    os=os,
                ),
            )
            for tag in tags:
                self._tag(repository, tag, digest, when)
            return manifest

    def push_index(
        self,
        repository: str,
        digest: str,
        references: Sequence[str | tuple[str, str, str]],
        *,
        tags: Iterable[str] = (),
        offset: int = 0,
        size: int = 5325,
        media_type: str = DOCKER_MANIFEST_LIST,
    ) -> Manifest:
        """Add a manifest list (index) whose children are `references`: digests, or
        (digest, architecture, os) tuples. Missing children are pushed, untagged, at the same
        time; as in ACR, each child is a manifest of the repository in its own right."""
        when = acr_time(offset)
        refs = []
        with self._lock:
            for ref in references:
                child, arch, system = (ref, "amd64", "linux") if isinstance(ref, str) else ref
                existing = self.state.manifests.get(repository, {}).get(child)
                if existing is None:
                    self._put_manifest(
                        repository, Manifest(child, when, architecture=arch, os=system)
                    )
                else:
                    arch, system = existing.architecture or arch, existing.os or system
                refs.append({"digest": child, "architecture": arch, "os": system})
            manifest = self._put_manifest(
                repository,
                Manifest(
                    digest,
                    when,
                    size=size,
                    media_type=media_type,
                    architecture=None,
                    os=None,
                    references=refs,
                ),
            )
            for tag in tags:
                self._tag(repository, tag, digest, when)
            return manifest

    def set_attributes(
        self,
        repository: str,
        reference: str,
        *,
        delete_enabled: bool | None = None,
        write_enabled: bool | None = None,
        read_enabled: bool | None = None,
        list_enabled: bool | None = None,
    ) -> None:
        """Set changeable attributes of a tag, or of a manifest when `reference` is a digest."""
        with self._lock:
            if reference.startswith("sha256:"):
                item: Tag | Manifest = self._manifests(repository)[reference]
            else:
                item = self.state.repositories[repository][reference]
            for name, value in (
                ("delete_enabled", delete_enabled),
                ("write_enabled", write_enabled),
                ("read_enabled", read_enabled),
                ("list_enabled", list_enabled),
            ):
                if value is not None:
                    setattr(item, name, value)

    def _put_manifest(self, repository: str, manifest: Manifest) -> Manifest:
        stored = self.state.manifests.setdefault(repository, {})
        self.state.repositories.setdefault(repository, {})
        existing = stored.get(manifest.digest)
        if existing is None:
            stored[manifest.digest] = manifest
            return manifest
        if manifest.created > existing.last_update:
            existing.updated = manifest.created
        return existing

    def _tag(self, repository: str, tag: str, digest: str, when: str) -> None:
        tags = self.state.repositories.setdefault(repository, {})
        existing = tags.get(tag)
        if existing is None:
            tags[tag] = Tag(digest, when)
        else:
            existing.digest, existing.updated = digest, when

    def _manifests(self, repository: str) -> dict[str, Manifest]:
        """The repository's manifests, including any a test created by writing a Tag straight
        into state.repositories (those get a manifest made from the tag)."""
        if not self._exists(repository):
            return {}
        stored = self.state.manifests.setdefault(repository, {})
        for tag in self.state.repositories.get(repository, {}).values():
            if tag.digest not in stored:
                stored[tag.digest] = Manifest(tag.digest, tag.created)
        return stored

    def _exists(self, repository: str) -> bool:
        return repository in self.state.repositories or bool(self.state.manifests.get(repository))

    # -- fault injection and counting ------------------------------------------------------

    def throttle(
        self,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        times: int | None = 1,
        retry_after: float | None = 1,
        status: int = 429,
    ) -> Fault:
        """Answer the next `times` matching requests (None: all) with `status` and
        `Retry-After: retry_after` (None: no header). `path_prefix` is matched against the
        decoded path (`/acr/v1/team/app/_tags`, `/v2/team/app/manifests/`, `/oauth2/token`,
        `/subscriptions/…`); without one, only registry data-plane requests match. Data-plane
        and ARM faults hit only requests that got past authentication, so the SDK's bare
        first attempt (answered by the 401 challenge) never uses one up."""
        fault = Fault(method, path_prefix, times, status=status, retry_after=retry_after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def delay(
        self,
        *,
        seconds: float,
        method: str | None = None,
        path_prefix: str | None = None,
        times: int | None = None,
    ) -> Fault:
        """Sleep `seconds` before answering matching requests (same matching as throttle())."""
        fault = Fault(method, path_prefix, times, seconds=seconds)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[Request]:
        """Every request answered so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._log)

    def count(
        self,
        method: str | None = None,
        path_prefix: str | None = None,
        *,
        status: int | None = None,
        challenges: bool = False,
    ) -> int:
        """How many requests matched. The SDK sends each data-plane request bare first and
        gets a 401 challenge, then again with a token: the challenges are left out unless
        `challenges=True`, so a listing of 3 pages counts 3. `path_prefix` is matched against
        the decoded path and against the path as sent (`library%2Fhello-world`)."""
        return sum(
            1
            for r in self.requests
            if (challenges or not r.challenge)
            and (method is None or r.method == method.upper())
            and (status is None or r.status == status)
            and (
                path_prefix is None
                or r.path.startswith(path_prefix)
                or r.raw.startswith(path_prefix)
            )
        )

    def kinds(self) -> dict[str, int]:
        """Requests answered so far by kind (see Request.kind): what ACR bills and limits."""
        found = dict.fromkeys(("exchange", "token", "challenge", "data", "arm"), 0)
        for r in self.requests:
            found[r.kind] += 1
        return found

    def token_ttl(self, *, refresh: float | None = None, access: float | None = None) -> None:
        """Lifetimes of the tokens issued from now on (seconds)."""
        with self._lock:
            if refresh is not None:
                self.state.refresh_ttl = refresh
            if access is not None:
                self.state.access_ttl = access

    def reset_counts(self) -> None:
        """Forget the requests answered so far (count() starts again from zero)."""
        with self._lock:
            self._log.clear()

    def _fault(self, method: str, path: str, *, registry: bool) -> tuple[float, Fault | None]:
        """Seconds to sleep, and the throttle to answer with, for this request."""
        with self._lock:
            sleep, throttle = 0.0, None
            for fault in self._faults:
                if not fault.matches(method, path, registry=registry):
                    continue
                if fault.status is None:
                    fault.hits += 1
                    sleep += fault.seconds
                elif throttle is None:
                    fault.hits += 1
                    throttle = fault
            return sleep, throttle

    # -- responses -------------------------------------------------------------------------

    def _registry_body(self) -> dict[str, Any]:
        rid = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"{ACR_PREFIX}{self.registry_name}"
        )
        return {
            "sku": {"name": self.state.sku, "tier": self.state.sku},
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

    @staticmethod
    def _attributes(item: Tag | Manifest) -> dict[str, bool]:
        return {
            "deleteEnabled": item.delete_enabled,
            "writeEnabled": item.write_enabled,
            "readEnabled": item.read_enabled,
            "listEnabled": item.list_enabled,
        }

    def _tag_json(self, name: str, tag: Tag) -> dict[str, Any]:
        return {
            "name": name,
            "digest": tag.digest,
            "createdTime": tag.created,
            "lastUpdateTime": tag.last_update,
            "signed": False,
            "changeableAttributes": self._attributes(tag),
        }

    def _manifest_json(
        self, repository: str, manifest: Manifest, *, single: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "digest": manifest.digest,
            "imageSize": manifest.size,
            "createdTime": manifest.created,
            "lastUpdateTime": manifest.last_update,
        }
        if manifest.architecture:
            body["architecture"] = manifest.architecture
        if manifest.os:
            body["os"] = manifest.os
        body["mediaType"] = manifest.media_type
        tags = sorted(
            n
            for n, t in self.state.repositories.get(repository, {}).items()
            if t.digest == manifest.digest
        )
        if tags:  # an untagged manifest has no `tags` key (manifests-list.json)
            body["tags"] = tags
        body["changeableAttributes"] = self._attributes(manifest)
        if single and manifest.references is not None:
            body["references"] = [dict(r) for r in manifest.references]
        return body

    def _repository_json(self, repository: str) -> dict[str, Any]:
        manifests = self._manifests(repository)
        tags = self.state.repositories.get(repository, {})
        created = [m.created for m in manifests.values()] + [t.created for t in tags.values()]
        updated = [m.last_update for m in manifests.values()] + [
            t.last_update for t in tags.values()
        ]
        return {
            "registry": self.login_server,
            "imageName": repository,
            "createdTime": min(created, default=acr_time()),
            "lastUpdateTime": max(updated, default=acr_time()),
            "manifestCount": len(manifests),
            "tagCount": len(tags),
            "changeableAttributes": {
                "deleteEnabled": True,
                "writeEnabled": True,
                "readEnabled": True,
                "listEnabled": True,
            },
        }

    def _drop_repository_if_empty(self, repository: str) -> None:
        # Guess (unrecorded): a repository goes with its last manifest, leaving the catalog
        # and answering NAME_UNKNOWN from then on.
        if not self.state.manifests.get(repository) and not self.state.repositories.get(repository):
            self.state.manifests.pop(repository, None)
            self.state.repositories.pop(repository, None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and
            # the client's delayed ACK add ~40 ms to every answer.
            disable_nagle_algorithm = True
            _method = ""
            _path = ""

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
                challenge = status == 401 and "WWW-Authenticate" in (headers or {})
                with fake._lock:  # logged before the client can see the answer
                    fake._log.append(
                        Request(self._method, self._path, self.path, status, challenge)
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

            def do_PUT(self) -> None:
                self._route("PUT")

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
                self._method, self._path = method, unquote(path)
                body = self._body() if method in ("POST", "PATCH", "PUT") else b""
                with fake._lock:
                    fake.state.calls.append((method, self.path))
                if path.startswith("/subscriptions/"):
                    return self._arm(method, path, body)
                if path.startswith("/oauth2/"):
                    if self._faulted(method, registry=False):
                        return None
                    return self._oauth(path, body)
                return self._data_plane(method, path, query, body)

            def _faulted(self, method: str, *, registry: bool) -> bool:
                """Apply injected faults; True when a throttle answered the request."""
                sleep, throttle = fake._fault(method, self._path, registry=registry)
                if sleep:
                    fake._stopping.wait(sleep)
                if throttle is None:
                    return False
                headers = {}
                if throttle.retry_after is not None:
                    headers["Retry-After"] = f"{throttle.retry_after:g}"
                if self._path.startswith("/subscriptions/"):
                    body: Any = {"error": {"code": "TooManyRequests", "message": "throttled"}}
                else:
                    body = TOO_MANY_REQUESTS
                self._send(throttle.status or 429, body, headers=headers)
                return True

            # -- ACR token flow ----------------------------------------------------------------

            def _oauth(self, path: str, body: bytes) -> None:
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                now = time.time()
                if path == "/oauth2/exchange":
                    if form.get("access_token") != ARM_TOKEN:
                        return self._send(401, _error("UNAUTHORIZED", "authentication required"))
                    exp = now + fake.state.refresh_ttl
                    refresh = jwt(
                        {
                            "exp": exp,
                            "iat": int(now),
                            "iss": "Azure Container Registry",
                            "aud": form.get("service"),
                            "grant_type": "refresh_token",
                            "jti": uuid.uuid4().hex,
                        }
                    )
                    with fake._lock:
                        fake.state.refresh_tokens[refresh] = exp
                    return self._send(200, {"refresh_token": refresh})
                with fake._lock:
                    live = fake.state.refresh_tokens.get(form.get("refresh_token", ""), 0) > now
                if not live:  # Guess (unrecorded): an expired or unknown refresh token
                    return self._send(401, _error("UNAUTHORIZED", "authentication required"))
                scope = form.get("scope", "")
                exp = now + fake.state.access_ttl
                access = jwt(
                    {
                        "exp": exp,
                        "iat": int(now),
                        "aud": form.get("service"),
                        "access": [_access_claim(scope)],
                        "jti": uuid.uuid4().hex,
                    }
                )
                with fake._lock:
                    fake.state.access_tokens[access] = (scope, exp)
                return self._send(200, {"access_token": access})

            def _challenge(self, scope: str, *, invalid: bool = False) -> None:
                realm = f"https://{fake.login_server}/oauth2/token"
                error = ',error="invalid_token"' if invalid else ""
                kind, rest = scope.split(":", 1)
                name, action = rest.rsplit(":", 1)
                self._send(
                    401,
                    {
                        "errors": [
                            {
                                "code": "UNAUTHORIZED",
                                "message": "authentication required",
                                "detail": [{"Type": kind, "Name": name, "Action": action}],
                            }
                        ]
                    },
                    headers={
                        "WWW-Authenticate": f'Bearer realm="{realm}",service="{fake.login_server}",'
                        f'scope="{scope}"{error}'
                    },
                )

            # -- data plane ----------------------------------------------------------------

            def _data_plane(self, method: str, path: str, query: dict, body: bytes) -> None:
                state = fake.state
                segments = [unquote(s) for s in path.split("/") if s]
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if segments[:3] == ["acr", "v1", "_catalog"]:
                    needed = "registry:catalog:*"
                else:
                    action = {
                        "GET": "metadata_read",
                        "PATCH": "metadata_write",
                        "DELETE": "delete",
                    }.get(method, "pull")
                    if segments[:1] == ["v2"]:
                        action = {"DELETE": "delete", "PUT": "push"}.get(method, "pull")
                    if segments[:3] == ["acr", "v1", "_deleted"]:  # azure-cli's permissions
                        action = "deleted_restore" if method == "POST" else "deleted_read"
                    needed = f"repository:{_repository_of(segments) or 'repo'}:{action}"
                with fake._lock:
                    granted = state.access_tokens.get(token)
                    authorized = token in state.issued or (
                        granted is not None
                        and granted[1] > time.time()
                        and _covers(granted[0], needed)
                    )
                if not authorized:
                    return self._challenge(needed, invalid=bool(token))
                if state.fail_status:
                    return self._send(state.fail_status, _error("UNKNOWN", "failure"))
                with fake._lock:
                    legacy_throttle = state.throttle > 0
                    if legacy_throttle:
                        state.throttle -= 1
                if legacy_throttle:
                    return self._send(429, TOO_MANY_REQUESTS, headers={"Retry-After": "0"})
                if self._faulted(method, registry=True):
                    return None
                with fake._lock:
                    return self._registry(method, segments, query, body)

            def _registry(self, method: str, segments: list[str], query: dict, body: bytes) -> None:
                if segments[:3] == ["acr", "v1", "_catalog"] and method == "GET":
                    names = sorted(
                        r
                        for r in set(fake.state.repositories) | set(fake.state.manifests)
                        if fake._exists(r)
                    )
                    return self._page(
                        "/acr/v1/_catalog",
                        [(n, (n,)) for n in names],
                        query,
                        lambda page: {"repositories": page},
                        order="",
                        lookup=lambda last: (last,),
                    )
                if segments[:3] == ["acr", "v1", "_deleted"] and "_manifests" in segments:
                    at = segments.index("_manifests")
                    repo, rest = "/".join(segments[3:at]), segments[at + 1 :]
                    return self._recycle(method, repo, rest, query, body)
                if segments[:2] == ["acr", "v1"] and len(segments) > 2:
                    if "_tags" in segments:
                        at = segments.index("_tags")
                        repo, rest = "/".join(segments[2:at]), segments[at + 1 :]
                        return self._tags(method, repo, rest, query, body)
                    if "_manifests" in segments:
                        at = segments.index("_manifests")
                        repo, rest = "/".join(segments[2:at]), segments[at + 1 :]
                        return self._manifests(method, repo, rest, query, body)
                    return self._repository(method, "/".join(segments[2:]))
                if segments[:1] == ["v2"] and "manifests" in segments:
                    at = segments.index("manifests")
                    repo, reference = "/".join(segments[1:at]), "/".join(segments[at + 1 :])
                    if method == "DELETE":
                        return self._delete_manifest(repo, reference)
                    if method in ("GET", "HEAD"):
                        return self._get_manifest(repo, reference, head=method == "HEAD")
                    if method == "PUT":
                        return self._put_manifest_bytes(repo, reference, body)
                return self._send(404, b"404 page not found\n", content_type="text/plain")

            def _repository(self, method: str, repo: str) -> None:
                if not fake._exists(repo):
                    return self._send(404, NAME_UNKNOWN)
                if method == "GET":
                    return self._send(200, fake._repository_json(repo))
                if method == "DELETE":
                    tags = fake.state.repositories.get(repo, {})
                    manifests = fake._manifests(repo)
                    if any(t.locked for t in tags.values()) or any(
                        m.locked for m in manifests.values()
                    ):
                        return self._send(405, DISALLOWED)
                    for name, tag in tags.items():
                        fake._deleted[(repo, "tag", name)] = tag.last_update
                    for digest, manifest in manifests.items():
                        fake._deleted[(repo, "manifest", digest)] = manifest.last_update
                    fake.state.repositories.pop(repo, None)
                    fake.state.manifests.pop(repo, None)
                    return self._send(
                        202,
                        {"manifestsDeleted": sorted(manifests), "tagsDeleted": sorted(tags)},
                    )
                return self._send(404, b"404 page not found\n", content_type="text/plain")

            def _tags(
                self, method: str, repo: str, rest: list[str], query: dict, body: bytes
            ) -> None:
                tags = fake.state.repositories.get(repo)
                if not rest:
                    if method != "GET":
                        return self._send(404, b"404 page not found\n", content_type="text/plain")
                    if not fake._exists(repo):
                        return self._send(404, NAME_UNKNOWN)
                    order = _param(query, "orderby")
                    digest = _param(query, "digest")
                    by_time = order in TIME_ORDERS
                    rows = [
                        (name, (tag.last_update, name) if by_time else (name,), tag)
                        for name, tag in (tags or {}).items()
                        if tag.list_enabled and (not digest or tag.digest == digest)
                    ]

                    def lookup(last: str) -> tuple | None:
                        if not by_time:
                            return (last,)
                        tag = (tags or {}).get(last)
                        when = tag.last_update if tag else fake._deleted.get((repo, "tag", last))
                        return None if when is None else (when, last)

                    return self._page(
                        f"/acr/v1/{quote(repo, safe='')}/_tags",
                        [(name, key) for name, key, _ in rows],
                        query,
                        lambda page: {
                            "registry": fake.login_server,
                            "imageName": repo,
                            "tags": [fake._tag_json(n, (tags or {})[n]) for n in page],
                        },
                        order=order,
                        lookup=lookup,
                        extra={"digest": digest} if digest else None,
                    )
                tag_name = "/".join(rest)
                tag = (tags or {}).get(tag_name)
                if tag is None:
                    return self._send(404, TAG_UNKNOWN)
                if method == "DELETE":
                    if tag.locked:
                        return self._send(405, DISALLOWED)
                    del tags[tag_name]
                    fake._deleted[(repo, "tag", tag_name)] = tag.last_update
                    return self._send(202, headers={"X-Ms-Int-Docker-Content-Digest": tag.digest})
                if method == "PATCH":
                    _patch(tag, body)
                elif method != "GET":
                    return self._send(404, b"404 page not found\n", content_type="text/plain")
                return self._send(
                    200,
                    {
                        "registry": fake.login_server,
                        "imageName": repo,
                        "tag": fake._tag_json(tag_name, tag),
                    },
                )

            def _manifests(
                self, method: str, repo: str, rest: list[str], query: dict, body: bytes
            ) -> None:
                if not rest:
                    if method != "GET":
                        return self._send(404, b"404 page not found\n", content_type="text/plain")
                    if not fake._exists(repo):
                        return self._send(404, NAME_UNKNOWN)
                    manifests = fake._manifests(repo)
                    order = _param(query, "orderby")
                    by_time = order in TIME_ORDERS
                    rows = [
                        (digest, (m.last_update, digest) if by_time else (digest,))
                        for digest, m in manifests.items()
                        if m.list_enabled
                    ]

                    def lookup(last: str) -> tuple | None:
                        if not by_time:
                            return (last,)
                        m = manifests.get(last)
                        when = m.last_update if m else fake._deleted.get((repo, "manifest", last))
                        return None if when is None else (when, last)

                    return self._page(
                        f"/acr/v1/{quote(repo, safe='')}/_manifests",
                        rows,
                        query,
                        lambda page: {
                            "registry": fake.login_server,
                            "imageName": repo,
                            "manifests": [fake._manifest_json(repo, manifests[d]) for d in page],
                        },
                        order=order,
                        lookup=lookup,
                    )
                digest = "/".join(rest)
                manifest = fake._manifests(repo).get(digest)
                if manifest is None:
                    return self._send(404, MANIFEST_UNKNOWN)
                if method == "PATCH":
                    _patch(manifest, body)
                elif method == "DELETE":
                    return self._delete_manifest(repo, digest)
                elif method != "GET":
                    return self._send(404, b"404 page not found\n", content_type="text/plain")
                return self._send(
                    200,
                    {
                        "registry": fake.login_server,
                        "imageName": repo,
                        "manifest": fake._manifest_json(repo, manifest, single=True),
                    },
                )

            def _get_manifest(self, repo: str, reference: str, *, head: bool) -> None:
                tag = fake.state.repositories.get(repo, {}).get(reference)
                digest = tag.digest if tag is not None else reference
                manifest = fake._manifests(repo).get(digest)
                if manifest is None or manifest.body is None:
                    return self._send(404, MANIFEST_UNKNOWN)
                headers = {"Docker-Content-Digest": digest}
                if head:
                    return self._send(200, headers=headers, content_type=manifest.media_type)
                return self._send(
                    200, manifest.body, headers=headers, content_type=manifest.media_type
                )

            def _put_manifest_bytes(self, repo: str, reference: str, body: bytes) -> None:
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
                if reference.startswith("sha256:") and reference != digest:
                    return self._send(
                        400,
                        _error("DIGEST_INVALID", "provided digest did not match uploaded content"),
                    )
                if digest in fake.state.recycle.get(repo, {}):
                    # Guess (unrecorded): the status and code of ACR's refusal; the refusal
                    # itself is documented (a soft-deleted digest must be restored).
                    return self._send(
                        400,
                        _error(
                            "MANIFEST_INVALID",
                            "the manifest is soft-deleted: restore it instead of pushing it",
                        ),
                    )
                if digest in fake.state.reclaimed:
                    return self._send(
                        404, _error("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
                    )
                try:
                    media_type = json.loads(body).get("mediaType") or OCI_MANIFEST
                except ValueError:
                    return self._send(400, _error("MANIFEST_INVALID", "manifest invalid"))
                when = acr_time(int(time.time()) % 100_000)
                existing = fake._manifests(repo).get(digest)
                if existing is not None and existing.locked:
                    return self._send(405, DISALLOWED)
                fake._put_manifest(
                    repo,
                    Manifest(digest, when, size=len(body), media_type=media_type, body=body),
                )
                fake._manifests(repo)[digest].body = body
                if not reference.startswith("sha256:"):
                    held = fake.state.repositories.get(repo, {}).get(reference)
                    if held is not None and not held.write_enabled:
                        return self._send(405, DISALLOWED)
                    fake._tag(repo, reference, digest, when)
                return self._send(201, headers={"Docker-Content-Digest": digest})

            def _recycle(
                self, method: str, repo: str, rest: list[str], query: dict, body: bytes
            ) -> None:
                """ACR soft delete's recycle bin: list (GET) and restore (POST)."""
                bin_ = fake.state.recycle.get(repo, {})
                if not rest and method == "GET":
                    # Guess (unrecorded): the listing's shape, after the repository one.
                    return self._send(
                        200,
                        {
                            "registry": fake.login_server,
                            "imageName": repo,
                            "manifests": [
                                {"digest": d, "deletedAt": item.deleted_at, "tags": item.tags}
                                for d, item in sorted(bin_.items())
                            ],
                        },
                    )
                if len(rest) == 1 and method == "POST":
                    item = bin_.get(rest[0])
                    if item is None:
                        return self._send(404, MANIFEST_UNKNOWN)
                    tag = json.loads(body or b"{}").get("tag")
                    del bin_[rest[0]]
                    fake._put_manifest(repo, item.manifest)
                    if tag:
                        fake._tag(repo, tag, rest[0], item.manifest.last_update)
                    return self._send(200, {"digest": rest[0], "tag": tag})
                return self._send(404, b"404 page not found\n", content_type="text/plain")

            def _delete_manifest(self, repo: str, digest: str) -> None:
                manifests = fake._manifests(repo)
                manifest = manifests.get(digest)
                if manifest is None:
                    return self._send(404, MANIFEST_UNKNOWN)
                tags = fake.state.repositories.get(repo, {})
                on_it = [n for n, t in tags.items() if t.digest == digest]
                if manifest.locked or any(tags[n].locked for n in on_it):
                    return self._send(405, DISALLOWED)
                for name in on_it:
                    fake._deleted[(repo, "tag", name)] = tags.pop(name).last_update
                del manifests[digest]
                fake._deleted[(repo, "manifest", digest)] = manifest.last_update
                if fake.state.soft_delete:
                    fake.state.recycle.setdefault(repo, {})[digest] = Deleted(
                        manifest, on_it, acr_time(int(time.time()) % 100_000)
                    )
                fake._drop_repository_if_empty(repo)
                return self._send(202)

            def _page(
                self,
                base: str,
                rows: list[tuple[str, tuple]],
                query: dict,
                wrap: Any,
                *,
                order: str,
                lookup: Any,
                extra: dict[str, str] | None = None,
            ) -> None:
                """Sort `rows` (name, sort key) in `order`, start after `last`, cut `n`."""
                if order not in NAME_ORDERS + TIME_ORDERS:
                    # Guess (unrecorded): ACR's answer to an unknown order; strict, so a typo
                    # in a test or the backend shows up.
                    return self._send(400, _error("BAD_REQUEST", f"invalid orderby {order!r}"))
                try:
                    n = int(_param(query, "n") or DEFAULT_PAGE_SIZE)
                except ValueError:
                    return self._send(400, _error("BAD_REQUEST", "invalid n"))
                if n <= 0:
                    n = DEFAULT_PAGE_SIZE
                descending = order == "timedesc"
                rows = sorted(rows, key=lambda row: row[1], reverse=descending)
                last = _param(query, "last")
                if last:
                    key = lookup(last)
                    if key is None:
                        rows = []  # a time-ordered `last` the registry never had
                    elif descending:
                        rows = [row for row in rows if row[1] < key]
                    else:
                        rows = [row for row in rows if row[1] > key]
                page, more = [name for name, _ in rows[:n]], len(rows) > n
                headers = {}
                if more:
                    params = f"last={quote(page[-1], safe='')}&n={n}"
                    for name, value in (extra or {}).items():
                        # Guess (unrecorded): ACR keeps a filter such as digest= in the Link,
                        # since the client replays the Link verbatim.
                        params += f"&{name}={quote(value, safe='')}"
                    headers["Link"] = f'<{base}?{params}&orderby={order}>; rel="next"'
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
                if self._faulted(method, registry=False):
                    return None
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
                if rest == "/listUsages" and method == "GET":
                    return self._send(200, {"value": fake.usages})
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


def _param(query: dict[str, list[str]], name: str) -> str:
    return (query.get(name) or [""])[0]


def _repository_of(segments: list[str]) -> str | None:
    """The repository a data-plane path names, for the 401 challenge's scope."""
    if segments[:3] == ["acr", "v1", "_deleted"] and "_manifests" in segments:
        return "/".join(segments[3 : segments.index("_manifests")])
    if segments[:2] == ["acr", "v1"] and len(segments) > 2:
        for marker in ("_tags", "_manifests"):
            if marker in segments:
                return "/".join(segments[2 : segments.index(marker)])
        return "/".join(segments[2:])
    if segments[:1] == ["v2"]:
        for marker in ("manifests", "blobs", "tags"):
            if marker in segments:
                return "/".join(segments[1 : segments.index(marker)])
    return None


def _access_claim(scope: str) -> dict[str, Any]:
    """The `access` entry of an access token for `scope` (`repository:team/app:pull,push`)."""
    kind, rest = scope.split(":", 1) if ":" in scope else (scope, "")
    name, _, actions = rest.rpartition(":")
    return {"Type": kind, "Name": name, "Actions": [a for a in actions.split(",") if a]}


def _covers(granted: str, needed: str) -> bool:
    """Whether a token for scope `granted` may do `needed`: same resource, action granted."""
    have, want = _access_claim(granted), _access_claim(needed)
    return (have["Type"], have["Name"]) == (want["Type"], want["Name"]) and all(
        a in have["Actions"] or "*" in have["Actions"] for a in want["Actions"]
    )


def _patch(item: Tag | Manifest, body: bytes) -> None:
    """PATCH of changeable attributes: a flat object (tag-update.json); lastUpdateTime stays."""
    changes = json.loads(body or b"{}")
    for wire, attribute in (
        ("deleteEnabled", "delete_enabled"),
        ("writeEnabled", "write_enabled"),
        ("readEnabled", "read_enabled"),
        ("listEnabled", "list_enabled"),
    ):
        if changes.get(wire) is not None:  # the SDK sends only the attributes it was given
            setattr(item, attribute, bool(changes[wire]))
