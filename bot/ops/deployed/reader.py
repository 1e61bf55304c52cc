"""The in-use set: every `[[deployed]]` source read concurrently, once per command, image
references matched to the configured registries and tag references resolved to the digest the
tag points at now (one tag listing per repository, never one round trip per pod).

A listing (`where`, a dry run) may reuse a read younger than the source's `cache_seconds`; a
request and an execution always read afresh (``fresh=True``). A source that cannot be read is
a `SourceFailure` in the answer, never an empty source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from bot.core.config import Config, DeployedConfig
from bot.core.deployed import (
    ImageName,
    InUse,
    SourceFailure,
    Use,
    parse_image_name,
    registry_hosts,
)
from bot.core.errors import NotFound, UserError
from bot.core.registry import Registry
from bot.ops.deployed.errors import SourceUnreadable

log = logging.getLogger(__name__)


class Source(Protocol):
    name: str

    def read(self) -> list[Use]: ...

    def warm(self) -> None: ...

    def check(self) -> list[tuple[str, str | None]]: ...


def _quietly(source: Source) -> None:
    try:
        source.warm()
    except Exception:  # the first read says what is wrong, failing closed
        log.debug("warming deployed source %s failed", source.name, exc_info=True)


def build_source(config: DeployedConfig, **options: Any) -> Source:
    """The source for one `[[deployed]]` table; ``options`` reach its client (tests inject
    a credential, an endpoint, a CA)."""
    if config.type == "kubernetes":
        from bot.ops.deployed.kubernetes import KubernetesSource

        return KubernetesSource(config, **options)
    from bot.ops.deployed.containerapps import ContainerAppsSource

    return ContainerAppsSource(config, **options)


class DeployedReader:
    """Reads every source concurrently; one instance per running bot (sources keep their
    clients). ``now`` stamps each answer (its freshness)."""

    def __init__(
        self,
        config: Config,
        *,
        sources: list[Source] | None = None,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sources = (
            sources if sources is not None else [build_source(d) for d in config.deployed]
        )
        self._by_name = {d.name: d for d in config.deployed}
        self._hosts = registry_hosts(config)
        self._now, self._monotonic = now, monotonic
        self._cache: tuple[float, datetime, list[Use], list[SourceFailure]] | None = None
        self._lock = threading.Lock()
        self.reads = 0  # source reads made (tests count them)

    def warm_up(self) -> None:
        """Build the sources' SDK clients in the background: the kubernetes client's import
        and ApiClient cost ~3 s once (measured in bench/deployed.py), which the first
        deletion of a long-running bot should not wait for."""
        for source in self.sources:
            threading.Thread(target=_quietly, args=(source,), daemon=True).start()

    @property
    def configured(self) -> bool:
        return bool(self.sources)

    def _read_all(self) -> tuple[datetime, list[Use], list[SourceFailure]]:
        at = self._now()

        def one(source: Source) -> tuple[list[Use], SourceFailure | None]:
            try:
                return source.read(), None
            except SourceUnreadable as exc:
                return [], SourceFailure(source.name, exc.message, exc.fix)
            except Exception as exc:  # fail closed on anything unexpected, and say what
                log.exception("deployed source %s failed", source.name)
                return [], SourceFailure(
                    source.name, f"{type(exc).__name__}", "see the bot's log for the error"
                )

        with ThreadPoolExecutor(max_workers=max(1, len(self.sources))) as pool:
            results = list(pool.map(one, self.sources))
        self.reads += 1
        uses = [u for found, _ in results for u in found]
        failures = [f for _, f in results if f is not None]
        return at, uses, failures

    def raw(self, *, fresh: bool) -> tuple[datetime, list[Use], list[SourceFailure]]:
        """Every use as the sources wrote it; from the cache only when not ``fresh``."""
        ttl = min((d.cache_seconds for d in self.config.deployed), default=0.0)
        with self._lock:
            if not fresh and self._cache is not None and ttl > 0:
                stamp, at, uses, failures = self._cache
                if self._monotonic() - stamp < ttl:
                    return at, uses, failures
        at, uses, failures = self._read_all()
        with self._lock:
            self._cache = (self._monotonic(), at, uses, failures)
        return at, uses, failures

    def last_failures(self) -> list[SourceFailure]:
        """The failed sources of the latest read, without reading again (what a reply says
        about the read its command just made)."""
        with self._lock:
            return list(self._cache[3]) if self._cache is not None else []

    def in_use(self, registries: Iterable[Registry], *, fresh: bool) -> InUse:
        """The in-use set for ``registries``: digests as written, tags resolved now."""
        at, uses, failures = self.raw(fresh=fresh)
        wanted = {r.name: r for r in registries}
        found: dict[tuple[str, str, str], list[Use]] = defaultdict(list)
        by_tag: dict[tuple[str, str], dict[str, list[Use]]] = defaultdict(lambda: defaultdict(list))
        for use in uses:
            name = parse_image_name(use.image)
            registry = self._registry_of(name)
            if name is None or registry not in wanted:
                continue
            if name.digest:
                found[(registry, name.repository, name.digest)].append(use)
            elif name.tag or name.tag is None:
                by_tag[(registry, name.repository)][name.tag or "latest"].append(use)
        failures = list(failures)
        for (registry, repository), tags in by_tag.items():
            try:  # one listing per repository resolves every tag referenced in it
                current = {t.name: t.digest for t in wanted[registry].all_tags(repository)}
            except NotFound:
                continue  # nothing of that repository is in the registry: nothing to spare
            except UserError as exc:
                failures.append(
                    SourceFailure(
                        f"{registry} (resolving tags of {repository})",
                        str(exc)[:200],
                        "the deployed tags could not be resolved to digests; retry",
                    )
                )
                continue
            for tag, tag_uses in tags.items():
                if tag in current:
                    found[(registry, repository, current[tag])].extend(tag_uses)
        return InUse(
            read_at=at,
            sources=tuple(s.name for s in self.sources),
            uses=dict(found),
            failures=tuple(failures),
            covers={name: d.registries for name, d in self._by_name.items()},
        )

    def _registry_of(self, name: ImageName | None) -> str | None:
        return None if name is None else self._hosts.get(name.host)
