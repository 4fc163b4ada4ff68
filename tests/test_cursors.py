"""Cursors and page arithmetic: round trips, refusals, and the promise that
walking runs newest first while new runs arrive never repeats or skips one.
"""

from __future__ import annotations

import base64
import string
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.cursors import (
    MAX_SEQ,
    MIN_US,
    CursorError,
    CursorSortError,
    decode_after,
    decode_cursor,
    encode_after,
    encode_cursor,
    page_offset,
    paginate_keyset,
    total_pages,
)
from jobsd.run_order import DEFAULT_SORT, Position, RunSort, SortField

seqs = st.integers(0, MAX_SEQ)


@settings(max_examples=300)
@given(seqs)
def test_cursor_round_trips_and_is_url_safe(seq: int) -> None:
    text = encode_after(seq)
    assert decode_after(text) == seq
    assert len(text) == 12 and text.isascii()
    assert all(c.isalnum() or c in "-_" for c in text)


@pytest.mark.parametrize("seq", [-1, MAX_SEQ + 1, 2**64])
def test_encode_refuses_out_of_range(seq: int) -> None:
    with pytest.raises(ValueError):
        encode_after(seq)


def _raw(version: int, seq: int) -> str:
    return base64.urlsafe_b64encode(struct.pack(">BQ", version, seq)).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "AQAAAAAAAAAB=",  # padding is not ours
        "AQAAAAAAAAAB\n",
        " AQAAAAAAAAAB",
        "AQAAAAAAAAA+",  # not the URL-safe alphabet
        "AQAAAAAAAAAÅ",
        "AQAAAAAAAAAB" * 2,
        _raw(2, 5),  # a version we do not know
        _raw(0, 5),
        _raw(1, MAX_SEQ + 1),  # beyond SQLite's integers ("negative" as signed)
        _raw(1, 2**64 - 1),
        "1",
        "MTIz",
    ],
)
def test_decode_refuses_what_is_not_a_cursor(text: str) -> None:
    with pytest.raises(ValueError):
        decode_after(text)


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=30),
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/",
            max_size=16,
        ),
        st.binary(min_size=9, max_size=9).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    )
)
def test_decode_raises_only_value_error(text: str) -> None:
    try:
        seq = decode_after(text)
    except ValueError:
        return
    assert 0 <= seq <= MAX_SEQ
    assert encode_after(seq) == text  # only the canonical spelling decodes


def test_page_arithmetic() -> None:
    assert page_offset(1, 50) == 0
    assert page_offset(3, 50) == 100
    assert total_pages(0, 50) == 0
    assert total_pages(1, 50) == 1
    assert total_pages(50, 50) == 1
    assert total_pages(51, 50) == 2
    for bad in ((0, 10), (1, 0), (-1, 10)):
        with pytest.raises(ValueError):
            page_offset(*bad)
    for bad in ((-1, 10), (10, 0)):
        with pytest.raises(ValueError):
            total_pages(*bad)


@given(st.integers(0, 10_000), st.integers(1, 1000))
def test_pages_cover_the_total_exactly(total: int, size: int) -> None:
    pages = total_pages(total, size)
    assert (pages - 1) * size < total <= pages * size or (total == 0 and pages == 0)
    if pages:
        assert page_offset(pages, size) < total <= page_offset(pages + 1, size)


def test_paginate_keyset_examples() -> None:
    items = [9, 7, 5, 3, 1]
    assert paginate_keyset(items, None, 2) == ([9, 7], 7)
    assert paginate_keyset(items, 7, 2) == ([5, 3], 3)
    assert paginate_keyset(items, 3, 2) == ([1], None)
    assert paginate_keyset(items, None, 5) == ([9, 7, 5, 3, 1], None)  # no empty last page
    assert paginate_keyset([], None, 3) == ([], None)
    with pytest.raises(ValueError):
        paginate_keyset(items, None, 0)


@settings(max_examples=200)
@given(
    st.integers(0, 60),
    st.integers(1, 7),
    st.lists(st.integers(0, 5), max_size=30),
)
def test_walking_while_runs_arrive_sees_each_original_run_once(
    initial: int, size: int, arrivals: list[int]
) -> None:
    """New runs (higher seqs) land between page fetches; the cursor travels as text."""
    runs = list(range(1, initial + 1))
    original = sorted(runs, reverse=True)
    seen: list[int] = []
    cursor: str | None = None
    for step in range(initial + 2):  # bounded: each page but the last holds `size` runs
        after = None if cursor is None else decode_after(cursor)
        page, next_seq = paginate_keyset(sorted(runs, reverse=True), after, size)
        seen += page
        if next_seq is None:
            break
        cursor = encode_after(next_seq)
        runs += range(
            max(runs) + 1, max(runs) + 1 + (arrivals[step] if step < len(arrivals) else 0)
        )
    else:
        pytest.fail("the walk did not end")
    assert seen == original


