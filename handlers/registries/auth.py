"""Authentication to OCI distribution registries: none, Basic, and the Bearer token flow.

Written against httpx's Auth interface because no maintained Python client covers the
registry API as acr-chatops needs it: oras-py (evaluated) has no catalog listing, resolves
digests with the OCI manifest type only, deletes the whole manifest from `delete_tag`, keeps a
single token rather than one per scope, and reports failures as RuntimeError/print.

The flow (distribution spec, "Token Authentication"): a request gets 401 with
`WWW-Authenticate: Bearer realm="…",service="…",scope="…"`; we GET the realm with service and
scope (with Basic credentials if configured), cache the token per scope until it expires, and
replay the request. A Basic challenge gets the configured username and password.

The challenge is the registry's to write, so it does not get to decide where the password
goes: Basic credentials go to a realm on the registry's own origin (scheme, host, port), or
on an https origin the configuration lists (`token_realms`, e.g. Docker Hub's
https://auth.docker.io); any other realm is asked for an anonymous token. A token is cached
under the scope of the request that needed it (what we asked for), never under a scope the
challenge names, so a challenge cannot plant a token for another repository or action.
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
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        registry_url: str | httpx.URL | None = None,
        token_realms: tuple[str, ...] = (),
    ) -> None:
        self._registry = httpx.URL(str(registry_url)) if registry_url else None
        self._realms = tuple(httpx.URL(r) for r in token_realms)
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
            registry = self._registry or request.url
            if self._basic is not None and _may_send_to(token_request.url, registry, self._realms):
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
                self._tokens[scope] = (token, expires)  # ours, not the challenge's (see above)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

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


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _may_send_to(realm: httpx.URL, registry: httpx.URL, configured: tuple[httpx.URL, ...]) -> bool:
    """Basic credentials go to a token realm on the registry's own origin (scheme, host and
    port: plain HTTP only where the configuration allowed the registry itself over HTTP), or
    to an https realm the configuration lists. Any other realm a challenge names gets no
    credentials: the registry, or whoever answers for it, does not choose where they go."""
    if _origin(realm) == _origin(registry):
        return True
    return realm.scheme == "https" and any(_origin(realm) == _origin(c) for c in configured)
