"""`report`: where a registry's storage goes, per repository, each blob counted once.

Reads each repository the caller may read once: its manifests (ACR and layouts list them,
untagged ones included) or its tags (the distribution API: one HEAD per tag, concurrently),
then what each manifest holds from the digest facts cache (a manifest is read once in its
life). One repository at a time goes through bot/core/usage.py, so memory holds one
repository's manifests and one entry per unique blob, not the registry. A repository that
cannot be measured (too many tags for the distribution API, gone meanwhile, a malformed
answer) is named in the report with the reason, never dropped silently.
"""

from __future__ import annotations

import shlex
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from bot.core import formatting as fmt
from bot.core.errors import UserError
from bot.core.policy import visible
from bot.core.purge_spec import parse_ago
from bot.core.registry import Activity, Contents, Progress, Registry, no_progress
from bot.core.replies import Paging, Reply, Table
from bot.core.usage import Accounts, Held, RepoUsage, UsageReport
from bot.kernel.context import Call, Context
from handlers.browse import DEFAULT_TOP

DEFAULT_STALE = "90d"
DEFAULT_SHOWN = DEFAULT_TOP
REPOSITORIES_AHEAD = 4  # repositories read at once
MAX_DEPTH = 4  # index → manifest → … : how deep references are followed
MEASURING = Activity("measuring", "repositories")


def _command(*words: str | None, **options: object) -> str:
    """The command line that reproduces this report (for the next-page cursor)."""
    line = [w for w in words if w]
    for option, value in options.items():
        if value:
            line += [f"--{option}", str(value)]
    return shlex.join(line)


def held_in(registry: Registry, repository: str) -> list[Held]:
    """The manifests of ``repository`` with their tag counts and times."""
    if registry.can_list_manifests:
        return [
            Held(m.digest, len(m.tags), m.when, m.subject) for m in registry.manifests(repository)
        ]
    by_digest: dict[str, list] = {}
    for tag in registry.all_tags(repository):
        entry = by_digest.setdefault(tag.digest, [0, None])
        entry[0] += 1
        if tag.when is not None and (entry[1] is None or tag.when > entry[1]):
            entry[1] = tag.when
    return [Held(d, n, when) for d, (n, when) in by_digest.items()]


def contents_of(
    registry: Registry, repository: str, digests: list[str], *, progress: Progress = no_progress
) -> dict[str, Contents]:
    """What each manifest holds, with the manifests an index references (read as well)."""
    found: dict[str, Contents] = {}
    wanted = list(dict.fromkeys(digests))
    for _ in range(MAX_DEPTH):
        if not wanted:
            break
        found.update(registry.contents(repository, wanted, progress=progress))
        wanted = sorted({r for d in wanted if d in found for r in found[d].references} - set(found))
    return found


def _read_repository(registry: Registry, repository: str) -> tuple[list[Held], dict[str, Contents]]:
    held = held_in(registry, repository)
    return held, contents_of(registry, repository, [h.digest for h in held])


def measure(
    registry: Registry,
    names: list[str],
    *,
    stale: timedelta,
    stale_days: int,
    now: datetime,
    call: Call | None = None,
) -> UsageReport:
    """The report over ``names`` (repositories), accounted one at a time in order."""
    accounts = Accounts(
        registry=registry.name,
        stale_before=now - stale,
        stale_days=stale_days,
        untagged_listed=registry.can_list_manifests,
    )
    # A few repositories are read at once (each already sends its requests 16 at a time):
    # the registry's pool stays busy across one repository's end and the next one's tag
    # listing. Results are accounted in order, at most REPOSITORIES_AHEAD held at a time.
    with ThreadPoolExecutor(REPOSITORIES_AHEAD, thread_name_prefix="report") as pool:
        window: deque[tuple[str, Future]] = deque()
        done = [0]

        def account(repository: str, future: Future) -> None:
            try:
                held, contents = future.result()
            except UserError as exc:
                accounts.skip(repository, str(exc))
                return
            accounts.add(repository, held, contents)
            done[0] += 1
            if call is not None:
                call.progress(done[0], len(names), MEASURING)

        for repository in names:
            window.append((repository, pool.submit(_read_repository, registry, repository)))
            if len(window) >= REPOSITORIES_AHEAD:
                account(*window.popleft())
        while window:
            account(*window.popleft())
    quota = registry.storage_quota()
    return accounts.report(quota=quota, quota_unknown=quota is None and registry.kind == "acr")