# -- keyset cursors bound to a sort (version 2) --------------------------------

sorts = st.builds(RunSort, st.sampled_from(list(SortField)), st.booleans())
instants = st.integers(MIN_US, MAX_SEQ)


@st.composite
def sorted_positions(draw: st.DrawFn) -> tuple[RunSort, Position]:
    sort = draw(sorts)
    segment = draw(st.integers(0, sort.segment_count - 1))
    value: int | str | None = None
    if sort.field is SortField.JOB:
        value = draw(st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 255))
    elif sort.field.nullable and segment == 0:
        value = draw(instants)
    return sort, Position(segment, value, draw(instants), draw(seqs))


@settings(max_examples=500)
@given(sorted_positions())
def test_keyset_cursors_round_trip(case: tuple[RunSort, Position]) -> None:
    sort, pos = case
    text = encode_cursor(sort, pos)
    assert text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    assert decode_cursor(text, sort) == pos


@settings(max_examples=300)
@given(sorted_positions(), sorts)
def test_a_cursor_is_bound_to_its_sort(case: tuple[RunSort, Position], other: RunSort) -> None:
    sort, pos = case
    text = encode_cursor(sort, pos)
    if other == sort:
        assert decode_cursor(text, other) == pos
    else:
        with pytest.raises(CursorSortError, match=f"sort={sort.text}"):
            decode_cursor(text, other)


def test_version_1_cursors_are_refused_with_a_way_forward() -> None:
    with pytest.raises(CursorError, match="earlier jobsd"):
        decode_cursor(encode_after(42), DEFAULT_SORT)


@pytest.mark.parametrize(
    ("sort", "pos"),
    [
        (DEFAULT_SORT, Position(1, None, 0, 1)),  # no second segment
        (DEFAULT_SORT, Position(0, 5, 0, 1)),  # created_at carries no value
        (RunSort(SortField.STARTED_AT, False), Position(0, None, 0, 1)),  # set, but no value
        (RunSort(SortField.STARTED_AT, False), Position(1, 5, 0, 1)),  # unset, with a value
        (RunSort(SortField.JOB, False), Position(0, 5, 0, 1)),
        (RunSort(SortField.JOB, False), Position(0, "x" * 256, 0, 1)),
        (RunSort(SortField.STATUS, True), Position(5, None, 0, 1)),
        (DEFAULT_SORT, Position(0, None, 0, -1)),
    ],
)
def test_positions_that_cannot_exist_are_not_encoded(sort: RunSort, pos: Position) -> None:
    with pytest.raises(ValueError):
        encode_cursor(sort, pos)


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60),
        st.binary(min_size=18, max_size=40).map(
            lambda b: base64.urlsafe_b64encode(b"\x02" + b).decode().rstrip("=")
        ),
    ),
    sorts,
)
def test_keyset_decode_raises_only_cursor_errors(text: str, sort: RunSort) -> None:
    try:
        pos = decode_cursor(text, sort)
    except CursorError:
        return
    assert encode_cursor(sort, pos) == text  # only the canonical spelling decodes


def test_keyset_cursor_refusals() -> None:
    good = encode_cursor(DEFAULT_SORT, Position(0, None, 5, 6))
    for text in ["", good + "A", good[:-1], good + "=", "x" * 401, good[:-1] + "+"]:
        with pytest.raises(CursorError):
            decode_cursor(text, DEFAULT_SORT)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def test_a_cursor_spelled_with_other_padding_bits_is_refused() -> None:
    # 20 bytes in 27 characters: the last one carries 2 bits that decode to nothing
    good = encode_cursor(DEFAULT_SORT, Position(0, None, 5, 6))
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(good[-1])
    twin = good[:-1] + alphabet[last ^ 1]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(good + "=")
    with pytest.raises(CursorError):
        decode_cursor(twin, DEFAULT_SORT)


def test_a_well_formed_cursor_for_a_position_that_cannot_exist_is_a_cursor_error() -> None:
    # version 2, the default sort's code, but segment 1, which created_at does not have
    raw = struct.pack(">BBBB", 2, DEFAULT_SORT.code, 1, 0) + struct.pack(">qq", 5, 6)
    with pytest.raises(CursorError):
        decode_cursor(_b64(raw), DEFAULT_SORT)


def test_a_job_name_is_bounded_in_utf8_bytes_not_characters() -> None:
    with pytest.raises(ValueError):
        encode_cursor(RunSort(SortField.JOB, False), Position(0, "é" * 128, 0, 1))
