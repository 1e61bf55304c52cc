"""`purge`, planning: a dry run, or a request that pins every item for one approval.

Planning reads the registry now and pins every item; executing them is purge_run.py.

A dry run (readers may run it) shows exactly what would go. Otherwise the command pins every
item (repository, tag, digest) in a request; an owner approves it once (quorum `purge`), and
the approval that completes the quorum runs it: in the worker under `acrbot serve` (progress in
the card's thread), in the process itself from the console, `acrbot run` or a notebook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from bot.core import formatting as fmt
from bot.core.commands import CONTRIBUTE
from bot.core.errors import (
    Conflict,
    NotFound,
    UserError,
)
from bot.core.policy import Scope, allows, visible
from bot.core.purge_spec import (
    MANIFEST,
    Item,
    Plan,
    PurgeSpec,
    Skip,
    pace_text,
    parse_ago,
    plan_tags,
    plural,
    select_tags,
    totals_text,
)
from bot.core.registry import (
    INDEX_TYPES,
    ManifestInfo,
    Progress,
    Registry,
    TagInfo,
    no_progress,
)
from bot.core.replies import Reply, Table
from bot.core.request_types import DeletionRequest, PurgePace, PurgeRequestSpec
from bot.kernel.context import Call, Context
from handlers.requests import in_use, rules_gate
from handlers.requests.freed import FREED_NOTE, freed_by
from handlers.requests.reply import request_reply

log = logging.getLogger(__name__)


SHOWN = 10  # items a reply or card lists before pointing at the rest


def spec_of(args: dict) -> PurgeSpec:
    return PurgeSpec(
        filters=tuple(args["filter"]),
        ago=parse_ago(args["ago"]) if args["ago"] else None,
        keep=args["keep"] or 0,
        untagged=bool(args["untagged"]),
    )


def plan(
    registry: Registry,
    spec: PurgeSpec,
    *,
    visible_names: Callable[[list[str]], list[str]],
    now: datetime,
    progress: Progress = no_progress,
) -> Plan:
    """Select the items, repository by repository (sorted), from the registry as it is now."""
    if spec.untagged and not registry.can_list_manifests:
        registry.manifests("-")  # raises the backend's Unsupported, which says why
    repos = [r for r in visible_names(registry.repositories()) if spec.matches_repository(r)]
    result = Plan(repositories=repos)
    for repository in repos:
        try:
            tags = registry.all_tags(repository, progress=progress)
        except NotFound:
            continue  # listed by the catalog, but gone (or empty) now
        result.digests[repository] = {t.digest for t in tags}
        chosen, skipped = select_tags(spec, repository, tags, now=now)
        items, more = plan_tags(repository, chosen, tags, can_untag=registry.can_untag)
        if not registry.can_untag:  # these items delete manifests: keep what an index uses
            items, used = _spare_index_children(registry, repository, items, tags)
            more += used
        result.items += items
        result.skipped += skipped + more
        if spec.untagged:
            going = {t.name for t in chosen} if registry.can_untag else set()
            untagged, skips = _untagged(registry, spec, repository, going, now=now)
            result.items += untagged
            result.skipped += skips
    return result


def _spare_index_children(
    registry: Registry, repository: str, items: list[Item], tags: list[TagInfo]
) -> tuple[list[Item], list[Skip]]:
    """Drop the items whose manifest an image index that stays references (deleting it would
    break the index); the index digests' references are cached digest facts."""
    going = {i.digest for i in items}
    refs = registry.references(repository, sorted({t.digest for t in tags}))
    used = {child for parent, children in refs.items() if parent not in going for child in children}
    kept = [i for i in items if i.digest not in used]
    skipped = [
        Skip(repository, i.label, "an image index that stays uses it")
        for i in items
        if i.digest in used
    ]
    return kept, skipped


