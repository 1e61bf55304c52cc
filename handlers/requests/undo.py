"""`undo ID [--only REGEX] --reason TEXT`: put back what a request deleted, from the snapshots
taken before each DELETE (bot/state/snapshots.py), within `[undo] window`.

No approval: it restores what an approved request removed, and only the requester or an owner
of every repository it touches may run it. It never overwrites: a tag pushed again since the
deletion (now another image) is skipped, "re-pushed since; not overwritten". It never claims
more than happened: a manifest the registry refuses because its layers are gone (garbage
collection ran) is "cannot be restored", and the summary counts each outcome.

Each snapshot is claimed (`restoring`) before its first PUT and settled after, so an undo a
crash stopped is resumed by running it again: a `restoring` item is read back from the
registry first, and only what is still missing is PUT. Per registry (handlers/registries/):
a soft-deleted ACR manifest is restored through ACR's own API; otherwise the manifests are
PUT back by digest, an index's children before it, then each tag, checking the digest the
registry says it stored.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from bot.core import formatting as fmt
from bot.core.commands import CONTRIBUTE, OWN
from bot.core.errors import (
    Conflict,
    LayersGone,
    NotFound,
    PermissionDenied,
    UsageError,
    UserError,
)
from bot.core.patterns import compile_user_regex
from bot.core.policy import Role, Scope, allows
from bot.core.references import shorten
from bot.core.registry import Registry
from bot.core.replies import Reply
from bot.core.request_types import DeletionRequest
from bot.kernel.context import Call, Context
from bot.state.announce import LINE, card_key
from bot.state.snapshots import (
    FAILED,
    LOST,
    RESTORED,
    RESTORING,
    SKIPPED,
    Snapshot,
    Snapshots,
)
from handlers.requests.reply import visible_request
from handlers.requests.undo_force import REPUSHED, file_forced

DEFAULT_CONCURRENCY = 8
STILL_THERE = "still there: its deletion did not happen"
LAYERS_GONE = (
    "cannot restore: its layers are gone ({why}); push it again from its build (CI re-run or "
    "`docker push` of the same build)"
)


def undo(call: Call, *, ctx: Context) -> Reply:
    """Restore what request ID deleted (all of it, or the items --only matches)."""
    request = visible_request(call, ctx, call.args["id"])
    snapshots = Snapshots(ctx.store, ctx.audit, clock=ctx.clock)
    now = ctx.clock()
    rows = [s for s in snapshots.for_request(request.id) if s.expires_at > now]
    only = call.args.get("only")
    if only:
        pattern = compile_user_regex(only)
        rows = [s for s in rows if any(pattern.search(label) for label in s.labels())]
    _authorize(call, request, sorted({s.repository for s in rows} or set(request.repositories)))
    closes = snapshots.window_closes(request.id)
    if closes is not None and closes <= now:
        raise Conflict(
            f"the undo window of request #{request.id} closed on {_day(closes)}: its "
            "snapshots are gone. Push the images again from their builds"
        )
    if not rows and only:
        raise UsageError(
            f"--only `{shorten(only, 40)}` matches nothing request #{request.id} deleted "
            "(it is searched in repo:tag and repo@sha256:…)"
        )
    if not rows:
        raise Conflict(
            f"request #{request.id} ({request.state.value}) deleted nothing: there is nothing "
            "to undo"
        )
    todo = [s for s in rows if s.undo_state in (None, FAILED) or snapshots.abandoned(s)]
    busy = [s for s in rows if s.undo_state == RESTORING and s not in todo]
    if not todo:
        if busy:
            raise Conflict(
                f"another undo of request #{request.id} is restoring {len(busy):,} of these "
                "items now; wait for it, then run `undo` again to see what came back"
            )
        done = Reply(
            text=f"Request #{request.id} was already undone: nothing to do "
            f"({_counts(Counter(s.undo_state or '' for s in rows), rows)})."
        )
        return file_forced(call, ctx, request, rows, done) if call.args.get("force") else done
    resumed = any(s.undo_state == RESTORING for s in todo)
    ctx.audit.append(
        actor=call.user,
        action="undo.run",
        target=f"{request.registry}/request #{request.id}",
        request_id=request.id,
        outcome="resumed" if resumed else "started",
        error=f"reason: {call.args['reason']}" + (f"; --only {only}" if only else ""),
        at=now,
    )
    outcomes = _run(ctx, request, snapshots, todo, user=call.user)
    text = f"Undo of request #{request.id}{' resumed' if resumed else ''}: {_counts_of(outcomes)}."
    earlier = len(rows) - len(todo) - len(busy)
    if earlier:
        text += f" {earlier:,} item{'s were' if earlier != 1 else ' was'} already undone before."
    _announce(ctx, request, f"{call.user}: {text}", key=call.origin or now.isoformat())
    reply = _reply(text, outcomes)
    return file_forced(call, ctx, request, rows, reply) if call.args.get("force") else reply


def resume_abandoned(ctx: Context) -> list[str]:
    """Finish the undos a crash stopped (items a dead process left `restoring`), as whoever
    ran them, reading the registry before any PUT; return what each said. The sweep and
    every start of the bot run it, as they finish interrupted requests."""
    snapshots = Snapshots(ctx.store, ctx.audit, clock=ctx.clock)
    said = []
    for request_id in snapshots.abandoned_requests():
        todo = [s for s in snapshots.for_request(request_id) if snapshots.abandoned(s)]
        if not todo:
            continue  # its owner is alive: still at it
        request = ctx.requests.get(request_id)
        outcomes = []
        for user in sorted({s.undo_by or "acrbot" for s in todo}):
            mine = [s for s in todo if (s.undo_by or "acrbot") == user]
            outcomes += _run(ctx, request, snapshots, mine, user=user)
        if not outcomes:
            continue
        text = f"Undo of request #{request_id} resumed after a restart: {_counts_of(outcomes)}."
        _announce(ctx, request, text, key=f"resumed:{ctx.clock().isoformat()}")
        said.append(text)
    return said


Outcome = tuple[Snapshot, str, str | None]


def _run(
    ctx: Context,
    request: DeletionRequest,
    snapshots: Snapshots,
    todo: list[Snapshot],
    *,
    user: str,
) -> list[Outcome]:
    """Claim, restore and settle each snapshot, ``purge_concurrency`` at a time."""
    registry = ctx.registries.get(request.registry)
    options = next((r.options for r in ctx.config.registries if r.name == registry.name), {})
    concurrency = int(options.get("purge_concurrency", DEFAULT_CONCURRENCY))

    def one(snapshot: Snapshot) -> Outcome | None:
        if not snapshots.claim(snapshot, by=user):
            return None  # another undo took it meanwhile
        state, detail = restore(registry, snapshot)
        snapshots.settle(
            snapshot, state, detail=detail, by=user, target=_target(registry, snapshot)
        )
        return snapshot, state, detail

    outcomes: list[Outcome] = []
    for repository in sorted({s.repository for s in todo}):
        batch = [s for s in todo if s.repository == repository]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes += [o for o in pool.map(one, batch) if o is not None]
    return outcomes


def _announce(ctx: Context, request: DeletionRequest, text: str, *, key: str) -> None:
    """Said in the request's thread (through the outbox), once per run."""
    if request.channel is not None:
        ctx.outbox.put(
            f"line:{request.id}:undo:{key}",
            LINE,
            {"request": request.id, "line": "text", "text": text},
            after=card_key(request.id),
        )


