"""`where IMAGE` and `lock --deployed`: what the `[[deployed]]` sources say runs, and locking
it so that even a purge run outside the bot spares it.

`where` is a listing: it may answer from a read younger than `cache_seconds` and says how old
its answer is. `lock --deployed` reads afresh and sets `deleteEnabled=false` on every digest
in use; ACR has no batch call for manifest attributes (one PATCH per manifest,
`/acr/v1/{repo}/_manifests/{digest}`), so the PATCHes run 8 at a time, one per digest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.core import formatting as fmt
from bot.core.commands import OWN
from bot.core.deployed import InUse, describe
from bot.core.errors import NotFound, Unsupported, UserError
from bot.core.policy import Scope, require
from bot.core.registry import Registry
from bot.core.replies import Reply, Table
from bot.kernel.context import Call, Context

LOCK_CONCURRENCY = 8


def _reader(ctx: Context):
    if ctx.deployed is None or not ctx.deployed.configured:
        raise UserError(
            "no [[deployed]] source is configured: add one (a Kubernetes cluster or Container "
            "Apps) to the configuration, see docs/configuration.md"
        )
    return ctx.deployed


def _freshness(ctx: Context, in_use: InUse) -> str:
    age = max(0.0, (ctx.clock() - in_use.read_at).total_seconds())
    return f"read {age:.0f} s ago from {', '.join(in_use.sources)}"


def where(call: Call, *, ctx: Context) -> Reply:
    """Where an image (a tag, a digest, or every digest of a repository) runs."""
    registry, ref = call.registry, call.args["image"]
    assert registry is not None
    in_use = _reader(ctx).in_use([registry], fresh=False)
    if ref.digest:
        wanted = {ref.digest}
    elif ref.tag:
        wanted = {registry.tag(ref.repository, ref.tag).digest}
    else:
        wanted = None
    found = {
        digest: uses
        for (repo, digest), uses in in_use.digests(registry.name, ref.repository).items()
        if wanted is None or digest in wanted
    }
    rows = tuple(
        (
            fmt.short_digest(digest),
            f"{u.source}/{u.namespace}" if u.namespace else u.source,
            u.label,
            u.image,
        )
        for digest, uses in sorted(found.items())
        for u in uses
    )
    what = f"{registry.name}/{ref}"
    fresh = _freshness(ctx, in_use)
    notes = tuple(
        f"{f.line}: this answer is incomplete" for f in in_use.failures_for(registry.name)
    )
    if not found:
        text = f"{what} is not in use in any deployed source ({fresh})."
    else:
        text = (
            f"{what}: {len(found)} digest{'' if len(found) == 1 else 's'} in use ({fresh}); "
            + " | ".join(describe(u) for u in found.values())
        )
    return Reply(
        text=text,
        table=Table(("digest", "where", "workload", "image"), rows) if rows else None,
        notes=notes,
        ok=not notes,
        data={
            "registry": registry.name,
            "repository": ref.repository,
            "read_at": in_use.read_at.isoformat(),
            "sources": list(in_use.sources),
            "failures": [f.line for f in in_use.failures_for(registry.name)],
            "in_use": {
                digest: [
                    {
                        "source": u.source,
                        "namespace": u.namespace,
                        "kind": u.kind,
                        "name": u.name,
                        "note": u.note,
                        "image": u.image,
                    }
                    for u in uses
                ]
                for digest, uses in found.items()
            },
        },
    )


@dataclass(frozen=True)
class Locked:
    """What one `lock --deployed` did: the digests locked, those that could not be, and the
    sources that could not be read (their images were not locked)."""

    registry: str
    locked: tuple[tuple[str, str], ...]
    failed: tuple[str, ...]
    failures: tuple[str, ...]
    freshness: str


def lock_in_use(ctx: Context, registry: Registry, *, actor: str) -> Locked:
    """Lock against deletion every digest in use on ``registry`` (read afresh); one audit
    row per digest locked, as `lock` writes one per image. Used by the command and by each
    `[[deployed]] lock_schedule` slot (bot/schedules/deployed_locks.py)."""
    if not registry.can_lock:
        raise Unsupported(f"{registry.name} has no locks: `lock --deployed` needs an acr registry")
    in_use = _reader(ctx).in_use([registry], fresh=True)
    targets = sorted(in_use.digests(registry.name))
    failed: list[str] = []

    def one(target: tuple[str, str]) -> tuple[str, str] | None:
        repo, digest = target
        try:
            _lock(registry, repo, digest)
        except NotFound:
            return None  # referenced, but not (or no longer) in the registry
        except UserError as exc:
            failed.append(f"{repo}@{fmt.short_digest(digest)}: {exc}")
            return None
        return target

    with ThreadPoolExecutor(max_workers=LOCK_CONCURRENCY) as pool:
        locked = tuple(t for t in pool.map(one, targets) if t is not None)
    at = ctx.clock()
    with ctx.store.transaction():
        for repo, digest in locked:
            ctx.audit.append(
                actor=actor,
                action="lock.deployed",
                target=f"{registry.name}/{repo}@{digest}",
                outcome="ok",
                at=at,
            )
    return Locked(
        registry=registry.name,
        locked=locked,
        failed=tuple(failed),
        failures=tuple(f.line for f in in_use.failures_for(registry.name)),
        freshness=_freshness(ctx, in_use),
    )


def lock_deployed(call: Call, *, ctx: Context) -> Reply:
    """Lock (deleteEnabled=false) every digest the sources show in use, read afresh."""
    registry = call.registry
    assert registry is not None
    require(call.grants, OWN, Scope.REGISTRY, action="lock --deployed", registry=registry.name)
    done = lock_in_use(ctx, registry, actor=call.user)
    n = len(done.locked)
    notes = tuple(f + ": its images were not locked" for f in done.failures) + done.failed[:10]
    return Reply(
        text=f"Locked {n:,} digest{'' if n == 1 else 's'} in use on {registry.name} against "
        f"deletion ({done.freshness}).",
        table=Table(("repository", "digest"), tuple((r, d) for r, d in done.locked[:50])),
        notes=notes,
        ok=not done.failures and not done.failed,
        data={
            "registry": registry.name,
            "locked": [f"{r}@{d}" for r, d in done.locked],
            "failed": list(done.failed),
            "failures": list(done.failures),
        },
    )


def _lock(registry: Registry, repository: str, digest: str) -> None:
    registry.set_lock(repository, digest, delete=True, write=None)
