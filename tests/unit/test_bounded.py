"""handlers/registries/bounded.py: streamed name lists, bounded bodies, one page from a stream."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.registry import natural_key, page_of_names
from handlers.registries.bounded import (
    Malformed,
    TooLarge,
    TooMany,
    check_digest,
    page_of_stream,
    parse_object,
    read_limited,
    stream_names,
)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 1 << 16])
def test_stream_names_yields_the_list_in_any_chunking(size):
    body = b'{"name": "a/b", "tags": ["v1", "v\\u00e9", "latest"], "extra": {"tags": [1]}}'
    assert list(stream_names(pieces(body, size), key="tags")) == ["v1", "vé", "latest"]


def test_stream_names_null_is_an_empty_list():
    assert list(stream_names([b'{"tags": null}'], key="tags")) == []


def test_stream_names_reports_the_fault_after_the_names_before_it():
    names = stream_names(pieces(b'{"tags": ["a", "b", "c"', 4), key="tags")
    got = []
    with pytest.raises(Malformed, match=r"^not valid JSON \(parse error: premature EOF\)$"):
        got.extend(names)
    assert got == ["a", "b", "c"]


def test_stream_names_stops_past_its_limit():
    with pytest.raises(TooMany, match="more than 2 names"):
        list(stream_names([b'{"tags": ["a", "b", "c"]}'], key="tags", limit=2))


def test_read_limited_refuses_by_content_length_before_reading():
    def never():
        raise AssertionError("read")
        yield b""

    with pytest.raises(TooLarge, match=r"^11 bytes, over the 10-byte limit$"):
        read_limited(never(), declared="11", limit=10)


def test_read_limited_stops_a_body_without_content_length_at_the_limit():
    read = []

    def endless():
        while True:
            read.append(1)
            yield b"x" * 1000

    with pytest.raises(TooLarge):
        read_limited(endless(), declared=None, limit=10_000)
    assert len(read) == 11


def test_parse_object_refuses_what_is_not_an_object():
    assert parse_object(b'{"a": 1}') == {"a": 1}
    for body, why in ((b"", "not valid JSON"), (b"[1]", "a JSON list, not an object")):
        with pytest.raises(Malformed, match=why):
            parse_object(body)


def test_check_digest_compares_content_and_header():
    body = b"{}"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    check_digest(body, digest, header=None)
    check_digest(body, digest, header=digest)
    with pytest.raises(Malformed, match="hashes to sha256:"):
        check_digest(b"{ }", digest, header=digest)
    with pytest.raises(Malformed, match="Docker-Content-Digest is sha256:00"):
        check_digest(body, digest, header="sha256:" + "0" * 64)


def test_natural_key_orders_a_name_before_its_numbered_sibling():
    """`v` and `v1` raised TypeError (the tie-breaking name met a number)."""
    listed = ["v10", "v1", "v", "a0", "a", "v9", "v01"]
    assert sorted(listed, key=natural_key) == ["a", "a0", "v", "v01", "v1", "v9", "v10"]


names = st.lists(st.text(alphabet="av0123.-", min_size=1, max_size=6), unique=True, max_size=60)


@given(
    names,
    st.integers(min_value=1, max_value=8),
    st.one_of(st.none(), st.text(alphabet="av0123.-", min_size=1, max_size=6)),
    st.sampled_from([None, "v*", "*1*", "a?"]),
)
def test_page_of_stream_is_page_of_names(listed, page_size, after, pattern):
    """The same page, total and cursor as sorting the whole list (what `tags` did before)."""
    whole = sorted(listed, key=natural_key)
    assert page_of_stream(
        iter(listed), page_size=page_size, after=after, pattern=pattern
    ) == page_of_names(whole, page_size=page_size, after=after, pattern=pattern)
