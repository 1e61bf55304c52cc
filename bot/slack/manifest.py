"""The Slack app manifest, per mode: what `acrbot slack-manifest` prints, and what deploy/ ships.

Socket Mode and HTTP need different manifests: with `socket_mode_enabled` on, Slack sends
nothing to request URLs, so an HTTP deployment installed from a Socket Mode manifest receives
nothing. Both are generated from here, and a test keeps the shipped files identical.

Least privilege: the bot reads no channel history. Decisions in a card's thread must mention
it (`@acrbot approve`), which arrives as an `app_mention` event (scope `app_mentions:read`),
"Also send to channel" replies included; `channels:history`/`groups:history` would let it read
every message of every channel it is in, to act on a handful.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bot.core.errors import ConfigError

SCOPES = (
    "commands",
    "chat:write",
    "files:write",  # `report`'s chart: files_upload_v2 (files.getUploadURLExternal, …)
    "app_mentions:read",
    "usergroups:read",
    "channels:read",  # acrbot doctor: is the bot a member of the requests channel
    "groups:read",
)
EVENTS = ("app_home_opened", "app_mention")
PLACEHOLDER = "https://YOUR-HOST"
EVENTS_PATH = "/slack/events"  # where `acrbot serve` answers Slack (bot/slack/service.py)


def events_url(url: str) -> str:
    """The URL Slack posts to, from the public base URL of the bot (a path prefix is kept:
    a reverse proxy may serve it under one) or from that events URL itself, the natural
    thing to paste. Anything else is refused with the form expected (ConfigError)."""
    expected = (
        f"expected the bot's public base URL, e.g. https://acrbot.example.com, "
        f"or its events URL, https://acrbot.example.com{EVENTS_PATH}"
    )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        raise ConfigError(f"--url: {expected}; got {url!r}") from None
    if parts.scheme != "https":
        raise ConfigError(f"--url: Slack sends events only to https:// URLs; {expected}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ConfigError(f"--url: {expected}; got {url!r}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigError(f"--url: no ?query or #fragment: {expected}; got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(EVENTS_PATH):
        path += EVENTS_PATH
    return f"https://{parts.netloc}{path}"


def manifest(*, mode: str, url: str = PLACEHOLDER) -> dict[str, Any]:
    """The manifest for ``mode`` ("socket" or "http"); ``url`` is the public base URL of an
    HTTP deployment or its events URL (see :func:`events_url`)."""
    if mode not in ("socket", "http"):
        raise ValueError(f"mode must be socket or http, not {mode!r}")
    http = mode == "http"
    endpoint = events_url(url) if http else None
    command: dict[str, Any] = {
        "command": "/acr",
        "description": "Container registries: list, show, request deletions, approve",
        "usage_hint": "help | tags REPO | delete IMAGE --reason TEXT",
        # Slack then sends mentions as <@U…> and groups as <!subteam^S…>: grants name ids.
        "should_escape": True,
    }
    events: dict[str, Any] = {"bot_events": list(EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if http:
        command["url"] = endpoint
        events["request_url"] = endpoint
        interactivity["request_url"] = endpoint
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": "acr-chatops",
            "description": "Manage Azure Container Registry and OCI registries from Slack, safely.",
            "background_color": "#0b5394",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": "acrbot", "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": not http,
            "token_rotation_enabled": False,
        },
    }
