"""Streamed list documents: the same bytes as a whole document, in bounded parts.

`jobsd.api.streaming.list_document` against `jsonapi.document` as the
oracle, by hypothesis over resources, how the store cut them into chunks,
and what the tail adds; then the bound on each part, and `respond`: a
refusal before the first yield is an ordinary error, and the generator is
closed however the response ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd import errors
from jobsd.api import jsonapi, streaming
from jobsd.api.auth import Caller
from tests.conftest import TOKEN_B, make_harness

resources = st.lists(
    st.dictionaries(
        st.text(max_size=5),
        st.none() | st.booleans() | st.integers() | st.text() | st.lists(st.text(), max_size=3),
        max_size=4,
    ),
    max_size=12,
)


async def chunked(items: list[Any], cuts: list[int]) -> AsyncGenerator[list[Any], None]:
    start = 0
    for cut in sorted(cuts):
        yield items[start:cut]
        start = cut
    yield items[start:]


async def collect(parts: Any) -> bytes:
    return b"".join([part async for part in parts])


@settings(max_examples=150, deadline=None)
@given(
    items=resources,
    cuts=st.lists(st.integers(0, 12), max_size=4),
    tail=st.dictionaries(st.sampled_from(["meta", "links"]), st.none() | st.text(), max_size=2),
)
def test_the_bytes_are_those_of_the_whole_document(
    items: list[Any], cuts: list[int], tail: dict[str, Any]
) -> None:
    async def main() -> tuple[bytes, bytes]:
        async def tail_fn() -> dict[str, Any]:
            return tail

        doc = streaming.list_document(chunked(items, cuts), lambda item: item, tail_fn)
        whole = await jsonapi.document({"data": items, **tail}).get_data()
        return await collect(doc), whole

    streamed, whole = trio.run(main)
    assert streamed == whole
    assert json.loads(streamed) == {"data": items, **tail}


async def test_parts_stay_near_their_size_whatever_the_page() -> None:
    item = {"body": "x" * 10_000}

    async def many() -> AsyncGenerator[list[Any], None]:
        for _ in range(100):  # 1 MB in ten-item chunks
            yield [item] * 10

    async def tail() -> dict[str, Any]:
        return {"meta": {}}

    sizes = [len(p) async for p in streaming.list_document(many(), lambda i: i, tail)]
    assert sum(sizes) > 1_000_000 and len(sizes) > 10
    assert max(sizes) < streaming.PART_BYTES + 10_100


async def test_a_refusal_before_the_first_yield_is_an_error_and_closes_nothing_open() -> None:
    async def refused() -> AsyncGenerator[bytes, None]:
        raise errors.not_found("nothing to list")
        yield b""  # pragma: no cover

    with pytest.raises(errors.ApiError):
        await streaming.respond(refused())


async def test_a_short_document_goes_whole_and_a_long_one_in_parts() -> None:
    closed: list[str] = []

    async def parts(*chunks: bytes) -> AsyncGenerator[bytes, None]:
        try:
            yield b""
            for chunk in chunks:
                yield chunk
        finally:
            closed.append("closed")

    short = await streaming.respond(parts(b'{"data":[', b"]}"))
    assert closed == ["closed"]  # read to its end before the answer starts
    assert await short.get_data() == b'{"data":[]}' and short.content_length == 11

    big = b"x" * streaming.PART_BYTES
    long = await streaming.respond(parts(big, b"tail"))
    assert long.timeout == streaming.STREAM_TIMEOUT_S and long.content_length is None
    assert closed == ["closed"]  # still open: it is being sent
    async with long.response as body:
        async for part in body:  # type: ignore[attr-defined]
            assert part == big
            break  # the client went away
    assert closed == ["closed", "closed"]


async def test_a_list_past_the_accounts_share_is_429_with_retry_after(tmp_path: Path) -> None:
    async with make_harness(tmp_path) as h:
        engine = h.store.engine
        engine.snapshots.wait_s = 0.2
        async with engine.snapshot("acme"), engine.snapshot("acme"):
            for path in ("/api/v1/jobs", "/api/v1/runs"):
                r = await h.get(path)
                assert r.status_code == 429, await r.get_data()
                assert r.headers["Retry-After"].isdigit()
                assert r.headers["Content-Type"] == jsonapi.MEDIA_TYPE
                [error] = (await r.get_json())["errors"]
                assert error["code"] == "too_many_lists" and error["status"] == "429"
            r = await h.get("/api/v1/jobs", token=TOKEN_B)
            assert r.status_code == 200  # another account's share is its own
        assert (await h.get("/api/v1/jobs")).status_code == 200


async def test_a_token_a_reload_moved_to_another_account_is_served_that_accounts_list() -> None:
    """`held_for`: a reload while the list waited for its snapshot may move the
    token to another account; the snapshot held is then given back and one of the
    new account's taken, never the old account's sent to it."""
    taken: list[str] = []

    @asynccontextmanager
    async def listing(account: str) -> AsyncIterator[str]:
        taken.append(account)
        yield f"{account}'s listing"

    acme, globex = Caller("acme", cast(Any, None)), Caller("globex", cast(Any, None))
    asked = iter([globex, globex])
    async with streaming.held_for(acme, listing, lambda: next(asked)) as (held, who):
        assert (held, who.id) == ("globex's listing", "globex")
    assert taken == ["acme", "globex"]
