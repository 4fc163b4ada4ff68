"""Run-now with a body, answered below Quart (`jobsd.api.fast_run_now`), is the route's run-now.

As in test_fast_run_now.py, each drawn batch goes to two stores prepared
alike, one served with the fast path and one without, and the answers
(status, headers, bytes, the route named), the runs held and those offered
must match. Here hypothesis also draws the body: the plain ones the SDK
sends (`{"environment": ...}`, spelled several ways), odd ones (other
media types, bad JSON, duplicate names, unknown members, other shapes,
environments the token may not name), sizes around `BODY_BOUND`, and how
it arrives: split over several `http.request` messages, framed by
`Content-Length` or chunked; and a fixed list of edges the drawn batches
may miss. What the layer must do beyond answering alike (answer the
plain ones itself, leave the rest unread or replayed, a late body's 408)
is test_fast_run_now_layer.py's.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.api.fast_run_now import BODY_BOUND
from tests.api.test_fast_paths import STAGING
from tests.api.test_fast_paths import answer as fast_paths_answer
from tests.api.test_fast_run_now import both_ways, held
from tests.conftest import TOKEN_A, TOKEN_B

PATHS = [f"/api/v1/jobs/{slug}/actions/run" for slug in ["warm", "once", "by-hand", "missing"]]
SDK_TYPE = "application/vnd.api+json"
ENVIRONMENTS: list[object] = ["production", "staging", None, "nope", "Production", 1, ["staging"]]
_counter = itertools.count()


def spelled(doc: object) -> st.SearchStrategy[bytes]:
    """`doc` as JSON, compact (as httpx sends it), spaced, or ASCII-escaped."""
    return st.sampled_from(
        [
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(),
            json.dumps(doc, indent=1).encode(),
            json.dumps(doc, ensure_ascii=True).replace("o", "\\u006f").encode(),
        ]
    )


PLAIN = st.one_of(
    st.sampled_from(ENVIRONMENTS).flatmap(lambda e: spelled({"environment": e})),
    spelled({}),
    st.just(b" \r\n"),
)
ODD = st.sampled_from(
    [
        b"null",
        b"[]",
        b'"production"',
        b'{"environment":"production","x":1}',
        b'{"environment":"production","environment":"staging"}',
        b'{"environment":',
        b'{"environment":"\xff"}',
        b'{"environment":NaN}',
        b'{"data":{"type":"run","attributes":{"environment":"production"}}}',
    ]
)
AROUND_BOUND = st.sampled_from([BODY_BOUND - 1, BODY_BOUND, BODY_BOUND + 1, 3 * BODY_BOUND]).map(
    lambda n: b'{"environment":"staging"}'.ljust(n)
)
BODIES = st.one_of(PLAIN, PLAIN, ODD, AROUND_BOUND)
TYPES = [[SDK_TYPE]] * 3 + [
    ["application/json"],
    ["application/json; charset=utf-8"],
    ["APPLICATION/VND.API+JSON"],
    ["text/plain"],
    [],
    [SDK_TYPE, SDK_TYPE],
]


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes]]:
    """A run-now with a body, and the body's `http.request` messages' bytes."""
    body = draw(BODIES)
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    if draw(st.booleans()):
        chunks.append(b"")  # as hypercorn ends a body: an empty last message
    token = draw(st.sampled_from([TOKEN_A, TOKEN_A, TOKEN_B, STAGING]))
    version = draw(st.sampled_from([[], ["2026-06-04"], ["2026-08-07"], ["2026-08-07"]]))
    framing = draw(st.sampled_from([b"content-length"] * 4 + [b"transfer-encoding"]))
    request = {
        "method": "POST",
        "path": draw(st.sampled_from(PATHS)),
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            *((b"jobsd-version", v.encode()) for v in version),
            *((b"content-type", t.encode()) for t in draw(st.sampled_from(TYPES))),
            (framing, b"%d" % len(body) if framing == b"content-length" else b"chunked"),
        ],
    }
    return request, chunks


class Wire:
    """A request's receive: its body's messages, then (if `stalls`) nothing, ever."""

    def __init__(self, chunks: list[bytes], *, stalls: bool = False) -> None:
        last = len(chunks) - 1
        self.messages = [
            {"type": "http.request", "body": c, "more_body": stalls or n < last}
            for n, c in enumerate(chunks)
        ]
        self.pending = list(self.messages)
        self.taken = 0

    async def receive(self) -> dict[str, Any]:
        if self.pending:
            self.taken += 1
            return self.pending.pop(0)
        await trio.sleep_forever()
        raise AssertionError


async def answer(app: Any, request: dict[str, Any], wire: Wire) -> tuple[Any, ...]:
    return await fast_paths_answer(app, request, wire.receive)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(requests(), min_size=1, max_size=20))
async def test_every_run_now_with_a_body_is_the_routes_run_now(
    tmp_path: Path, batch: list[tuple[dict[str, Any], list[bytes]]]
) -> None:
    # four run-nows in, the rest are 429
    async with both_ways(tmp_path / f"ex{next(_counter)}", "max_pending_runs = 4") as sides:
        for request, chunks in batch:
            await sides.same_answer(request, lambda chunks=chunks: Wire(chunks).receive)
        await sides.same_stores()


def run_now(body: bytes, content_type: str = SDK_TYPE, **more: str) -> dict[str, Any]:
    extra = [(name.replace("_", "-").encode(), value.encode()) for name, value in more.items()]
    return {
        "method": "POST",
        "path": "/api/v1/jobs/warm/actions/run",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {TOKEN_A}".encode()),
            (b"jobsd-version", b"2026-08-07"),
            (b"content-type", content_type.encode()),
            (b"content-length", b"%d" % len(body)),
            *extra,
        ],
    }


def chunked(request: dict[str, Any]) -> dict[str, Any]:
    """`request` with its body framed by `Transfer-Encoding: chunked` instead."""
    headers = [(n, v) for n, v in request["headers"] if n != b"content-length"]
    return {**request, "headers": [*headers, (b"transfer-encoding", b"chunked")]}


def twice_typed(request: dict[str, Any], first: str = SDK_TYPE) -> dict[str, Any]:
    """`request` with a `Content-Type` before its own."""
    return {**request, "headers": [(b"content-type", first.encode()), *request["headers"]]}


PLAIN_BODY = b'{"environment":"staging"}'
EDGES = [
    (run_now(PLAIN_BODY), [PLAIN_BODY]),
    (run_now(PLAIN_BODY, "text/plain"), [PLAIN_BODY]),  # 415
    (run_now(PLAIN_BODY, ""), [PLAIN_BODY]),  # 415
    (run_now(PLAIN_BODY, "application/json; charset=utf-8"), [PLAIN_BODY]),
    (twice_typed(run_now(PLAIN_BODY), "text/plain"), [PLAIN_BODY]),  # the first one counts
    (twice_typed(run_now(PLAIN_BODY, "text/plain")), [PLAIN_BODY]),
    (run_now(b" \n", "text/plain"), [b" \n"]),  # whitespace: no body, of any type
    (chunked(run_now(PLAIN_BODY)), [b'{"envi', PLAIN_BODY[6:], b""]),
    (run_now(PLAIN_BODY.ljust(BODY_BOUND + 1)), [PLAIN_BODY.ljust(BODY_BOUND + 1)]),
    (run_now(b'{"environment":"staging"} x'), [b'{"environment":"staging"} x']),  # 400
]


async def test_the_edges_answer_as_the_route_does(tmp_path: Path) -> None:
    """Those the drawn batches may miss: media types, framing, the bound, run once each."""
    async with both_ways(tmp_path, "max_pending_runs = 100") as sides:
        for request, chunks in EDGES:
            await sides.same_answer(request, lambda chunks=chunks: Wire(chunks).receive)
        assert await held(sides.fast_side) == await held(sides.routed_side)
        assert len(sides.fast_side.orders.orders) == len(sides.routed_side.orders.orders) == 6
