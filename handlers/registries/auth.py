"""Authentication to OCI distribution registries: none, Basic, and the Bearer token flow.

Written against httpx's Auth interface because no maintained Python client covers the
registry API as acr-chatops needs it: oras-py (evaluated) has no catalog listing, resolves
digests with the OCI manifest type only, deletes the whole manifest from `delete_tag`, keeps a
single token rather than one per scope, and reports failures as RuntimeError/print.

The flow (distribution spec, "Token Authentication"): a request gets 401 with
`WWW-Authenticate: Bearer realm="…",service="…",scope="…"`; we GET the realm with service and
scope (with Basic credentials if configured), cache the token per scope until it expires, and
replay the request. A Basic challenge gets the configured username and password.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Generator

import httpx

_PARAM = re.compile(r'(\w+)="([^"]*)"')
_REPO_PATH = re.compile(r"^/v2/(.+?)/(?:tags|manifests|blobs)/")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` → ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


class RegistryAuth(httpx.Auth):
    """httpx auth for a registry: static token, or Basic/Bearer answered on challenge."""

    # False: httpx would otherwise read every response of the flow in full before handing it
    # back, the final one included, which defeats streaming a 52 MB tag list
    # (handlers/registries/bounded.py). The flow reads the token responses itself.
    requires_response_body = False

    def __init__(
        self, *, username: str | None = None, password: str | None = None, token: str | None = None
    ) -> None:
        self._basic = httpx.BasicAuth(username, password or "") if username else None
        self._static = token
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._basic_required = False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._static:
            request.headers["Authorization"] = f"Bearer {self._static}"
            yield request
            return
        scope = self._scope_for(request)
        cached = self._cached(scope)
        if cached:
            request.headers["Authorization"] = f"Bearer {cached}"
        elif self._basic_required and self._basic is not None:
            request = next(self._basic.auth_flow(request))
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic" and self._basic is not None:
            self._basic_required = True
            yield next(self._basic.auth_flow(request))
        elif scheme == "bearer" and "realm" in params:
            wanted = params.get("scope") or scope
            token_request = httpx.Request(
                "GET",
                params["realm"],
                params={
                    k: v for k, v in (("service", params.get("service")), ("scope", wanted)) if v
                },
            )
            if self._basic is not None and self._may_send_to(token_request.url, request.url):
                token_request = next(self._basic.auth_flow(token_request))
            token_response = yield token_request
            if token_response.status_code != 200:
                return  # the original 401 stands; the backend turns it into a message
            try:
                # Read in full: httpx reads every response but the last of a flow anyway (the
                # 401 before it too), so these small answers are the one unbounded read left.
                body = json.loads(token_response.read())
            except ValueError:
                return  # not a token answer: the original 401 stands
            if not isinstance(body, dict):
                return
            token = body.get("token") or body.get("access_token")
            if not token:
                return
            expires = time.monotonic() + max(int(body.get("expires_in") or 60) - 10, 10)
            with self._lock:
                self._tokens[wanted] = (token, expires)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    @staticmethod
    def _may_send_to(realm: httpx.URL, registry: httpx.URL) -> bool:
        """Credentials go to a token realm over https, or over plain HTTP only to the
        registry's own host (which the configuration allowed) or to loopback: a challenge
        cannot send the password in clear to a host nobody listed."""
        if realm.scheme == "https":
            return True
        return realm.host in ("localhost", "127.0.0.1", "::1") or (
            realm.host == registry.host and realm.port == registry.port
        )

    def header_for(self, method: str, path: str) -> str | None:
        """The Authorization header this auth would send now without a challenge (a static
        token, a cached bearer token for the path's scope, Basic once required), for a
        client that borrows it (handlers/registries/oci.py's bulk HEADs)."""
        if self._static:
            return f"Bearer {self._static}"
        cached = self._cached(self._scope_for(httpx.Request(method, f"http://x{path}")))
        if cached:
            return f"Bearer {cached}"
        if self._basic_required and self._basic is not None:
            return self._basic._auth_header
        return None

    def _cached(self, scope: str) -> str | None:
        with self._lock:
            hit = self._tokens.get(scope)
        return hit[0] if hit and hit[1] > time.monotonic() else None

    @staticmethod
    def _scope_for(request: httpx.Request) -> str:
        """The scope a request will be challenged for, to find a cached token before asking."""
        path = request.url.path
        if path.startswith("/v2/_catalog"):
            return "registry:catalog:*"
        match = _REPO_PATH.match(path)
        if not match:
            return ""
        actions = "delete" if request.method == "DELETE" else "pull"
        return f"repository:{match.group(1)}:{actions}"
