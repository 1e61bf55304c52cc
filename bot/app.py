"""Wiring: configuration in, a ready Dispatcher out. Transports (console, Slack) start here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.core.config import Config, RegistryConfig, SlackSettings, config_arg
from bot.core.registry import Registry
from bot.core.request_types import Clock
from bot.kernel.context import Context, Registries
from bot.kernel.dispatch import CONSOLE, Dispatcher
from bot.ops import logs, observe
from bot.ops.deployed.reader import DeployedReader
from bot.state.announce import Announcer
from bot.state.audit import Audit
from bot.state.facts import FactCache, SqliteFacts
from bot.state.outbox import Outbox
from bot.state.purges import PurgeItems
from bot.state.requests import Requests
from bot.state.roles import RoleTable
from bot.state.store import Store
from handlers import HANDLERS
from handlers.registries import BACKENDS, HAS_ADMIN
from handlers.requests import decide, undo


class DeferredRegistry:
    """A configured registry built on its first use, for one-shot doors (`acrbot run`, the
    console): `help`, `requests` or `approve` of nothing then import no Azure SDK or httpx
    (~0.5 s of CPU with an acr registry). Its name, kind and has_admin come from the
    configuration; reading anything else builds it, once."""

    def __init__(self, cfg: RegistryConfig, facts: FactCache) -> None:
        self.name, self.kind, self.has_admin = cfg.name, cfg.type, HAS_ADMIN[cfg.type]
        self._cfg, self._facts = cfg, facts
        self._inner: Registry | None = None
        self._lock = threading.Lock()

    def _built(self) -> Registry:
        with self._lock:
            if self._inner is None:
                self._inner = BACKENDS[self._cfg.type](self._cfg, self._facts)
            return self._inner

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._built(), attr)

    def __repr__(self) -> str:
        return f"DeferredRegistry({self.name!r}, built={self._inner is not None})"


def utc_now() -> datetime:
    return datetime.now(UTC)


def audit_of(config: Config, store: Store) -> Audit:
    """The audit chain with the configured key and where it starts (never the database's)."""
    return Audit(
        store,
        key=config.audit_key.encode() if config.audit_key else None,
        keyed_from=config.audit_keyed_from,
    )


def build_context(
    config: Config,
    *,
    clock: Clock = utc_now,
    registries: list[Registry] | None = None,
    groups_of: Callable[[str], Any] | None = None,
    members_of: Callable[[str], Any] | None = None,
    create: bool = False,
    defer: bool = False,
) -> Context:
    """Open the database and build one client per registry, once, to share. The database
    must exist unless ``create`` (tests, `acrbot init`). ``defer`` builds each registry on
    its first use instead (one-shot doors); `acrbot serve` builds them up front."""
    register_secrets(config)
    store = Store(config.database, create=create, config_arg=config_arg(config.source))
    audit = audit_of(config, store)
    if groups_of is None:
        groups_of = static_groups(config)
    if registries is None:
        facts = SqliteFacts(store)
        registries = [
            observe.metered(DeferredRegistry(r, facts) if defer else BACKENDS[r.type](r, facts))
            for r in config.registries
        ]
    archive = None
    if config.archive is not None:
        from bot.ops.archive import AuditArchive, container_client

        archive = AuditArchive(
            store, container_client(config.archive), prefix=config.archive.prefix
        )
    requests = Requests(store, audit, clock=clock)
    deployed = DeployedReader(config, now=clock) if config.deployed else None
    if deployed is not None and not defer:  # `acrbot serve`: build the clients meanwhile
        deployed.warm_up()
    outbox = Outbox(store)
    # Every change of a request with a chat channel queues what to announce, in the same
    # transaction (the card, thread lines, the outcome); `acrbot serve` delivers it.
    requests.listeners.append(Announcer(outbox))
    requests.listeners.append(observe.RequestEvents(store))  # approvals, executions
    return Context(
        config=config,
        store=store,
        roles=RoleTable(
            store,
            groups_of=groups_of,
            members_of=members_of if members_of is not None else static_members(config),
        ),
        audit=audit,
        requests=requests,
        registries=Registries(registries),
        clock=clock,
        outbox=outbox,
        purges=PurgeItems(store, audit, clock=clock),
        archive=archive,
        deployed=deployed,
    )


def register_secrets(config: Config | None = None, settings: SlackSettings | None = None) -> None:
    """Register the secrets the bot holds for its lifetime with the log redaction
    (bot/core/redaction.py): registry passwords and tokens, the audit key, the Blob credentials
    (the connection string and its key or SAS), the Slack tokens. A library that logs a
    request (slack_sdk at DEBUG, an SDK's error) then cannot write one to a log line."""
    from bot.core.redaction import REDACTOR

    secrets: list[str | None] = []
    if config is not None:
        secrets += [v for r in config.registries for v in r.secrets.values()]
        secrets.append(config.audit_key)
        secrets.append(config.events.secret if config.events else None)
        connection = config.archive.connection_string if config.archive else None
        if connection:
            secrets.append(connection)
            for part in connection.split(";"):
                key, _, value = part.partition("=")
                if key.strip().lower() in ("accountkey", "sharedaccesssignature"):
                    secrets.append(value.strip())
    if settings is not None:
        secrets += [settings.bot_token, settings.signing_secret, settings.app_token]
    for secret in secrets:
        REDACTOR.add_static(secret)


def static_groups(config: Config) -> Callable[[str], list[str]]:
    """Group membership from the config's [groups] table."""

    def groups_of(user: str) -> list[str]:
        return [name for name, members in config.groups.items() if user in members]

    return groups_of


def static_members(config: Config) -> Callable[[str], list[str] | None]:
    """Members of a [groups] group; None for a principal that is not one."""

    def members_of(principal: str) -> list[str] | None:
        members = config.groups.get(principal)
        return None if members is None else list(members)

    return members_of


def build_dispatcher(config: Config, *, door: str = CONSOLE, **kwargs: Any) -> Dispatcher:
    """A Dispatcher for one door (console, notebook, slack: named in every audit row)."""
    dispatcher = Dispatcher(build_context(config, **kwargs), HANDLERS, door=door)
    dispatcher.recover = lambda: _recover(dispatcher.ctx)
    return dispatcher


def _recover(ctx: Context) -> None:
    """What a crash left half done: requests in `executing`, then undos mid-way."""
    decide.recover(ctx)
    undo.resume_abandoned(ctx)


def ship_audit(ctx: Context) -> None:
    """Try to archive queued audit rows now; an unreachable archive only logs a warning."""
    if ctx.archive is None:
        return
    from bot.ops.archive import ArchiveUnavailable

    try:
        ctx.archive.ship()
    except ArchiveUnavailable as exc:
        logging.getLogger(__name__).warning("%s", exc)


def configure_logging(level: int = logging.WARNING, fmt: str | None = None) -> None:
    """Text or JSON lines (bot/ops/logs.py), secrets redacted; the worker inherits the format."""
    logs.configure(level, fmt)
