"""`delete`, `requests`, `approve`, `deny`, `cancel`: deletions as approved requests.

`delete` only records a request that pins the digest the tag points to now. The deletion
runs when the quorum of approvals is met, and only if the tag still points at that digest,
nothing on it is locked, and (for --manifest) it carries no tag the request did not list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from bot.core import formatting as fmt
from bot.core.commands import CONTRIBUTE, OWN, READ
from bot.core.errors import Conflict, NotFound, OutcomeUnknown, Unsupported, UsageError
from bot.core.policy import Role, Scope, allows, require
from bot.core.purge_spec import pace_text, totals_text
from bot.core.registry import Progress, Registry, TagInfo, natural_key, no_progress
from bot.core.replies import Reply, Table
from bot.core.request_types import DeletionRequest, State
from bot.kernel.context import Call, Context


def describe(request: DeletionRequest) -> tuple[tuple[str, str], ...]:
    """The facts an approver needs, shared by the console and the Slack card."""
    if request.is_purge:
        spec = request.spec or {}
        head = [
            ("purge", f"{request.registry}: {spec.get('describe', '')}"),
            ("pinned", f"{spec.get('items', 0):,} items (list {request.digest[:19]}…)"),
            ("deletes", _purge_totals(spec, request.id)),
        ]
        if pace_text(spec):
            head.append(("pace", pace_text(spec) or ""))
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


def _purge_totals(spec: dict, request_id: int) -> str:
    text = totals_text(spec)
    if spec.get("skipped"):
        # Requests made before the skips were kept (schema v6) have only their number.
        where = (
            f"`request {request_id}` lists each with its reason"
            if spec.get("skips_listed")
            else "a dry run with the same options lists them"
        )
        text += f"; {spec['skipped']:,} skipped at planning (locked, kept or shared: {where})"
    return text


def _request_data(request: DeletionRequest) -> dict:
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
        "spec": request.spec,
    }


def _reply(text: str, request: DeletionRequest, *, ok: bool = True) -> Reply:
    people = (request.requester, *(a.approver for a in request.approvals))
    if request.decided_by and request.decided_by != "acrbot":
        people += (request.decided_by,)
    return Reply(
        text=text,
        ok=ok,
        fields=describe(request),
        request=request,
        data=_request_data(request),
        people=people,
    )


def delete(call: Call, *, ctx: Context) -> Reply:
    """Record a deletion request pinned to the digest the tag points at now."""
    registry, ref = call.registry, call.args["image"]
    assert registry is not None
    manifest = call.args["manifest"]
    if ref.tag is None and not manifest:
        raise UsageError("a digest names a whole image: add --manifest to delete it and its tags")
    if not manifest and not registry.can_untag:
        raise Unsupported(
            f"{registry.name} cannot remove a single tag; add --manifest to delete "
            "the image and every tag on it (the request will list them)"
        )
    tag = registry.tag(ref.repository, ref.tag) if ref.tag else None  # digest and lock, once
    digest = tag.digest if tag is not None else ref.digest
    if ref.tag and ref.digest and digest != ref.digest:
        raise Conflict(f"{ref.repository}:{ref.tag} points at {digest}, not {ref.digest}")
    if manifest:
        info = registry.image(ref.repository, digest)  # the manifest exists, or NotFound
        on, users = blast_radius(registry, ref.repository, digest, progress=call.progress)
        if users:
            raise Conflict(f"{users}; nothing was requested")
        going = tuple(t.name for t in on)
        locked = sorted(t.name for t in on if t.locked)
        if info.manifest_locked:
            raise Conflict(
                f"{registry.name}/{ref.repository}@{fmt.short_digest(digest)} is locked; "
                "nothing was requested"
            )
    else:
        assert tag is not None
        going = (ref.tag,)
        locked = [ref.tag] if tag.locked else []
    if locked:
        raise Conflict(
            f"{registry.name}/{ref.repository}: {', '.join(locked)} "
            f"{'is' if len(locked) == 1 else 'are'} locked; nothing was requested"
        )
    duplicate = ctx.requests.pending_like(
        registry=registry.name,
        repository=ref.repository,
        tag=ref.tag,
        digest=digest,
        manifest=manifest,
    )
    if duplicate is not None and (
        call.origin is None or ctx.requests.get(duplicate).origin != call.origin
    ):
        raise Conflict(f"request #{duplicate} already asks for this; approve or cancel it")
    action = "delete_manifest" if manifest else "delete"
    request = ctx.requests.create(
        registry=registry.name,
        repository=ref.repository,
        tag=ref.tag,
        digest=digest,
        manifest=manifest,
        tags=going,
        requester=call.user,
        reason=call.args["reason"],
        ttl=ctx.config.approvals.ttl,
        required=ctx.config.approvals.required_for(action),
        origin=call.origin,
        channel=call.channel or ctx.config.requests_channel,
    )
    need = request.required
    return _reply(
        f"Request #{request.id} created: waiting for {need} approval"
        f"{'' if need == 1 else 's'} from {'an owner' if need == 1 else 'owners'} (not you).",
        request,
    )


def list_requests(call: Call, *, ctx: Context) -> Reply:
    """Requests the caller may read: pending by default, --mine, or --all."""
    if call.args["mine"]:
        found, what = ctx.requests.list(requester=call.user), "of your requests"
    elif call.args["all"]:
        found, what = ctx.requests.list(), "requests"
    else:
        found, what = ctx.requests.list(states=[State.PENDING]), "pending requests"
    found = [
        r
        for r in found
        if allows(call.grants, READ, Scope.REPOSITORY, registry=r.registry, repository=r.repository)
        or r.requester == call.user
    ]
    rows = tuple(
        (
            f"#{r.id}",
            r.state.value,
            r.target,
            r.requester,
            f"{len(r.approvals)}/{r.required}",
            fmt.when(r.expires_at),
        )
        for r in found
    )
    noun = what if len(rows) != 1 else what.replace("requests", "request")
    return Reply(
        text=f"{len(rows)} {noun}" + (":" if rows else "."),
        table=Table(("id", "state", "target", "requester", "approvals", "expires"), rows),
        data=[_request_data(r) for r in found],
    )


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


def execute(ctx: Context, request: DeletionRequest, progress: Progress = no_progress) -> str | None:
    """Delete exactly what was approved, or raise Conflict and delete nothing.

    Everything is read from the registry again here (never from a cache): the tag must still
    point at the approved digest (on both paths: a re-pushed tag now names another image),
    nothing that goes may be locked, and a manifest must carry no tag the request did not list.
    """
    if request.is_purge:
        from handlers.purge import execute_purge

        return execute_purge(ctx, request, progress=progress)
    registry = ctx.registries.get(request.registry)
    repo = request.repository
    tag: TagInfo | None = None
    if request.tag is not None:
        try:
            tag = registry.tag(repo, request.tag)  # one read: its digest and its lock
        except NotFound:
            raise Conflict(f"{repo}:{request.tag} no longer exists; nothing was deleted") from None
        current = tag.digest
        if current != request.digest:
            raise Conflict(
                f"{repo}:{request.tag} moved: it now points at {fmt.short_digest(current)}, not "
                f"the approved {fmt.short_digest(request.digest)} (pushed again?); nothing was "
                "deleted"
            )
    if request.manifest:
        try:
            info = registry.image(repo, request.digest)
        except NotFound:
            raise Conflict(
                f"{request.digest} is no longer in {registry.name}/{repo}; nothing was deleted"
            ) from None
        on, users = blast_radius(registry, repo, request.digest)
        if users:
            raise Conflict(f"{users}; nothing was deleted")
        extra = sorted({t.name for t in on} - set(request.tags), key=natural_key)
        if extra:
            raise Conflict(
                f"the image now also carries tag(s) {', '.join(extra[:10])}"
                f"{' …' if len(extra) > 10 else ''} that the request did not list; nothing was "
                "deleted: make a new request"
            )
        locked = [t.name for t in on if t.locked]
        if locked:
            raise Conflict(f"tag(s) {', '.join(locked)} are locked; nothing was deleted")
        if info.manifest_locked:
            raise Conflict(f"the manifest {request.digest} is locked; nothing was deleted")
        if _wait_for_another(ctx, request, registry):
            return execute(ctx, ctx.requests.get(request.id), progress)
        return _unless_gone(
            request, lambda: registry.delete_manifest(repo, request.digest), registry
        )
    assert request.tag is not None and tag is not None
    if tag.locked:
        raise Conflict(f"{repo}:{request.tag} is locked; nothing was deleted")
    if _wait_for_another(ctx, request, registry):
        return execute(ctx, ctx.requests.get(request.id), progress)
    return _unless_gone(request, lambda: registry.untag(repo, request.tag), registry)


WAIT_STEP = 0.2  # seconds between two looks at another request's DELETE of the same image


def _wait_for_another(ctx: Context, request: DeletionRequest, registry: Registry) -> bool:
    """Mark the DELETE as leaving (Requests.writing); if another approved request's DELETE of
    the same image may be in flight, wait until it has finished (or its grace period is over)
    and return True: the caller checks everything again, so the image goes by one DELETE and
    this request says what it found. Bounded: that request's mark expires with its grace."""
    waited = False
    while ctx.requests.writing(request.id, grace=timedelta(seconds=registry.write_grace)):
        waited = True
        time.sleep(WAIT_STEP)
    return waited


