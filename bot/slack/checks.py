"""`acrbot doctor`'s Slack rows: the token works, it has the scopes the code needs, and the
bot is a member of the requests channel.

Slack lists a token's scopes in the `x-oauth-scopes` header of every Web API answer, so one
`auth.test` tells both who the token is and what it may do. The scopes the code needs are
the app manifest's (deploy/slack-app-manifest.json, which tests/unit/test_deploy.py keeps equal
to ``NEEDED_SCOPES``): a token installed from an older manifest lacks the newer ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.error import URLError

from slack_sdk.errors import SlackApiError

from bot.core.config import Config, SlackSettings, slack_settings
from bot.core.errors import ConfigError
from bot.doctor import Check, failed, passed, skipped
from bot.slack import startup
from bot.slack.manifest import SCOPES
from bot.state.outbox import Outbox
from bot.state.store import Store

NEEDED_SCOPES = frozenset(SCOPES)
REINSTALL = (
    "add them on the app's OAuth & Permissions page (Bot Token Scopes; or update the app "
    "from deploy/slack-app-manifest.json), reinstall the app, and update SLACK_BOT_TOKEN if "
    "Slack issued a new one"
)


def slack_checks(config: Config) -> list[Check]:
    """The Slack rows; none when SLACK_BOT_TOKEN is not set (a console-only set-up)."""
    try:
        settings = slack_settings()
    except ConfigError as exc:
        if str(exc).startswith("SLACK_BOT_TOKEN:"):
            return [skipped("slack", "SLACK_BOT_TOKEN not set: Slack checks skipped")]
        return [failed("slack settings", str(exc), "set it in the environment of acrbot serve")]
    client = startup.quiet_client(settings.bot_token, settings.api_url)
    outbox = _outbox(config)
    try:
        auth = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") or f"HTTP {exc.response.status_code}"
        why = startup.TOKEN_FIXES.get(error)
        return [
            failed(
                "slack token",
                f"auth.test: token rejected: {error}" + (f" ({why})" if why else ""),
                f"check {startup.BOT_TOKEN[1]}",
            ),
            *outbox,
        ]
    except (URLError, OSError, TimeoutError) as exc:
        return [
            failed(
                "slack token",
                f"Slack API unreachable at {settings.api_url} ({startup.network_reason(exc)})",
                "check this host's way out to slack.com (DNS, firewall, HTTPS_PROXY) and "
                "SLACK_API_URL if it is set",
            )
        ]
    checks = [
        passed(
            "slack token",
            f"auth.test: bot {auth.get('user')} ({auth.get('user_id')}) in "
            f"{auth.get('team')} ({auth.get('team_id')})",
        ),
        _scopes(auth.headers),
    ]
    if settings.socket_mode:
        checks.append(_app_token(settings))
    checks.append(_requests_channel(client, config.requests_channel))
    return [*checks, *outbox]


def _outbox(config: Config) -> list[Check]:
    """What the bot has still to say: held (Slack refused the token), waiting, given up."""
    if isinstance(config.database, Path) and not config.database.is_file():
        return []
    try:
        store = Store(config.database, readonly=True)
    except ConfigError:
        return []
    try:
        outbox = Outbox(store)
        held, pending, gave_up = outbox.held(), outbox.pending(), outbox.failed()
    except store.errors:
        return []  # the database rows say why
    finally:
        store.close()
    if held is not None:
        return [
            failed(
                "slack outbox",
                f"held since {held['since'][:19]} UTC: Slack answered {held['error']}; "
                f"{pending:,} messages wait (none is lost: they go out once the token works)",
                f"check {startup.BOT_TOKEN[1]}, then restart acrbot serve if you changed it",
            )
        ]
    detail = f"delivering: {pending:,} waiting, {gave_up:,} given up in the last week"
    return [passed("slack outbox", detail)]


def granted_scopes(headers: Any) -> set[str] | None:
    """The scopes in an answer's `x-oauth-scopes` header (None when it has none)."""
    for key, value in (headers or {}).items():
        if key.lower() == "x-oauth-scopes":
            text = value[0] if isinstance(value, list) else value
            return {s.strip() for s in str(text).split(",") if s.strip()}
    return None


def _scopes(headers: Any) -> Check:
    granted = granted_scopes(headers)
    if granted is None:
        return skipped("slack scopes", "Slack did not say which scopes the token has")
    missing = sorted(NEEDED_SCOPES - granted)
    if missing:
        return failed("slack scopes", f"the token lacks {', '.join(missing)}", REINSTALL)
    return passed("slack scopes", f"the token has all {len(NEEDED_SCOPES)} scopes the bot uses")


def _app_token(settings: SlackSettings) -> Check:
    """Socket Mode: the app-level token may open a connection (the URL is not used)."""
    assert settings.app_token is not None
    client = startup.quiet_client(settings.app_token, settings.api_url)
    try:
        client.apps_connections_open(app_token=settings.app_token)
    except SlackApiError as exc:
        error = exc.response.get("error") or f"HTTP {exc.response.status_code}"
        return failed(
            "slack app token",
            f"apps.connections.open: token rejected: {error}",
            f"check {startup.APP_TOKEN[1]}",
        )
    except (URLError, OSError, TimeoutError) as exc:
        return failed(
            "slack app token",
            f"Slack API unreachable ({startup.network_reason(exc)})",
            "check this host's way out to slack.com",
        )
    return passed("slack app token", "apps.connections.open: Socket Mode may connect")


def _requests_channel(client: Any, channel: str | None) -> Check:
    name = "slack requests channel"
    if channel is None:
        return skipped(name, "no [slack] requests_channel: requests made outside Slack get no card")
    try:
        info = client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = exc.response.get("error") or f"HTTP {exc.response.status_code}"
        if error == "missing_scope":
            fix = f"the token lacks channels:read (groups:read for a private channel): {REINSTALL}"
        elif error == "channel_not_found":
            fix = (
                "check [slack] requests_channel: the channel id from its details (About); "
                "a private channel is invisible to the bot until it is invited"
            )
        else:
            fix = "check [slack] requests_channel and the token"
        return failed(name, f"conversations.info {channel}: {error}", fix)
    except (URLError, OSError, TimeoutError) as exc:
        return failed(
            name, f"Slack API unreachable ({startup.network_reason(exc)})", "try again later"
        )
    found = info.get("channel") or {}
    label = f"#{found['name']} ({channel})" if found.get("name") else channel
    if not found.get("is_member"):
        return failed(
            name,
            f"the bot is not a member of {label}: cards cannot be posted there",
            f"invite it: type `/invite @acrbot` in {label}",
        )
    return passed(name, f"the bot is a member of {label}")