def _untagged(
    registry: Registry, spec: PurgeSpec, repository: str, going: set[str], *, now: datetime
) -> tuple[list[Item], list[Skip]]:
    """Manifests with no tag (or none left after this purge), old enough and not locked;
    never a referrer (removed with its subject) nor a manifest an index that stays uses."""
    cutoff = None if not spec.ago else now - spec.ago
    manifests = registry.manifests(repository)
    candidates: dict[str, ManifestInfo] = {}
    skipped = []
    for m in manifests:
        if set(m.tags) - going:
            continue
        if cutoff is not None and (m.when is None or not m.when <= cutoff):
            continue
        if m.subject:
            continue  # a signature or SBOM: goes with its subject
        if m.locked:
            skipped.append(Skip(repository, f"{repository}@{m.digest}", "locked"))
            continue
        candidates[m.digest] = m
    while True:  # an index that stays keeps what it references (nested indexes too)
        kept_refs = {ref for m in manifests if m.digest not in candidates for ref in m.references}
        used = set(candidates) & kept_refs
        if not used:
            break
        for digest in used:
            skipped.append(
                Skip(repository, f"{repository}@{digest}", "an image index that stays uses it")
            )
            del candidates[digest]
    # An index goes before the manifests it references (acr-cli deletes them in no order;
    # a child deleted first would leave a broken index behind for a moment).
    ordered = sorted(candidates.values(), key=lambda m: (m.media_type not in INDEX_TYPES, m.digest))
    return [Item(repository, MANIFEST, m.digest, tags=(), when=m.when) for m in ordered], skipped


def purge(call: Call, *, ctx: Context) -> Reply:
    """A dry run, or a request that pins every item for one approval."""
    registry = call.registry
    assert registry is not None
    if call.args["dry_run"]:
        spec = spec_of(call.args)
        result = plan(
            registry,
            spec,
            visible_names=lambda names: visible(call.grants, registry.name, names),
            now=ctx.clock(),
            progress=call.progress,
        )
        note = in_use.apply_to_plan(ctx, registry, result, fresh=False, refusing=None)  # hook
        pace = write_pace(ctx, registry) if result.items else None
        freed = freed_by(registry, result, progress=call.progress) if result.items else 0
        reply = _dry_run_reply(
            registry.name, spec, result, can_untag=registry.can_untag, pace=pace, freed=freed
        )
        return replace(reply, notes=(*reply.notes, note)) if note else reply
    if not call.args["reason"]:
        raise UserError("a purge needs --reason (a dry run does not)")
    request = plan_and_request(
        ctx,
        call.args,
        requester=call.user,
        channel=call.channel or ctx.config.requests_channel,
        origin=call.origin,
        grants=call.grants,
        progress=call.progress,
    )
    need = request.required
    who = "an owner" if need == 1 else "owners"
    warning = in_use.last_warning(ctx, registry)  # of the read just made
    return request_reply(
        f"Purge request #{request.id} created: {totals_text(request.spec)} pinned; "
        f"waiting for {need} approval{'' if need == 1 else 's'} from {who} (not you)."
        + (f" ({warning})" if warning else "")
        + rules_gate.created_note(rules_gate.terms_of(ctx, request)),
        request,
    )


def plan_and_request(
    ctx: Context,
    args: dict,
    *,
    requester: str,
    channel: str | None,
    origin: str | None,
    grants: tuple | None = None,
    progress: Progress = no_progress,
) -> DeletionRequest:
    """Plan from the registry now and record the request; ``grants`` None means the bot
    itself asks (scheduled retention), over every repository."""
    registry = ctx.registries.get(args["registry"])
    spec = spec_of(args)
    if origin is not None:
        existing = ctx.store.db.execute(
            "select id from requests where origin = ?", [origin]
        ).fetchone()
        if existing:  # a re-run of the job (or slot) that made it
            return ctx.requests.get(existing[0])
    result = plan(
        registry,
        spec,
        visible_names=(lambda names: names)
        if grants is None
        else (lambda names: visible(grants, registry.name, names)),
        now=ctx.clock(),
        progress=progress,
    )
    warning = in_use.apply_to_plan(ctx, registry, result, fresh=True, refusing=in_use.REQUESTED)
    if not result.items:
        raise Conflict(
            f"nothing to purge on {registry.name} with {spec.describe()}"
            + (f" ({len(result.skipped)} skipped: see `--dry-run`)" if result.skipped else "")
            + "; no request was made"
        )
    if grants is not None and args.get("break_glass"):
        pass  # oncall or owner on every repository: rules_gate.at_request checks it below
    elif grants is not None:
        missing = sorted(
            {
                i.repository
                for i in result.items
                if not allows(
                    grants,
                    CONTRIBUTE,
                    Scope.REPOSITORY,
                    registry=registry.name,
                    repository=i.repository,
                )
            }
        )
        if missing:
            raise UserError(
                "`purge` needs contributor on every repository it deletes from; you lack it "
                f"on {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}. Narrow "
                "--filter."
            )
    counts = result.counts()
    terms = rules_gate.at_request(  # [[policy]]: reason, freeze, break-glass; approvals, ttl
        ctx,
        args,
        user=requester,
        grants=grants,
        registry=registry.name,
        repositories=sorted({i.repository for i in result.items}),
        action="purge",
        items=len(result.items),
    )
    request = ctx.requests.create_purge(
        registry=registry.name,
        items=[_item_dict(i) for i in result.items],
        spec=PurgeRequestSpec(
            filters=tuple(str(f) for f in spec.filters),
            ago_seconds=None if spec.ago is None else spec.ago.total_seconds(),
            keep=spec.keep,
            untagged=spec.untagged,
            describe=spec.describe(),
            repositories=tuple(sorted({i.repository for i in result.items})),
            counts=counts,
            items=len(result.items),
            tags=sum(c["tags"] for c in counts.values()),
            manifests=sum(c["manifests"] for c in counts.values()),
            skipped=len(result.skipped),
            first=tuple(i.label for i in result.items[:SHOWN]),
            skips_listed=True,  # kept in purge_skips: `request N` lists them
            pace=write_pace(ctx, registry),
            freed_bytes=freed_by(registry, result, progress=progress),
        ),
        requester=requester,
        reason=args["reason"],
        ttl=terms.ttl,
        required=terms.required,
        origin=origin,
        channel=channel,
        skipped=[(s.what, s.reason) for s in result.skipped],
    )
    if warning:
        log.warning("purge request #%s: %s", request.id, warning)
    return request


