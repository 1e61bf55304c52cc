"""What runs where: image references read from deployed sources (`[[deployed]]`), matched to
the configured registries, and the in-use set a deletion is checked against. Pure.

The sources themselves (Kubernetes, Container Apps) live in bot/ops/deployed/; the checks a
deletion makes are handlers/requests/in_use.py. This module holds the data that crosses those
seams: a `Use` (one workload referencing one image), a `SourceFailure` (a source that could not
be read: never "nothing runs there"), and `InUse` (uses by registry, repository and digest).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from bot.core.config import Config

_SCHEMES = ("docker-pullable://", "docker://", "containerd://", "cri-o://")


@dataclass(frozen=True)
class ImageName:
    """An image reference as a workload writes it: host/repository[:tag][@digest]."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None


def parse_image_name(text: str) -> ImageName | None:
    """`host[:port]/repo[:tag][@sha256:…]` (a pod's `imageID` may carry a runtime scheme).
    None for a reference without a registry host (Docker Hub's `nginx`, `library/x`): such
    an image cannot be in a configured registry."""
    text = text.strip()
    for scheme in _SCHEMES:
        if text.startswith(scheme):
            text = text[len(scheme) :]
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not digest.startswith("sha256:") or len(digest) != 71:
            return None
    first, _, rest = text.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        return None
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
    if not rest:
        return None
    return ImageName(host=first.lower(), repository=rest, tag=tag, digest=digest)


def registry_hosts(config: Config) -> dict[str, str]:
    """host[:port] → registry name: each registry's `login_server` and its `url`'s host."""
    hosts: dict[str, str] = {}
    for registry in config.registries:
        if registry.login_server:
            hosts.setdefault(registry.login_server.lower(), registry.name)
        url = registry.options.get("url")
        if isinstance(url, str) and url:
            netloc = urlsplit(url).netloc.rsplit("@", 1)[-1].lower()
            if netloc:
                hosts.setdefault(netloc, registry.name)
    return hosts


@dataclass(frozen=True)
class Use:
    """One workload that runs (or would run) one image. ``note`` says how: `3 pods`,
    `rollback`, `running`, `schedule 0 2 * * *`."""

    source: str
    namespace: str | None
    kind: str
    name: str
    image: str
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be read, and what would fix it (one line each)."""

    source: str
    message: str
    fix: str

    @property
    def line(self) -> str:
        return f"deployed source {self.source} could not be read ({self.message}): {self.fix}"


def describe(uses: Iterable[Use], *, limit: int = 4) -> str:
    """`in use: aks-prod/payments Deployment api, ReplicaSet api-7f9c (rollback)`."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for use in uses:
        where = f"{use.source}/{use.namespace}" if use.namespace else use.source
        if use.label not in grouped[where]:
            grouped[where].append(use.label)
    parts = []
    for where, labels in sorted(grouped.items()):
        shown = ", ".join(labels[:limit]) + (
            f" and {len(labels) - limit} more" if len(labels) > limit else ""
        )
        parts.append(f"{where} {shown}")
    return "in use: " + "; ".join(parts)


@dataclass
class InUse:
    """Every use of a configured registry's image, keyed by (registry, repository, digest);
    tag references already resolved to the digest the tag points at now."""

    read_at: datetime
    sources: tuple[str, ...] = ()
    uses: dict[tuple[str, str, str], list[Use]] = field(default_factory=dict)
    failures: tuple[SourceFailure, ...] = ()
    covers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # source → registries

    def of(self, registry: str, repository: str, digest: str) -> list[Use]:
        return self.uses.get((registry, repository, digest), [])

    def digests(
        self, registry: str, repository: str | None = None
    ) -> dict[tuple[str, str], list[Use]]:
        """(repository, digest) → uses, for one registry (and one repository)."""
        return {
            (repo, digest): found
            for (reg, repo, digest), found in self.uses.items()
            if reg == registry and (repository is None or repo == repository)
        }

    def failures_for(self, registry: str) -> list[SourceFailure]:
        """The failed sources that cover ``registry`` (empty `registries`: every one)."""
        return [
            f
            for f in self.failures
            if not self.covers.get(f.source) or registry in self.covers[f.source]
        ]
