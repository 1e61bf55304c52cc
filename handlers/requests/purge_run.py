"""A purge's execution: delete every pinned item, re-checked, resumably, never more.

Execution re-checks each item against the registry, as `delete` does: the tag must still point
at the pinned digest and nothing that goes may be locked; on a registry that deletes only
manifests (distribution 2.8), every tag on the manifest must be in the purge (otherwise the
item is skipped: deleting it would take an unlisted tag with it). Deletions run concurrently
(`purge_concurrency`, default 8), at most `write_rate` a second when configured, pause for a
429's Retry-After, and record each item's state before and after its DELETE, so a crash
resumes where it stopped and an unanswered DELETE is settled by reading the registry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial

from bot.core import formatting as fmt
from bot.core.errors import (
    Conflict,
    NotFound,
    OutcomeUnknown,
    RegistryError,
    UserError,
)
from bot.core.pace import Pace
from bot.core.purge_spec import (
    MANIFEST,
    TAG,
)
from bot.core.registry import (
    DELETING,
    Progress,
    Registry,
    TagInfo,
    natural_key,
    no_progress,
)
from bot.core.request_types import DeletionRequest
from bot.kernel import shutdown
from bot.kernel.context import Context
from bot.state.purges import DELETED, FAILED, GONE, PENDING, SENDING, SKIPPED, PurgeItem, PurgeItems
from bot.state.snapshots import Snapshot
from handlers.requests import in_use
from handlers.requests.purge import write_pace
from handlers.requests.snapshot import take_snapshot

log = logging.getLogger(__name__)


DEFAULT_CONCURRENCY = 8


PROGRESS_EVERY = 2.0  # seconds between edits of the progress message in the thread


THROTTLE_TRIES = 12  # a DELETE answered 429/503 this often is left for the next pass


def execute_purge(
    ctx: Context, request: DeletionRequest, *, progress: Progress = no_progress
) -> str | None:
    """Delete every pending item (resuming after a crash); return the summary for the outcome.

    Items left `sending` by a crash are settled first by reading the registry. If a DELETE
    goes unanswered and the item is still there, the item stays `sending` and OutcomeUnknown
    is raised: the request is picked up again after a grace period (Requests.recover).
    """
    registry = ctx.registries.get(request.registry)
    options = next((r.options for r in ctx.config.registries if r.name == registry.name), {})
    concurrency = int(options.get("purge_concurrency", DEFAULT_CONCURRENCY))
    pace = Pace(write_pace(ctx, registry).rate)
    purges = ctx.purges
    items = purges.items(request.id)
    total = len(items)
    by_repo: dict[str, list[PurgeItem]] = defaultdict(list)
    for item in items:
        by_repo[item.repository].append(item)
    done = sum(1 for i in items if i.state not in (PENDING, SENDING))
    lock = threading.Lock()
    reporter = _Reporter(ctx, request, progress, total)
    reporter.report(done)
    unknown = False
    interrupted = 0

    def settle(item: PurgeItem, state: str, detail: str | None) -> None:
        nonlocal done
        purges.finish(item, state, target=f"{registry.name}/{_label(item)}", detail=detail)
        with lock:
            done += 1
            reporter.report(done)

    # [protect] tags and [[deployed]], read fresh: an item deployed since the request stays
    blocked, warning = in_use.execution_skips(
        ctx, registry, [i for i in items if i.state == PENDING]
    )
    for item in items:
        if item.seq in blocked:
            settle(item, SKIPPED, blocked[item.seq])
    for repository in sorted(by_repo):
        todo = [
            i for i in by_repo[repository] if i.state in (PENDING, SENDING) and i.seq not in blocked
        ]
        if not todo:
            continue
        view = _RepoView(registry, repository, by_repo[repository], purges)
        view.now = ctx.clock
        view.undo_window = ctx.config.undo_window
        # tags before manifests: a manifest this purge leaves untagged goes after its tags
        for phase in (TAG, MANIFEST):
            batch = [i for i in todo if i.kind == phase]
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for outcome in pool.map(partial(_one, view, pace=pace), batch):
                    item, state, detail = outcome
                    if state == _NOT_STARTED:
                        interrupted += 1
                        continue
                    if state == SENDING:
                        unknown = True
                        continue
                    if state == PENDING:  # throttled past every retry: resumed later
                        unknown = True
                        continue
                    settle(item, state, detail)
    if interrupted:
        log.warning(
            "purge #%s stopped at an item boundary (%s of %s items left): the process is "
            "stopping; the next one resumes it",
            request.id,
            total - done,
            total,
        )
        raise shutdown.Interrupted(f"purge #{request.id}")
    reporter.report(done, final=True)
    if unknown:
        raise OutcomeUnknown(
            "the registry left some deletions unanswered or kept throttling; the bot checks "
            "the registry again shortly and resumes",
            grace=max(registry.write_grace, 5.0),
        )
    return summary(ctx, request.id) + (f"; {warning}" if warning else "")


def summary(ctx: Context, request_id: int) -> str:
    """ "812 deleted, 3 skipped (locked), 0 failed", from the items' final states."""
    counts = ctx.purges.counts(request_id)
    parts = [f"{counts[DELETED]:,} deleted"]
    if counts[GONE]:
        parts.append(f"{counts[GONE]:,} already gone")
    for state in (SKIPPED, FAILED):
        reasons = ctx.purges.details(request_id, state, limit=3)
        why = "; ".join(f"{n} {r}" for r, n in reasons.items() if r)
        parts.append(f"{counts[state]:,} {state}" + (f" ({why})" if why and counts[state] else ""))
    return ", ".join(parts)


