"""Bounded, checked reads of registry replies: a reply is what was asked for, or an error.

Two promises, for every body the `oci` backend reads:

- **It parses or it is an error.** A tag list cut off mid-way, a manifest that is not JSON, an
  object where a list belongs: each raises :class:`Malformed` (the backend turns it into a
  RegistryError naming the registry). Never "no tags", never "an index without children".
- **It is bounded.** A manifest is read up to distribution's own limit (4 MiB), a config blob or
  an error body up to a small cap, never further; a tag list (distribution 2.8 sends every tag
  in one body, 52 MB for 5 million tags) is *streamed* (ijson: no whole body, no whole list in
  memory), and one page is chosen from the stream with memory for that page only.

Hand-written parts, and why: the structure check of a streamed list (ijson parses; which
events a `{"tags": [...]}` may hold is ours), and the page selection (heapq does the work).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Callable, Iterable, Iterator
from fnmatch import translate
from typing import Any

import ijson

from bot.core.registry import natural_key

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution refuses to store a bigger manifest
MAX_JSON_BYTES = 4 * 1024 * 1024  # a config blob or a referrers index
MAX_ERROR_BYTES = 64 * 1024  # an error body: only its codes are read
MAX_LISTED_NAMES = 10_000_000  # names one listing may stream (a runaway body stops here)
MAX_SCANNED_TAGS = 50_000  # tags a scan resolves one HEAD each (time order, --manifest, purge)
MAX_REPOSITORIES = 100_000  # names of a catalog the bot holds (and sorts) at once

# natural_key without its cache: a 5-million-name stream would only churn it.
_natural_key: Callable[[str], tuple[list[object], str]] = natural_key.__wrapped__  # type: ignore[attr-defined]


class Malformed(Exception):
    """A reply that is not what the API specifies; the message says how (one line)."""


class TooLarge(Exception):
    """A reply bigger than the bot reads; ``size`` is what was declared or read so far."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size:,} bytes, over the {limit:,}-byte limit")
        self.size, self.limit = size, limit


class TooMany(Exception):
    """A listing longer than the bot follows; ``limit`` is the cap that was reached."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit:,} names")
        self.limit = limit


def read_limited(chunks: Iterable[bytes], *, declared: str | None, limit: int) -> bytes:
    """The whole body from ``chunks``, refused (TooLarge) as soon as it passes ``limit``: by its
    Content-Length before a byte is read, else while reading."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(int(declared), limit)
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(size, limit)
        parts.append(chunk)
    return b"".join(parts)


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object, or Malformed (an empty body, a truncated one, a list, a string…)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Malformed(f"not valid JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise Malformed(f"a JSON {type(data).__name__}, not an object")
    return data


def check_digest(body: bytes, digest: str, *, header: str | None) -> None:
    """Raise Malformed unless ``body`` is the content ``digest`` names, and the registry's
    Docker-Content-Digest (when it sends one) says the same."""
    if header is not None and header != digest:
        raise Malformed(f"its Docker-Content-Digest is {header}, not the {digest} asked for")
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ("sha256", "sha512"):
        raise Malformed(f"the digest algorithm `{algorithm}` cannot be checked")
    actual = hashlib.new(algorithm, body).hexdigest()
    if actual != expected:
        raise Malformed(
            f"its content hashes to {algorithm}:{actual[:12]}…, not the {digest} asked for"
        )


def stream_names(
    chunks: Iterable[bytes], *, key: str, limit: int = MAX_LISTED_NAMES
) -> Iterator[str]:
    """The strings of the list under ``key`` in a JSON object (`{"tags": [...]}`), as they
    arrive: never the whole body, never the whole list. `null` is an empty list. Anything
    else (not an object, no ``key``, a non-string item, a body cut off or with trailing
    bytes) raises Malformed — after the names before the fault were yielded, so a caller must
    not act on a partial listing until the generator has finished. More than ``limit`` names
    raises TooMany."""
    events: list[tuple[str, str, Any]] = ijson.sendable_list()
    parser = ijson.parse_coro(events)
    item = f"{key}.item"
    started = seen = False
    count = 0

    def drain() -> Iterator[str]:
        nonlocal started, seen, count
        for prefix, event, value in events:
            if not started:
                if (prefix, event) != ("", "start_map"):
                    raise Malformed(f"a JSON {_kind(event)}, not an object")
                started = True
            elif prefix == key:
                if event in ("start_array", "null"):
                    seen = True
                elif event != "end_array":
                    raise Malformed(f"`{key}` is a JSON {_kind(event)}, not a list")
            elif prefix == item:
                if event != "string":
                    raise Malformed(f"`{key}` holds a JSON {_kind(event)}, not a name")
                count += 1
                if count > limit:
                    raise TooMany(limit)
                yield value
        del events[:]

    try:
        for chunk in chunks:
            if chunk:
                parser.send(chunk)
                yield from drain()
        parser.close()
    except ijson.JSONError as exc:
        yield from drain()  # the names before the fault: the caller still sees an error
        raise Malformed(f"not valid JSON ({_first_line(exc)})") from None
    yield from drain()
    if not seen:
        raise Malformed(f"no `{key}` list")


def glob_matcher(pattern: str | None) -> Callable[[str], object] | None:
    """`fnmatch.fnmatchcase` for one pattern, compiled once (None: no pattern)."""
    return re.compile(translate(pattern)).match if pattern else None


def page_of_stream(
    names: Iterable[str], *, page_size: int, after: str | None, pattern: str | None
) -> tuple[list[str], int, str | None]:
    """What bot.core.registry.page_of_names returns for the same names, from a stream: the first
    ``page_size`` names in natural order after ``after`` that match the glob ``pattern``, how
    many match in all, and the cursor of the next page. Holds ``page_size + 1`` names, not
    the listing (heapq.nsmallest keeps a bounded heap)."""
    match = glob_matcher(pattern)
    after_key = _natural_key(after) if after is not None else None
    total = 0

    def candidates() -> Iterator[tuple[tuple[list[object], str], str]]:
        nonlocal total
        for name in names:
            if match is not None and match(name) is None:
                continue
            total += 1
            name_key = _natural_key(name)
            if after_key is None or name_key > after_key:
                yield name_key, name

    best = heapq.nsmallest(page_size + 1, candidates())
    ordered = list(dict.fromkeys(name for _, name in best))  # a name the registry repeated
    shown = ordered[:page_size]
    return shown, total, shown[-1] if len(ordered) > page_size and shown else None


def _kind(event: str) -> str:
    return {
        "start_map": "object",
        "start_array": "list",
        "string": "string",
        "number": "number",
        "boolean": "boolean",
        "null": "null",
        "map_key": "object",
        "end_map": "object",
        "end_array": "list",
    }.get(event, event)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
