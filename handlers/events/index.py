"""`show` answers "which tags point here" from the live tag index (bot/state/tag_index.py)
where the registry cannot say it cheaply: on a distribution registry that is a HEAD per tag
(6.6–12 s at 10,000 tags), from the index one query. Registries with locks (ACR) are still
asked, so the locks `show` prints are the registry's own. The answer says how fresh it is;
a deletion never reads it (executions re-read the registry).
"""

from __future__ import annotations

from bot.core import formatting as fmt
from bot.core.registry import Registry
from bot.kernel.context import Context
from bot.state.tag_index import Freshness, IndexAnswer, TagIndex


def shared_tags(
    ctx: Context, registry: Registry, repository: str, digest: str
) -> IndexAnswer | None:
    """The index's tags on ``digest``, or None (registry with locks, no index kept, or the
    repository never read in full: the caller asks the registry)."""
    if registry.can_lock or ctx.config.events is None:
        return None
    return TagIndex(ctx.store, clock=ctx.clock).answer(registry.name, repository, digest)


def freshness_note(freshness: Freshness) -> str:
    line = f"Tags from the live tag index: read in full {fmt.when(freshness.rebuilt_at)}"
    if freshness.event_at is not None:
        line += f", kept by registry events until {fmt.when(freshness.event_at)}"
    return line + "."