def report(call: Call, *, ctx: Context) -> Reply:
    """Storage by repository: tags, manifests, untagged, bytes (each blob once), stale."""
    registry = call.registry
    assert registry is not None
    pattern = call.args["repo"]
    names = visible(call.grants, registry.name, registry.repositories())
    if pattern:
        names = [n for n in names if fnmatchcase(n, pattern)]
    stale_text = call.args["stale"] or DEFAULT_STALE
    stale = parse_ago(stale_text, option="--stale")
    result = measure(
        registry,
        names,
        stale=stale,
        stale_days=max(int(stale.total_seconds() // 86400), 0),
        now=ctx.clock(),
        call=call,
    )
    top = call.args["top"] or DEFAULT_TOP
    after = call.args["after"]
    rows = list(result.repositories)
    start = next((i + 1 for i, r in enumerate(rows) if r.repository == after), 0)
    shown = rows[start : start + top]
    more = start + top < len(rows)
    paging = Paging(
        command=_command(
            "report",
            call.args["registry"],
            repo=pattern,
            stale=call.args["stale"],
            top=call.args["top"],
        ),
        after=after,
        next_after=shown[-1].repository if more and shown else None,
    )
    return Reply(
        text=headline(result, stale_text=stale_text, pattern=pattern),
        fields=tuple(summary_fields(result)),
        table=Table(COLUMNS, tuple(row_cells(r) for r in shown)),
        notes=tuple(notes(result, shown=len(shown), after=after)),
        paging=paging,
        data=as_data(result, shown=shown, stale_text=stale_text),
        chart=result,
    )


# Newest push only: the table fits 80 columns; `data` (and a notebook's to_df()) has both.
COLUMNS = ("repository", "tags", "manifests", "untagged", "size", "stale", "last push")


def row_cells(r: RepoUsage) -> tuple[str, ...]:
    return (
        r.repository,
        f"{r.tags:,}",
        f"{r.manifests:,}",
        f"{r.untagged:,}",
        fmt.size(r.bytes),
        fmt.size(r.stale_bytes),
        _day(r.newest),
    )


def _day(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d")


def headline(result: UsageReport, *, stale_text: str, pattern: str | None) -> str:
    where = f" matching `{pattern}`" if pattern else ""
    count = len(result.repositories)
    return (
        f"{result.registry} holds {fmt.size(result.bytes)} in {count:,} "
        f"repositor{'y' if count == 1 else 'ies'}{where} (each blob counted once)"
    )


def summary_fields(result: UsageReport) -> Iterator[tuple[str, str]]:
    yield "total", f"{fmt.size(result.bytes)} ({result.bytes:,} bytes)"
    yield "tagged", fmt.size(result.tagged_bytes)
    yield f"stale (no push in {result.stale_days} d)", fmt.size(result.stale_bytes)
    untagged = fmt.size(result.untagged_bytes) if result.untagged_listed else "not listed"
    yield "untagged", untagged
    yield (
        "shared layers",
        f"{fmt.size(result.shared_bytes)} used by several repositories, counted once",
    )
    yield "tags / manifests", f"{result.tags:,} / {result.manifests:,}"
    if result.quota is not None:
        q = result.quota
        yield (
            "plan storage",
            f"{fmt.size(q.used)} of {fmt.size(q.included)} included ({q.share:.0%})"
            + (f", {fmt.size(q.used - q.included)} over" if q.used > q.included else ""),
        )


def notes(result: UsageReport, *, shown: int, after: str | None) -> Iterator[str]:
    total = len(result.repositories)
    if after is not None:
        yield f"Showing {shown:,} repositories after `{after}` ({total:,} in all, biggest first)."
    elif shown < total:
        yield f"Showing the {shown:,} biggest of {total:,} repositories."
    yield (
        "Bytes are unique blobs: a layer shared by several images or repositories counts once; "
        "stale = only tags with no push in the window hold it; untagged = only manifests "
        "without a tag hold it."
    )
    if not result.untagged_listed:
        yield (
            "The distribution API cannot list manifests without tags: untagged storage is not "
            "counted (run the registry's garbage collector to reclaim it); times are the "
            "images' build times (the API has no push dates)."
        )
    if result.unread:
        yield (
            f"{result.unread:,} manifests were listed but gone when read (deleted meanwhile): "
            "not counted."
        )
    if result.quota_unknown:
        yield (
            "The plan's included storage could not be read from ARM (listUsages): give the "
            "bot's identity the Reader role on the registry resource."
        )
    for repository, why in result.skipped[:10]:
        yield f"Not measured: {repository}: {why}"
    if len(result.skipped) > 10:
        yield f"… and {len(result.skipped) - 10:,} more repositories not measured."


def as_data(result: UsageReport, *, shown: list[RepoUsage], stale_text: str) -> dict:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "registry": result.registry,
        "stale": stale_text,
        "bytes": result.bytes,
        "tagged_bytes": result.tagged_bytes,
        "stale_bytes": result.stale_bytes,
        "untagged_bytes": result.untagged_bytes,
        "shared_bytes": result.shared_bytes,
        "repositories_total": len(result.repositories),
        "untagged_listed": result.untagged_listed,
        "quota": (
            {"used": result.quota.used, "included": result.quota.included}
            if result.quota is not None
            else None
        ),
        "skipped": [{"repository": r, "why": w} for r, w in result.skipped],
        "unread": result.unread,
        "repositories": [
            {
                "repository": r.repository,
                "tags": r.tags,
                "manifests": r.manifests,
                "untagged": r.untagged,
                "bytes": r.bytes,
                "tagged_bytes": r.tagged_bytes,
                "stale_bytes": r.stale_bytes,
                "untagged_bytes": r.untagged_bytes,
                "newest": iso(r.newest),
                "oldest": iso(r.oldest),
            }
            for r in shown
        ],
    }
