"""Never break what is running: the checks `delete`, `--manifest` and `purge` make against
`[protect] tags` and the in-use set of the `[[deployed]]` sources, at request and again at
execution (always a fresh read there: the image may have been deployed in between).

The request flow calls one hook per place (delete.py, purge.py, purge_run.py); the logic is
here. A source that cannot be read refuses (one line naming it and the fix), unless
`[protect] on_source_error = "warn"`: then the deletion proceeds, the answer says so and the
audit gets a `deployed.unread` row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.core import formatting as fmt
from bot.core.deployed import InUse, describe
from bot.core.errors import Conflict
from bot.core.purge_spec import MANIFEST, Item, Plan, Skip
from bot.core.registry import Registry
from bot.kernel.context import Context
from bot.state.purges import PurgeItem

REQUESTED, DELETED = "nothing was requested", "nothing was deleted"


def protected_reason(ctx: Context, tags: Iterable[str]) -> str | None:
    """`protected: matches latest` for the first tag a `[protect] tags` pattern matches."""
    for tag in tags:
        pattern = ctx.config.protect.protected(tag)
        if pattern is not None:
            return f"protected: {tag} matches {pattern}"
    return None


def read(
    ctx: Context, registry: Registry, *, fresh: bool, refusing: str | None
) -> tuple[InUse | None, str | None]:
    """The in-use set for ``registry`` (None: no source configured) and the warning to show
    when a covering source could not be read in warn mode. With ``refusing`` (what the
    refusal says was not done) a failed source raises Conflict in refuse mode."""
    reader = ctx.deployed
    if reader is None or not reader.configured:
        return None, None
    in_use = reader.in_use([registry], fresh=fresh)
    failures = in_use.failures_for(registry.name)
    if not failures:
        return in_use, None
    lines = "; ".join(f.line for f in failures)
    if ctx.config.protect.on_source_error != "warn":
        if refusing is None:
            return in_use, f"{lines}: a deletion would be refused"
        raise Conflict(f"{lines}; {refusing}")
    warning = _warning(lines)
    if refusing is not None:
        for failure in failures:
            ctx.audit.append(
                actor="acrbot",
                action="deployed.unread",
                target=f"{registry.name} {failure.source}",
                outcome="warn",
                error=failure.line,
                at=ctx.clock(),
            )
    return in_use, warning


def last_warning(ctx: Context, registry: Registry) -> str | None:
    """The warn-mode warning of the read this command just made (no new read)."""
    if ctx.deployed is None or ctx.config.protect.on_source_error != "warn":
        return None
    covers = {d.name: d for d in ctx.config.deployed}
    failures = [
        f
        for f in ctx.deployed.last_failures()
        if f.source not in covers or covers[f.source].covers(registry.name)
    ]
    if not failures:
        return None
    return _warning("; ".join(f.line for f in failures))


def _warning(lines: str) -> str:
    return f'warning: {lines}; proceeding without it (`[protect] on_source_error = "warn"`)'


def _children(
    registry: Registry, repository: str, digests: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """An index's child manifests (cached digest facts), for the digests that are indexes."""
    if not digests:
        return {}
    return {d: c for d, c in registry.references(repository, list(digests)).items() if c}


def _uses(
    in_use: InUse, registry: str, repository: str, digest: str, children: tuple[str, ...]
) -> str | None:
    for d in (digest, *children):
        found = in_use.of(registry, repository, d)
        if found:
            what = "" if d == digest else f" (a child of the index, {fmt.short_digest(d)})"
            return f"{describe(found)}{what}"
    return None


def check_delete(
    ctx: Context,
    registry: Registry,
    *,
    repository: str,
    digest: str,
    tags: Sequence[str],
    manifest: bool,
    refusing: str,
) -> str | None:
    """Refuse (Conflict, naming where) the deletion of a protected tag, or of a digest in use
    (with --manifest, also an index whose child is in use). Returns the warn-mode warning."""
    reason = protected_reason(ctx, tags)
    if reason is not None:
        raise Conflict(f"{registry.name}/{repository}: {reason}; {refusing}")
    in_use, warning = read(ctx, registry, fresh=True, refusing=refusing)
    if in_use is None:
        return warning
    children = _children(registry, repository, [digest]).get(digest, ()) if manifest else ()
    where = _uses(in_use, registry.name, repository, digest, children)
    if where is not None:
        raise Conflict(
            f"{registry.name}/{repository}@{fmt.short_digest(digest)} is {where}; {refusing}"
        )
    return warning