def blast_radius(
    registry: Registry, repository: str, digest: str, *, progress: Progress = no_progress
) -> tuple[tuple[TagInfo, ...], str | None]:
    """Every tag that goes with a manifest, and why it must not go at all (None: it may):
    an image index that stays references it, or signatures/SBOMs are attached to it."""
    if registry.can_list_manifests:
        on = registry.tags_on(repository, digest, progress=progress)
        manifests = registry.manifests(repository)
        names = {m.digest: m.tags for m in manifests if digest in m.references}
        attached = [m.digest for m in manifests if m.subject == digest]
    else:  # one scan of the repository serves both questions
        every = registry.all_tags(repository, progress=progress)
        on = tuple(
            sorted((t for t in every if t.digest == digest), key=lambda t: natural_key(t.name))
        )
        refs = registry.references(repository, sorted({t.digest for t in every} - {digest}))
        names = {
            d: tuple(t.name for t in every if t.digest == d)
            for d, children in refs.items()
            if digest in children
        }
        attached = list(registry.referrers(repository, digest))
    short = fmt.short_digest(digest)
    if names:
        shown = ", ".join(
            f"{'/'.join(tags) or '(untagged)'} ({fmt.short_digest(d)})"
            for d, tags in list(names.items())[:3]
        )
        return on, (
            f"{repository}@{short} is used by the image index {shown}: deleting it would break "
            "that index. Delete the index first"
        )
    if attached:
        return on, (
            f"{repository}@{short} has {len(attached)} signature(s) or SBOM(s) attached "
            f"({', '.join(fmt.short_digest(a) for a in attached[:3])}): delete them first"
        )
    return on, None


