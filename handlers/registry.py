"""The one registry interface every backend implements, and the data it returns.

Handlers call only this Protocol, so the same command works on an OCI image layout on disk,
any distribution registry, or Azure Container Registry. Backends raise bot.errors UserErrors
(NotFound, Unsupported, Conflict) with messages that name the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from bot.errors import Unsupported


@dataclass(frozen=True)
class TagInfo:
    """A tag and whatever the backend knows about it (None where it does not)."""

    name: str
    digest: str
    created: datetime | None = None
    updated: datetime | None = None
    size: int | None = None
    locked: bool = False


@dataclass(frozen=True)
class ImageInfo:
    """A manifest and every tag that points at it."""

    repository: str
    digest: str
    media_type: str | None = None
    size: int | None = None
    created: datetime | None = None
    updated: datetime | None = None
    tags: tuple[str, ...] = ()
    locked_tags: tuple[str, ...] = ()
    manifest_locked: bool = False


@dataclass(frozen=True)
class AdminStatus:
    enabled: bool
    username: str | None = None


@dataclass(frozen=True)
class NewPassword:
    """A regenerated admin password. ``value`` is a secret: never log, audit or post it."""

    name: str
    username: str
    value: str = field(repr=False)
    vault_secret: str | None = None  # "name (version v)" when stored in Key Vault instead


@runtime_checkable
class Registry(Protocol):
    """What acr-chatops needs from a registry."""

    name: str
    kind: str
    login_server: str | None
    can_untag: bool

    def repositories(self) -> list[str]: ...

    def tags(self, repository: str) -> list[TagInfo]: ...

    def resolve(self, repository: str, tag: str) -> str: ...

    def image(self, repository: str, reference: str) -> ImageInfo: ...

    def untag(self, repository: str, tag: str) -> None: ...

    def delete_manifest(self, repository: str, digest: str) -> None: ...

    def admin_status(self) -> AdminStatus: ...

    def set_admin(self, *, enabled: bool) -> AdminStatus: ...

    def regenerate_password(self, which: str) -> NewPassword: ...


class NoAdminUser:
    """Mixin for backends without an admin user or credentials to rotate."""

    name: str
    kind: str

    def _no_admin(self) -> Unsupported:
        return Unsupported(f"{self.name} ({self.kind}) has no admin user or credentials to manage")

    def admin_status(self) -> AdminStatus:
        raise self._no_admin()

    def set_admin(self, *, enabled: bool) -> AdminStatus:
        raise self._no_admin()

    def regenerate_password(self, which: str) -> NewPassword:
        raise self._no_admin()
