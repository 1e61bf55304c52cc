"""`delete`: a request pinned to the digest the tag points at now, and its execution.

`delete` only records the request. It runs when the quorum of approvals is met (decide.py),
and only if the tag still points at that digest, nothing on it is locked, and (for --manifest)
it carries no tag the request did not list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from bot.core import formatting as fmt
from bot.core.errors import (
    Conflict,
    NotFound,
    OutcomeUnknown,
    Unsupported,
    UsageError,
)
from bot.core.registry import (
    Progress,
    Registry,
    TagInfo,
    natural_key,
    no_progress,
)
from bot.core.replies import Reply
from bot.core.request_types import DeletionRequest
from bot.kernel.context import Call, Context
from handlers.requests import in_use, rules_gate
from handlers.requests.reply import request_reply
from handlers.requests.snapshot import take_snapshot


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
    action = "delete_manifest" if manifest else "delete"
    terms = rules_gate.at_request(  # [[policy]]: reason, freeze, break-glass; approvals, ttl
        ctx,
        call.args,
        user=call.user,
        grants=call.grants,
        registry=registry.name,
        repositories=(ref.repository,),
        action=action,
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
    warning = in_use.check_delete(  # [protect] tags and [[deployed]]: refuses naming where
        ctx,
        registry,
        repository=ref.repository,
        digest=digest,
        tags=going,
        manifest=manifest,
        refusing=in_use.REQUESTED,
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
    request = ctx.requests.create(
        registry=registry.name,
        repository=ref.repository,
        tag=ref.tag,
        digest=digest,
        manifest=manifest,
        tags=going,
        requester=call.user,
        reason=call.args["reason"],
        ttl=terms.ttl,
        required=terms.required,
        origin=call.origin,
        channel=call.channel or ctx.config.requests_channel,
    )
    need = request.required
    return request_reply(
        f"Request #{request.id} created: waiting for {need} approval"
        f"{'' if need == 1 else 's'} from {'an owner' if need == 1 else 'owners'} (not you)."
        + (f" ({warning})" if warning else "")
        + rules_gate.created_note(terms),
        request,
    )


def execute_delete(
    ctx: Context, request: DeletionRequest, progress: Progress = no_progress
) -> str | None:
    """Delete exactly what was approved, or raise Conflict and delete nothing.

    Everything is read from the registry again here (never from a cache): the tag must still
    point at the approved digest (on both paths: a re-pushed tag now names another image),
    nothing that goes may be locked, and a manifest must carry no tag the request did not list.
    """
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
        warning = in_use.check_delete(  # again, read fresh: deployed since the request?
            ctx,
            registry,
            repository=repo,
            digest=request.digest,
            tags=request.tags,
            manifest=True,
            refusing=in_use.DELETED,
        )
        if _wait_for_another(ctx, request, registry, tuple(t.name for t in on)):
            return execute_delete(ctx, ctx.requests.get(request.id), progress)
        return _noted(
            _unless_gone(request, lambda: registry.delete_manifest(repo, request.digest), registry),
            warning,
        )
    assert request.tag is not None and tag is not None
    if tag.locked:
        raise Conflict(f"{repo}:{request.tag} is locked; nothing was deleted")
    warning = in_use.check_delete(  # again, read fresh: deployed since the request?
        ctx,
        registry,
        repository=repo,
        digest=request.digest,
        tags=(request.tag,),
        manifest=False,
        refusing=in_use.DELETED,
    )
    if _wait_for_another(ctx, request, registry, (request.tag,)):
        return execute_delete(ctx, ctx.requests.get(request.id), progress)
    return _noted(
        _unless_gone(request, lambda: registry.untag(repo, request.tag), registry), warning
    )


def _noted(note: str | None, warning: str | None) -> str | None:
    """The outcome's note with the warn-mode warning (a source that could not be read)."""
    return "; ".join(n for n in (note, warning) if n) or None


WAIT_STEP = 0.2  # seconds between two looks at another request's DELETE of the same image


def _wait_for_another(
    ctx: Context, request: DeletionRequest, registry: Registry, tags: tuple[str, ...] = ()
) -> bool:
    """Mark the DELETE as leaving (Requests.writing); if another approved request's DELETE of
    the same image may be in flight, wait until it has finished (or its grace period is over)
    and return True: the caller checks everything again, so the image goes by one DELETE and
    this request says what it found. Bounded: that request's mark expires with its grace."""
    waited = False
    snapshot = take_snapshot(  # undo's snapshot: written with the mark, before the DELETE
        registry,
        request_id=request.id,
        seq=0,
        repository=request.repository,
        digest=request.digest,
        tags=tags,
        manifest_deleted=request.manifest,
        window=ctx.config.undo_window,
        clock=ctx.clock,
    )
    while ctx.requests.writing(
        request.id, grace=timedelta(seconds=registry.write_grace), snapshot=snapshot
    ):
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


def gone_note(registry: Registry, request: DeletionRequest) -> str | None:
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


def reconcile_delete(ctx: Context, request: DeletionRequest) -> str | None:
    """Finish a request a crash (or an unanswered DELETE) left in `executing`.

    Reads the registry: if the deletion happened, the request is done; if it provably did
    not (the pinned tag or digest is still there), it runs again with every check; if the
    tag now names another image, it fails saying so. Never a blind re-send.
    """
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
    return execute_delete(ctx, request)