def _reply(text: str, outcomes: list[Outcome]) -> Reply:
    """The summary, and a note for each item that did not simply come back (the first 10:
    `request ID` and the audit have every one): what cannot be restored and what to do, what
    failed, and the tags left alone because they were pushed again."""
    states = Counter(state for _, state, _ in outcomes)
    notes = tuple(
        f"{_label(s)}: {d}"
        for s, state, d in sorted(outcomes, key=lambda o: _ORDER[o[1]])
        if d and (state in (LOST, FAILED) or REPUSHED in d)
    )
    return Reply(text=text, ok=not states[LOST] and not states[FAILED], notes=notes[:10])


_ORDER = {LOST: 0, FAILED: 1, SKIPPED: 2, RESTORED: 3}


def _counts_of(outcomes: list[Outcome]) -> str:
    return _counts(
        Counter(state for _, state, _ in outcomes), [s for s, _, _ in outcomes], outcomes
    )


def restore(registry: Registry, snapshot: Snapshot) -> tuple[str, str | None]:
    """Put one snapshot back; its final state and why. Reads before it writes: a tag that
    now names another image is never overwritten, and what is already there is not PUT."""
    repo, digest = snapshot.repository, snapshot.digest
    resumed = snapshot.undo_state in (RESTORING, FAILED)  # a PUT may have landed: read first
    try:
        missing, repushed, present = [], [], []
        for tag in snapshot.tags:
            try:
                current = registry.resolve(repo, tag)
            except NotFound:
                missing.append(tag)
                continue
            (present if current == digest else repushed).append(tag)
        if snapshot.tags and not missing:
            if not present:
                return SKIPPED, f"{REPUSHED} ({_tags(repushed)})"
            if resumed:
                return RESTORED, "found restored when resuming"
            return SKIPPED, STILL_THERE
        there = bool(present) or (
            (resumed or not snapshot.manifest_deleted or not snapshot.tags)
            and _exists(registry, repo, digest)
        )
        if not snapshot.tags and there:
            return (RESTORED, "found restored when resuming") if resumed else (SKIPPED, STILL_THERE)
        if not there:
            if registry.restore_deleted(repo, digest, tag=missing[0] if missing else None):
                missing = missing[1:]  # ACR's soft delete brought it back with its first tag
            else:
                for manifest in snapshot.manifests:  # children first, the manifest last
                    child = manifest.digest != digest
                    if child and _exists(registry, repo, manifest.digest):
                        continue
                    registry.put_manifest(repo, manifest.digest, manifest)
        for tag in missing:
            stored = registry.put_manifest(repo, tag, snapshot.manifest)
            if stored != digest:
                return FAILED, f"{tag} was stored as {fmt.short_digest(stored)}, not {digest}"
    except LayersGone as exc:
        return LOST, LAYERS_GONE.format(why=str(exc))
    except UserError as exc:
        return FAILED, str(exc)
    if repushed:
        return RESTORED, f"{_tags(repushed)} {REPUSHED}"
    return RESTORED, None


