"""The read of one job answered below Quart (`jobsd.api.fast_paths`) is the route's answer.

Every request is sent twice, to the app the daemon serves and to the same
layers without the fast path, and the two answers must match: status,
headers in order, body bytes, and the route the metrics and access log
name. Hypothesis draws the requests: the paths around `/api/v1/jobs/{id}`,
methods, no/one/two `Authorization` and `Jobsd-Version` headers (right,
wrong, malformed, scoped, of another account), body framing and query
strings; so errors the fast path leaves to the app are covered as well as
its own answers. Then: the plain reads never reach the app, and a read
that fails in any way leaves the request to the app.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.api.edge import ROUTE_KEY
from jobsd.api.fast_paths import FastReads
from jobsd.api.server import served_app
from jobsd.config import token_sha256
from tests.conftest import TOKEN_A, TOKEN_B, Harness, job_doc, make_harness

STAGING = "jobsd_fast-reads-staging-only"
ACME = f"""environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING)}"
environments = ["staging"]
"""
SLUGS = ["warm", "once", "by-hand", "theirs", "missing", "", "w%41rm", "ünï"]
PATHS = [f"/api/v1/jobs/{slug}" for slug in SLUGS] + [
    "/api/v1/jobs/warm/",
    "/api/v1/jobs/warm/runs",
    "/api/v1/jobs",
    "/api/v1/jobsx/warm",
]
AUTHORIZATIONS = [
    f"Bearer {TOKEN_A}",
    f"Bearer {TOKEN_B}",
    f"Bearer {STAGING}",
    f"bearer   {TOKEN_A}  ",
    "Bearer not-a-token",
    f"Basic {TOKEN_A}",
    "Bearer",
    "",
]
VERSIONS = ["2026-06-04", "2026-08-07", " 2026-08-07", "2025-01-01", "", "2026-08-07x"]
_counter = itertools.count()


@asynccontextmanager
async def prepared(tmp_path: Path, *, acme: str = "", **config: Any) -> AsyncIterator[Harness]:
    """The jobs every test here reads; `acme`: more keys for the account acme."""
    async with make_harness(tmp_path, acme=acme + ACME, active_jobs_limit=-1, **config) as h:
        envs = {"staging": {"enabled": True, "headers.X-Env": "staging"}}
        on = {"production": {"enabled": True}}
        new = {"Jobsd-Version": "2026-08-07"}
        for doc, token, headers in [
            (job_doc("warm", environments=envs), TOKEN_A, new),
            (job_doc("once", schedule="2030-01-01T00:00:00Z", environments=on), TOKEN_A, new),
            (job_doc("by-hand", schedule=None), TOKEN_A, new),
            (job_doc("theirs"), TOKEN_B, {}),
        ]:
            r = await h.post("/api/v1/jobs", doc, token=token, headers=headers)
            assert r.status_code == 201, await r.get_data()
        yield h


def asgi_scope(**request: Any) -> dict[str, Any]:
    """An HTTP/1.1 scope as the server hands the app one, from 127.0.0.1; `request`
    gives the method, path, query and headers (and may replace the rest)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "extensions": {},
        **request,
    }
    scope["raw_path"] = scope["path"].encode()
    return scope


async def answer(
    app: Any, request: dict[str, Any], receive: Callable[[], Awaitable[Any]] | None = None
) -> tuple[Any, ...]:
    """The app's answer to `request` (ASGI scope keys); the body is `Content-Length`
    bytes of "x" in one message unless `receive` gives it."""
    scope = asgi_scope(**request)
    sent: list[dict[str, Any]] = []
    lengths = [int(v) for k, v in scope["headers"] if k == b"content-length"]
    body = [b"x" * lengths[0]] if lengths else [b""]

    async def one_message() -> dict[str, Any]:
        if body:
            return {"type": "http.request", "body": body.pop(), "more_body": False}
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(10):  # a layer that lost the body would leave the app waiting
        await app(scope, receive or one_message, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answered = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start["headers"]), answered, scope.get(ROUTE_KEY)


def header(name: str, values: list[str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode("utf-8")) for value in values]