def _unless_gone(
    request: DeletionRequest, delete: Callable[[], None], registry: Registry
) -> str | None:
    """Run the DELETE; if it goes unanswered, read the registry once: gone means done. Still
    there means we cannot know yet (it may land late): OutcomeUnknown goes up, and
    Requests.recover finishes the request after a grace period. A 404 means it was gone when
    the DELETE arrived (deleted between the checks and the DELETE): done, and said so."""
    try:
        delete()
    except NotFound:
        return (
            "the registry answered the DELETE with 404: it was already gone (deleted between "
            "the bot's checks and its DELETE)"
        )
    except OutcomeUnknown:
        if not _still_there(registry, request):
            return None
        raise
    return None


def _still_there(registry: Registry, request: DeletionRequest) -> bool:
    """Whether what the request deletes is still in the registry (read now, not cached)."""
    try:
        if request.manifest:
            registry.image(request.repository, request.digest)
            return True
        assert request.tag is not None
        return registry.resolve(request.repository, request.tag) == request.digest
    except NotFound:
        return False


def _gone_note(registry: Registry, request: DeletionRequest) -> str | None:
    """The note for a request whose deletion is found done, or None if it is not (yet)."""
    if _still_there(registry, request):
        return None
    if request.tag is not None and not request.manifest:
        try:
            registry.resolve(request.repository, request.tag)
        except NotFound:
            return "the tag was found already deleted when the bot checked the registry again"
        return None  # the tag names another image: reconcile says it moved
    return "the image was found already deleted when the bot checked the registry again"


def reconcile(ctx: Context, request: DeletionRequest) -> str | None:
    """Finish a request a crash (or an unanswered DELETE) left in `executing`.

    Reads the registry: if the deletion happened, the request is done; if it provably did
    not (the pinned tag or digest is still there), it runs again with every check; if the
    tag now names another image, it fails saying so. Never a blind re-send.
    """
    if request.is_purge:  # settles the items a crash left `sending`, then resumes
        from handlers.purge import execute_purge

        return execute_purge(ctx, request)
    registry = ctx.registries.get(request.registry)
    if not _still_there(registry, request):
        if request.tag is not None and not request.manifest:
            try:
                registry.resolve(request.repository, request.tag)
            except NotFound:
                return "the tag was found already deleted when the bot checked the registry again"
            # the tag exists but names another image: the checks below say "moved"
        else:
            return "the image was found already deleted when the bot checked the registry again"
    return execute(ctx, request)


