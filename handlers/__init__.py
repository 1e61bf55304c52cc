"""Command handlers: one module per command family, and HANDLERS, the table from each
command's id (bot/core/commands.py COMMANDS) to the function that answers it.

A handler gets a Context (bot/kernel/context.py) and returns a Reply (bot/core/replies.py).
May import: bot.core, bot.state, bot.ops, bot.kernel, and handlers.registries. Never the doors
(bot.app, bot.cli, bot.console, bot.slack, bot.notebook) and never Slack or IPython
(tests/unit/test_layering.py). Backends live in handlers/registries/.
"""

from __future__ import annotations

from bot.kernel.dispatch import Handler
from handlers import (
    access,
    audit_log,
    browse,
    credentials,
    deployed,
    locks,
    meta,
    policy_rules,
    report,
)
from handlers.events import listing as events_listing
from handlers.requests import break_glass, decide, show, undo

HANDLERS: dict[str, Handler] = {
    "help": meta.help_command,
    "whoami": meta.whoami,
    "registries": meta.registries,
    "repos": browse.repos,
    "tags": browse.tags,
    "show": browse.show,
    "report": report.report,
    "delete": break_glass.delete,  # a request; --break-glass runs it now
    "purge": break_glass.purge,
    "lock": locks.lock,
    "where": deployed.where,
    "unlock": locks.unlock,
    "request": show.show_request,
    "requests": show.list_requests,
    "approve": decide.approve,
    "deny": decide.deny,
    "cancel": decide.cancel,
    "review": break_glass.review,
    "policy": policy_rules.policy,
    "undo": undo.undo,
    "rotate": credentials.rotate,
    "admin": credentials.admin,
    "roles": access.roles,
    "grant": access.grant,
    "revoke": access.revoke,
    "audit": audit_log.audit,
    "events": events_listing.events,
}