def near_plain(method: str, paths: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Requests a fast path could answer, or nearly: the route's method, one
    token, at most one version, no body or a small one."""
    return st.builds(
        lambda path, token, version, framing: {
            "method": method,
            "path": path,
            "query_string": b"",
            "headers": [
                (b"authorization", f"Bearer {token}".encode()),
                *header("jobsd-version", version),
                *framing,
            ],
        },
        path=st.sampled_from(paths),
        token=st.sampled_from([TOKEN_A, TOKEN_A, TOKEN_B, STAGING]),
        version=st.sampled_from([[], ["2026-06-04"], ["2026-08-07"]]),
        framing=st.sampled_from([[], [], [(b"content-length", b"0")], [(b"content-length", b"2")]]),
    )


def wild_requests(
    methods: Sequence[str],
    paths: Sequence[str],
    framings: Sequence[list[tuple[bytes, bytes]]],
    *,
    authorizations: Sequence[str] = AUTHORIZATIONS,
    queries: Sequence[str] = ("",),
) -> st.SearchStrategy[dict[str, Any]]:
    """Requests around a route: these methods and paths, no/one/two `Authorization`
    and `Jobsd-Version` headers (right, wrong, malformed), these body framings."""
    return st.builds(
        lambda method, path, authorization, versions, framing, query: {
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": [
                (b"host", b"127.0.0.1:8080"),
                *header("authorization", authorization),
                *header("jobsd-version", versions),
                *framing,
            ],
        },
        method=st.sampled_from(methods),
        path=st.sampled_from(paths),
        authorization=st.lists(st.sampled_from(authorizations), max_size=2),
        versions=st.lists(st.sampled_from(VERSIONS), max_size=2),
        framing=st.sampled_from(framings),
        query=st.sampled_from(queries),
    )


NO_BODY_OR_TOO_BIG = [[], [], [(b"content-length", b"0")], [(b"content-length", b"3000000")]]
wild = wild_requests(
    ["GET", "GET", "GET", "HEAD", "OPTIONS", "PUT"],  # none that acts
    PATHS,
    NO_BODY_OR_TOO_BIG,
    queries=["", "", "include=runs", "page[size]=x"],
)
requests = st.one_of(wild, near_plain("GET", PATHS))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(requests, min_size=1, max_size=30))
async def test_every_answer_is_the_routes_answer(
    tmp_path: Path, batch: list[dict[str, Any]]
) -> None:
    async with prepared(tmp_path / f"ex{next(_counter)}") as h:
        fast = served_app(h.ctx, h.config.server)
        routed = served_app(h.ctx, h.config.server, fast_paths=False)
        for request in batch:
            assert await answer(fast, request) == await answer(routed, request), request


def plain(path: str, token: str = TOKEN_A, **more: str) -> dict[str, Any]:
    extra = [(name.replace("_", "-").encode(), value.encode()) for name, value in more.items()]
    return {
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode()), *extra],
    }


def twice(request: dict[str, Any], name: bytes) -> dict[str, Any]:
    """`request` with its `name` header sent again, the same value."""
    headers = request["headers"]
    return {**request, "headers": [*headers, *(h for h in headers if h[0] == name)]}


EDGES = [
    plain("/api/v1/jobs/warm"),
    plain("/api/v1/jobs/warm", jobsd_version="2026-08-07"),
    twice(plain("/api/v1/jobs/warm"), b"authorization"),  # 400, not the first one's job
    twice(plain("/api/v1/jobs/warm", jobsd_version="2026-08-07"), b"jobsd-version"),
    plain("/api/v1/jobs/warm", content_length="3000000"),  # 413: the body is over 2 MiB
    plain("/api/v1/jobs/warm", content_length="0"),
    plain("/api/v1/jobs/warm", STAGING),  # 403 in the seed version
    plain("/api/v1/jobs/warm", STAGING, jobsd_version="2026-08-07"),  # its narrowed map
    plain("/api/v1/jobs/by-hand"),  # 404 in the seed version
    plain("/api/v1/jobs/by-hand", jobsd_version="2026-08-07"),
    plain("/api/v1/jobs/theirs", TOKEN_B),
    plain("/api/v1/jobs/theirs"),  # another account's: 404
    {**plain("/api/v1/jobs/warm"), "query_string": b"fields[job]=name"},
    {**plain("/api/v1/jobs/warm"), "root_path": "/api"},
    plain("/api/v1/jobs/warm", accept="application/vnd.api+json; charset=utf-8"),  # 406
    plain("/api/v1/jobs/warm", accept="application/vnd.api+json;q=0.5, */*"),
    twice(plain("/api/v1/jobs/warm", accept="application/vnd.api+json; ext=x"), b"accept"),
]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with prepared(tmp_path) as harness:
        yield harness


async def test_the_edges_answer_as_the_route_does(h: Harness) -> None:
    fast = served_app(h.ctx, h.config.server)
    routed = served_app(h.ctx, h.config.server, fast_paths=False)
    for request in EDGES:
        assert await answer(fast, request) == await answer(routed, request), request


class Spy:
    """An app that records what reached it and answers 599."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_plain_reads_never_reach_the_app_and_the_rest_always_do(h: Harness) -> None:
    spy = Spy()
    layer = FastReads(spy, h.ctx)  # type: ignore[arg-type]
    for request in [
        plain("/api/v1/jobs/warm"),
        plain("/api/v1/jobs/once", jobsd_version="2026-08-07"),
        plain("/api/v1/jobs/theirs", TOKEN_B),
    ]:
        status, _, body, route = await answer(layer, request)
        assert (status, route) == (200, "/api/v1/jobs/{job_id}"), body
    assert spy.paths == []
    for request in [
        plain("/api/v1/jobs/missing"),  # 404
        plain("/api/v1/jobs/theirs"),  # another account's: 404
        plain("/api/v1/jobs/warm", "wrong"),  # 401
        plain("/api/v1/jobs/warm", STAGING),  # the seed version's guard: 403
        plain("/api/v1/jobs/warm", jobsd_version="2020-01-01"),  # 400
        plain("/api/v1/jobs/by-hand"),  # a manual job the seed version cannot show: 404
        plain("/api/v1/jobs/warm", content_length="2"),  # a body to read and bound
        {**plain("/api/v1/jobs/warm"), "method": "HEAD"},
    ]:
        assert (await answer(layer, request))[0] == 599, request
    assert len(spy.paths) == 8


async def test_a_read_that_fails_in_any_way_is_left_to_the_app(h: Harness) -> None:
    """Busy (which a WAL reader sees only in rare states, such as recovery
    after a crash) or anything else: the fast path passes, having sent nothing."""
    spy = Spy()
    layer = FastReads(spy, h.ctx)  # type: ignore[arg-type]
    assert (await answer(layer, plain("/api/v1/jobs/warm")))[0] == 200  # its reader is open
    engine = h.store.engine
    reader = engine._point_conn  # type: ignore[attr-defined]
    assert isinstance(reader, sqlite3.Connection)
    reader.close()  # every read on it now raises
    assert (await answer(layer, plain("/api/v1/jobs/warm")))[0] == 599
    assert spy.paths == ["/api/v1/jobs/warm"]
    engine._point_conn = None  # type: ignore[attr-defined]
    assert (await answer(layer, plain("/api/v1/jobs/warm")))[0] == 200