class _RepoView:
    """What execution needs to re-check one repository's items against the registry now."""

    def __init__(
        self, registry: Registry, repository: str, items: list[PurgeItem], purges: PurgeItems
    ) -> None:
        self.registry, self.repository, self.purges = registry, repository, purges
        self.purged_tags: dict[str, set[str]] = defaultdict(set)
        for item in items:
            self.purged_tags[item.digest].update(item.tags if item.kind == MANIFEST else ())
            if item.tag:
                self.purged_tags[item.digest].add(item.tag)
        self._map: dict[str, list[TagInfo]] | None = None
        self._lock = threading.Lock()
        self.now: Callable[[], datetime] = datetime.now
        self.undo_window = timedelta(days=7)

    def snapshot(self, item: PurgeItem) -> Snapshot:
        """What `undo` needs to bring the item back, read just before its DELETE."""
        tags = (
            (item.tag,)
            if item.kind == TAG and item.tag
            else tuple(
                sorted(
                    {t.name for t in self.tags_by_digest().get(item.digest, [])} | set(item.tags),
                    key=natural_key,
                )
            )
        )
        return take_snapshot(
            self.registry,
            request_id=item.request_id,
            seq=item.seq,
            repository=item.repository,
            digest=item.digest,
            tags=tags,
            manifest_deleted=item.kind == MANIFEST,
            window=self.undo_window,
            clock=self.now,
        )

    def recent(self, item: PurgeItem) -> bool:
        """Whether the item's DELETE left so recently that it might still land."""
        if item.updated_at is None:
            return False
        return (self.now() - item.updated_at).total_seconds() < self.registry.write_grace

    def tags_by_digest(self) -> dict[str, list[TagInfo]]:
        """Every tag of the repository by digest, read once (for manifest items)."""
        with self._lock:
            if self._map is None:
                found: dict[str, list[TagInfo]] = defaultdict(list)
                try:
                    for tag in self.registry.all_tags(self.repository):
                        found[tag.digest].append(tag)
                except NotFound:
                    pass
                self._map = found
            return self._map


def _label(item: PurgeItem) -> str:
    return (
        f"{item.repository}:{item.tag}" if item.kind == TAG else f"{item.repository}@{item.digest}"
    )


_NOT_STARTED = "not started"  # the process is stopping: the item is left as it was


