"""`undo ID --force`: the tags `undo` leaves alone because they were pushed again since the
deletion become a request, approved like a deletion (never by its requester), that moves each
one back to the digest the deletion took.

`undo` itself never overwrites: a re-pushed tag names an image someone pushed on purpose. With
``--force`` it files a request pinning exactly each tag, the digest it names now (read when
the request is filed) and the snapshot's digest it goes back to; nothing moves until the
request's quorum is met ([[policy]] terms of `delete_manifest`: handlers/requests/
rules_gate.py `policy_action`). At execution each tag is read again: one that moved since
the request was filed is skipped, and said so; each moves once (the request's
pending → executing compare-and-set), and a crash is finished by the same reading
(`reconcile`).
"""

from __future__ import annotations

from bot.core import formatting as fmt
from bot.core.errors import LayersGone, NotFound, UserError
from bot.core.patterns import compile_user_regex
from bot.core.registry import Progress, Registry
from bot.core.replies import Reply
from bot.core.request_types import Action, DeletionRequest, ForcedTag, ForceUndoSpec, State
from bot.kernel.context import Call, Context
from bot.state.announce import LINE, card_key
from bot.state.snapshots import RESTORED, SKIPPED, Snapshot, Snapshots
from handlers.requests import rules_gate

REPUSHED = "re-pushed since; not overwritten"  # undo's skip (Snapshot.undo_detail)
MOVED = "moved again since the request; not overwritten"


def file_forced(
    call: Call, ctx: Context, request: DeletionRequest, rows: list[Snapshot], reply: Reply
) -> Reply:
    """After `undo` restored what it could: file the request for the re-pushed tags among
    ``rows`` (those --only matched), or say there are none. ``reply`` is undo's summary."""
    snapshots = Snapshots(ctx.store, ctx.audit, clock=ctx.clock)
    settled = {s.seq: s for s in snapshots.for_request(request.id)}
    only = call.args.get("only")
    pattern = compile_user_regex(only) if only else None
    pending = _already_asked(ctx, request.id)
    registry = ctx.registries.get(request.registry)
    items: list[ForcedTag] = []
    asked: set[int] = set()
    for row in rows:
        snapshot = settled.get(row.seq, row)
        if snapshot.undo_state not in (SKIPPED, RESTORED) or REPUSHED not in (
            snapshot.undo_detail or ""
        ):
            continue  # only what undo skipped as re-pushed; never a tag it could restore
        for tag in snapshot.tags:
            if pattern is not None and not pattern.search(f"{snapshot.repository}:{tag}"):
                continue
            if (snapshot.repository, tag) in pending:
                asked.add(pending[(snapshot.repository, tag)])
                continue
            try:
                now = registry.resolve(snapshot.repository, tag)  # read now: pinned as FROM
            except NotFound:
                continue  # deleted since: plain `undo` restores it, no force needed
            if now != snapshot.digest:
                items.append(
                    ForcedTag(
                        repository=snapshot.repository,
                        tag=tag,
                        from_digest=now,
                        to_digest=snapshot.digest,
                        seq=snapshot.seq,
                    )
                )
    text = reply.text
    if asked:
        text += f" Already asked by pending request {', '.join(f'#{n}' for n in sorted(asked))}."
    if not items:
        text += " --force: no tag was re-pushed since, so no request was filed."
        return Reply(text=text, ok=reply.ok, notes=reply.notes)
    spec = ForceUndoSpec(source=request.id, items=tuple(items))
    try:
        terms = rules_gate.at_request(
            ctx,
            call.args,
            user=call.user,
            grants=call.grants,
            registry=request.registry,
            repositories=spec.repositories,
            action=rules_gate.policy_action(Action.UNDO_FORCE),
            items=len(items),
        )
    except UserError as exc:  # a freeze, a short reason: what undo restored still stands
        return Reply(text=f"{text} --force: {exc}", ok=False, notes=reply.notes)
    filed = ctx.requests.create_forced_undo(
        registry=request.registry,
        spec=spec,
        requester=call.user,
        reason=call.args["reason"],
        ttl=terms.ttl,
        required=terms.required,
        origin=f"{call.origin}:force" if call.origin else None,
        channel=call.channel or request.channel or ctx.config.requests_channel,
    )
    n = len(items)
    text += (
        f" --force: {n:,} re-pushed tag{'s' if n != 1 else ''} "
        f"({spec.moves(shown=3)}) filed as request #{filed.id}: it needs "
        f"{filed.required} approval{'s' if filed.required != 1 else ''}, not yours."
    )
    return Reply(text=text, ok=reply.ok, notes=reply.notes)