def _item_dict(item: Item) -> dict:
    return {
        "repository": item.repository,
        "kind": item.kind,
        "tag": item.tag,
        "digest": item.digest,
        "tags": list(item.tags),
        "when": item.when.isoformat() if item.when else None,
    }


def _dry_run_reply(
    registry: str,
    spec: PurgeSpec,
    result: Plan,
    *,
    can_untag: bool,
    pace: PurgePace | None = None,
    freed: int = 0,
) -> Reply:
    counts = result.counts()
    tags = sum(c["tags"] for c in counts.values())
    manifests = sum(c["manifests"] for c in counts.values())
    rows = [
        (i.label, fmt.short_digest(i.digest), fmt.when(i.when), "goes") for i in result.items
    ] + [(s.what, "", "", f"skipped: {s.reason}") for s in result.skipped]
    what = f"{tags:,} tag{'' if tags == 1 else 's'}"
    if manifests:
        what += f" and {plural(manifests, 'untagged manifest')}"
    fields = tuple(
        (
            repository,
            plural(c["tags"], "tag")
            + (f", {plural(c['manifests'], 'untagged manifest')}" if c["manifests"] else "")
            + (f", {c['skipped']:,} skipped" if c["skipped"] else ""),
        )
        for repository, c in counts.items()
        if c["tags"] or c["manifests"] or c["skipped"]
    )
    age = f" older than {spec.describe().split('--ago ')[1].split()[0]}" if spec.ago else ""
    notes = []
    if not spec.ago:
        notes.append("No --ago: tags of any age match.")
    if not can_untag and result.items:
        notes.append(
            f"{registry} deletes whole images: each tag goes with its image, so an image that "
            "also carries a tag the purge does not remove is skipped."
        )
    paced = pace_text(len(result.items), pace)
    if paced:
        notes.append(f"Once approved: {paced}.")
    if result.items:
        notes.append(FREED_NOTE)
    touched = len([c for c in counts.values() if c["tags"] or c["manifests"]])
    return Reply(
        text=f"Dry run on {registry}: {what}{age} would be deleted from "
        f"{plural(touched, 'repository', 'repositories')}"
        + (f", freeing {fmt.size(freed)}" if result.items else "")
        + "; nothing was changed.",
        fields=fields,
        table=Table(("item", "digest", "time", "outcome"), tuple(rows)),
        notes=tuple(notes),
        data={
            "dry_run": True,
            "registry": registry,
            "freed_bytes": freed,
            "spec": spec.as_dict(),
            "counts": counts,
            "items": [_item_dict(i) for i in result.items],
            "skipped": [{"item": s.what, "reason": s.reason} for s in result.skipped],
        },
    )


def write_pace(ctx: Context, registry: Registry) -> PurgePace:
    """The pace of a purge's DELETEs: `write_rate` when configured, else the registry's tier
    limits less a margin (ACR: its SKU, read from ARM once), else none (kept in the
    request's spec)."""
    options = next((r.options for r in ctx.config.registries if r.name == registry.name), {})
    if options.get("write_rate"):
        return PurgePace(rate=float(options["write_rate"]), source="config")
    limits = registry.limits()
    if limits is None:
        return PurgePace(rate=None, source="none")
    return PurgePace(
        rate=round(limits.write_rate, 3),
        source="tier" if limits.known else "lowest",
        tier=limits.tier,
    )