def plan_skips(
    ctx: Context, registry: Registry, items: list[Item], *, fresh: bool, refusing: str | None
) -> tuple[list[Item], list[Skip], str | None]:
    """Split a purge's planned items into those that may go and those skipped (protected,
    in use), checked against one read of the in-use set in memory. Returns the warning too."""
    kept: list[Item] = []
    skipped: list[Skip] = []
    for item in items:
        reason = protected_reason(ctx, item.tags if item.kind == MANIFEST else (item.tag or "",))
        if reason is not None:
            skipped.append(Skip(item.repository, item.label, reason))
        else:
            kept.append(item)
    in_use, warning = read(ctx, registry, fresh=fresh, refusing=refusing)
    if in_use is None or not in_use.uses:
        return kept, skipped, warning
    reasons = _in_use_reasons(
        in_use,
        registry,
        [(i.repository, i.digest, i.kind == MANIFEST or not registry.can_untag) for i in kept],
    )
    going = []
    for item in kept:
        reason = reasons.get((item.repository, item.digest))
        if reason is not None:
            skipped.append(Skip(item.repository, item.label, reason))
        else:
            going.append(item)
    return going, skipped, warning


def apply_to_plan(
    ctx: Context, registry: Registry, plan: Plan, *, fresh: bool, refusing: str | None
) -> str | None:
    """Move a purge plan's protected and in-use items to its skips (the dry run shows them,
    the request stores them in purge_skips); returns the warning or the dry run's note."""
    plan.items, more, warning = plan_skips(
        ctx, registry, plan.items, fresh=fresh, refusing=refusing
    )
    plan.skipped += more
    return warning


def execution_skips(
    ctx: Context, registry: Registry, items: list[PurgeItem]
) -> tuple[dict[int, str], str | None]:
    """At a purge's execution: each pending item's reason to be skipped now (protected, or in
    use by a fresh read), by its seq; a failed source refuses the whole run (Conflict)."""
    found: dict[int, str] = {}
    for item in items:
        reason = protected_reason(ctx, item.tags if item.kind == MANIFEST else (item.tag or "",))
        if reason is not None:
            found[item.seq] = reason
    in_use, warning = read(ctx, registry, fresh=True, refusing=DELETED)
    if in_use is None or not in_use.uses:
        return found, warning
    reasons = _in_use_reasons(
        in_use,
        registry,
        [(i.repository, i.digest, i.kind == MANIFEST or not registry.can_untag) for i in items],
    )
    for item in items:
        reason = reasons.get((item.repository, item.digest))
        if reason is not None and item.seq not in found:
            found[item.seq] = reason
    return found, warning


def _in_use_reasons(
    in_use: InUse, registry: Registry, wanted: list[tuple[str, str, bool]]
) -> dict[tuple[str, str], str]:
    """(repository, digest) → why it must stay; an index is looked into (one references call
    per repository, cached digest facts) only when the item deletes a manifest and some
    digest of that repository is in use."""
    used = in_use.digests(registry.name)
    repos_in_use = {repo for repo, _ in used}
    indexes: dict[str, list[str]] = {}
    for repo, digest, deletes_manifest in wanted:
        if deletes_manifest and repo in repos_in_use and (repo, digest) not in used:
            indexes.setdefault(repo, []).append(digest)
    children = {repo: _children(registry, repo, sorted(set(ds))) for repo, ds in indexes.items()}
    reasons = {}
    for repo, digest, _ in wanted:
        where = _uses(in_use, registry.name, repo, digest, children.get(repo, {}).get(digest, ()))
        if where is not None:
            reasons[(repo, digest)] = where
    return reasons