def _one(view: _RepoView, item: PurgeItem, pace: Pace) -> tuple[PurgeItem, str, str | None]:
    """Check, then delete one item; return its new state and why."""
    if shutdown.STOPPING.is_set():  # an item boundary: nothing of this one has happened
        return item, _NOT_STARTED, None
    registry, repo = view.registry, view.repository
    try:
        if item.state == SENDING:
            if not _still_there(registry, item):
                return item, DELETED, "found deleted when resuming (its DELETE had landed)"
            if view.recent(item):
                return item, SENDING, None  # its DELETE may still be on its way: wait

        if item.kind == TAG:
            assert item.tag is not None
            try:
                tag = registry.tag(repo, item.tag)  # one read: its digest and its lock
            except NotFound:
                return item, GONE, "the tag was already gone"
            current = tag.digest
            if current != item.digest:
                return (
                    item,
                    SKIPPED,
                    (f"the tag moved to {fmt.short_digest(current)} since the request"),
                )
            if tag.locked:
                return item, SKIPPED, "locked"
            delete = lambda: registry.untag(repo, item.tag)  # noqa: E731
        else:
            carried = view.tags_by_digest().get(item.digest, [])
            locked = False
            if not item.tags or registry.can_lock:
                # An untagged manifest is not in the tag listing, and a manifest lock is not
                # in it either: ask the registry (a tagged one on `oci` is known to exist from
                # the listing just read).
                try:
                    locked = registry.image(repo, item.digest).manifest_locked
                except NotFound:
                    return item, GONE, "the manifest was already gone"
            moved = sorted(set(item.tags) - {t.name for t in carried}, key=natural_key)
            if moved:  # the request named these tags on this image: it no longer carries them
                return (
                    item,
                    SKIPPED,
                    (
                        f"{', '.join(moved[:3])} no longer point{'s' if len(moved) == 1 else ''} "
                        "at the pinned image (pushed again or deleted since the request)"
                    ),
                )
            extra = sorted({t.name for t in carried} - view.purged_tags[item.digest])
            if extra:
                return (
                    item,
                    SKIPPED,
                    (
                        f"the image now also carries {', '.join(extra[:3])}, which the purge does "
                        "not remove"
                    ),
                )
            if locked or any(t.locked for t in carried):
                return item, SKIPPED, "locked"
            delete = lambda: registry.delete_manifest(repo, item.digest)  # noqa: E731
        return _delete(view, item, delete, pace)
    except UserError as exc:
        return item, FAILED, str(exc)


def _delete(
    view: _RepoView, item: PurgeItem, delete: Callable[[], None], pace: Pace
) -> tuple[PurgeItem, str, str | None]:
    """The DELETE, recorded as `sending` first; throttling pauses every worker and retries
    (a 429 says the DELETE did not happen, so retrying it is safe; up to THROTTLE_TRIES)."""
    try:
        snapshot = view.snapshot(item)  # undo's snapshot, before anything leaves
    except NotFound:
        return item, GONE, "already gone when the bot read it to keep a copy for undo"
    for attempt in range(THROTTLE_TRIES):
        pace.wait()
        view.purges.sending(item, snapshot=snapshot)
        try:
            delete()
            return item, DELETED, None
        except OutcomeUnknown:
            if not _still_there(view.registry, item):
                return item, DELETED, None
            return item, SENDING, None  # may still land: settled after the grace period
        except NotFound:
            return item, GONE, "already gone when its DELETE arrived"
        except Conflict as exc:  # ACR refused: locked meanwhile
            return item, SKIPPED, str(exc)
        except RegistryError as exc:
            wait = _throttled(exc)
            if wait is None:
                return item, FAILED, str(exc)
            view.purges.back_to_pending(item)  # the server answered: nothing happened
            if attempt == THROTTLE_TRIES - 1:
                return item, PENDING, str(exc)
            pace.pause(wait)
    raise AssertionError("unreachable")


def _throttled(exc: RegistryError) -> float | None:
    """Seconds to pause if the registry throttled us (429) or is briefly down (503)."""
    if exc.status == 429:
        return exc.retry_after if exc.retry_after is not None else 5.0
    if exc.status == 503:
        return 2.0
    return None


def _still_there(registry: Registry, item: PurgeItem) -> bool:
    try:
        if item.kind == TAG:
            assert item.tag is not None
            return registry.resolve(item.repository, item.tag) == item.digest
        registry.image(item.repository, item.digest)
        return True
    except NotFound:
        return False


class _Reporter:
    """Progress: to the caller's reporter (console bar, Slack note) on every item, and to the
    card's thread (an outbox row, edited in place) at most every PROGRESS_EVERY seconds."""

    def __init__(
        self, ctx: Context, request: DeletionRequest, progress: Progress, total: int
    ) -> None:
        self.ctx, self.request, self.progress, self.total = ctx, request, progress, total
        self._last = 0.0
        self._lock = threading.Lock()

    def report(self, done: int, *, final: bool = False) -> None:
        self.progress(done, self.total, DELETING)
        if self.request.channel is None:
            return
        with self._lock:
            now = time.monotonic()
            if not final and now - self._last < PROGRESS_EVERY:
                return
            self._last = now
        self.ctx.outbox.touch(
            f"progress:{self.request.id}",
            "progress",
            {"request": self.request.id},
            after=f"card:{self.request.id}",
        )
