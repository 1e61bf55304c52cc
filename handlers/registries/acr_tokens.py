"""ACR tokens reused until they near expiry: a workaround for azure-containerregistry 1.2.

Why this exists: the SDK's ContainerRegistryChallengePolicy sends every data-plane request
bare, takes ACR's 401 challenge and asks the token endpoint for a new access token each time
(it never caches one), and its ACRExchangeClient.get_refresh_token renews the refresh token
when *more* than 300 s remain (`self._expiration_time - time.time() > 300`: the check is
inverted, so it renews on every call). Each call that does the work thus costs four requests
(Azure/azure-sdk-for-python#29090, "[ACR] Optimize auth flow", and its siblings in the other
SDKs). On a real registry that is 4x the latency of every command and thousands of requests a
long purge spends against ACR's per-minute limits.

When the SDK caches tokens itself (the `> 300` check turned into `< 300` and access tokens
kept per scope), delete this module and, in acr.py, the `TokenCache` and the
`per_retry_policies=` argument; the request budgets in tests/flows/test_acr_tokens.py say
whether the SDK alone meets them.

How: this policy sits just inside the SDK's challenge policy (`per_retry_policies`: the seam
azure-core offers; `authentication_policy=` cannot be handed to ContainerRegistryClient, which
passes its own). The SDK hands the same options to its exchange client's pipeline, and
azure-core links a pipeline's policies by setting their `next`, so `TokenPolicies` gives each
pipeline a policy of its own, all sharing one `TokenCache` (the exchange client's passes
/oauth2/ through). It learns, from the challenges, which scope each route (method and path up
to the item: `DELETE /acr/v1/team%2Fapi/_tags`) needs (a route not seen yet gets ACR's
documented scope, which the registry checks: a wrong guess costs one challenge), keeps one
access token per scope and one refresh token per service, renews each a minute before its
`exp`, and on a 401 drops what it sent and answers the challenge once more. The challenge is
parsed by the SDK (`_parse_challenge`) and the two token requests are the SDK's own
(ACRExchangeClient); only the caching is ours. The SDK's policy sees a 401 only when fresh
tokens were refused too; it then tries once its own way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import SEEK_SET
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from azure.containerregistry._helpers import _parse_challenge, _parse_exp_time
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy, SansIOHTTPPolicy

RENEW_BEFORE = 60.0  # seconds before `exp` at which a token is renewed rather than sent
ITEM_MARKERS = ("_tags", "_manifests", "manifests", "blobs")  # the route ends before the item


class TokenExchange(Protocol):
    """The SDK's ACRExchangeClient surface this policy uses (its two token requests)."""

    def exchange_aad_token_for_refresh_token(self, service: str, **kwargs: Any) -> str: ...

    def exchange_refresh_token_for_access_token(
        self, refresh_token: str, service: str, scope: str, **kwargs: Any
    ) -> str | None: ...


@dataclass(frozen=True)
class _Token:
    value: str
    expires: float  # epoch seconds, from the JWT's `exp`


class TokenPolicies:
    """`per_retry_policies=` for ContainerRegistryClient: a new AcrTokenPolicy each time a
    pipeline is built from it, all sharing `cache`, then the (shareable) `inner` policies."""

    def __init__(self, cache: TokenCache, *inner: SansIOHTTPPolicy) -> None:
        self.cache, self.inner = cache, inner

    def __iter__(self) -> Iterator[HTTPPolicy | SansIOHTTPPolicy]:
        yield AcrTokenPolicy(self.cache)
        yield from self.inner


class AcrTokenPolicy(HTTPPolicy):
    """Authorize ACR data-plane requests from cached tokens; answer challenges once."""

    def __init__(self, cache: TokenCache) -> None:
        super().__init__()
        self._cache = cache

    def send(self, request: PipelineRequest) -> PipelineResponse:
        http = request.http_request
        path = urlsplit(http.url).path
        if path.startswith("/oauth2/"):  # in the SDK's exchange client's pipeline
            return self.next.send(request)
        route = f"{http.method} {_route(path)}"
        sent = self._cache.scope_of(route)
        if sent is not None:
            http.headers["Authorization"] = "Bearer " + self._cache.access_token(*sent)
        response = self.next.send(request)
        challenge = response.http_response.headers.get("WWW-Authenticate")
        if response.http_response.status_code != 401 or not challenge:
            return response
        parsed = _parse_challenge(challenge)
        service, scope = parsed.get("service"), parsed.get("scope")
        if not service or not scope or not _rewind(http):
            return response
        self._cache.learn(route, (service, scope), refused=sent)
        http.headers["Authorization"] = "Bearer " + self._cache.access_token(service, scope)
        return self.next.send(request)


