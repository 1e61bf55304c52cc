"""Rebuild a repository's tag index from the registry, and report what changed unseen.

Some changes come with no event: ACR sends no webhook for an untag, a registry may have been
changed while the bot was down, a sender may have given up. Before the index is replaced, the
fresh read is compared with it: a tag that disappeared, or a protected or write-once tag that
now points elsewhere, becomes an event of source `reconcile` (stored once, by a key naming the
tag, its old digest and the last read) and is processed like any other — drift alert, audit,
unless the bot's own deletion in that interval explains it. Entries an event wrote while the
registry was being read are left out of the comparison: they are newer than the read.
"""

from __future__ import annotations

from bot.core.registry import Registry
from bot.core.registry_events import Action, RegistryEvent, Source
from bot.kernel.context import Context
from bot.state.registry_events import EventLog
from bot.state.tag_index import TagIndex
from handlers.events.process import EventProcessor


def reconcile_repository(
    ctx: Context, processor: EventProcessor, registry: Registry, repository: str
) -> int:
    """Read ``repository``'s tags, report what changed without an event, rebuild its index;
    return how many changes were reported. A registry that cannot be read raises: the old
    entries stay, labelled with their age."""
    index = TagIndex(ctx.store, clock=ctx.clock)
    started = ctx.clock()
    last = index.indexed(registry.name, repository)
    old = index.entries(registry.name, repository)
    read = {t.name: t.digest for t in registry.all_tags(repository)}
    unseen: list[RegistryEvent] = []
    if last is not None:
        protect = ctx.config.protect
        for tag, (digest, updated) in old.items():
            if updated >= started:
                continue  # an event wrote it during the read
            now_at = read.get(tag)
            if now_at == digest:
                continue
            moved = now_at is not None
            if moved and not (protect.protected(tag) or protect.is_immutable(tag)):
                continue  # an ordinary tag moved: its push event (if any) told it
            unseen.append(
                RegistryEvent(
                    id=f"reconcile:{registry.name}/{repository}:{tag}@{digest}->{now_at}"
                    f"@{last.rebuilt_at.isoformat()}",
                    source=Source.RECONCILE,
                    action=Action.PUSH if moved else Action.UNTAG,
                    repository=repository,
                    at=started,
                    since=last.rebuilt_at,
                    host=registry.login_server,
                    tag=tag,
                    digest=now_at if moved else digest,
                )
            )
    if unseen:
        EventLog(ctx.store, clock=ctx.clock).record(unseen)
        while processor.run_once():  # before the rebuild: it compares with the old entries
            pass
    index.rebuild(registry.name, repository, read.items())
    return len(unseen)
