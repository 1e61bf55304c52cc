"""`delete … --break-glass` and `purge … --break-glass`: act now in an incident, loudly, and
be reviewed afterwards (`review ID --ok | --concern TEXT`).

A break-glass is an ordinary request (made by delete.py / purge.py with every check they
make, and `rules_gate.at_request` refusing where the rule, the role or the day's count says
no) that is then run at once through the same execution path approvals use (`EXECUTORS`,
bot/state/requests.py `run_now`): every check at execution applies to it. Its review is
written in the transaction that claims it, with the audit mark and the announcements (the
security channel, a DM to each owner of the repositories), so none runs unannounced or
unreviewed. The worker's sweep (`sweep_policy`) reminds the owners before the review is due
and escalates to the security channel after.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core import formatting as fmt
from bot.core.commands import OWN
from bot.core.errors import NotFound, PermissionDenied, UsageError
from bot.core.policy import Role, Scope, require
from bot.core.registry import no_progress
from bot.core.replies import Reply
from bot.core.request_types import DeletionRequest, State
from bot.kernel.context import Call, Context
from bot.state.announce import POST
from bot.state.reviews import OPEN, Review, Reviews
from handlers.requests import delete as delete_module
from handlers.requests import purge as purge_module
from handlers.requests import rules_gate
from handlers.requests.decide import EXECUTORS
from handlers.requests.reply import approval_text, request_reply, visible_request

DM = "dm"  # bot/slack/delivery.py DM: payload user, text
REMIND_AT = 0.75  # share of review_within gone when the owners are reminded


def delete(call: Call, *, ctx: Context) -> Reply:
    """`delete`: a request; with --break-glass, carried out now."""
    reply = delete_module.delete(call, ctx=ctx)
    return _break_glass(call, ctx, reply) if call.args.get("break_glass") else reply


def purge(call: Call, *, ctx: Context) -> Reply:
    """`purge`: a dry run or a request; with --break-glass, carried out now."""
    reply = purge_module.purge(call, ctx=ctx)
    return _break_glass(call, ctx, reply) if call.args.get("break_glass") else reply


def _break_glass(call: Call, ctx: Context, reply: Reply) -> Reply:
    request = reply.request
    assert request is not None
    if request.state is not State.PENDING:  # the job run again after a crash: as it stands
        return request_reply(_done_text(ctx, request), request, ok=request.state is State.DONE)
    found = rules_gate.terms_of(ctx, request)
    reviews = Reviews(ctx.store, ctx.audit)
    now = ctx.clock()

    def before(current: DeletionRequest) -> None:
        # Counted again inside the claim's transaction: two break-glasses at once get one
        # slot each, never the same one.
        used = reviews.used_today(call.user, now)
        if used >= found.break_glass_per_day:
            raise PermissionDenied(
                f"you have used --break-glass {used} times today (UTC), the most rule "
                f"{found.rule} allows ({found.break_glass_per_day}); nothing was deleted"
            )
        reviews.open(
            request_id=current.id,
            actor=call.user,
            registry=current.registry,
            repositories=current.repositories,
            rule=found.rule,
            now=now,
            due=now + found.review_within,
        )
        _announce(ctx, current, actor=call.user, due=now + found.review_within)

    try:
        ran = ctx.requests.run_now(
            request.id,
            execute=lambda r: EXECUTORS[r.action].run(ctx, r, call.progress),
            ready=lambda _r: True,
            before=before,
            audit=(call.user, "request.break_glass", f"rule {found.rule}"),
        )
    except PermissionDenied:
        ctx.requests.cancel(request.id, user=call.user)
        raise
    current = ran if ran is not None else ctx.requests.get(request.id)
    return request_reply(_done_text(ctx, current), current, ok=current.state is State.DONE)


def _done_text(ctx: Context, request: DeletionRequest) -> str:
    said = approval_text(request).replace(" approved and ", " ").replace(" approved but ", " ")
    text = "Break-glass: " + said.replace(" approved, but ", ": ")
    review = Reviews(ctx.store, ctx.audit).get(request.id)
    if review is not None and review.state == OPEN:
        text += (
            f" Announced to the security channel and the owners; an owner other than you "
            f"reviews it by {fmt.when(review.due_at)}: `review {request.id} --ok` or "
            f"`review {request.id} --concern TEXT`."
        )
    return text


def owners_of(ctx: Context, registry: str, repositories: tuple[str, ...]) -> list[str]:
    """Users holding owner on one of ``repositories`` (groups expanded), sorted."""
    users: set[str] = set()
    for grant in ctx.roles.all_grants():
        if grant.role is Role.OWNER and any(grant.covers(registry, r) for r in repositories):
            users.update(ctx.roles.users(grant.principal))
    return sorted(users)


def _announce(ctx: Context, request: DeletionRequest, *, actor: str, due: datetime) -> None:
    """The security channel, and a DM to each owner (not the actor): in the claim's
    transaction, delivered by the outbox even if the process dies right after."""
    text = (
        f":rotating_light: Break-glass by {actor}: request #{request.id} deletes "
        f"{request.target} now, without approvals. Reason: {request.reason}. An owner other "
        f"than {actor} reviews it by {fmt.when(due)}: `/acr review {request.id} --ok` or "
        f"`--concern TEXT`."
    )
    channel = ctx.config.security_channel or request.channel
    if channel is not None:
        ctx.outbox.put(
            f"breakglass:{request.id}:security", POST, {"channel": channel, "text": text}
        )
    for user in owners_of(ctx, request.registry, request.repositories):
        if user != actor:
            ctx.outbox.put(f"breakglass:{request.id}:dm:{user}", DM, {"user": user, "text": text})


def review(call: Call, *, ctx: Context) -> Reply:
    """Record the review of a break-glass: an owner of its repositories, not its actor."""
    request = visible_request(call, ctx, call.args["id"])
    reviews = Reviews(ctx.store, ctx.audit)
    found = reviews.get(request.id)
    if found is not None and found.actor == call.user:
        raise PermissionDenied(
            f"you broke the glass on request #{request.id}: an owner other than you reviews it"
        )
    for repository in request.repositories:  # re-read: a role revoked a second ago counts
        require(
            ctx.roles.grants_for(call.user),
            OWN,
            Scope.REQUEST,
            action="review",
            registry=request.registry,
            repository=repository,
        )
    if found is None:
        raise NotFound(f"request #{request.id} was not a break-glass: there is nothing to review")
    ok, concern = bool(call.args.get("ok")), call.args.get("concern")
    if not ok and not concern:
        raise UsageError("say what you found: `review ID --ok` or `review ID --concern TEXT`")
    now = ctx.clock()
    done = reviews.record(request.id, reviewer=call.user, ok=ok, note=concern, now=now)
    late = f" (late: it was due {fmt.when(done.due_at)})" if now >= done.due_at else ""
    if concern:
        channel = ctx.config.security_channel or request.channel
        if channel is not None:
            ctx.outbox.put(
                f"breakglass:{request.id}:concern",
                POST,
                {
                    "channel": channel,
                    "text": f":warning: {call.user} reviewed break-glass #{request.id} by "
                    f"{done.actor} with a concern: {concern}",
                },
            )
    verdict = "ok" if ok else f"concern: {concern}"
    return Reply(
        text=f"Review of break-glass #{request.id} by {done.actor} recorded: {verdict}{late}.",
        data={"request": request.id, "state": done.state, "reviewer": call.user, "note": concern},
        people=(call.user, done.actor),
    )


def sweep_policy(ctx: Context) -> None:
    """The worker's sweep: run requests a freeze held once it is over; remind the owners of
    a break-glass review before it is due, escalate once after."""
    rules_gate.release_held(ctx, lambda r: EXECUTORS[r.action].run(ctx, r, no_progress))
    remind_and_escalate(ctx)


def remind_and_escalate(ctx: Context) -> list[tuple[int, str]]:
    """(request id, `reminded` or `escalated`) for what this pass said."""
    reviews = Reviews(ctx.store, ctx.audit)
    now = ctx.clock()
    said = []
    for found in reviews.open_reviews():
        window = found.due_at - found.created_at
        if now >= found.due_at:
            if reviews.mark(found.request_id, "escalated"):
                _escalate(ctx, found)
                said.append((found.request_id, "escalated"))
        elif (
            now >= found.created_at + window * REMIND_AT
            and not found.reminded
            and reviews.mark(found.request_id, "reminded")
        ):
            _remind(ctx, found, left=found.due_at - now)
            said.append((found.request_id, "reminded"))
    return said


def _remind(ctx: Context, found: Review, *, left: timedelta) -> None:
    hours = max(1, round(left.total_seconds() / 3600))
    text = (
        f":hourglass: Break-glass #{found.request_id} by {found.actor} on {found.registry} "
        f"is not reviewed yet (due in about {hours} h, {fmt.when(found.due_at)}): "
        f"`/acr review {found.request_id} --ok` or `--concern TEXT`."
    )
    for user in owners_of(ctx, found.registry, found.repositories):
        if user != found.actor:
            ctx.outbox.put(
                f"review:{found.request_id}:remind:{user}", DM, {"user": user, "text": text}
            )


def _escalate(ctx: Context, found: Review) -> None:
    request = ctx.requests.get(found.request_id)
    channel = ctx.config.security_channel or request.channel
    ctx.audit.append(
        actor="acrbot",
        action="request.review_overdue",
        target=request.target,
        request_id=found.request_id,
        outcome="escalated",
        at=ctx.clock(),
    )
    if channel is not None:
        ctx.outbox.put(
            f"review:{found.request_id}:escalate",
            POST,
            {
                "channel": channel,
                "text": f":rotating_light: Break-glass #{found.request_id} by {found.actor} "
                f"({request.target}) was not reviewed by {fmt.when(found.due_at)}: an owner "
                f"must review it (`/acr review {found.request_id} --ok` or `--concern TEXT`).",
            },
        )
