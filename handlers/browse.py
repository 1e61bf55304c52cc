"""`repos`, `tags`, `show`: read-only lookups, limited to what the caller may read.

Listings come in pages (25 rows by default) with a cursor, `--after NAME`, so a repository of
10,000 tags costs one page of registry work, not 10,000 lookups; the Slack renderer turns the
cursor into Previous/Next buttons that re-run the command.
"""

from __future__ import annotations

import shlex
from fnmatch import fnmatchcase

from bot.core import formatting as fmt
from bot.core.commands import SHOW_TAGS
from bot.core.policy import visible
from bot.core.registry import Order, TagInfo, TagPage, natural_key
from bot.core.replies import Paging, Reply, Table
from bot.kernel.context import Call, Context
from handlers.events.index import freshness_note, shared_tags

DEFAULT_TOP = 25


def _command(name: str, *positional: str | None, **options: object) -> str:
    """The command line that reproduces this listing (for the next-page cursor)."""
    words = [name, *(p for p in positional if p)]
    for option, value in options.items():
        if value:
            words += [f"--{option}", str(value)]
    return shlex.join(words)


def _range_note(shown: int, total: int, *, exact: bool, noun: str, after: str | None) -> str:
    """Say which part of a list this is, so nothing is ever cut silently."""
    of = f"{total:,}" if exact else f"at least {total:,}"
    if after is not None:
        return f"Showing {shown:,} {noun} after `{after}` ({of} in all)."
    if exact and shown >= total:
        return ""
    return f"Showing the first {shown:,} of {of} {noun}."


def repos(call: Call, *, ctx: Context) -> Reply:
    """Repositories of a registry that the caller may read, optionally filtered by a glob.

    The catalog is read in server pages of 1,000 names (not one request per repository); the
    reply shows one page of it.
    """
    registry = call.registry
    assert registry is not None
    names = visible(call.grants, registry.name, registry.repositories())
    pattern = call.args["filter"]
    if pattern:
        names = [n for n in names if fnmatchcase(n, pattern)]
    top = call.args["top"] or DEFAULT_TOP
    after = call.args["after"]
    start = sum(1 for n in names if n <= after) if after else 0
    shown = names[start : start + top]
    more = start + top < len(names)
    where = f" matching `{pattern}`" if pattern else ""
    note = _range_note(len(shown), len(names), exact=True, noun="repositories", after=after)
    paging = Paging(
        command=_command("repos", registry.name, filter=pattern, top=call.args["top"]),
        after=after,
        next_after=shown[-1] if more and shown else None,
    )
    return Reply(
        text=f"{len(names):,} repositor{'y' if len(names) == 1 else 'ies'} in "
        f"{registry.name}{where}",
        table=Table(("repository",), tuple((n,) for n in shown)),
        notes=tuple(n for n in (note,) if n),
        paging=paging,
        data={
            "registry": registry.name,
            "repositories": shown,
            "total": len(names),
            "next_after": paging.next_after,
        },
    )


def _row(t: TagInfo) -> tuple[str, ...]:
    return (
        t.name,
        fmt.short_digest(t.digest),
        fmt.size(t.size),
        fmt.when(t.when),
        "locked" if t.locked else "",
    )


def _tag_data(t: TagInfo) -> dict:
    return {
        "name": t.name,
        "digest": t.digest,
        "size": t.size,
        "created": t.created and t.created.isoformat(),
        "updated": t.updated and t.updated.isoformat(),
        "locked": t.locked,
    }


