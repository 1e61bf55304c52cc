"""`repos`, `tags`, `show`: read-only lookups, limited to what the caller may read."""

from __future__ import annotations

from datetime import UTC, datetime
from fnmatch import fnmatchcase

from bot import formatting as fmt
from bot.context import Call, Context
from bot.policy import visible
from bot.replies import Reply, Table
from handlers.registry import TagInfo

DEFAULT_TOP = 100
_OLDEST = datetime.min.replace(tzinfo=UTC)


def _shown(total: int, shown: int, noun: str) -> tuple[str, ...]:
    """A note whenever a list was cut, so nothing is ever truncated silently."""
    if shown >= total:
        return ()
    return (f"Showing {shown} of {total} {noun}; use --top N to see more.",)


def repos(call: Call, *, ctx: Context) -> Reply:
    """Repositories of a registry that the caller may read, optionally filtered by a glob."""
    registry = call.registry
    assert registry is not None
    names = visible(call.grants, registry.name, registry.repositories())
    pattern = call.args["filter"]
    if pattern:
        names = [n for n in names if fnmatchcase(n, pattern)]
    top = call.args["top"] or DEFAULT_TOP
    shown = names[:top]
    where = f" matching `{pattern}`" if pattern else ""
    return Reply(
        text=f"{len(names)} repositor{'y' if len(names) == 1 else 'ies'} in {registry.name}{where}",
        table=Table(("repository",), tuple((n,) for n in shown)),
        notes=_shown(len(names), len(shown), "repositories"),
        data={"registry": registry.name, "repositories": shown, "total": len(names)},
    )


def _ordered(tags: list[TagInfo], order: str) -> list[TagInfo]:
    if order == "name":
        return sorted(tags, key=lambda t: t.name)
    by_time = sorted(tags, key=lambda t: (t.updated or t.created or _OLDEST, t.name))
    return by_time if order == "time_asc" else list(reversed(by_time))


def tags(call: Call, *, ctx: Context) -> Reply:
    """Tags of one repository with digest, size, creation time and lock."""
    registry, repository = call.registry, call.repository
    assert registry is not None and repository is not None
    order = call.args["orderby"] or "time_desc"
    listed = _ordered(registry.tags(repository), order)
    top = call.args["top"] or DEFAULT_TOP
    shown = listed[:top]
    rows = tuple(
        (
            t.name,
            fmt.short_digest(t.digest),
            fmt.size(t.size),
            fmt.when(t.updated or t.created),
            "locked" if t.locked else "",
        )
        for t in shown
    )
    return Reply(
        text=f"{len(listed)} tag{'' if len(listed) == 1 else 's'} in {registry.name}/{repository}",
        table=Table(("tag", "digest", "size", "created", "lock"), rows),
        notes=_shown(len(listed), len(shown), "tags"),
        data={
            "registry": registry.name,
            "repository": repository,
            "total": len(listed),
            "tags": [
                {
                    "name": t.name,
                    "digest": t.digest,
                    "size": t.size,
                    "created": t.created and t.created.isoformat(),
                    "locked": t.locked,
                }
                for t in shown
            ],
        },
    )


def show(call: Call, *, ctx: Context) -> Reply:
    """One image: digest, size, dates, every tag that shares the digest, and locks."""
    registry, ref = call.registry, call.args["image"]
    assert registry is not None
    info = registry.image(ref.repository, ref.digest or ref.tag)
    locks = ", ".join(info.locked_tags) or ("manifest locked" if info.manifest_locked else "none")
    fields = [
        ("digest", info.digest),
        ("size", fmt.size(info.size)),
        ("created", fmt.when(info.created)),
    ]
    if info.updated:
        fields.append(("updated", fmt.when(info.updated)))
    fields += [("tags", ", ".join(info.tags) or "(untagged)"), ("locked", locks)]
    return Reply(
        text=f"{registry.name}/{ref}",
        fields=tuple(fields),
        data={
            "registry": registry.name,
            "repository": info.repository,
            "digest": info.digest,
            "size": info.size,
            "created": info.created and info.created.isoformat(),
            "tags": list(info.tags),
            "locked_tags": list(info.locked_tags),
        },
    )
