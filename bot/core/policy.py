"""Who may do what: roles, grants and the one function that decides.

Policy is pure: it gets the caller's principals (user id plus group ids) and the grants that
name them, and answers yes, or no with the exact reason. Storage of grants lives in
bot/state/roles.py; which role each command needs is declared with the command
(bot/core/commands.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from bot.core.errors import PermissionDenied

ALL = "*"


class Role(StrEnum):
    READER = "reader"
    CONTRIBUTOR = "contributor"
    OWNER = "owner"
    ONCALL = "oncall"


# What holding a role lets you do, expressed as the roles it includes.
IMPLIES: dict[Role, frozenset[Role]] = {
    Role.READER: frozenset({Role.READER}),
    Role.CONTRIBUTOR: frozenset({Role.READER, Role.CONTRIBUTOR}),
    Role.OWNER: frozenset({Role.READER, Role.CONTRIBUTOR, Role.OWNER}),
    Role.ONCALL: frozenset({Role.READER, Role.ONCALL}),
}


class Scope(StrEnum):
    """Where a command's role must be held."""

    NONE = "none"  # anyone may run it
    ANYWHERE = "anywhere"  # the role on any registry or repository
    REGISTRY = "registry"  # the role on the registry's every repository (glob `*`)
    SOME_REPOSITORY = "some-repository"  # the role on at least one repository of the registry
    REPOSITORY = "repository"  # the role on this repository
    REQUEST = "request"  # the role on the request's repository, checked by the handler


@dataclass(frozen=True)
class Grant:
    """A role given to a user or user group, on a registry (or all) and a repository glob."""

    principal: str
    role: Role
    registry: str = ALL
    repositories: str = ALL

    def __str__(self) -> str:
        """`contributor on demo/team-a/*`, `reader on */*` (everything); a glob in every
        registry reads `contributor on team-a/* in every registry`, not `*/team-a/*`, which
        reads as one pattern."""
        if self.registry == ALL and self.repositories != ALL:
            return f"{self.role} on {self.repositories} in every registry"
        return f"{self.role} on {self.registry}/{self.repositories}"

    def covers_registry(self, registry: str | None) -> bool:
        return self.registry == ALL or registry is None or self.registry == registry

    def covers(self, registry: str | None, repository: str | None) -> bool:
        if not self.covers_registry(registry):
            return False
        return repository is None or fnmatchcase(repository, self.repositories)


def allows(
    grants: Iterable[Grant],
    needs: frozenset[Role],
    scope: Scope,
    *,
    registry: str | None = None,
    repository: str | None = None,
) -> bool:
    """True if one of ``grants`` gives one of the roles in ``needs`` where ``scope`` says."""
    if scope is Scope.NONE:
        return True
    for grant in grants:
        if not IMPLIES[grant.role] & needs:
            continue
        if scope is Scope.ANYWHERE:
            return True
        if scope is Scope.SOME_REPOSITORY and grant.covers_registry(registry):
            return True
        if (
            scope is Scope.REGISTRY
            and grant.covers_registry(registry)
            and grant.repositories == ALL
        ):
            return True
        if scope in (Scope.REPOSITORY, Scope.REQUEST) and grant.covers(registry, repository):
            return True
    return False


def require(
    grants: Iterable[Grant],
    needs: frozenset[Role],
    scope: Scope,
    *,
    action: str,
    registry: str | None = None,
    repository: str | None = None,
) -> None:
    """Raise PermissionDenied saying which rule refused, unless :func:`allows` says yes."""
    grants = list(grants)
    if allows(grants, needs, scope, registry=registry, repository=repository):
        return
    roles = " or ".join(sorted(needs))
    if scope is Scope.ANYWHERE:
        where = "any registry"
    elif scope is Scope.REGISTRY:
        where = f"all of {registry}"
    elif scope is Scope.SOME_REPOSITORY:
        where = f"{registry}"
    else:
        where = f"{registry}/{repository}"
    held = ", ".join(str(g) for g in grants) or "no roles"
    raise PermissionDenied(f"`{action}` needs {roles} on {where}; you have {held}.")


def visible(grants: Iterable[Grant], registry: str, repositories: Iterable[str]) -> list[str]:
    """The repositories of ``registry`` that the grants let the caller read."""
    readable = [g for g in grants if Role.READER in IMPLIES[g.role]]
    return [r for r in repositories if any(g.covers(registry, r) for g in readable)]
