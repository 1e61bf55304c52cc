"""What a purge frees: the blobs held only by the manifests it deletes.

Not the sum of the images' sizes: a base layer shared with an image that stays is not freed,
and one shared by ten images that go is freed once (bot/core/usage.py `freed_bytes`). Counted
over the repositories the purge touches: a layer that another repository also uses stays
(the registry stores it once), so the figure is an upper bound, and says so. Removing a tag
frees nothing by itself (the image stays, untagged): only deleted manifests count.
"""

from __future__ import annotations

from bot.core.purge_spec import MANIFEST, Plan
from bot.core.registry import Progress, Registry, no_progress
from bot.core.usage import freed_bytes
from handlers.report import contents_of

FREED_NOTE = (
    "Frees: the blobs only the deleted images hold, each once (a layer an image that stays "
    "uses is not freed); counted over the repositories the purge touches, so a layer another "
    "repository also uses makes it less. Removing a tag alone frees nothing: its image stays "
    "untagged until `--untagged` removes it."
)


def freed_by(registry: Registry, plan: Plan, *, progress: Progress = no_progress) -> int:
    """Bytes the plan's manifest deletions free, repository by repository (blobs held by
    several touched repositories are counted once, and only if none keeps them)."""
    going_all: set[str] = set()
    staying_all: set[str] = set()
    contents = {}
    for repository in sorted({i.repository for i in plan.items}):
        going = {i.digest for i in plan.items if i.repository == repository and i.kind == MANIFEST}
        held = set(plan.digests.get(repository, ()))
        if registry.can_list_manifests:
            held |= {m.digest for m in registry.manifests(repository)}
        held |= going
        contents.update(contents_of(registry, repository, sorted(held)))
        going_all |= {f"{repository}@{d}" for d in going}
        staying_all |= {f"{repository}@{d}" for d in held - going}
    # The same digest in two repositories is two manifests: key them by repository.
    keyed = {
        f"{r}@{d}": c
        for key in going_all | staying_all
        for r, d in [key.split("@", 1)]
        if (c := contents.get(d)) is not None
    }
    return freed_bytes(sorted(going_all), sorted(staying_all), _rekeyed(keyed, contents))


def _rekeyed(keyed: dict, contents: dict) -> dict:
    """Contents by `repo@digest` for the manifests, plus the plain digests their references
    (an index's children) name."""
    out = dict(contents)
    out.update(keyed)
    return out
