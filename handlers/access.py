"""`roles`, `grant`, `revoke`: the role table, managed from chat."""

from __future__ import annotations

from bot.core.commands import READ
from bot.core.errors import Conflict, UsageError
from bot.core.policy import ALL, Grant, Role, Scope, require
from bot.core.replies import Reply, Table
from bot.kernel.context import Call, Context


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
        people=(user,),
    )


SLACK_IDS = ("U", "W", "S")


def _principal(call: Call, ctx: Context) -> str:
    """Who a grant names. In Slack a name must be a mention (Slack then sends the id), a
    configured login alias or a [groups] group: a bare `zed` matches no Slack user, and the
    grant would be reported as done while it can never apply."""
    principal = call.args["user"]
    if call.door != "slack" or (principal[:1] in SLACK_IDS and principal.isupper()):
        return principal
    if principal in ctx.config.users:
        return ctx.config.user_id(principal)
    if principal in ctx.config.groups:
        return principal
    raise UsageError(
        f"`{principal}` is not a Slack user or group: @-mention them (`grant @{principal} "
        f"reader`), so that Slack sends their id, or map the name in the config's [users]"
    )


def _requested(call: Call, ctx: Context) -> Grant:
    return Grant(
        principal=_principal(call, ctx),
        role=call.args["role"],
        registry=call.registry_name or ALL,
        repositories=call.args["repo"] or ALL,
    )


def grant(call: Call, *, ctx: Context) -> Reply:
    new = _requested(call, ctx)
    added = ctx.roles.grant(new, by=call.user, at=ctx.clock())
    text = f"Granted {new.principal} {new}." if added else f"{new.principal} already has {new}."
    return Reply(
        text=text,
        data={"added": added, "grant": str(new)},
        people=(new.principal,),
        spans=(str(new),),
    )


def revoke(call: Call, *, ctx: Context) -> Reply:
    old = _requested(call, ctx)
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
    return Reply(
        text=f"Revoked {old} from {old.principal}.",
        data={"revoked": str(old)},
        people=(old.principal,),
        spans=(str(old),),
    )
