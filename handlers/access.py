"""`roles`, `grant`, `revoke`: the role table, managed from chat."""

from __future__ import annotations

from bot.commands import READ
from bot.context import Call, Context
from bot.errors import Conflict
from bot.policy import ALL, Grant, Role, Scope, require
from bot.replies import Reply, Table


def _table(grants: list[Grant]) -> Table:
    return Table(
        ("principal", "role", "registry", "repositories"),
        tuple((g.principal, g.role.value, g.registry, g.repositories) for g in grants),
    )


def roles(call: Call, *, ctx: Context) -> Reply:
    """Your roles, or (for anyone with a role) another user's."""
    user = call.args["user"] or call.user
    grants = ctx.roles.grants_for(user)
    if user != call.user:
        require(call.grants, READ, Scope.ANYWHERE, action="roles USER")
        # Another user's grants only where the caller has a role: a reader of one registry
        # learns nothing about the others.
        mine = call.grants
        grants = [
            g
            for g in grants
            if any(m.registry == ALL for m in mine)
            or (g.registry != ALL and any(m.covers_registry(g.registry) for m in mine))
        ]
    text = f"{user} has {len(grants)} role{'' if len(grants) == 1 else 's'}" + (
        ":" if grants else "."
    )
    return Reply(
        text=text,
        table=_table(grants),
        data=[
            {
                "principal": g.principal,
                "role": g.role.value,
                "registry": g.registry,
                "repositories": g.repositories,
            }
            for g in grants
        ],
    )


def _requested(call: Call) -> Grant:
    return Grant(
        principal=call.args["user"],
        role=call.args["role"],
        registry=call.registry_name or ALL,
        repositories=call.args["repo"] or ALL,
    )


def grant(call: Call, *, ctx: Context) -> Reply:
    new = _requested(call)
    added = ctx.roles.grant(new, by=call.user, at=ctx.clock())
    text = f"Granted {new.principal} {new}." if added else f"{new.principal} already has {new}."
    return Reply(text=text, data={"added": added, "grant": str(new)})


def revoke(call: Call, *, ctx: Context) -> Reply:
    old = _requested(call)
    # Owners that someone can act as: a group with no members owns nothing in practice.
    owners_of_all = [
        g
        for g in ctx.roles.all_grants()
        if g.role is Role.OWNER
        and g.registry == ALL
        and g.repositories == ALL
        and ctx.roles.reaches_someone(g.principal)
    ]
    if old in owners_of_all and owners_of_all == [old]:
        raise Conflict(
            f"{old.principal} is the last owner of everything; grant another owner "
            "first, or nobody could grant roles again"
        )
    ctx.roles.revoke(old)
    return Reply(text=f"Revoked {old} from {old.principal}.", data={"revoked": str(old)})
