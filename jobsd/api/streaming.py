"""List documents written while they are read, so no response is held whole.

`GET /jobs` and `GET /runs` may answer a thousand resources of a megabyte
each. Their handlers produce the document as an async generator of bytes:
the store reads rows in chunks from one snapshot (`jobsd.store.snapshots`),
each resource is rendered and encoded alone, and parts of about
`PART_BYTES` go to the socket as the client takes them (hypercorn sends
with backpressure). Memory then holds a chunk of rows and one part, not
`page[size] x body size`.

`respond` first runs the generator to its first `yield`, where the handler
has its snapshot: a refusal there (no snapshot free, 429/503) is still an
ordinary JSON:API error, and so is a failure in the first part. A document
that fits in one part goes out whole with a Content-Length. Past the first
part the status line is gone; a failure then cuts the response short, which
the client sees as an incomplete (chunked) body.
A streamed response must be sent within `STREAM_TIMEOUT_S`, or it is cut
short the same way: that bounds how long a slow reader holds its snapshot
(one that stops reading is cut sooner, by the connection's write timeout).

A list may wait up to 10 s for its snapshot (`jobsd.store.snapshots`), and
a reload (SIGHUP) may come meanwhile: `held_for` finds the caller again once
the snapshot is held, so a token revoked during the wait is a 401 and one
narrowed or moved is served as it now is, never as it was.

The bytes are exactly what `jsonapi.document` would produce for the same
document: compact separators, UTF-8, members in the order given.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from typing import Any, TypeVar

from quart import Response

from jobsd.api.auth import Caller
from jobsd.api.jsonapi import MEDIA_TYPE

T = TypeVar("T")
L = TypeVar("L")

PART_BYTES = 64 * 1024
STREAM_TIMEOUT_S = 60.0


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@asynccontextmanager
async def held_for(
    caller: Caller,
    listing: Callable[[str], AbstractAsyncContextManager[L]],
    ask: Callable[[], Caller],
) -> AsyncIterator[tuple[L, Caller]]:
    """The account's listing, with its caller asked again (`ask`: 401 if revoked)
    once the snapshot is held, as a reload may have come while it waited.

    A token that the reload moved to another account waits again, for a
    snapshot of that account's."""
    while True:
        async with listing(caller.id) as held:
            fresh = ask()
            if fresh.id == caller.id:
                yield held, fresh
                return
        caller = fresh


async def list_document(
    chunks: AsyncGenerator[list[T], None],
    render: Callable[[T], dict[str, object]],
    tail: Callable[[], Awaitable[dict[str, Any]]],
) -> AsyncIterator[bytes]:
    """`{"data":[...], <tail's members>}`, in parts of about PART_BYTES.

    `tail` is awaited after the last resource, so it may report what the
    reading found (a total, the cursor of the next page)."""
    part = bytearray(b'{"data":[')
    separator = b""
    async with aclosing(chunks):
        async for chunk in chunks:
            for item in chunk:
                part += separator
                part += encode(render(item))
                separator = b","
                if len(part) >= PART_BYTES:
                    yield bytes(part)
                    part.clear()
    part += b"]"
    for name, value in (await tail()).items():
        part += b"," + encode(name) + b":" + encode(value)
    part += b"}"
    yield bytes(part)


async def respond(parts: AsyncGenerator[bytes, None]) -> Response:
    """A 200 whose body is `parts`, started here up to its first yield.

    A document that ends within its first part goes out whole, with a
    Content-Length, as every other answer does; only a longer one is sent
    in chunks as it is read."""
    await anext(parts)
    head: list[bytes] = []
    try:
        while sum(map(len, head)) < PART_BYTES:
            head.append(await anext(parts))
    except StopAsyncIteration:
        return Response(b"".join(head), status=200, content_type=MEDIA_TYPE)

    async def body() -> AsyncIterator[bytes]:
        async with aclosing(parts):
            for part in head:
                yield part
            async for part in parts:
                yield part

    response = Response(body(), status=200, content_type=MEDIA_TYPE)
    response.timeout = STREAM_TIMEOUT_S
    return response
