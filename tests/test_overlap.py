"""`overlap_policy` through the real daemon on MockClock, against a real HTTP server.

A `* * * * *` job whose request hangs longer than a minute: with `SKIP` the
slot that comes due while the previous run is still RUNNING (or PENDING,
a held retry included) sends nothing and is recorded CANCELED, unmetered,
its `error` naming the run still going; the next slot after that run ended
fires normally. With `ALLOW` (the default) every slot fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.test_retry_runs import Rig, db_counts, policy, post, running, runs_of


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`, which `running` starts


async def cron_job(rig: Rig, slug: str, path: str, timeout: int, **attrs: Any) -> None:
    attributes = {
        "name": slug,
        "schedule": "* * * * *",
        "configuration": {"url": f"{rig.target.url}{path}", "timeout": timeout},
        "environments": {"production": {"enabled": True}},
        **attrs,
    }
    await post(
        rig.client, "/api/v1/jobs", {"data": {"type": "job", "id": slug, "attributes": attributes}}
    )


async def until_runs(rig: Rig, slug: str, count: int) -> list[dict[str, Any]]:
    with trio.fail_after(3600):
        while db_counts(rig.db, slug)[0] < count:
            await trio.sleep(5)
    return await runs_of(rig.client, slug)


async def until_left_pending(rig: Rig, slug: str, count: int) -> list[dict[str, Any]]:
    """A slot's run is counted once fired, PENDING until an executor claims it
    (under load, after the count is seen): wait for the first `count` to leave PENDING."""
    runs = await until_runs(rig, slug, count)
    with trio.fail_after(3600):
        while any(r["attributes"]["status"] == "PENDING" for r in runs[:count]):
            await trio.sleep(1)
            runs = await until_runs(rig, slug, count)
    return runs


@pytest.mark.parametrize("overlap", ["SKIP", "ALLOW"])
async def test_a_slot_due_while_a_run_is_going(
    tmp_path: Path, mock_clock: trio.testing.MockClock, overlap: str
) -> None:
    async with running(tmp_path) as rig:
        # The first run hangs 90 s (its timeout): the second slot comes due while it runs.
        await cron_job(rig, "hang", "/hang", timeout=90, overlap_policy=overlap)
        runs = await until_left_pending(rig, "hang", 3)
        with trio.fail_after(3600):  # a claimed run's request may still be on its way
            while len([r for r in rig.target.received if r.path == "/hang"]) < 2:
                await trio.sleep(1)
        usage = (await rig.client.get("/api/v1/usage")).json()["data"]["attributes"]
        job = (await rig.client.get("/api/v1/jobs/hang")).json()["data"]["attributes"]
    first, second, third = (r["attributes"] for r in runs[:3])
    assert job["overlap_policy"] == overlap
    assert [first["scheduled_for"], second["scheduled_for"], third["scheduled_for"]] == [
        "2026-06-05T02:01:00Z",
        "2026-06-05T02:02:00Z",
        "2026-06-05T02:03:00Z",
    ]
    if overlap == "ALLOW":
        assert second["status"] != "CANCELED" and second["started_at"] is not None
        return
    assert (second["status"], second["started_at"], second["failure_reason"]) == (
        "CANCELED",
        None,
        None,
    )
    assert second["error"].startswith(f"skipped: run {runs[0]['id']} ")
    assert "RUNNING" in second["error"] and second["trigger"] == "SCHEDULE"
    # The first run ended (timed out at 02:02:30): the next slot fired normally.
    assert first["failure_reason"] == "TIMEOUT" and third["started_at"] is not None
    assert len([r for r in rig.target.received if r.path == "/hang"]) == 2
    assert usage["runs_used"] == 2  # the skipped slot was not metered


async def test_a_held_retry_counts_as_a_run_going(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as rig:
        await policy(rig.client, "later", max_retries=1, delay_seconds=100, retry_statuses=["5xx"])
        await cron_job(
            rig, "fails", "/status/500", timeout=5, overlap_policy="SKIP", retry_policy="later"
        )
        runs = await until_runs(rig, "fails", 4)
    facts = [
        (r["attributes"]["trigger"], r["attributes"]["status"], r["attributes"]["scheduled_for"])
        for r in runs[:4]
    ]
    # 02:01 fails; its retry is held until 02:02:40; the 02:02 slot is skipped for it;
    # the retry runs; 02:03 fires normally.
    assert facts[0][:2] == ("SCHEDULE", "FAILED")
    assert facts[1][0] == "RETRY" and facts[1][2] == "2026-06-05T02:02:40Z"
    assert facts[2] == ("SCHEDULE", "CANCELED", "2026-06-05T02:02:00Z")
    assert runs[2]["attributes"]["error"].startswith(f"skipped: run {runs[1]['id']} ")
    assert facts[3][:1] == ("SCHEDULE",) and facts[3][2] == "2026-06-05T02:03:00Z"


async def test_a_one_off_fires_whatever_its_overlap_policy(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """Skipping a one-off's only slot would mean it never runs: SKIP governs cron slots."""
    async with running(tmp_path) as rig:
        attributes = {
            "name": "once",
            "schedule": "2026-06-05T02:00:30Z",
            "overlap_policy": "SKIP",
            "configuration": {"url": f"{rig.target.url}/hang", "timeout": 60},
            "environments": {"production": {}},
        }
        doc = {"data": {"type": "job", "id": "once", "attributes": attributes}}
        await post(rig.client, "/api/v1/jobs", doc)
        await post(rig.client, "/api/v1/jobs/once/actions/run", {"environment": "production"})
        runs = await until_left_pending(rig, "once", 2)
    manual, slot = (r["attributes"] for r in runs[:2])
    assert manual["trigger"] == "MANUAL" and slot["trigger"] == "SCHEDULE"
    assert slot["status"] != "CANCELED" and slot["started_at"] is not None
