"""The plan's `max_jobs`: how many jobs an account may store, of any kind and
state, in both versions (README "Bounds on an account's jobs").

`active_jobs_limit` leaves disabled jobs (2026-06-04) and one-offs
(2026-08-07) uncounted, as the spec says, so without this bound one account
could store jobs of up to 5 MiB each until the disk, everyone's, is full.
Every response is checked against its version's served spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.api.conformance import NEW, SEED, Versioned, spec
from tests.conftest import TOKEN_B, Harness, job_doc, make_harness

BOUND = 3


def harness(tmp_path: Path, max_jobs: int = BOUND, **kw: Any) -> Any:
    """acme's plan: `max_jobs` and no `active_jobs_limit`, so only the bound refuses."""
    return make_harness(tmp_path, active_jobs_limit=-1, plan=f"max_jobs = {max_jobs}", **kw)


async def stored(h: Harness, account: str = "acme") -> int:
    """Rows a create would add to: live jobs, whatever their kind or state."""

    def q(conn: Any) -> int:
        return int(
            conn.execute(
                "SELECT count(*) FROM jobs WHERE account_id = ? AND deleted_at_us IS NULL",
                (account,),
            ).fetchone()[0]
        )

    return await h.store.engine.read(q)


def refused(reply: Any) -> None:
    assert reply.status == 403, reply.body
    (error,) = reply.body["errors"]
    assert error["code"] == "jobs_limit" and error["status"] == "403"
    assert f"{BOUND} jobs" in error["detail"]


@pytest.mark.parametrize("version", [SEED, NEW])
async def test_at_the_bound_a_create_passes_and_one_past_is_403(
    tmp_path: Path, version: str
) -> None:
    async with harness(tmp_path) as h:
        v = Versioned(h, version)
        for n in range(BOUND):
            assert (await v.post_job(job_doc(f"j{n}"))).status == 201
        refused(await v.post_job(job_doc("past")))
        assert (await v.get_job("past")).status == 404
        assert await stored(h) == BOUND
        # a write to a job already stored is no new job: never refused
        assert (await v.put_job("j0", job_doc("j0", name="renamed"))).status == 200
        assert (await v.get_job("j0")).body["data"]["attributes"]["name"] == "renamed"


