"""Run-now with a body, answered below Quart (`jobsd.api.fast_run_now`), is the route's run-now.

As in test_fast_run_now.py, each drawn batch goes to two stores prepared
alike, one served with the fast path and one without, and the answers
(status, headers, bytes, the route named), the runs held and those offered
must match. Here hypothesis also draws the body: the plain ones the SDK
sends (`{"environment": ...}`, spelled several ways), odd ones (other
media types, bad JSON, duplicate names, unknown members, other shapes,
environments the token may not name), sizes around `BODY_BOUND`, and how
it arrives: split over several `http.request` messages, framed by
`Content-Length` or chunked. Then what the layer itself must do: answer
the plain ones (the SDK's own request among them) without the app, hand
the rest on with the very messages that came, not read a body over its
bound, and answer a body that does not come in time as the app does.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smplkit._generated.jobs.api.jobs import run_job_now
from smplkit._generated.jobs.client import AuthenticatedClient
from smplkit._generated.jobs.models.run_now_request import RunNowRequest

from jobsd.api.edge import ROUTE_KEY
from jobsd.api.fast_run_now import BODY_BOUND, FastRunNow
from jobsd.api.server import served_app
from tests.api.test_fast_paths import STAGING, prepared
from tests.api.test_fast_run_now import comparable, held
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
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "extensions": {},
        "raw_path": request["path"].encode(),
        **request,
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(10):  # a layer that lost the body would leave the app waiting
        await app(scope, wire.receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answered = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start["headers"]), answered, scope.get(ROUTE_KEY)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(requests(), min_size=1, max_size=20))
async def test_every_run_now_with_a_body_is_the_routes_run_now(
    tmp_path: Path, batch: list[tuple[dict[str, Any], list[bytes]]]
) -> None:
    where = tmp_path / f"ex{next(_counter)}"
    pending = "max_pending_runs = 4"  # four run-nows in, the rest are 429
    async with (
        prepared(where / "fast", scheduler=pending) as fast_side,
        prepared(where / "routed", scheduler=pending) as routed_side,
    ):
        fast = served_app(fast_side.ctx, fast_side.config.server)
        routed = served_app(routed_side.ctx, routed_side.config.server, fast_paths=False)
        for request, chunks in batch:
            got = comparable(await answer(fast, request, Wire(chunks)))
            assert got == comparable(await answer(routed, request, Wire(chunks))), request
        assert await held(fast_side) == await held(routed_side)
        offered = [o.account_id for o in fast_side.orders.orders]
        assert offered == [o.account_id for o in routed_side.orders.orders]


class Recorder:
    """An app that takes the whole body, records each message and how many the layer
    had taken before, and answers 599."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.seen: list[dict[str, Any]] = []
        self.taken_before: int | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.taken_before = self.wire.taken
        while not self.seen or self.seen[-1].get("more_body"):
            self.seen.append(await receive())
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


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
    async with (
        prepared(tmp_path / "fast", scheduler="max_pending_runs = 100") as fast_side,
        prepared(tmp_path / "routed", scheduler="max_pending_runs = 100") as routed_side,
    ):
        fast = served_app(fast_side.ctx, fast_side.config.server)
        routed = served_app(routed_side.ctx, routed_side.config.server, fast_paths=False)
        for request, chunks in EDGES:
            got = comparable(await answer(fast, request, Wire(chunks)))
            assert got == comparable(await answer(routed, request, Wire(chunks))), request
        assert await held(fast_side) == await held(routed_side)
        assert len(fast_side.orders.orders) == len(routed_side.orders.orders) == 6