def _already_asked(ctx: Context, source: int) -> dict[tuple[str, str], int]:
    """(repository, tag) → the pending or executing forced undo of ``source`` that pins it:
    asked once, not twice."""
    found: dict[tuple[str, str], int] = {}
    for other in ctx.requests.list(states=(State.PENDING, State.EXECUTING), limit=1000):
        if other.forced is not None and other.forced.source == source:
            for i in other.forced.items:
                found[(i.repository, i.tag)] = other.id
    return found


def execute_forced(ctx: Context, request: DeletionRequest, progress: Progress) -> str | None:
    """Move each pinned tag that still names the digest it was pinned with back to the
    snapshot's digest; skip (and say) every other. Reads before each write, so running it
    again after a crash finishes the job and moves nothing twice."""
    assert request.forced is not None
    registry = ctx.registries.get(request.registry)
    snapshots = {
        s.seq: s
        for s in Snapshots(ctx.store, ctx.audit, clock=ctx.clock).for_request(request.forced.source)
    }
    moved, already, skipped, failed = [], [], [], []
    for item in request.forced.items:
        label = f"{item.repository}:{item.tag}"
        state, detail = _move(registry, item, snapshots.get(item.seq))
        {"moved": moved, "already": already, "skipped": skipped, "failed": failed}[state].append(
            f"{label} ({detail})" if detail else label
        )
        ctx.audit.append(
            actor="acrbot",
            action="undo.force",
            target=f"{registry.name}/{item.repository}:{item.tag}",
            request_id=request.id,
            outcome=state,
            error=detail,
            at=ctx.clock(),
        )
    parts = [f"{len(moved) + len(already):,} restored"]
    if skipped:
        parts.append(f"{len(skipped):,} skipped ({MOVED}: {', '.join(skipped[:5])})")
    if failed:
        parts.append(f"{len(failed):,} failed ({'; '.join(failed[:5])})")
    note = f"Forced undo of #{request.forced.source}: " + ", ".join(parts) + "."
    if request.channel is not None:
        ctx.outbox.put(
            f"line:{request.id}:forced",
            LINE,
            {"request": request.id, "line": "text", "text": note},
            after=card_key(request.id),
        )
    source = ctx.requests.get(request.forced.source)
    if source.channel is not None:  # and in the thread of the request it undoes
        ctx.outbox.put(
            f"line:{source.id}:undo:forced:{request.id}",
            LINE,
            {"request": source.id, "line": "text", "text": f"#{request.id}: {note}"},
            after=card_key(source.id),
        )
    if failed and not moved and not already:
        raise UserError(note)
    return note


def reconcile_forced(ctx: Context, request: DeletionRequest) -> str | None:
    """After a crash: the same reading; a tag already on the snapshot's digest is counted."""
    from bot.core.registry import no_progress

    return execute_forced(ctx, request, no_progress)


def _move(registry: Registry, item: ForcedTag, snapshot: Snapshot | None) -> tuple[str, str | None]:
    if snapshot is None:
        return "failed", "its snapshot is gone (the undo window closed)"
    try:
        try:
            current = registry.resolve(item.repository, item.tag)
        except NotFound:
            return "skipped", "deleted since"
        if current == item.to_digest:
            return "already", None
        if current != item.from_digest:
            return "skipped", f"now {fmt.short_digest(current)}"
        # No registry offers a compare-and-set on a tag: the read above is the check, as close
        # to the PUT as it can be (the window is one round trip).
        for manifest in snapshot.manifests:  # children first, the manifest last
            try:
                registry.image(item.repository, manifest.digest)
            except NotFound:
                registry.put_manifest(item.repository, manifest.digest, manifest)
        stored = registry.put_manifest(item.repository, item.tag, snapshot.manifest)
        if stored != item.to_digest:
            return "failed", f"stored as {fmt.short_digest(stored)}, not {item.to_digest}"
    except LayersGone as exc:
        return "failed", f"cannot restore: its layers are gone ({exc})"
    except UserError as exc:
        return "failed", str(exc)
    return "moved", None
