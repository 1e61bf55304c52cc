"""`rotate` and `admin`: the registry's admin user and its two passwords.

A registry has two admin passwords so that consumers can move from one to the other without an
outage: rotate the one not in use, switch consumers to it, then rotate the other. The new value
goes only to the caller (Reply.secret); audit rows and channel messages never carry it.
"""

from __future__ import annotations

from bot.core.errors import Conflict
from bot.core.replies import Reply
from bot.kernel.context import Call, Context


def rotate(call: Call, *, ctx: Context) -> Reply:
    registry = call.registry
    assert registry is not None
    status = registry.admin_status()
    if not status.enabled:
        raise Conflict(
            f"admin user is disabled on {registry.name}; an owner can run "
            f"`admin enable --registry {registry.name}`"
        )
    which = call.args["which"]
    other = "password2" if which == "password" else "password"
    new = registry.regenerate_password(which)
    if new.vault_secret:
        return Reply(
            text=f"Regenerated {which} of {registry.name} (admin user {new.username}); the new "
            f"value is in Key Vault as {new.vault_secret}.",
            notes=(
                f"Consumers still using {other} keep working: move them to {which}, "
                f"then rotate {other}.",
            ),
            data={
                "registry": registry.name,
                "password": which,
                "username": new.username,
                "key_vault_secret": new.vault_secret,
            },
        )
    notes = (
        f"Consumers still using {other} keep working: move them to {which}, then rotate {other}.",
    )
    data = {"registry": registry.name, "password": which, "username": new.username}
    if new.vault_error:
        # Regenerated, but Key Vault did not take it: the value exists only here now.
        return Reply(
            text=f"Regenerated {which} of {registry.name} (admin user {new.username}), but "
            f"Key Vault did not store it ({new.vault_error}): here it is, shown once. Put it "
            "in Key Vault yourself; it is not kept anywhere else.",
            notes=notes,
            secret=new.value,
            data={**data, "key_vault_error": new.vault_error},
        )
    return Reply(
        text=f"Regenerated {which} of {registry.name} (admin user {new.username}).",
        notes=notes,
        secret=new.value,
        data=data,
    )


def admin(call: Call, *, ctx: Context) -> Reply:
    registry = call.registry
    assert registry is not None
    action = call.args["action"]
    if action == "status":
        status = registry.admin_status()
    else:
        status = registry.set_admin(enabled=action == "enable")
    state = "enabled" if status.enabled else "disabled"
    user = f" (user {status.username})" if status.enabled and status.username else ""
    return Reply(
        text=f"Admin user on {registry.name} is {state}{user}.",
        data={"registry": registry.name, "enabled": status.enabled, "username": status.username},
    )
