"""Run-now answered below Quart (`jobsd.api.fast_run_now.FastRunNow`) is the route's run-now.

A write cannot be sent twice to one store to compare, so each drawn batch
of requests goes to two stores prepared alike: one served with the fast
path, one without. Every answer must match (status, headers, body, the
route named to the metrics) once the new run's id and instants are set
aside, and so must what the stores hold after the batch and the runs
offered to the executors: a run-now refused anywhere (401, 403, 404, 409,
413, 422, 429 past `max_pending_runs`) creates nothing on either side, and
none is created twice when the app answers one the fast path passed on.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.api.fast_run_now import FastRunNow
from jobsd.api.server import served_app
from tests.api.test_fast_paths import (
    AUTHORIZATIONS,
    Spy,
    answer,
    near_plain,
    plain,
    prepared,
    wild_requests,
)
from tests.api.test_store_busy import short_busy_timeout, write_lock_held
from tests.conftest import Harness
from tests.test_engine_broken import break_writer

SLUGS = ["warm", "once", "by-hand", "theirs", "missing", "", "ünï"]
PATHS = [f"/api/v1/jobs/{slug}/actions/run" for slug in SLUGS] + [
    "/api/v1/jobs/warm/actions/run/",
    "/api/v1/jobs/warm/actions/runs",
    "/api/v1/jobs/w/x/actions/run",
]
_INSTANT = re.compile(rb'"\d{4}-\d\d-\d\dT[0-9:.]+Z"')
_counter = itertools.count()

wild = wild_requests(
    ["POST", "POST", "POST", "PUT"],
    PATHS,
    [
        [],
        [],
        [(b"content-length", b"0")],
        [(b"content-length", b"2")],  # a body to parse: the app's
        [(b"content-length", b"3000000")],  # over 2 MiB: 413
        [(b"transfer-encoding", b"chunked")],
    ],
    authorizations=AUTHORIZATIONS[:3] * 3 + AUTHORIZATIONS,
)
requests = st.one_of(wild, near_plain("POST", PATHS[:5]))


def comparable(reply: tuple[Any, ...]) -> tuple[Any, ...]:
    """An answer with the new run's id and its instants set aside."""
    status, headers, body, route = reply
    if status == 200:
        run_id = json.loads(body)["data"]["id"]
        body = _INSTANT.sub(b'"T"', body.replace(run_id.encode(), b"RUN"))
        headers = [(k, v) for k, v in headers if k != b"content-length"]
    return status, headers, body, route


@dataclass
class BothWays:
    """Two stores prepared alike: `fast` served with the fast paths, `routed` without."""

    fast_side: Harness
    routed_side: Harness
    fast: Any
    routed: Any

    async def same_answer(
        self, request: dict[str, Any], receive: Callable[[], Any] | None = None
    ) -> None:
        """`request` sent to each (`receive()` makes each its own receive, if given)."""
        got = comparable(await answer(self.fast, request, receive and receive()))
        assert got == comparable(await answer(self.routed, request, receive and receive())), request

    async def same_stores(self) -> None:
        """The same runs held, and offered to the executors for the same accounts."""
        assert await held(self.fast_side) == await held(self.routed_side)
        offered = [o.account_id for o in self.fast_side.orders.orders]
        assert offered == [o.account_id for o in self.routed_side.orders.orders]


@asynccontextmanager
async def both_ways(where: Path, scheduler: str) -> AsyncIterator[BothWays]:
    async with (
        prepared(where / "fast", scheduler=scheduler) as fast_side,
        prepared(where / "routed", scheduler=scheduler) as routed_side,
    ):
        fast = served_app(fast_side.ctx, fast_side.config.server)
        routed = served_app(routed_side.ctx, routed_side.config.server, fast_paths=False)
        yield BothWays(fast_side, routed_side, fast, routed)


async def held(h: Harness) -> Counter[tuple[str, str, str, str]]:
    """Every run in the store: (account, job, environment, status) and how many."""

    def q(conn: Any) -> list[Any]:
        return conn.execute("SELECT account_id, job_slug, environment, status FROM runs").fetchall()

    return Counter(tuple(row) for row in await h.store.engine.read(q))


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(requests, min_size=1, max_size=25))
async def test_every_run_now_is_the_routes_run_now(
    tmp_path: Path, batch: list[dict[str, Any]]
) -> None:
    # two run-nows in, the rest are 429
    async with both_ways(tmp_path / f"ex{next(_counter)}", "max_pending_runs = 2") as sides:
        for request in batch:
            await sides.same_answer(request)
        await sides.same_stores()


