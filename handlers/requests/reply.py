"""How a request is described and answered: the facts an approver needs, the data a
notebook gets, the one-line outcome of an approval, and which requests a caller may see.

A leaf: every request command (delete, purge, request, requests, approve, deny, cancel)
answers through `request_reply`, so they all have one shape.
"""

from __future__ import annotations

from bot.core import formatting as fmt
from bot.core.commands import READ
from bot.core.errors import (
    NotFound,
)
from bot.core.policy import Scope, allows
from bot.core.purge_spec import (
    pace_text,
    totals_text,
)
from bot.core.replies import Reply
from bot.core.request_types import DeletionRequest, PurgeRequestSpec, State
from bot.kernel.context import Call, Context


def request_facts(request: DeletionRequest) -> tuple[tuple[str, str], ...]:
    """The facts an approver needs, shared by the console and the Slack card."""
    spec = request.spec
    if request.forced is not None:  # `undo --force`
        head = [
            ("undo --force", f"{request.registry}: tags re-pushed since #{request.forced.source}"),
            ("moves", request.forced.moves(shown=20)),
        ]
    elif spec is not None:  # a purge
        head = [
            ("purge", f"{request.registry}: {spec.describe}"),
            ("pinned", f"{spec.items:,} items (list {request.digest[:19]}…)"),
            ("deletes", _purge_totals(spec, request.id)),
        ]
        paced = pace_text(spec.items, spec.pace)
        if paced:
            head.append(("pace", paced))
    else:
        going = _first(request.tags) or "(none: the manifest is untagged)"
        head = [
            (
                "image",
                f"{request.registry}/{request.repository}"
                + (f":{request.tag}" if request.tag else ""),
            ),
            ("digest", request.digest),
            ("deletes", ("manifest and tags: " if request.manifest else "tag: ") + going),
        ]
    fields = [
        *head,
        ("requester", request.requester),
        ("reason", request.reason),
        (
            "approvals",
            f"{len(request.approvals)} of {request.required}"
            + (
                f" ({', '.join(a.approver for a in request.approvals)})"
                if request.approvals
                else ""
            ),
        ),
        ("state", request.state.value),
        ("expires", fmt.when(request.expires_at)),
    ]
    if request.decided_by and request.state in (State.DENIED, State.CANCELLED):
        fields.append(
            (
                "decided by",
                request.decided_by
                + (f": {request.decision_reason}" if request.decision_reason else ""),
            )
        )
    if request.error:
        fields.append(("error", request.error))
    if request.note:
        fields.append(("outcome", request.note))
    return tuple(fields)


def _first(names: tuple[str, ...], shown: int = 20) -> str:
    """Up to ``shown`` names, then how many more (the request itself keeps them all)."""
    text = ", ".join(names[:shown])
    if len(names) > shown:
        text += f" … and {len(names) - shown:,} more ({len(names):,} in all)"
    return text


def _purge_totals(spec: PurgeRequestSpec, request_id: int) -> str:
    text = totals_text(spec)
    if spec.freed_bytes:  # 0 (untagging only) is on the card, where it is explained
        text += f", freeing {fmt.size(spec.freed_bytes)} (unique blobs only it holds)"
    if spec.skipped:
        # Requests made before the skips were kept (schema v6) have only their number.
        where = (
            f"`request {request_id}` lists each with its reason"
            if spec.skips_listed
            else "a dry run with the same options lists them"
        )
        why = "locked, kept, shared, in use or protected"
        text += f"; {spec.skipped:,} skipped at planning ({why}: {where})"
    return text


def request_data(request: DeletionRequest) -> dict:
    return {
        "id": request.id,
        "action": request.action,
        "state": request.state.value,
        "registry": request.registry,
        "repository": request.repository,
        "tag": request.tag,
        "digest": request.digest,
        "manifest": request.manifest,
        "tags": list(request.tags),
        "requester": request.requester,
        "reason": request.reason,
        "approvals": [a.approver for a in request.approvals],
        "required": request.required,
        "expires_at": request.expires_at.isoformat(),
        "error": request.error,
        "outcome": request.note,
        "spec": request.spec.to_json() if request.spec is not None else None,
        **({"forced": request.forced.to_json()} if request.forced is not None else {}),
    }


def request_reply(text: str, request: DeletionRequest, *, ok: bool = True) -> Reply:
    people = (request.requester, *(a.approver for a in request.approvals))
    if request.decided_by and request.decided_by != "acrbot":
        people += (request.decided_by,)
    return Reply(
        text=text,
        ok=ok,
        fields=request_facts(request),
        request=request,
        data=request_data(request),
        people=people,
    )


def approval_text(request: DeletionRequest) -> str:
    """What an approval led to, in one line: never more than what happened."""
    if request.is_purge and request.state is State.DONE:
        return f"Purge request #{request.id} approved and done: {request.note}."
    if request.state is State.DONE:
        gone = ", ".join(request.tags[:10]) + (" …" if len(request.tags) > 10 else "")
        gone = gone or request.digest
        note = f" ({request.note})" if request.note else ""
        return (
            f"Request #{request.id} approved and done: deleted {gone} from "
            f"{request.registry}/{request.repository}{note}."
        )
    if request.state is State.FAILED:
        return f"Request #{request.id} approved but failed: {request.error}"
    if request.state is State.EXECUTING:
        return (
            f"Request #{request.id} approved, but the registry did not answer the deletion in "
            "time; the bot checks the registry again within a minute and announces the outcome."
        )
    left = request.required - len(request.approvals)
    return f"Approval recorded for request #{request.id}; {left} more needed."


def visible_request(call: Call, ctx: Context, request_id: int) -> DeletionRequest:
    """The request, if the caller may read it (its requester, or a reader of every repository
    it touches); otherwise "no such request", so that nothing about it leaks."""
    request = ctx.requests.get(request_id)
    if request.requester == call.user or all(
        allows(call.grants, READ, Scope.REPOSITORY, registry=request.registry, repository=r)
        for r in request.repositories
    ):
        return request
    raise NotFound(f"there is no request #{request_id}")
