"""The read of one run answered below Quart (`jobsd.api.fast_paths.FastRunReads`) is the route's.

As for one job (tests/api/test_fast_paths.py): every request goes to the
app the daemon serves and to the same layers without the fast paths, and
the answers must match byte for byte, route name included. The runs are
made first (one per job that can run, in both accounts and two
environments), so the drawn paths name them by placeholders: `{warm}` is
the id of the run of the job `warm`, `{WARM}` that id in capitals.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.api.fast_paths import FastRunReads
from jobsd.api.server import served_app
from tests.api.test_fast_paths import (
    NO_BODY_OR_TOO_BIG,
    STAGING,
    Spy,
    answer,
    near_plain,
    plain,
    prepared,
    wild_requests,
)
from tests.conftest import TOKEN_A, TOKEN_B, Harness

NEW = {"Jobsd-Version": "2026-08-07"}
PATHS = [
    "/api/v1/runs/{warm}",  # staging: the scoped token sees it
    "/api/v1/runs/{once}",  # production: it does not
    "/api/v1/runs/{theirs}",  # the other account's
    "/api/v1/runs/{WARM}",
    "/api/v1/runs/0b6e3e46-7d1e-4b4e-9c39-1b8a7c6f0e2a",  # no such run
    "/api/v1/runs/not-a-uuid",
    "/api/v1/runs/{warm}/",
    "/api/v1/runs/{warm}/actions/cancel",
    "/api/v1/runs/",
    "/api/v1/runs",
]
_counter = itertools.count()

wild = wild_requests(["GET", "GET", "GET", "HEAD", "PUT"], PATHS, NO_BODY_OR_TOO_BIG)
requests = st.one_of(wild, near_plain("GET", PATHS[:5]))


async def make_runs(h: Harness) -> dict[str, str]:
    """A run of `warm` (staging), `once` (production) and `theirs` (the other account)."""
    ids: dict[str, str] = {}
    for slug, token, headers in [
        ("warm", TOKEN_A, NEW),
        ("once", TOKEN_A, NEW),
        ("theirs", TOKEN_B, {}),
    ]:
        r = await h.post(f"/api/v1/jobs/{slug}/actions/run", None, token=token, headers=headers)
        assert r.status_code == 200, await r.get_data()
        ids[slug] = (await r.get_json())["data"]["id"]
    ids["WARM"] = ids["warm"].upper()
    return ids


def naming(request: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    return {**request, "path": request["path"].format(**ids)}


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(requests, min_size=1, max_size=30))
async def test_every_answer_is_the_routes_answer(
    tmp_path: Path, batch: list[dict[str, Any]]
) -> None:
    async with prepared(tmp_path / f"ex{next(_counter)}") as h:
        ids = await make_runs(h)
        fast = served_app(h.ctx, h.config.server)
        routed = served_app(h.ctx, h.config.server, fast_paths=False)
        for drawn in batch:
            request = naming(drawn, ids)
            assert await answer(fast, request) == await answer(routed, request), request


async def test_plain_run_reads_never_reach_the_app_and_the_rest_always_do(tmp_path: Path) -> None:
    async with prepared(tmp_path) as h:
        ids = await make_runs(h)
        spy = Spy()
        layer = FastRunReads(spy, h.ctx)  # type: ignore[arg-type]
        for request in [
            plain(f"/api/v1/runs/{ids['warm']}"),
            plain(f"/api/v1/runs/{ids['WARM']}", jobsd_version="2026-08-07"),
            plain(f"/api/v1/runs/{ids['warm']}", STAGING),  # no version's guard on runs
            plain(f"/api/v1/runs/{ids['theirs']}", TOKEN_B),
        ]:
            status, _, body, route = await answer(layer, request)
            assert (status, route) == (200, "/api/v1/runs/{run_id}"), body
            assert ids["warm"].encode() in body or ids["theirs"].encode() in body
        assert spy.paths == []
        for request in [
            plain(f"/api/v1/runs/{ids['once']}", STAGING),  # outside its environments: 404
            plain(f"/api/v1/runs/{ids['theirs']}"),  # another account's: 404
            plain("/api/v1/runs/not-a-uuid"),  # 404
            plain(f"/api/v1/runs/{ids['warm']}", "wrong"),  # 401
            plain(f"/api/v1/runs/{ids['warm']}", content_length="2"),  # a body
            {**plain(f"/api/v1/runs/{ids['warm']}"), "method": "HEAD"},
        ]:
            assert (await answer(layer, request))[0] == 599, request
        assert len(spy.paths) == 6
        # A read that fails in any way is the app's too, having sent nothing.
        reader = h.store.engine._point_conn  # type: ignore[attr-defined]
        assert isinstance(reader, sqlite3.Connection)
        reader.close()
        assert (await answer(layer, plain(f"/api/v1/runs/{ids['warm']}")))[0] == 599
        h.store.engine._point_conn = None  # type: ignore[attr-defined]
