"""Before `acrbot serve` serves: is Slack there, and does it take our tokens?

A wrong token can never start working, so it stops the bot at once with one line naming it
(`Slack bot token rejected: invalid_auth`). A network failure, a 5xx or a 429 may be a
moment's trouble (a pod that starts before its network, a Slack incident), so those are
retried with exponential backoff for a bounded time (``within``, 30 s by default) before
giving up with one line saying where Slack could not be reached. Either way `acrbot serve`
exits 2, like a bad configuration, and no traceback reaches the terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.error import HTTPError, URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.core.config import SlackSettings
from bot.core.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT = 30.0  # seconds of retrying transient failures before giving up
FIRST_DELAY, MAX_DELAY = 0.5, 8.0
# Slack's own answers that say "not now" rather than "no".
TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# What to do about the answers that say "no", by Slack error code.
TOKEN_FIXES = {
    "invalid_auth": "the token is not valid in any workspace",
    "not_authed": "no token was sent",
    "account_inactive": "the app was uninstalled or its workspace deleted",
    "token_revoked": "the token was revoked",
    "token_expired": "the token expired (token rotation is on: turn it off, or renew it)",
    "not_allowed_token_type": "that kind of token is not accepted here",
}


BOT_TOKEN = (
    "bot token",
    "SLACK_BOT_TOKEN: the Bot User OAuth Token (xoxb-…) on the app's OAuth & Permissions page",
)
APP_TOKEN = (
    "app token",
    "SLACK_APP_TOKEN: an app-level token (xapp-…) with connections:write, on the app's "
    "Basic Information page",
)


class StartupFailed(ConfigError):
    """Slack cannot be used: `acrbot serve` stops with this one line and exit code 2."""


def verify_bot_token(
    settings: SlackSettings,
    *,
    within: float = STARTUP_WAIT,
    sleep: Callable[[float], None] = time.sleep,
) -> SlackResponse:
    """`auth.test` with the bot token; return Slack's answer (team, bot user, and the
    token's scopes in its `x-oauth-scopes` header)."""
    client = quiet_client(settings.bot_token, settings.api_url)
    return retrying(
        client.auth_test,
        token=BOT_TOKEN,
        url=settings.api_url,
        within=within,
        sleep=sleep,
    )


def connect_socket_mode(
    handler: Any,
    settings: SlackSettings,
    *,
    within: float = STARTUP_WAIT,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Open the Socket Mode connection (`apps.connections.open` with the app token), with
    the same retries and one-line failures as the bot token."""
    retrying(
        handler.connect,
        token=APP_TOKEN,
        url=settings.api_url,
        within=within,
        sleep=sleep,
    )


def quiet_client(token: str, base_url: str, *, timeout: int = 10) -> WebClient:
    """A WebClient that leaves retrying and reporting to us: no retry handlers of its own,
    and its logger quiet (it would log each refused connection as an ERROR of its own)."""
    quiet = logging.getLogger("bot.slack.startup.sdk")
    quiet.setLevel(logging.CRITICAL)
    quiet.propagate = False
    return WebClient(
        token=token, base_url=base_url, timeout=timeout, retry_handlers=[], logger=quiet
    )


def retrying(
    call: Callable[[], T],
    *,
    token: tuple[str, str],
    url: str,
    within: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; retry network errors, 5xx and 429 with backoff for ``within`` seconds;
    raise StartupFailed with one line on a refusal or when time is up."""
    deadline = time.monotonic() + within
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except SlackApiError as exc:
            status, error = exc.response.status_code, exc.response.get("error")
            if status == 200 and error not in TRANSIENT:  # Slack's answer: this token, no
                raise StartupFailed(refusal(token, str(error))) from None
            if status != 429 and status < 500 and status != 200:
                raise StartupFailed(
                    f"Slack API at {url} answered HTTP {status}: is SLACK_API_URL right?"
                ) from None
            reason = str(error) if status == 200 else f"HTTP {status}"
            wait = _retry_after(exc.response.headers, delay)
        except (URLError, OSError, TimeoutError) as exc:
            reason, wait = network_reason(exc), delay
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartupFailed(
                f"Slack API unreachable at {url} ({reason}); gave up after {within:g} s"
            ) from None
        wait = min(wait, remaining)
        log.warning("Slack API unreachable at %s (%s); trying again in %.1f s", url, reason, wait)
        sleep(wait)
        delay = min(delay * 2, MAX_DELAY)


def refusal(token: tuple[str, str], error: str) -> str:
    """`Slack bot token rejected: invalid_auth (why; check where)`."""
    name, where = token
    why = TOKEN_FIXES.get(error)
    return f"Slack {name} rejected: {error} ({why + '; ' if why else ''}check {where})"


def network_reason(exc: BaseException) -> str:
    """`connection refused`, `timed out`, `name not resolved`… from urllib's wrapping."""
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code}"
    inner = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, TimeoutError):
        return "timed out"
    if isinstance(inner, OSError) and getattr(inner, "errno", None) in (-2, -3, -5):
        return "host name not resolved"
    text = getattr(inner, "strerror", None) or str(inner)
    return text or inner.__class__.__name__


def _retry_after(headers: Any, default: float) -> float:
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        return float(value) if value is not None else default
    except (TypeError, ValueError, AttributeError):
        return default