def tags(call: Call, *, ctx: Context) -> Reply:
    """Tags of one repository with digest, size, time and lock: one page of them."""
    registry, repository = call.registry, call.repository
    assert registry is not None and repository is not None
    default = Order.TIME_DESC if registry.has_dates else Order.NAME
    order = Order(call.args["orderby"]) if call.args["orderby"] else default
    top = call.args["top"] or DEFAULT_TOP
    page: TagPage = registry.list_tags(
        repository,
        order=order,
        page_size=top,
        after=call.args["after"],
        pattern=call.args["filter"],
        digest=call.args["digest"],
        progress=call.progress,
    )
    what = f"tag{'' if page.total == 1 and page.exact else 's'}"
    if call.args["filter"]:
        what += f" matching `{call.args['filter']}`"
    if call.args["digest"]:
        what += f" on {fmt.short_digest(call.args['digest'])}"
    count = f"{page.total:,}" if page.exact else f"at least {page.total:,}"
    paging = Paging(
        command=_command(
            "tags",
            repository,
            registry=call.args["registry"],
            filter=call.args["filter"],
            digest=call.args["digest"],
            orderby=call.args["orderby"],
            top=call.args["top"],
        ),
        after=call.args["after"],
        next_after=page.after,
    )
    note = _range_note(
        len(page.tags), page.total, exact=page.exact, noun="tags", after=call.args["after"]
    )
    return Reply(
        text=f"{count} {what} in {registry.name}/{repository}",
        table=Table(
            ("tag", "digest", "size", _time_column(page.tags), "lock"),
            tuple(_row(t) for t in page.tags),
        ),
        notes=tuple(n for n in (note, *page.notes) if n),
        paging=paging,
        data={
            "registry": registry.name,
            "repository": repository,
            "order": order.value,
            "total": page.total,
            "exact": page.exact,
            "next_after": page.after,
            "tags": [_tag_data(t) for t in page.tags],
        },
    )


def _time_column(tags: tuple[TagInfo, ...]) -> str:
    """The name of the time the table shows (TagInfo.when): "updated" where the registry
    reports update times (ACR), else "created" (layouts and distribution know when an image
    was built, not when a tag last moved). The same name as the column of `data` (and of a
    notebook's to_df()) that holds those times."""
    return "updated" if any(t.updated is not None for t in tags) else "created"


def show(call: Call, *, ctx: Context) -> Reply:
    """One image: digest, size, dates, the tags that share the digest, and locks.

    On a distribution registry "which tags share this digest" means resolving every tag of
    the repository (concurrently); the transport shows progress when that takes a while.
    """
    registry, ref = call.registry, call.args["image"]
    assert registry is not None
    info = registry.image(ref.repository, ref.digest or ref.tag)
    indexed = shared_tags(ctx, registry, ref.repository, info.digest)  # issue 24: the index
    if indexed is not None:
        on: tuple[TagInfo, ...] = tuple(TagInfo(name=n, digest=info.digest) for n in indexed.tags)
    else:
        on = registry.tags_on(ref.repository, info.digest, progress=call.progress)
    names = [t.name for t in sorted(on, key=lambda t: natural_key(t.name))]
    locked = [t.name for t in on if t.locked]
    locks = ", ".join(locked) or ("manifest locked" if info.manifest_locked else "none")
    if info.manifest_locked and locked:
        locks += "; manifest locked"
    fields = [
        ("digest", info.digest),
        ("size", fmt.size(info.size)),
        ("created", fmt.when(info.created)),
    ]
    if info.updated:
        fields.append(("updated", fmt.when(info.updated)))
    if info.platforms:
        fields.append(("platforms", ", ".join(info.platforms)))
    listed = ", ".join(names[:SHOW_TAGS]) or "(untagged)"
    notes: tuple[str, ...] = ()
    if len(names) > SHOW_TAGS:
        listed += f" … ({len(names):,} in all)"
        rest = _command("tags", ref.repository, digest=info.digest, registry=call.args["registry"])
        notes = (f"{len(names) - SHOW_TAGS:,} more tags share this digest: `{rest}` lists them.",)
    fields += [("tags", listed), ("locked", locks)]
    if indexed is not None:
        notes = (*notes, freshness_note(indexed.freshness))
    return Reply(
        text=f"{registry.name}/{ref}",
        fields=tuple(fields),
        notes=notes,
        data={
            "registry": registry.name,
            "repository": info.repository,
            "digest": info.digest,
            "media_type": info.media_type,
            "size": info.size,
            "created": info.created and info.created.isoformat(),
            "platforms": list(info.platforms),
            "tags": names,
            "locked_tags": locked,
            "manifest_locked": info.manifest_locked,
            "tags_from": "index" if indexed is not None else "registry",
        },
    )
