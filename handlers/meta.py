"""`help`, `whoami`, `registries`: what the caller can do, and where."""

from __future__ import annotations

from bot.core.commands import COMMAND_LIST, COMMANDS, any_needs, needs_when, scope
from bot.core.errors import UsageError
from bot.core.grammar import CommandSpec, unknown_command_message
from bot.core.policy import Scope, allows
from bot.core.replies import Reply, Table
from bot.kernel.context import Call, Context

ADMIN_COMMANDS = ("rotate", "admin")


def may_run_somewhere(call: Call, name: str, ctx: Context) -> bool:
    """Whether `help` should list ``name``: the caller holds a role that runs it somewhere,
    where the command needs it (registry-wide commands: a grant on every repository), and a
    configured registry can do it at all."""
    spec = COMMANDS[name]
    if name in ADMIN_COMMANDS and not any(getattr(r, "has_admin", False) for r in ctx.registries):
        return False
    if name == "where" and ctx.deployed is None:  # no [[deployed]] source: nothing to ask
        return False
    where = scope(spec)
    if where is Scope.NONE:
        return True
    return allows(
        call.grants, any_needs(spec), Scope.REGISTRY if where is Scope.REGISTRY else Scope.ANYWHERE
    )


def help_command(call: Call, *, ctx: Context) -> Reply:
    """List the commands the caller may run, or explain one command."""
    name = call.args["command"]
    if name is None:
        specs = [s for s in COMMAND_LIST if may_run_somewhere(call, s.name, ctx)]
        rows = tuple((s.usage, s.summary) for s in specs)
        return Reply(
            text="Commands you can run (`help COMMAND` for details):",
            table=Table(("usage", "what it does"), rows),
            data=[{"usage": u, "summary": s} for u, s in rows],
        )
    spec = COMMANDS.get(name)
    if spec is None:
        raise UsageError(unknown_command_message(name, COMMANDS))
    fields = [("usage", spec.usage)]
    fields += [(p.label, p.help) for p in spec.params]
    fields.append(("example", spec.example))
    fields.append(("needs", needs_text(spec)))
    return Reply(
        text=f"{spec.name}: {spec.summary}",
        fields=tuple(fields),
        data={"usage": spec.usage, "summary": spec.summary, "example": spec.example},
    )


def needs_text(spec: CommandSpec) -> str:
    """`contributor; reader with --dry-run`: the roles, and where an argument changes them."""
    text = " or ".join(sorted(spec.meta["needs"])) or "anyone"
    for name, by_value in needs_when(spec):
        param = next(p for p in spec.params if p.name == name)
        for value, roles in by_value.items():
            where = param.flag if value is True else f"`{spec.name} {value}`"
            text += f"; {' or '.join(sorted(roles))} {'with' if value is True else 'for'} {where}"
    return text


def whoami(call: Call, *, ctx: Context) -> Reply:
    """Who the bot thinks you are: your id, groups and grants."""
    groups = ctx.roles.principals(call.user)[1:]
    grants = [
        str(g) + (f" (via {g.principal})" if g.principal != call.user else "") for g in call.grants
    ] or ["no roles yet: ask an owner to `grant` you one"]
    fields = [("user", call.user)]
    if groups:
        fields.append(("groups", ", ".join(groups)))
    fields.append(("roles", "; ".join(grants)))
    return Reply(
        text=f"You are {call.user}.",
        fields=tuple(fields),
        data={"user": call.user, "groups": groups, "grants": [str(g) for g in call.grants]},
        people=(call.user, *groups, *(g.principal for g in call.grants)),
        spans=tuple(str(g) for g in call.grants),
    )


def registries(call: Call, *, ctx: Context) -> Reply:
    """The configured registries the caller holds a role on."""
    rows = tuple(
        (r.name, r.kind, r.login_server or "-", "yes" if r is ctx.registries.default else "")
        for r in ctx.registries
        if any(g.covers_registry(r.name) for g in call.grants)
    )
    return Reply(
        text=f"{len(rows)} registr{'y' if len(rows) == 1 else 'ies'}:",
        table=Table(("name", "type", "login server", "default"), rows),
        data=[{"name": n, "type": t, "login_server": s} for n, t, s, _ in rows],
    )
