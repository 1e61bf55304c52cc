"""`[events]` (the receiver's secret) and `[[watch]]` rules (what registry events go to which
channel), read from the configuration and matched against events. Pure: no I/O.

    [events]
    secret_env = "ACRBOT_EVENTS_SECRET"   # senders must send Authorization: Bearer <secret>

    [[watch]]
    registry = "prod"                     # optional: any registry
    repos = ["team/*"]                    # globs; default every repository
    actions = ["push", "delete"]          # push, delete, untag, repo_delete; default all
    tags = "^v\\d+"                       # RE2, searched in the tag; optional
    channel = "C0123456789"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

from bot.core.errors import ConfigError, UsageError
from bot.core.patterns import compile_user_regex
from bot.core.registry_events import Action, RegistryEvent

EVENTS_KEYS = {"secret_env", "max_body", "reconcile_every"}
WATCH_KEYS = {"registry", "repos", "actions", "tags", "channel"}
DEFAULT_MAX_BODY = 1024 * 1024  # a distribution envelope of ~1,000 events is ~700 KB
MAX_MAX_BODY = 16 * 1024 * 1024
MIN_SECRET = 16
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}")


@dataclass(frozen=True)
class EventsConfig:
    """`[events]`: the shared secret senders present, read from the environment variable
    ``secret_env`` (never from the file). A secret: never logged."""

    secret_env: str
    secret: str = field(repr=False, default="")
    max_body: int = DEFAULT_MAX_BODY
    # How often the worker re-reads every repository's tags (the index, unseen changes): on
    # a distribution registry a HEAD per tag, so large registries may want it rarer.
    reconcile_every: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class WatchRule:
    channel: str
    registry: str | None = None
    repos: tuple[str, ...] = ("*",)
    actions: frozenset[Action] = frozenset(Action)
    tags: str | None = None

    def matches(self, event: RegistryEvent, registry: str | None) -> bool:
        if self.registry is not None and registry != self.registry:
            return False
        if event.action not in self.actions:
            return False
        if not any(fnmatchcase(event.repository, glob) for glob in self.repos):
            return False
        if self.tags is not None:
            return event.tag is not None and bool(compile_user_regex(self.tags).search(event.tag))
        return True


def events_config(
    table: Any, *, environ: Mapping[str, str], duration: Callable[..., timedelta]
) -> EventsConfig | None:
    """``duration`` is config.parse_duration (passed in: config imports this module)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError("events: expected a table")
    for key in table:
        if key not in EVENTS_KEYS:
            raise ConfigError(
                f"events.{key}: unknown key (known: {', '.join(sorted(EVENTS_KEYS))})"
            )
    name = table.get("secret_env")
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            "events.secret_env: expected the name of an environment variable holding the "
            'shared secret, e.g. "ACRBOT_EVENTS_SECRET"'
        )
    # Checked where it is needed (`acrbot serve`, bot/slack/service.py: `require_secret`):
    # the console and notebooks read the same file without the receiver's secret.
    secret = environ.get(name, "")
    max_body = table.get("max_body", DEFAULT_MAX_BODY)
    if (
        not isinstance(max_body, int)
        or isinstance(max_body, bool)
        or not 1024 <= max_body <= MAX_MAX_BODY
    ):
        raise ConfigError(f"events.max_body: expected bytes from 1024 to {MAX_MAX_BODY}")
    reconcile_every = duration(
        table.get("reconcile_every", "1h"),
        key="events.reconcile_every",
        minimum=timedelta(minutes=5),
        maximum=timedelta(days=7),
        bounds="from 5m to 7d",
    )
    return EventsConfig(
        secret_env=name, secret=secret, max_body=max_body, reconcile_every=reconcile_every
    )


def require_secret(config: EventsConfig) -> str:
    """The receiver's secret, or a ConfigError saying how to set it."""
    if len(config.secret) < MIN_SECRET:
        raise ConfigError(
            f"events.secret_env: ${config.secret_env} must hold a secret of at least "
            f"{MIN_SECRET} characters (e.g. `openssl rand -hex 32`); registries send it as "
            "`Authorization: Bearer <secret>`"
        )
    return config.secret


def watch_rules(tables: Any, *, registries: tuple[str, ...]) -> tuple[WatchRule, ...]:
    if not isinstance(tables, list):
        raise ConfigError("watch: expected [[watch]] tables")
    rules = []
    for i, table in enumerate(tables):
        where = f"watch[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        for key in table:
            if key not in WATCH_KEYS:
                raise ConfigError(
                    f"{where}.{key}: unknown key (known: {', '.join(sorted(WATCH_KEYS))})"
                )
        channel = table.get("channel")
        if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
            raise ConfigError(f"{where}.channel: expected a Slack channel id such as C0123456789")
        registry = table.get("registry")
        if registry is not None and registry not in registries:
            raise ConfigError(
                f"{where}.registry: no registry `{registry}` (known: {', '.join(registries)})"
            )
        repos = table.get("repos", ["*"])
        if (
            not isinstance(repos, list)
            or not repos
            or not all(isinstance(r, str) and r for r in repos)
        ):
            raise ConfigError(f'{where}.repos: expected a list of globs, e.g. ["team/*"]')
        actions = table.get("actions", [a.value for a in Action])
        known = {a.value for a in Action}
        if not isinstance(actions, list) or not actions or not all(a in known for a in actions):
            raise ConfigError(f"{where}.actions: expected a list of {', '.join(sorted(known))}")
        tags = table.get("tags")
        if tags is not None:
            if not isinstance(tags, str) or not tags:
                raise ConfigError(f'{where}.tags: expected a regex, e.g. "^v\\\\d+"')
            try:
                compile_user_regex(tags)
            except UsageError as exc:
                raise ConfigError(f"{where}.tags: {exc}") from None
        rules.append(
            WatchRule(
                channel=channel,
                registry=registry,
                repos=tuple(repos),
                actions=frozenset(Action(a) for a in actions),
                tags=tags,
            )
        )
    return tuple(rules)