def readable(call: Call, ctx: Context, request_id: int) -> DeletionRequest:
    """The request, if the caller may read it (its requester, or a reader of every repository
    it touches); otherwise "no such request", so that nothing about it leaks."""
    request = ctx.requests.get(request_id)
    if request.requester == call.user or all(
        allows(call.grants, READ, Scope.REPOSITORY, registry=request.registry, repository=r)
        for r in request.repositories
    ):
        return request
    raise NotFound(f"there is no request #{request_id}")


def approve(call: Call, *, ctx: Context) -> Reply:
    """Approve; the approval that completes the quorum runs the deletion, once."""
    readable(call, ctx, call.args["id"])

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
        execute=lambda request: execute(ctx, request, call.progress),
        origin=call.origin,
        still_counts=still_counts,
    )
    request = result.request
    text = approval_text(request)
    if result.withdrawn:
        who = ", ".join(result.withdrawn)
        text += (
            f" ({who}'s earlier approval no longer counts: no longer an owner there.)"
            if len(result.withdrawn) == 1
            else f" (earlier approvals by {who} no longer count: no longer owners there.)"
        )
    return _reply(text, request, ok=request.state is not State.FAILED)


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


def show_request(call: Call, *, ctx: Context) -> Reply:
    """One request in full: its facts, and for a purge every item with its state (paged)."""
    request = readable(call, ctx, call.args["id"])
    reply = _reply(f"Request #{request.id} ({request.action}): {request.state.value}", request)
    if not request.is_purge:
        return reply
    from bot.core.replies import Paging

    top = call.args["top"] or 25
    after = int(call.args["after"]) if (call.args["after"] or "").isdigit() else 0
    items = ctx.purges.items(request.id, after=after, limit=top + 1)
    # What planning left out follows the items (its seq continues theirs), on the same pages.
    skips = (
        ctx.purges.planning_skips(request.id, after=after, limit=top + 1 - len(items))
        if len(items) <= top
        else []
    )
    shown = items[:top]
    shown_skips = skips[: top - len(shown)]
    last = shown_skips[-1].seq if shown_skips else shown[-1].seq if shown else after
    counts = ctx.purges.counts(request.id)
    reasons = ctx.purges.planning_reasons(request.id)
    rows = tuple(
        (str(i.seq), i.label, fmt.short_digest(i.digest), i.state, i.detail or "") for i in shown
    ) + tuple((str(s.seq), s.item, "", "skipped at planning", s.reason) for s in shown_skips)
    notes = ["Items: " + ", ".join(f"{n:,} {state}" for state, n in sorted(counts.items())) + "."]
    if reasons:
        notes.append(
            f"Skipped at planning (not pinned, left as they are): {reasons.total():,} — "
            + ", ".join(f"{n:,} {reason}" for reason, n in reasons.most_common(5))
            + (" …" if len(reasons) > 5 else "")
            + "."
        )
    return replace(
        reply,
        table=Table(("#", "item", "digest", "state", "detail"), rows),
        notes=tuple(notes),
        paging=Paging(
            command=f"request {request.id}" + (f" --top {top}" if call.args["top"] else ""),
            after=str(after) if after else None,
            next_after=str(last) if len(items) + len(skips) > top else None,
        ),
        data={
            **_request_data(request),
            "items": [
                {
                    "seq": i.seq,
                    "repository": i.repository,
                    "kind": i.kind,
                    "tag": i.tag,
                    "digest": i.digest,
                    "tags": list(i.tags),
                    "state": i.state,
                    "detail": i.detail,
                }
                for i in shown
            ],
            "skipped": [{"seq": s.seq, "item": s.item, "reason": s.reason} for s in shown_skips],
        },
    )


def recover(ctx: Context) -> list[DeletionRequest]:
    """Finish requests left in `executing` by a crash or an unanswered DELETE."""
    return ctx.requests.recover(
        lambda request: reconcile(ctx, request),
        lambda request: _gone_note(ctx.registries.get(request.registry), request),
    )


def deny(call: Call, *, ctx: Context) -> Reply:
    readable(call, ctx, call.args["id"])
    request = ctx.requests.deny(
        call.args["id"],
        user=call.user,
        reason=call.args["reason"],
        authorize=_authorizer(call, ctx, OWN, "deny"),
        origin=call.origin,
    )
    return _reply(f"Request #{request.id} denied.", request)


def cancel(call: Call, *, ctx: Context) -> Reply:
    request_id = call.args["id"]
    require(call.grants, CONTRIBUTE, Scope.ANYWHERE, action="cancel")
    readable(call, ctx, request_id)
    request = ctx.requests.cancel(request_id, user=call.user, origin=call.origin)
    return _reply(f"Request #{request.id} cancelled.", request)
