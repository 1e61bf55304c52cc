"""`approve`, `deny`, `cancel`, and recovery: a request's decisions, and the executor each
action runs (EXECUTORS, keyed by the request's Action) once its quorum is met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.core.commands import CONTRIBUTE, OWN
from bot.core.policy import Role, Scope, allows, require
from bot.core.registry import (
    Progress,
)
from bot.core.replies import Reply
from bot.core.request_types import Action, DeletionRequest, State
from bot.kernel.context import Call, Context
from handlers.requests import rules_gate
from handlers.requests.delete import execute_delete, gone_note, reconcile_delete
from handlers.requests.purge_run import execute_purge
from handlers.requests.reply import approval_text, request_reply, visible_request
from handlers.requests.undo_force import execute_forced, reconcile_forced


@dataclass(frozen=True)
class Executor:
    """How an approved request of one action is carried out, and finished after a crash."""

    run: Callable[[Context, DeletionRequest, Progress], str | None]
    reconcile: Callable[[Context, DeletionRequest], str | None]


def _run_purge(ctx: Context, request: DeletionRequest, progress: Progress) -> str | None:
    return execute_purge(ctx, request, progress=progress)


def _reconcile_purge(ctx: Context, request: DeletionRequest) -> str | None:
    return execute_purge(ctx, request)  # settles the items a crash left `sending`, then resumes


_DELETE = Executor(run=execute_delete, reconcile=reconcile_delete)
EXECUTORS: dict[Action, Executor] = {
    Action.DELETE: _DELETE,
    Action.DELETE_MANIFEST: _DELETE,
    Action.PURGE: Executor(run=_run_purge, reconcile=_reconcile_purge),
    Action.UNDO_FORCE: Executor(run=execute_forced, reconcile=reconcile_forced),
}


def _authorizer(
    call: Call, ctx: Context, needs: frozenset[Role], action: str
) -> Callable[[DeletionRequest], None]:
    """Re-read the caller's grants at decision time: a role revoked a second ago counts."""

    def authorize(request: DeletionRequest) -> None:
        grants = ctx.roles.grants_for(call.user)
        for repository in request.repositories:  # a purge: every repository it touches
            require(
                grants,
                needs,
                Scope.REQUEST,
                action=action,
                registry=request.registry,
                repository=repository,
            )

    return authorize


def approve(call: Call, *, ctx: Context) -> Reply:
    """Approve; the approval that completes the quorum runs the deletion, once."""
    rules_gate.confirm(call, ctx, visible_request(call, ctx, call.args["id"]))  # confirm="type"

    def still_counts(approver: str) -> bool:
        request = ctx.requests.get(call.args["id"])
        grants = ctx.roles.grants_for(approver)
        return all(
            allows(grants, OWN, Scope.REQUEST, registry=request.registry, repository=r)
            for r in request.repositories
        )

    result = ctx.requests.approve(
        call.args["id"],
        approver=call.user,
        reason=call.args["reason"],
        authorize=_authorizer(call, ctx, OWN, "approve"),
        execute=lambda request: EXECUTORS[request.action].run(ctx, request, call.progress),
        origin=call.origin,
        still_counts=still_counts,
        ready=rules_gate.ready(ctx),  # [[policy]]: approvers, freeze, at this moment
    )
    request = result.request
    text = approval_text(request)
    if request.state is State.PENDING:
        text = rules_gate.approval_note(ctx, request)
    if result.withdrawn:
        who = ", ".join(result.withdrawn)
        text += (
            f" ({who}'s earlier approval no longer counts: no longer an owner there.)"
            if len(result.withdrawn) == 1
            else f" (earlier approvals by {who} no longer count: no longer owners there.)"
        )
    return request_reply(text, request, ok=request.state is not State.FAILED)


def deny(call: Call, *, ctx: Context) -> Reply:
    visible_request(call, ctx, call.args["id"])
    request = ctx.requests.deny(
        call.args["id"],
        user=call.user,
        reason=call.args["reason"],
        authorize=_authorizer(call, ctx, OWN, "deny"),
        origin=call.origin,
    )
    return request_reply(f"Request #{request.id} denied.", request)


def cancel(call: Call, *, ctx: Context) -> Reply:
    request_id = call.args["id"]
    require(call.grants, CONTRIBUTE, Scope.ANYWHERE, action="cancel")
    visible_request(call, ctx, request_id)
    request = ctx.requests.cancel(request_id, user=call.user, origin=call.origin)
    return request_reply(f"Request #{request.id} cancelled.", request)


def recover(ctx: Context) -> list[DeletionRequest]:
    """Finish requests left in `executing` by a crash or an unanswered DELETE."""
    return ctx.requests.recover(
        lambda request: EXECUTORS[request.action].reconcile(ctx, request),
        lambda request: gone_note(ctx.registries.get(request.registry), request),
    )