async def test_a_plain_run_now_is_answered_without_the_app(tmp_path: Path) -> None:
    """And queues one run, offered once; one past `max_pending_runs` is refused
    here (429, as the app words it: one attempt, not two); what it cannot
    answer reaches the app, having queued nothing; a job that is not there is
    answered 404 here, as the app words it."""
    pending = "max_pending_runs = 2"
    async with (
        prepared(tmp_path / "fast", scheduler=pending) as h,
        prepared(tmp_path / "routed", scheduler=pending) as other,
    ):
        spy = Spy()
        layer = FastRunNow(spy, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
        routed = served_app(other.ctx, other.config.server, fast_paths=False)
        run_now = {**plain("/api/v1/jobs/once/actions/run"), "method": "POST"}
        for expected in (200, 200, 429):
            reply = await answer(layer, run_now)
            assert reply[0] == expected and reply[3] == "/api/v1/jobs/{job_id}/actions/run"
            assert comparable(reply) == comparable(await answer(routed, run_now))
        assert spy.paths == [] and len(h.orders.orders) == 2
        # A job that is not there: the write's own read says so, answered here.
        missing = {**plain("/api/v1/jobs/missing/actions/run"), "method": "POST"}
        reply = await answer(layer, missing)
        assert reply[0] == 404 and comparable(reply) == comparable(await answer(routed, missing))
        for request in [
            {**plain("/api/v1/jobs/once/actions/run", content_length="2"), "method": "POST"},
            {**plain("/api/v1/jobs/once/actions/run", "wrong"), "method": "POST"},
        ]:
            assert (await answer(layer, request))[0] == 599
        assert len(spy.paths) == 2 and len(h.orders.orders) == 2
        assert sum((await held(h)).values()) == 2


async def test_a_busy_or_failing_write_is_answered_as_the_app_would(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holding SQLite's write lock past the busy timeout: 503
    `store_busy` with Retry-After, nothing queued; anything unexpected in the
    write: a logged 500 that says no more. Both as the app's boundary says."""
    async with (
        prepared(tmp_path / "fast") as h,
        prepared(tmp_path / "routed") as other,
    ):
        fast = served_app(h.ctx, h.config.server)
        routed = served_app(other.ctx, other.config.server, fast_paths=False)
        run_now = {**plain("/api/v1/jobs/once/actions/run"), "method": "POST"}
        for side in (h, other):
            await short_busy_timeout(side)
        with write_lock_held(h), write_lock_held(other):
            reply = await answer(fast, run_now)
            assert reply == await answer(routed, run_now)
        assert reply[0] == 503 and (b"retry-after", b"1") in reply[1]
        assert json.loads(reply[2])["errors"][0]["code"] == "store_busy"
        assert h.orders.orders == [] and not await held(h)

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        for side in (h, other):
            side.store.runs.enqueue_manual = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="jobsd.api"):
            reply = await answer(fast, run_now)
        assert reply == await answer(routed, run_now)
        assert reply[0] == 500 and b"a bug" not in reply[2]
        assert sum("unhandled error in POST /api/v1/jobs/once" in r.message for r in caplog.records)
        for side in (h, other):
            await break_writer(side.store.engine)
            del side.store.runs.enqueue_manual
        reply = await answer(fast, run_now)
        assert reply == await answer(routed, run_now)
        assert reply[0] == 503 and (b"retry-after", b"5") in reply[1]
        assert json.loads(reply[2])["errors"][0]["code"] == "store_unavailable"


async def test_a_path_that_only_ends_as_long_as_a_run_now_reaches_the_app(tmp_path: Path) -> None:
    """`/api/v1/jobs/warm-actions-run` is no run-now of `warm` (its last 12 characters
    are not `/actions/run`): the app answers it (a 405), and nothing is queued."""
    async with prepared(tmp_path) as h:
        spy = Spy()
        layer = FastRunNow(spy, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
        request = {**plain("/api/v1/jobs/warm-actions-run"), "method": "POST"}
        assert (await answer(layer, request))[0] == 599
        assert spy.paths == ["/api/v1/jobs/warm-actions-run"] and h.orders.orders == []
