"""What every handler gets: the services of one running bot, and the call being handled."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bot.core.config import Config
from bot.core.errors import NotFound, UsageError
from bot.core.grammar import ParsedCommand
from bot.core.policy import Grant
from bot.core.references import ImageRef
from bot.core.registry import Progress, Registry, no_progress
from bot.core.request_types import Clock
from bot.ops.archive import AuditArchive
from bot.ops.deployed.reader import DeployedReader
from bot.state.audit import Audit
from bot.state.outbox import Outbox
from bot.state.purges import PurgeItems
from bot.state.requests import Requests
from bot.state.roles import RoleTable
from bot.state.store import Store


class Registries:
    """The configured registries, by name and by login server; the first is the default."""

    def __init__(self, registries: Iterable[Registry]) -> None:
        self._by_name = {r.name: r for r in registries}
        if not self._by_name:
            raise ValueError("at least one registry is required")
        self.default = next(iter(self._by_name.values()))

    def __iter__(self) -> Iterator[Registry]:
        return iter(self._by_name.values())

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str | None) -> Registry:
        if name is None:
            return self.default
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(f"no registry `{name}`; known: {', '.join(self._by_name)}") from None

    def for_image(self, ref: ImageRef, name: str | None) -> Registry:
        """The registry an image reference selects by login server, or ``name``/default."""
        if ref.login_server is None:
            return self.get(name)
        matches = [r for r in self if r.login_server == ref.login_server]
        if not matches:
            raise NotFound(f"no registry is configured for login server `{ref.login_server}`")
        if name is not None and matches[0].name != name:
            raise UsageError(f"`{ref.login_server}` is registry {matches[0].name}, not {name}")
        return matches[0]


@dataclass
class Context:
    """The bot's services, built once at start-up (see bot/app.py) and shared."""

    config: Config
    store: Store
    roles: RoleTable
    audit: Audit
    requests: Requests
    registries: Registries
    clock: Clock
    outbox: Outbox
    purges: PurgeItems
    archive: AuditArchive | None = None  # when [audit.blob] is configured
    deployed: DeployedReader | None = None  # when [[deployed]] sources are configured


@dataclass(frozen=True)
class Call:
    """One command being handled: who asks, with which grants, about which registry/repo."""

    command: ParsedCommand
    user: str
    grants: tuple[Grant, ...]
    registry: Registry | None = None
    registry_name: str | None = None
    repository: str | None = None
    progress: Progress = no_progress  # long scans report here; the transport shows it
    channel: str | None = None  # the chat channel the command came from (Slack), if any
    origin: str | None = None  # the job running it: makes effects idempotent on a re-run
    door: str = "console"  # console, notebook or slack

    @property
    def args(self) -> dict[str, Any]:
        return self.command.args
