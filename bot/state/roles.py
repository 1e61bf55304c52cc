"""Grants in the database: give, take back, list; and the principals a user acts as."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from bot.core.errors import NotFound
from bot.core.policy import ALL, Grant, Role
from bot.state.store import Store

# Returns the group ids a user belongs to (Slack user groups, or static groups from config).
GroupResolver = Callable[[str], Iterable[str]]
# Returns a group's members, or None when the principal is not a group (it is a user).
MemberResolver = Callable[[str], Iterable[str] | None]


class RoleTable:
    """The role table: grants of a role to a user or user group on a registry/repo glob."""

    def __init__(
        self,
        store: Store,
        *,
        groups_of: GroupResolver | None = None,
        members_of: MemberResolver | None = None,
    ) -> None:
        self._store = store
        self._groups_of = groups_of or (lambda _user: ())
        self._members_of = members_of or (lambda _principal: None)

    def users(self, principal: str) -> list[str]:
        """The users a principal stands for: itself, or a group's members."""
        members = self._members_of(principal)
        return [principal] if members is None else list(members)

    def reaches_someone(self, principal: str) -> bool:
        """A user, or a group with at least one member: a grant that someone can use."""
        members = self._members_of(principal)
        return members is None or any(True for _ in members)

    def principals(self, user: str) -> list[str]:
        """The user id followed by the ids of the groups the user is in."""
        return [user, *self._groups_of(user)]

    def grants_for(self, user: str) -> list[Grant]:
        """Every grant that applies to ``user``, directly or through a group."""
        principals = self.principals(user)
        marks = ", ".join("?" for _ in principals)
        rows = self._store.db.query(
            f"select * from grants where principal in ({marks}) order by id", principals
        )
        return [_grant(row) for row in rows]

    def direct_grants(self, principal: str) -> list[Grant]:
        rows = self._store.db.query(
            "select * from grants where principal = ? order by id", [principal]
        )
        return [_grant(row) for row in rows]

    def principal_ids(self, keep: Callable[[str], bool]) -> list[str]:
        """Distinct principals in the table that ``keep`` accepts (e.g. Slack user groups)."""
        rows = self._store.db.query("select distinct principal from grants order by principal")
        return [row["principal"] for row in rows if keep(row["principal"])]

    def all_grants(self) -> list[Grant]:
        return [_grant(row) for row in self._store.db.query("select * from grants order by id")]

    def grant(self, grant: Grant, *, by: str, at: datetime) -> bool:
        """Add ``grant``; False if it already existed (granting twice is not an error)."""
        with self._store.transaction() as db:
            added = db.execute(
                "insert into grants (principal, role, registry, repositories, granted_by, "
                "granted_at) values (?, ?, ?, ?, ?, ?) on conflict "
                "(principal, role, registry, repositories) do nothing",
                [
                    grant.principal,
                    grant.role.value,
                    grant.registry,
                    grant.repositories,
                    by,
                    at.isoformat(timespec="seconds"),
                ],
            ).rowcount
        return added == 1

    def revoke(self, grant: Grant) -> None:
        """Remove exactly ``grant``; NotFound lists what the principal does hold."""
        with self._store.transaction() as db:
            row_id = self._find(grant)
            if row_id is None:
                held = ", ".join(str(g) for g in self.direct_grants(grant.principal)) or "nothing"
                raise NotFound(f"{grant.principal} has no {grant}; they hold: {held}")
            db.execute("delete from grants where id = ?", [row_id])

    def _find(self, grant: Grant) -> int | None:
        rows = list(
            self._store.db.query(
                "select id from grants where principal = ? and role = ? and registry = ? "
                "and repositories = ?",
                [grant.principal, grant.role.value, grant.registry, grant.repositories],
            )
        )
        return rows[0]["id"] if rows else None


def _grant(row: dict) -> Grant:
    return Grant(
        principal=row["principal"],
        role=Role(row["role"]),
        registry=row["registry"] or ALL,
        repositories=row["repositories"] or ALL,
    )
