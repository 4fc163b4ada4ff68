"""Pagination invariants, by hypothesis, through the real app and store.

Jobs: walking every page yields each job exactly once, newest first.
Runs: walking `links.next` while runs are being added yields each run that
existed when the walk began exactly once, newest first, and never repeats
one; runs added during the walk never appear behind the cursor.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import job_doc, make_harness

_counter = itertools.count()
PROFILE = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROFILE
@given(count=st.integers(0, 25), size=st.integers(1, 8), disabled=st.sets(st.integers(0, 24)))
async def test_jobs_pages_cover_every_job_once(
    tmp_path: Path, count: int, size: int, disabled: set[int]
) -> None:
    async with make_harness(tmp_path / f"ex{next(_counter)}", active_jobs_limit=-1) as h:
        created = []
        for i in range(count):
            r = await h.post("/api/v1/jobs", job_doc(f"j{i:02d}", enabled=i not in disabled))
            assert r.status_code == 201
            created.append(f"j{i:02d}")
        seen: list[str] = []
        for number in range(1, count // size + 3):
            body = await (
                await h.get(
                    "/api/v1/jobs",
                    query_string={
                        "page[size]": str(size),
                        "page[number]": str(number),
                        "meta[total]": "true",
                    },
                )
            ).get_json()
            assert body["meta"]["pagination"]["total"] == count
            assert body["meta"]["pagination"]["total_pages"] == -(-count // size)
            assert len(body["data"]) <= size
            seen += [j["id"] for j in body["data"]]
        assert seen == list(reversed(created))
        enabled = await (
            await h.get("/api/v1/jobs", query_string={"filter[enabled]": "true"})
        ).get_json()
        assert [j["id"] for j in enabled["data"]] == [
            s for i, s in reversed(list(enumerate(created))) if i not in disabled
        ]


@PROFILE
@given(
    initial=st.integers(0, 30),
    size=st.integers(1, 7),
    added=st.lists(st.integers(0, 4), max_size=12),
)
async def test_runs_walk_never_repeats_or_skips(
    tmp_path: Path, initial: int, size: int, added: list[int]
) -> None:
    async with make_harness(tmp_path / f"ex{next(_counter)}") as h:
        await h.post("/api/v1/jobs", job_doc("a"))
        await h.post("/api/v1/jobs", job_doc("b"))
        ids = []
        for i in range(initial):
            r = await h.post(f"/api/v1/jobs/{'ab'[i % 2]}/actions/run")
            ids.append((await r.get_json())["data"]["id"])
        url = f"/api/v1/runs?page[size]={size}"
        seen: list[str] = []
        additions = iter(added)
        for _ in range(initial + 2):
            body = await (await h.get(url)).get_json()
            assert body["meta"]["page_size"] == size
            seen += [r["id"] for r in body["data"]]
            for _ in range(next(additions, 0)):
                await h.post("/api/v1/jobs/a/actions/run")
            nxt = body["links"]["next"]
            if nxt is None:
                break
            parts = urlsplit(nxt)
            assert parts.scheme == "http" and parts.netloc
            assert parse_qs(parts.query)["page[size]"] == [str(size)]
            url = f"{parts.path}?{parts.query}"
        assert seen == list(reversed(ids))
        assert len(seen) == len(set(seen))


async def test_runs_filter_and_bad_cursor(tmp_path: Path) -> None:
    async with make_harness(tmp_path) as h:
        await h.post("/api/v1/jobs", job_doc("a"))
        await h.post("/api/v1/jobs", job_doc("b"))
        for slug in "abab":
            await h.post(f"/api/v1/jobs/{slug}/actions/run")
        body = await (
            await h.get("/api/v1/runs", query_string={"filter[job]": "a", "page[size]": "1"})
        ).get_json()
        assert [r["attributes"]["job"] for r in body["data"]] == ["a"]
        assert "filter[job]=a&" in body["links"]["next"]
        for name, value in [
            ("page[after]", "garbage"),
            ("page[size]", "0"),
            ("page[size]", "1001"),
            ("page[size]", "x"),
        ]:
            r = await h.get("/api/v1/runs", query_string={name: value})
            assert r.status_code == 400
            assert (await r.get_json())["errors"][0]["source"]["parameter"] == name
        r = await h.get("/api/v1/jobs", query_string={"page[size]": "1001"})  # the same bound
        assert r.status_code == 400
        assert (await r.get_json())["errors"][0]["source"]["parameter"] == "page[size]"
        body = await (await h.get("/api/v1/runs")).get_json()
        assert body["meta"]["page_size"] == 100 and body["links"]["next"] is None
        assert (await h.get("/api/v1/runs/not-a-uuid")).status_code == 404
        missing = "8f2b1c4a-0000-4a1b-9c3d-1e2f3a4b5c6d"
        assert (await h.get(f"/api/v1/runs/{missing}")).status_code == 404
        assert (await h.post(f"/api/v1/runs/{missing}/actions/cancel")).status_code == 404
        assert (await h.post(f"/api/v1/runs/{missing}/actions/rerun")).status_code == 404


async def test_a_walk_across_the_segments_of_a_sort_meets_every_run_once(tmp_path: Path) -> None:
    """`sort=status` is a segment per status: a page that ends in one segment goes on
    in the next from its start (the cursor seeks only in its own segment)."""
    async with make_harness(tmp_path) as h:
        await h.post("/api/v1/jobs", job_doc("a"))
        ids = []
        for _ in range(4):
            r = await h.post("/api/v1/jobs/a/actions/run")
            ids.append((await r.get_json())["data"]["id"])
        for run_id in ids[::2]:  # old and new runs in both segments
            assert (await h.post(f"/api/v1/runs/{run_id}/actions/cancel")).status_code == 200
        for sort in ("status", "-status"):
            url = f"/api/v1/runs?sort={sort}&page[size]=1"
            seen: list[str] = []
            for _ in range(len(ids) + 1):
                body = await (await h.get(url)).get_json()
                seen += [r["id"] for r in body["data"]]
                nxt = body["links"]["next"]
                if nxt is None:
                    break
                parts = urlsplit(nxt)
                url = f"{parts.path}?{parts.query}"
            assert sorted(seen) == sorted(ids), sort