class TokenCache:
    """One registry's ACR tokens: a refresh token per service, an access token per scope, and
    the scope each route needs (learned from challenges)."""

    def __init__(
        self,
        exchange: TokenExchange,
        *,
        clock: Callable[[], float] = time.time,
        renew_before: float = RENEW_BEFORE,
    ) -> None:
        self._exchange = exchange
        self.clock, self.renew_before = clock, renew_before
        self._routes: dict[str, tuple[str, str]] = {}  # route -> (service, scope)
        self._access: dict[tuple[str, str], _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._service: str | None = None  # the login server, as the first challenge names it
        # One lock for the caches and the token requests: with eight purge workers, one asks
        # and the others wait for its token instead of asking too. Token requests are rare.
        self._lock = threading.Lock()

    def scope_of(self, route: str) -> tuple[str, str] | None:
        """The scope `route` needs: learned from its challenge, or, for a route not seen yet
        once a challenge has named the service, predicted from ACR's documented scheme (a
        wrong guess costs one challenge, which then teaches the right one). Predicting spares
        eight purge workers eight bare first DELETEs."""
        with self._lock:
            known = self._routes.get(route)
            if known is not None or self._service is None:
                return known
            scope = _predicted_scope(route)
            return (self._service, scope) if scope else None

    def learn(
        self, route: str, needed: tuple[str, str], *, refused: tuple[str, str] | None
    ) -> None:
        """A challenge named the scope `route` needs; `refused` is the one whose token was
        sent with it (None: none was)."""
        with self._lock:
            self._routes[route] = needed
            self._service = needed[0]
            if refused == needed:  # refused although fresh (revoked, clock skew): start over
                self._access.pop(needed, None)
                self._refresh.pop(needed[0], None)

    def forget(self) -> None:
        """Drop every token (tests; a credential change)."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def access_token(self, service: str, scope: str) -> str:
        with self._lock:
            token = self._access.get((service, scope))
            if token is not None and self._fresh(token):
                return token.value
            try:
                value = self._from_refresh(service, scope)
            except HttpResponseError as exc:
                if exc.status_code != 401:
                    raise
                self._refresh.pop(service, None)  # expired or revoked early: exchange again
                value = self._from_refresh(service, scope)
            self._access[(service, scope)] = _Token(value, _parse_exp_time(value))
            return value

    def _from_refresh(self, service: str, scope: str) -> str:
        refresh = self._refresh.get(service)
        if refresh is None or not self._fresh(refresh):
            value = self._exchange.exchange_aad_token_for_refresh_token(service)
            refresh = self._refresh[service] = _Token(value, _parse_exp_time(value))
        return (
            self._exchange.exchange_refresh_token_for_access_token(
                refresh.value, service=service, scope=scope
            )
            or ""
        )

    def _fresh(self, token: _Token) -> bool:
        return token.expires - self.clock() > self.renew_before


def _route(path: str) -> str:
    """The path up to its item: every tag of a repository needs the same scope for a method."""
    segments = path.split("/")
    for at in range(len(segments) - 1, -1, -1):
        if segments[at] in ITEM_MARKERS:
            return "/".join(segments[: at + 1])
    return path


def _predicted_scope(route: str) -> str | None:
    """ACR's scope for a route (its challenges, recorded: the catalog needs
    `registry:catalog:*`; /acr/v1 GET `metadata_read`, PATCH `metadata_write`, DELETE `delete`;
    /v2 manifests GET/HEAD `pull`, DELETE `delete`); None when unsure."""
    method, _, path = route.partition(" ")
    segments = [unquote(s) for s in path.split("/") if s]
    if segments == ["acr", "v1", "_catalog"]:
        return "registry:catalog:*" if method == "GET" else None
    if segments[:2] == ["acr", "v1"] and len(segments) > 2:
        actions = {"GET": "metadata_read", "PATCH": "metadata_write", "DELETE": "delete"}
        name = segments[2:]
    elif segments[:1] == ["v2"] and segments[-1:] == ["manifests"]:
        actions = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}
        name = segments[1:]
    else:
        return None
    for marker in ITEM_MARKERS:
        if marker in name:
            name = name[: name.index(marker)]
    action = actions.get(method)
    return f"repository:{'/'.join(name)}:{action}" if action and name else None


def _rewind(http: Any) -> bool:
    """Whether the request can be sent again (as the SDK's policy checks: a body stream must
    seek back to its start)."""
    body = http.body
    if body is None or not hasattr(body, "read"):
        return True
    try:
        body.seek(0, SEEK_SET)
    except (OSError, ValueError, AttributeError):
        return False
    return True