def _exists(registry: Registry, repository: str, digest: str) -> bool:
    try:
        registry.image(repository, digest)
        return True
    except NotFound:
        return False


def _authorize(call: Call, request: DeletionRequest, repositories: list[str]) -> None:
    """The requester (still a contributor there), or an owner of every repository touched."""

    def holds(needs: frozenset[Role]) -> bool:
        return all(
            allows(call.grants, needs, Scope.REQUEST, registry=request.registry, repository=r)
            for r in repositories
        )

    if (call.user == request.requester and holds(CONTRIBUTE)) or holds(OWN):
        return
    raise PermissionDenied(
        f"only the requester of #{request.id} ({request.requester}) or an owner of every "
        f"repository it touched ({', '.join(repositories[:3])}"
        f"{' …' if len(repositories) > 3 else ''}) may undo it"
    )


def _counts(
    counts: Counter[str],
    rows: list[Snapshot],
    outcomes: list[Outcome] | None = None,
) -> str:
    """`38 restored, 1 skipped (re-pushed), 1 cannot be restored`."""
    details = (
        [d for _, state, d in outcomes if state == SKIPPED]
        if outcomes is not None
        else [s.undo_detail for s in rows if s.undo_state == SKIPPED]
    )
    why = Counter(
        "re-pushed" if d and d.startswith(REPUSHED) else "still there" for d in details if d
    )
    parts = [f"{counts[RESTORED]:,} restored"]
    if counts[SKIPPED]:
        reasons = (
            next(iter(why))
            if len(why) == 1
            else ", ".join(f"{n:,} {w}" for w, n in why.most_common())
        )
        parts.append(f"{counts[SKIPPED]:,} skipped ({reasons})")
    if counts[LOST]:
        parts.append(f"{counts[LOST]:,} cannot be restored")
    if counts[FAILED]:
        parts.append(f"{counts[FAILED]:,} failed")
    return ", ".join(parts)


def _label(snapshot: Snapshot) -> str:
    if snapshot.tags:
        return f"{snapshot.repository}:{_tags(list(snapshot.tags))}"
    return f"{snapshot.repository}@{fmt.short_digest(snapshot.digest)}"


def _target(registry: Registry, snapshot: Snapshot) -> str:
    return f"{registry.name}/{snapshot.repository}@{snapshot.digest}"


def _tags(tags: list[str]) -> str:
    return ", ".join(tags[:3]) + (" …" if len(tags) > 3 else "")


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")
