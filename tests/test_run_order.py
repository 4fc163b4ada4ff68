"""Run orders against a naive oracle made of stable sorts, and the sort grammar."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.cursors import decode_cursor, encode_cursor
from jobsd.run_order import (
    DEFAULT_SORT,
    LIFECYCLE,
    SORT_CHOICES,
    RunKeys,
    RunSort,
    SortField,
    compare,
    parse_sort,
    position,
    sort_of_code,
    sort_positions,
    sort_value,
    total_duration_ms,
)
from jobsd.runs import RunStatus

sorts = st.builds(RunSort, st.sampled_from(list(SortField)), st.booleans())
small_us = st.integers(0, 40)


@st.composite
def runs(draw: st.DrawFn, max_size: int = 30) -> list[RunKeys]:
    count = draw(st.integers(0, max_size))
    seqs = draw(st.lists(st.integers(1, 10_000), min_size=count, max_size=count, unique=True))
    out = []
    for seq in seqs:
        created = draw(small_us)
        started = draw(st.one_of(st.none(), small_us.map(lambda d, c=created: c + d)))
        finished = draw(
            st.one_of(st.none(), st.integers(0, 5000).map(lambda d, s=started or created: s + d))
        )
        out.append(
            RunKeys(
                seq=seq,
                created_at_us=created,
                started_at_us=started,
                finished_at_us=finished,
                scheduled_for_us=draw(st.one_of(st.none(), small_us)),
                status=draw(st.sampled_from(list(RunStatus))),
                job_slug=draw(st.sampled_from(["a", "b", "b-2", "c"])),
            )
        )
    return out


def oracle(sort: RunSort, rows: list[RunKeys]) -> list[int]:
    """Stable sorts, the slow obvious way: ties, then the field, then unset ones last."""
    out = sorted(rows, key=lambda r: (r.created_at_us, r.seq), reverse=sort.descending)
    if sort.field is SortField.STATUS:
        rank = {s: i for i, s in enumerate(LIFECYCLE)}
        out = sorted(out, key=lambda r: rank[r.status], reverse=sort.descending)
    elif sort.field is not SortField.CREATED_AT:
        valued = [r for r in out if sort_value(sort.field, r) is not None]
        unset = [r for r in out if sort_value(sort.field, r) is None]
        out = sorted(valued, key=lambda r: sort_value(sort.field, r), reverse=sort.descending)
        out += unset
    return [r.seq for r in out]


@settings(max_examples=400)
@given(sorts, runs())
def test_orders_match_the_oracle(sort: RunSort, rows: list[RunKeys]) -> None:
    by_seq = {r.seq: r for r in rows}
    positions = [position(sort, r) for r in rows]
    ordered = sort_positions(sort, positions)
    assert [p.seq for p in ordered] == oracle(sort, rows)
    for a, b in itertools.pairwise(ordered):
        assert compare(sort, a, b) < 0 < compare(sort, b, a)
        assert compare(sort, a, a) == 0
    # Unset values are last in either direction.
    if sort.field.nullable:
        flags = [sort_value(sort.field, by_seq[p.seq]) is None for p in ordered]
        assert flags == sorted(flags)


def test_duration_orders_by_the_rendered_milliseconds() -> None:
    sort = RunSort(SortField.TOTAL_DURATION_MS, descending=False)
    a = RunKeys(1, 10, 10, 10 + 1999, None, RunStatus.SUCCEEDED, "j")  # 1 ms (1.999)
    b = RunKeys(2, 5, 5, 5 + 1000, None, RunStatus.SUCCEEDED, "j")  # 1 ms, created earlier
    c = RunKeys(3, 0, None, None, None, RunStatus.PENDING, "j")
    assert [p.seq for p in sort_positions(sort, [position(sort, r) for r in (a, b, c)])] == [
        2,
        1,
        3,
    ]


def test_the_sort_grammar() -> None:
    assert parse_sort("-created_at") == DEFAULT_SORT
    assert parse_sort("status") == RunSort(SortField.STATUS, False)
    assert len(SORT_CHOICES) == 14
    codes = set()
    for text in SORT_CHOICES:
        sort = parse_sort(text)
        assert sort.text == text
        assert sort_of_code(sort.code) == sort
        codes.add(sort.code)
    assert codes == set(range(14))
    assert sort_of_code(14) is None and sort_of_code(-1) is None
    for bad in ["", "-", "--created_at", "created", "+created_at", "Created_at", "name", " job"]:
        with pytest.raises(ValueError, match="sort must be one of"):
            parse_sort(bad)


def test_status_segments_follow_the_lifecycle() -> None:
    asc, desc = RunSort(SortField.STATUS, False), RunSort(SortField.STATUS, True)
    assert [asc.status_of_segment(i) for i in range(5)] == list(LIFECYCLE)
    assert [desc.status_of_segment(i) for i in range(5)] == list(reversed(LIFECYCLE))
    assert LIFECYCLE[0] is RunStatus.PENDING and LIFECYCLE[-1] is RunStatus.CANCELED


# -- edges that mutation testing found unpinned --------------------------------------


def test_total_duration_is_floored_and_never_negative() -> None:
    assert total_duration_ms(10, 10 + 1999) == 1
    assert total_duration_ms(10, None) is None
    assert total_duration_ms(5_000, 1_000) == 0  # finished "before" created: a clock step


@pytest.mark.parametrize("sort", [RunSort(f, d) for f in SortField for d in (False, True)])
def test_every_run_has_a_position_a_cursor_can_carry(sort: RunSort) -> None:
    bare = RunKeys(1, 10, None, None, None, RunStatus.PENDING, "j")
    full = RunKeys(2, 10, 20, 30, 15, RunStatus.SUCCEEDED, "j")
    for keys in (bare, full):
        pos = position(sort, keys)
        assert decode_cursor(encode_cursor(sort, pos), sort) == pos
