"""What a purge selects, in `acr purge`'s vocabulary, and how it turns a listing into items.

`--filter REPO:REGEX` (repeatable): REPO is a repository name or glob, as elsewhere in the bot;
REGEX is *searched* in the tag name, as `acr purge` does (unanchored: `^v1$` anchors), on RE2
(bot/core/patterns.py: linear time, no backreferences or lookaround).
`--ago` takes `acr purge` durations: a whole number of days then a Go duration (`30d`,
`2d3h6m`, `1d1.5h`, `0d` = any age), at most 150 years; unlike `acr purge`, a duration that
does not parse is an error, never a silent "150 years". A tag is old enough when its time
(ACR: last update; distribution and layouts: the image config's `created`) is strictly before
now − ago; a tag without a time is old enough only for `0d`. `--keep N` keeps, per repository,
the N most recent *images* among the tags that would otherwise go (after the regex, age and
lock filters: acr-cli's order), each with all those tags: unlike acr-cli, which keeps N tags,
it never splits an image (see select_tags).
Locked tags are never selected; they are reported as skipped.

Planning is pure: it gets listings and returns items and skips, so the dry run, the request
and the scheduled retention all select exactly the same way (Azure/acr-cli, purge.go).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from bot.core.errors import UsageError
from bot.core.patterns import Matcher, compile_user_regex
from bot.core.references import shorten
from bot.core.registry import TagInfo, natural_key
from bot.core.request_types import PurgePace, PurgeRequestSpec

_GO_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DAYS = re.compile(r"(\d+)d")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_GLOB = re.compile(r"[a-z0-9._/*?\-\[\]]{1,255}")
# The longest `--ago` (and `[[retention]] ago`): 150 years, acr purge's "any age". Checked on
# the number before a timedelta is made, so `99999999999999999999d` is this one line, never
# an OverflowError (timedelta stops at 999,999,999 days; floats at 1e308).
MAX_AGO = timedelta(days=365 * 150)
MAX_AGO_TEXT = f"{MAX_AGO.days}d (150 years)"


def parse_ago(text: str, *, option: str = "--ago") -> timedelta:
    """`30d`, `2d3h6m`, `1d1.5h`, `90m`, `0d` → timedelta; anything else is a UsageError
    naming ``option`` (`--ago`, or the config key a retention rule gives it in)."""
    value = text.strip()
    rest, days = value, 0
    match = _DAYS.match(value)
    if match:
        digits = match.group(1).lstrip("0") or "0"
        # int() of 4,300+ digits raises ValueError: anything past 10 digits is too long anyway
        days = int(digits) if len(digits) <= 10 else MAX_AGO.days + 1
        rest = value[match.end() :]
    seconds, pos = 0.0, 0
    while pos < len(rest):
        part = _GO_PART.match(rest, pos)
        if part is None:
            raise UsageError(
                f"{option} `{shorten(text, 30)}` is not a duration: use days and a Go duration, "
                "e.g. `30d`, `2d3h6m`, `12h` or `0d` (any age)"
            )
        seconds += float(part.group(1)) * _GO_UNIT[part.group(2)]  # a huge number: inf, fine
        pos = part.end()
    if not match and not rest:
        raise UsageError(f"{option}: the duration is empty: e.g. `30d` or `0d` (any age)")
    if days > MAX_AGO.days or days * 86400 + seconds > MAX_AGO.total_seconds():
        raise UsageError(f"{option} `{shorten(text, 30)}` is too long: at most {MAX_AGO_TEXT}")
    return timedelta(days=days, seconds=seconds)


@dataclass(frozen=True)
class Filter:
    repository: str  # a name or glob
    regex: str

    @property
    def pattern(self) -> Matcher:
        """The regex on RE2 (linear time: a reader's pattern cannot hang a worker)."""
        return compile_user_regex(self.regex)

    def __str__(self) -> str:
        return f"{self.repository}:{self.regex}"


def parse_filter(text: str) -> Filter:
    """`REPO:REGEX`: split on the first `:` (repository names and globs hold none)."""
    repository, sep, regex = text.partition(":")
    if not sep or not repository:
        raise UsageError(
            f"`{shorten(text, 40)}` is not a filter: use REPO:REGEX, e.g. "
            "`myapp:^pr-` or `team/*:.*`"
        )
    if not regex:
        raise UsageError(f"`{shorten(text, 40)}` has no tag expression after the `:` (`.*`: all)")
    if not _GLOB.fullmatch(repository):
        raise UsageError(f"`{shorten(repository, 30)}` is not a repository name or glob")
    compile_user_regex(regex)
    return Filter(repository=repository, regex=regex)


@dataclass(frozen=True)
class PurgeSpec:
    filters: tuple[Filter, ...]
    ago: timedelta | None = None
    keep: int = 0
    untagged: bool = False

    def matches_repository(self, repository: str) -> bool:
        return any(fnmatchcase(repository, f.repository) for f in self.filters)

    def regexes_for(self, repository: str) -> list[Matcher]:
        return [f.pattern for f in self.filters if fnmatchcase(repository, f.repository)]

    def describe(self) -> str:
        """The options as `acr purge` would be given them (for cards and the audit)."""
        words = [f"--filter {f}" for f in self.filters]
        if self.ago is not None:
            words.append(f"--ago {_format_ago(self.ago)}")
        if self.keep:
            words.append(f"--keep {self.keep}")
        if self.untagged:
            words.append("--untagged")
        return " ".join(words)

    def as_dict(self) -> dict[str, object]:
        return {
            "filters": [str(f) for f in self.filters],
            "ago_seconds": None if self.ago is None else self.ago.total_seconds(),
            "keep": self.keep,
            "untagged": self.untagged,
        }


def _format_ago(ago: timedelta) -> str:
    days, seconds = ago.days, ago.seconds + ago.microseconds / 1e6
    text = f"{days}d" if days or not seconds else ""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size:
            text += f"{int(seconds // size)}{unit}"
            seconds %= size
    if seconds:
        text += f"{seconds:g}s"
    return text


# -- planning ----------------------------------------------------------------------------


TAG, MANIFEST = "tag", "manifest"


@dataclass(frozen=True)
class Item:
    """One thing a purge deletes: a tag (untag), or a manifest with every tag on it."""

    repository: str
    kind: str  # TAG or MANIFEST
    digest: str
    tag: str | None = None
    tags: tuple[str, ...] = ()  # for MANIFEST: every tag that goes with it
    when: datetime | None = None

    @property
    def label(self) -> str:
        if self.kind == TAG:
            return f"{self.repository}:{self.tag}"
        shown = f" ({', '.join(self.tags[:3])}{' …' if len(self.tags) > 3 else ''})"
        return f"{self.repository}@{self.digest[:19]}" + (shown if self.tags else " (no tag left)")


@dataclass(frozen=True)
class Skip:
    repository: str
    what: str
    reason: str


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    repositories: list[str] = field(default_factory=list)
    # Per repository: the digests its tags point at (what stays unless it goes): what a
    # purge frees is counted against them (handlers/requests/freed.py).
    digests: dict[str, set[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per repository: tags that go, manifests without a tag that go, and skips. (On a
        registry that deletes only manifests, a tag's image goes with it: not counted again.)"""
        out: dict[str, dict[str, int]] = {
            r: {"tags": 0, "manifests": 0, "skipped": 0} for r in self.repositories
        }
        for item in self.items:
            row = out.setdefault(item.repository, {"tags": 0, "manifests": 0, "skipped": 0})
            row["tags"] += 1 if item.kind == TAG else len(item.tags)
            row["manifests"] += 1 if item.kind == MANIFEST and not item.tags else 0
        for skip in self.skipped:
            out.setdefault(skip.repository, {"tags": 0, "manifests": 0, "skipped": 0})[
                "skipped"
            ] += 1
        return out


def select_tags(
    spec: PurgeSpec, repository: str, tags: Iterable[TagInfo], *, now: datetime
) -> tuple[list[TagInfo], list[Skip]]:
    """The tags of one repository the purge selects, newest first, and the skipped ones.

    `--keep N` counts *images*, not tags: the N most recent images among the tags that would
    otherwise go keep every one of those tags. acr-cli keeps the N most recent *tags*, and
    where tags of one image share a time (always on `oci` and layouts: the image's `created`)
    a tag-wise cut could keep `1.25` and delete `latest` on the same image: `docker pull
    repo` would break while the image stays. See :func:`image_order` for ties.
    """
    regexes = spec.regexes_for(repository)
    cutoff = None if spec.ago is None or spec.ago == timedelta(0) else now - spec.ago
    matched = [t for t in tags if any(r.search(t.name) for r in regexes)]
    matched.sort(key=lambda t: natural_key(t.name))
    matched.sort(key=lambda t: t.when or datetime.min.replace(tzinfo=now.tzinfo), reverse=True)
    chosen, skipped = [], []
    for tag in matched:
        if cutoff is not None and (tag.when is None or not tag.when < cutoff):
            continue  # too young, or no time to tell: not selected (and not worth a line)
        if tag.locked:
            skipped.append(Skip(repository, f"{repository}:{tag.name}", "locked"))
            continue
        chosen.append(tag)
    if not spec.keep:
        return chosen, skipped
    kept = set(image_order(chosen)[: spec.keep])
    for tag in chosen:
        if tag.digest in kept:
            skipped.append(
                Skip(repository, f"{repository}:{tag.name}", f"kept (--keep {spec.keep})")
            )
    return [t for t in chosen if t.digest not in kept], skipped


def image_order(tags: Iterable[TagInfo]) -> list[str]:
    """The digests of ``tags``, most recent image first: by the newest time among its tags
    (no time: oldest); on equal times, the image whose highest tag sorts last in natural
    order (`v10` after `v9`, `latest` after `1.25`) first; then by digest. Stable: the same
    listing always ranks the same way, whatever order the registry sent it in."""
    newest: dict[str, datetime] = {}
    highest: dict[str, list[object]] = {}
    for tag in tags:
        if tag.when is not None and (tag.digest not in newest or tag.when > newest[tag.digest]):
            newest[tag.digest] = tag.when
        key = natural_key(tag.name)
        if tag.digest not in highest or key > highest[tag.digest]:
            highest[tag.digest] = key

    def rank(digest: str) -> tuple[bool, float, list[object], str]:
        when = newest.get(digest)
        return (when is not None, when.timestamp() if when else 0.0, highest[digest], digest)

    return sorted(highest, key=rank, reverse=True)


def plan_tags(
    repository: str,
    chosen: list[TagInfo],
    every_tag: list[TagInfo],
    *,
    can_untag: bool,
) -> tuple[list[Item], list[Skip]]:
    """Items for the chosen tags. A backend that deletes only manifests (distribution 2.8)
    takes every tag on a manifest with it: such a manifest is an item only if all its tags
    were chosen; otherwise it is skipped, since deleting it would take an unlisted tag."""
    if can_untag:
        return [
            Item(repository, TAG, t.digest, tag=t.name, tags=(t.name,), when=t.when) for t in chosen
        ], []
    on_digest: dict[str, list[str]] = {}
    for tag in every_tag:
        on_digest.setdefault(tag.digest, []).append(tag.name)
    picked: dict[str, list[TagInfo]] = {}
    for tag in chosen:
        picked.setdefault(tag.digest, []).append(tag)
    items, skipped = [], []
    for digest, tags in picked.items():
        names = sorted(on_digest.get(digest, []), key=natural_key)
        others = sorted(set(names) - {t.name for t in tags}, key=natural_key)
        if others:
            for tag in tags:
                skipped.append(
                    Skip(
                        repository,
                        f"{repository}:{tag.name}",
                        f"its image also carries {', '.join(others[:3])}"
                        f"{' …' if len(others) > 3 else ''}, which the purge does not remove",
                    )
                )
            continue
        items.append(Item(repository, MANIFEST, digest, tags=tuple(names), when=max_when(tags)))
    return items, skipped


def max_when(tags: list[TagInfo]) -> datetime | None:
    times = [t.when for t in tags if t.when is not None]
    return max(times) if times else None


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def totals_text(spec: PurgeRequestSpec) -> str:
    """`812 tags and 3 manifests in 2 repositories`, from a purge request's spec."""
    parts = [f"{spec.tags:,} tag{'' if spec.tags == 1 else 's'}"]
    if spec.manifests:
        parts.append(plural(spec.manifests, "untagged manifest"))
    repos = len(spec.repositories)
    return f"{' and '.join(parts)} in {repos} repositor{'y' if repos == 1 else 'ies'}"


def duration_text(seconds: float) -> str:
    """`40 s`, `2.2 min`, `1.5 h`: how long a paced purge takes, to a useful precision."""
    if seconds < 90:
        return f"{max(round(seconds), 1)} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pace_text(count: int, pace: PurgePace | None) -> str | None:
    """`1,000 deletions ≈ 2.2 min on Standard (7.5/s)`: how long ``count`` deletions take at
    ``pace`` (a purge request's, or a dry run's); None when the purge is not paced."""
    if pace is None or not pace.rate:
        return None
    rate = pace.rate
    head = f"{count:,} deletion{'' if count == 1 else 's'} ≈ {duration_text(count / rate)}"
    if pace.source == "config":
        return f"{head} at write_rate {rate:.3g}/s"
    if pace.source == "lowest":
        return (
            f"{head} at the Basic tier's pace ({rate:.3g}/s): the registry's SKU could not be "
            "read; set write_rate to go faster"
        )
    return f"{head} on {pace.tier} ({rate:.3g}/s)"
