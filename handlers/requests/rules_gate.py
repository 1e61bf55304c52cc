"""The `[[policy]]` rules (bot/core/rules.py) applied to requests: at request, at each
approval and at execution, always with the rules and roles in force at that moment.

One hook per place in the request flow:
- `at_request` (delete.py, purge.py): the terms a new request is made with (approvals, ttl),
  refusing a short reason, a freeze (naming when it ends) and a break-glass that may not be;
- `confirm` (decide.py `approve`): `confirm = "type"`: the repository name typed, or nothing;
- `ready` (the quorum's last word, bot/state/requests.py `approve`): enough approvals under
  the current rules, one from each rule's approvers, and no freeze; a request approved while a
  freeze began is held (said in its thread) and released by `release_held` (worker's sweep).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from bot.core import formatting as fmt
from bot.core.commands import OWN, ROTATE
from bot.core.errors import Conflict, PermissionDenied, UsageError
from bot.core.policy import Grant, Scope, allows
from bot.core.request_types import Action, DeletionRequest, State
from bot.core.rules import Terms, terms_for
from bot.kernel.context import Call, Context
from bot.state.requests import Executor
from bot.state.reviews import Reviews

LINE = "line"  # bot/state/announce.py LINE: a text line in the request's thread


def terms(
    ctx: Context, *, registry: str, repositories: Iterable[str], action: str, items: int = 1
) -> Terms:
    """The strictest terms of the rules in force for a deletion there."""
    return terms_for(
        ctx.config.rules,
        default_required=ctx.config.approvals.required,
        default_ttl=ctx.config.approvals.ttl,
        registry=registry,
        repositories=repositories,
        action=action,
        items=items,
    )


def policy_action(action: Action) -> str:
    """The [[policy]] / [approvals] action whose terms govern a request of ``action``.

    A forced undo (`undo --force`) counts as `delete_manifest`: it replaces the image a tag
    names, so what the tag pointed at is lost to its users as surely as by a manifest delete
    (the re-pushed digest stays only if another tag names it). The strictest per-item count
    the rules have is the sensible one; `purge`'s is meant for bulk and may be looser or
    stricter by item count, which a handful of tags should not decide.
    """
    return "delete_manifest" if action is Action.UNDO_FORCE else action.value


def terms_of(ctx: Context, request: DeletionRequest) -> Terms:
    """A request's terms under the rules in force now; never fewer approvals than it was made
    with (a rule loosened since does not lower what a waiting request was promised)."""
    found = terms(
        ctx,
        registry=request.registry,
        repositories=request.repositories,
        action=policy_action(request.action),
        items=(
            request.spec.items
            if request.spec is not None
            else len(request.forced.items)
            if request.forced is not None
            else 1
        ),
    )
    if request.required > found.required:
        from dataclasses import replace

        found = replace(found, required=request.required)
    return found


def at_request(
    ctx: Context,
    args: dict,
    *,
    user: str,
    grants: Iterable[Grant] | None,
    registry: str,
    repositories: Iterable[str],
    action: str,
    items: int = 1,
) -> Terms:
    """The terms to make the request with; UserError (nothing requested) when a rule refuses."""
    repositories = tuple(repositories)
    found = terms(ctx, registry=registry, repositories=repositories, action=action, items=items)
    reason = args.get("reason") or ""
    if len(reason) < found.reason_min:
        raise UsageError(
            f"rule {found.rule} needs a --reason of at least {found.reason_min} characters "
            f"(yours has {len(reason)}); nothing was requested"
        )
    if args.get("break_glass"):
        may_break_glass(
            ctx, user, tuple(grants or ()), found, registry=registry, repositories=repositories
        )
        return found
    frozen = found.frozen_until(ctx.clock())
    if frozen is not None:
        rule, end = frozen
        raise Conflict(
            f"rule {rule} is in a freeze until {fmt.when(end)}: no deletion is requested or "
            f"carried out before then; nothing was requested"
            + (" (an incident: `--break-glass`, by oncall)" if found.break_glass else "")
        )
    return found


def may_break_glass(
    ctx: Context,
    user: str,
    grants: tuple[Grant, ...],
    found: Terms,
    *,
    registry: str,
    repositories: tuple[str, ...],
) -> None:
    """The rule allows it, the caller holds oncall or owner on every repository, and has not
    used it `break_glass_per_day` times today: else refused, saying which."""
    if not found.break_glass:
        raise PermissionDenied(
            f"rule {', '.join(found.forbids_break_glass)} does not allow --break-glass "
            "(break_glass = false); nothing was deleted: make a request"
        )
    lacking = [
        r
        for r in repositories
        if not allows(grants, ROTATE, Scope.REPOSITORY, registry=registry, repository=r)
    ]
    if lacking:
        raise PermissionDenied(
            f"--break-glass needs oncall or owner on every repository it deletes from; you "
            f"lack it on {registry}/{', '.join(lacking[:5])}; nothing was deleted"
        )
    used = Reviews(ctx.store, ctx.audit).used_today(user, ctx.clock())
    if used >= found.break_glass_per_day:
        raise PermissionDenied(
            f"you have used --break-glass {used} times today (UTC), the most rule "
            f"{found.rule} allows ({found.break_glass_per_day}); nothing was deleted: make a "
            "request"
        )


def expected_word(request: DeletionRequest) -> str:
    """What an approver types to confirm: the repository (a purge over several: the
    registry's name)."""
    repositories = request.repositories
    return repositories[0] if len(repositories) == 1 else request.registry


def confirm(call: Call, ctx: Context, request: DeletionRequest) -> None:
    """Where a rule has confirm = "type": the approver typed the repository name, exactly."""
    if request.state is not State.PENDING or not terms_of(ctx, request).confirm:
        return
    typed = call.args.get("confirm")
    word = expected_word(request)
    if typed is None:
        raise UsageError(
            f"rule {terms_of(ctx, request).rule} asks approvers to type the repository name: "
            f"`approve {request.id} --confirm {word}` (in Slack: the card's Approve button); "
            "nothing was approved"
        )
    if typed != word:
        raise UsageError(
            f"`{typed[:60]}` is not `{word}`: type the repository name exactly; nothing was "
            "approved"
        )


def counted_principals(ctx: Context, counted: Iterable[str]) -> list[list[str]]:
    return [ctx.roles.principals(user) for user in counted]


def ready(ctx: Context) -> Callable[[DeletionRequest, tuple[str, ...]], bool]:
    """The quorum's last word (bot/state/requests.py `Ready`), under the rules in force."""

    def check(request: DeletionRequest, counted: tuple[str, ...]) -> bool:
        found = terms_of(ctx, request)
        if len(request.reason) < found.reason_min:
            raise Conflict(
                f"rule {found.rule} now needs a reason of at least {found.reason_min} "
                f"characters and request #{request.id}'s has {len(request.reason)}: it cannot "
                "be approved; make a new request"
            )
        if len(counted) < found.required:
            return False
        if found.missing_approvers(counted_principals(ctx, counted)):
            return False
        frozen = found.frozen_until(ctx.clock())
        if frozen is not None:
            _say_held(ctx, request, *frozen)
            return False
        return True

    return check


def _say_held(ctx: Context, request: DeletionRequest, rule: str, end: datetime) -> None:
    if request.channel is None:
        return
    ctx.outbox.put(
        f"line:{request.id}:held:{end.isoformat()}",
        LINE,
        {
            "request": request.id,
            "line": "text",
            "text": f"Approved, but rule {rule} is in a freeze until {fmt.when(end)}: it runs "
            f"then, unless it expires first ({fmt.when(request.expires_at)}).",
        },
        after=f"card:{request.id}",
    )


def _say_released(ctx: Context, request: DeletionRequest) -> None:
    """In the claim's transaction: the thread is told the held request runs now."""
    if request.channel is not None:
        ctx.outbox.put(
            f"line:{request.id}:released",
            LINE,
            {
                "request": request.id,
                "line": "text",
                "text": "The freeze is over: the approved request runs now.",
            },
            after=f"card:{request.id}",
        )


def still_owner(ctx: Context, request: DeletionRequest, approver: str) -> bool:
    grants = ctx.roles.grants_for(approver)
    return all(
        allows(grants, OWN, Scope.REQUEST, registry=request.registry, repository=r)
        for r in request.repositories
    )


def release_held(ctx: Context, execute: Executor) -> list[DeletionRequest]:
    """Run every pending request whose approvals now suffice (a freeze is over): the worker's
    sweep. Each goes through the claim's compare-and-set, so a racing approval or another
    sweep never runs it twice."""
    done = []
    check = ready(ctx)
    for request in ctx.requests.list(states=[State.PENDING], limit=1000):
        if len(request.approvals) < request.required:
            continue

        def now_ready(current: DeletionRequest) -> bool:
            counted = tuple(
                a.approver
                for a in current.approvals
                if a.approver != current.requester and still_owner(ctx, current, a.approver)
            )
            try:
                return check(current, counted)
            except Conflict:
                return False

        ran = ctx.requests.run_now(
            request.id,
            execute=execute,
            ready=now_ready,
            before=lambda current: _say_released(ctx, current),
            audit=("acrbot", "request.release", "the freeze is over"),
        )
        if ran is not None:
            done.append(ran)
    return done


def pending_text(ctx: Context, request: DeletionRequest) -> str:
    """What a pending request still needs, as the card and `request ID` say it."""
    found = terms_of(ctx, request)
    counted = [a.approver for a in request.approvals]
    text = found.needs_text(approvals=len(counted), counted=counted_principals(ctx, counted))
    frozen = found.frozen_until(ctx.clock())
    if frozen is not None:
        text += f"; frozen until {fmt.when(frozen[1])} (rule {frozen[0]})"
    return text


def policy_field(ctx: Context, request: DeletionRequest) -> tuple[str, str] | None:
    """The `policy` line of `request ID` and the card: the rule, and what is still needed
    (None without `[[policy]]` rules: `[approvals]` alone reads as it always has)."""
    if not ctx.config.rules:
        return None
    if request.state is State.PENDING:
        return ("policy", pending_text(ctx, request))
    return ("policy", f"rule {terms_of(ctx, request).rule}")


def created_note(found: Terms) -> str:
    """What a new request's reply adds when a `[[policy]]` rule governs it (nothing for
    `[approvals]` alone: its replies read as they always have)."""
    if found.rules == ("default",) and not found.approvers:
        return ""
    return " " + found.needs_text(approvals=0).capitalize() + "."


def approval_note(ctx: Context, request: DeletionRequest) -> str:
    """The reply to an approval that left the request pending: what it still needs."""
    found = terms_of(ctx, request)
    counted = [a.approver for a in request.approvals]
    missing = found.missing_approvers(counted_principals(ctx, counted))
    left = found.required - len(counted)
    frozen = found.frozen_until(ctx.clock())
    if left <= 0 and not missing and frozen is not None:
        return (
            f"Request #{request.id} approved, but rule {frozen[0]} is in a freeze until "
            f"{fmt.when(frozen[1])}: it runs then, unless it expires first "
            f"({fmt.when(request.expires_at)})."
        )
    text = f"Approval recorded for request #{request.id}; {max(left, 0)} more needed"
    if missing:
        text += "".join(f", one from {' or '.join(ids)} (rule {rule})" for rule, ids in missing)
    return text + "."