async def test_plain_bodies_are_answered_here_and_the_rest_reach_the_app_as_sent(
    tmp_path: Path,
) -> None:
    async with prepared(tmp_path, scheduler="max_pending_runs = 100") as h:
        for body, chunks in [
            (b'{"environment":"staging"}', [b'{"environment":"staging"}']),
            (b'{"environment": "staging"}', [b'{"envi', b"", b'ronment": "staging"}', b""]),
            (b"{}", [b"{}"]),  # the token sees two environments, the job is on in one
            (
                b'{"environment":null}'.ljust(BODY_BOUND),
                [b'{"environment":null}'.ljust(BODY_BOUND)],
            ),
        ]:
            wire = Wire(chunks)
            recorder = Recorder(wire)
            layer = FastRunNow(recorder, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
            status, _, answered, _ = await answer(layer, run_now(body), wire)
            assert (status, recorder.seen) == (200, []), answered
        for request, chunks, read_first in [
            (run_now(b'{"environment":"prod'), [b'{"environment":"prod', b'uction"}'], True),
            (run_now(b'{"environment":"nope"}'), [b'{"environ', b'ment":"nope"}', b""], True),
            (
                run_now(b'{"environment":"staging","x":1}'),
                [b'{"environment":"staging","x":1}'],
                True,
            ),
            (
                run_now(b'{"environment":"staging"}', "text/plain"),
                [b'{"environment":"staging"}'],
                False,
            ),
            (run_now(b" " * (BODY_BOUND + 1)), [b" " * (BODY_BOUND + 1)], False),
            (chunked(run_now(b"{}")), [b"{}"], False),
            (twice_typed(run_now(b"{}")), [b"{}"], False),
        ]:
            wire = Wire(chunks)
            recorder = Recorder(wire)
            layer = FastRunNow(recorder, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
            assert (await answer(layer, request, wire))[0] == 599
            assert recorder.seen == wire.messages  # the same bytes, in the same messages
            assert recorder.taken_before == (len(chunks) if read_first else 0), request
        assert len(h.orders.orders) == 4


async def test_a_body_that_does_not_come_in_time_is_answered_as_the_app_does(
    tmp_path: Path,
) -> None:
    """408 within `body_timeout_s` (not twice that), as the app words it; nothing queued.
    A body framed over 2 MiB is the app's 413 at once, not a wait."""
    async with prepared(tmp_path / "fast") as h, prepared(tmp_path / "routed") as other:
        server = h.config.server.model_copy(update={"body_timeout_s": 1, "request_timeout_s": 5})
        fast = served_app(h.ctx, server)
        routed = served_app(other.ctx, server, fast_paths=False)
        for request, chunks in [
            (run_now(b'{"environment":"staging"}'), [b'{"environment":']),
            (run_now(b'{"environment":"staging"}'), []),
            ({**run_now(b""), "headers": run_now(b"x" * 3_000_000)["headers"]}, []),
        ]:
            replies = []
            for app in (fast, routed):
                start = trio.current_time()
                with trio.fail_after(3):
                    replies.append(await answer(app, request, Wire(chunks, stalls=True)))
                assert trio.current_time() - start < 1.8
            assert replies[0] == replies[1]
            status, headers, _, _ = replies[0]
            assert status == 413 or (status == 408 and (b"connection", b"close") in headers)
        assert h.orders.orders == [] and not await held(h)


def sdk_request(path: str, body: RunNowRequest) -> tuple[dict[str, Any], list[bytes]]:
    """The request the official SDK sends for a run-now, as the ASGI app receives it."""
    client = AuthenticatedClient(
        base_url="http://127.0.0.1:8080", token=TOKEN_A, headers={"Accept": SDK_TYPE}
    )
    kwargs = run_job_now._get_kwargs(path, body=body)
    sent: httpx.Request = client.get_httpx_client().build_request(**kwargs)
    content = sent.read()
    request = {
        "method": sent.method,
        "path": sent.url.path,
        "query_string": sent.url.query,
        "headers": [(k.lower(), v) for k, v in sent.headers.raw],
    }
    return request, [content]


async def test_the_official_sdks_run_now_is_answered_without_the_app(tmp_path: Path) -> None:
    acme = 'api_version = "2026-08-07"\n'  # as tests/test_sdk.py pins it: no header needed
    async with (
        prepared(tmp_path / "fast", acme=acme) as h,
        prepared(tmp_path / "routed", acme=acme) as other,
    ):
        routed = served_app(other.ctx, other.config.server, fast_paths=False)
        for environment in ("staging", None):
            request, chunks = sdk_request("warm", RunNowRequest(environment=environment))
            assert chunks[0].startswith(b'{"environment":'), chunks
            wire = Wire(chunks)
            recorder = Recorder(wire)
            layer = FastRunNow(recorder, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
            reply = await answer(layer, request, wire)
            assert reply[0] == 200 and recorder.taken_before is None, reply
            assert comparable(reply) == comparable(await answer(routed, request, Wire(chunks)))
        assert len(h.orders.orders) == 2