async def test_disabled_jobs_count_under_2026_06_04(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = Versioned(h, SEED)
        for n in range(BOUND):
            assert (await v.post_job(job_doc(f"off{n}", enabled=False))).status == 201
        assert (await v.usage()).body["data"]["attributes"]["active_jobs"] == 0
        refused(await v.post_job(job_doc("past", enabled=False)))
        refused(await v.post_job(job_doc("on")))
        assert await stored(h) == BOUND


async def test_one_offs_and_manual_jobs_count_under_2026_08_07(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = Versioned(h, NEW)
        assert (await v.post_job(job_doc("once", schedule="2026-06-06T03:00:00Z"))).status == 201
        assert (await v.post_job(job_doc("soon", schedule="now"))).status == 201
        assert (await v.post_job(job_doc("by-hand", schedule=None))).status == 201
        refused(await v.post_job(job_doc("later", schedule="2026-06-07T03:00:00Z")))
        assert await stored(h) == BOUND


async def test_deleting_a_job_frees_a_place(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = Versioned(h, NEW)
        for n in range(BOUND):
            assert (await v.post_job(job_doc(f"j{n}"))).status == 201
        refused(await v.post_job(job_doc("next")))
        assert (await v.delete_job("j1")).status == 204
        assert (await v.post_job(job_doc("next"))).status == 201
        refused(await v.post_job(job_doc("j1")))  # the slug freed, not another place


async def test_another_account_is_unaffected(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for n in range(BOUND):
            assert (await h.post("/api/v1/jobs", job_doc(f"j{n}"))).status_code == 201
        other = Versioned(h, SEED, token=TOKEN_B)
        for n in range(BOUND + 2):
            assert (await other.post_job(job_doc(f"j{n}"))).status == 201
        assert await stored(h, "other") == BOUND + 2


async def test_unlimited(tmp_path: Path) -> None:
    async with harness(tmp_path, max_jobs=-1) as h:
        v = Versioned(h, NEW)
        for n in range(BOUND + 2):
            assert (await v.post_job(job_doc(f"j{n}", schedule="now"))).status == 201
        assert await stored(h) == BOUND + 2


async def test_concurrent_creates_cannot_both_take_the_last_place(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for n in range(BOUND - 1):
            assert (await h.post("/api/v1/jobs", job_doc(f"j{n}"))).status_code == 201
        statuses: list[int] = []

        async def create(slug: str) -> None:
            statuses.append((await h.post("/api/v1/jobs", job_doc(slug))).status_code)

        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(create, f"race{n}")
        assert sorted(statuses) == [201] + [403] * 5
        assert await stored(h) == BOUND


async def test_the_bound_is_checked_before_active_jobs_limit(tmp_path: Path) -> None:
    """Both reached: the answer says what helps (creating it disabled would not)."""
    async with make_harness(tmp_path, active_jobs_limit=BOUND, plan=f"max_jobs = {BOUND}") as h:
        for n in range(BOUND):
            assert (await h.post("/api/v1/jobs", job_doc(f"j{n}"))).status_code == 201
        r = await h.post("/api/v1/jobs", job_doc("past"))
        assert (await r.get_json())["errors"][0]["code"] == "jobs_limit"


async def test_an_omitted_bound_is_100000(tmp_path: Path) -> None:
    async with make_harness(tmp_path) as h:
        assert h.config.plans["free"].max_jobs == 100_000
        assert h.config.plans["big"].max_jobs == 100_000


@pytest.mark.parametrize("version", [SEED, NEW])
def test_the_served_spec_names_the_code_on_create(version: str) -> None:
    described = spec(version)["paths"]["/api/v1/jobs"]["post"]["responses"]["403"]["description"]
    assert "code jobs_limit" in described and "max_jobs" in described
    # a replace never counts against it
    put = spec(version)["paths"]["/api/v1/jobs/{job_id}"]["put"]["responses"]["403"]
    assert "code jobs_limit" not in put["description"]


async def test_the_refusal_says_what_would_free_a_place(tmp_path: Path) -> None:
    """Under 2026-08-07 counting a paused or disabled job still counts: the 403
    must not send its client to pause one, or to create this one disabled."""
    pinned = 'api_version = "2026-08-07"'
    async with make_harness(tmp_path, acme=pinned, active_jobs_limit=1) as h:
        v = Versioned(h, NEW)
        assert (await v.post_job(job_doc("one", environments={}))).status == 201
        r = await v.post_job(job_doc("two", environments={"production": {"enabled": False}}))
        assert r.status == 403 and r.body["errors"][0]["code"] == "active_jobs_limit"
        detail = r.body["errors"][0]["detail"]
        assert "pause" not in detail and "disabled" not in detail, detail
        assert "delete" in detail and "one-off" in detail, detail
    async with make_harness(tmp_path / "seed", active_jobs_limit=1) as h:
        v = Versioned(h, SEED)
        assert (await v.post_job(job_doc("one", enabled=True))).status == 201
        r = await v.post_job(job_doc("two", enabled=True))
        assert r.status == 403
        assert "disabled" in r.body["errors"][0]["detail"]


async def test_a_put_refused_for_the_limit_does_not_say_create(tmp_path: Path) -> None:
    """Enabling a paused job by PUT past `active_jobs_limit` is refused (403); its
    detail must speak of this job as it is, one that exists: leave it disabled,
    not "create this one disabled" as for a POST."""
    async with make_harness(tmp_path, active_jobs_limit=1) as h:
        v = Versioned(h, SEED)
        assert (await v.post_job(job_doc("one", enabled=True))).status == 201
        assert (await v.post_job(job_doc("two", enabled=False))).status == 201
        r = await v.put_job("two", job_doc("two", enabled=True))
        assert r.status == 403 and r.body["errors"][0]["code"] == "active_jobs_limit", r.body
        detail = r.body["errors"][0]["detail"]
        assert "create" not in detail and "leave this one disabled" in detail, detail
        posted = await v.post_job(job_doc("three", enabled=True))
        assert posted.status == 403
        assert "create this one disabled" in posted.body["errors"][0]["detail"]
