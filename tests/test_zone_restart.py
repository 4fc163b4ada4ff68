"""A restart in the middle of a daylight-saving change fires each slot at most once.

The real daemon and store on MockClock, its wall clock anchored before a
change night in New York, restarted (once stopped cleanly, once killed with
no stop sequence) inside the change: in the repeated hour of a fall-back,
and right across a spring-forward. ISC cron's rule (VERSIONS.md): a
wall-clock job fires a repeated local time once, at its first occurrence,
and a skipped one once, right after the change; the store's `next_run_at`
(a UTC instant) carries that across the restart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.test_retry_runs import post, running, runs_of

NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`, which `running` starts


@pytest.mark.parametrize("crash", [False, True])
@pytest.mark.parametrize(
    ("schedule", "first", "awake_s", "restart", "fired", "next_run_at"),
    [
        # 01:30 happens twice on 2026-11-01 (EDT, then EST): fired at 05:30Z only.
        (
            "30 1 * * *",
            utc(2026, 11, 1, 5, 29, 50),
            14,
            utc(2026, 11, 1, 6, 29, 50),
            ["2026-11-01T05:30:00Z"],
            "2026-11-02T06:30:00Z",
        ),
        # 02:30 does not happen on 2026-03-08: fired once at 03:00 EDT (07:00Z),
        # late, the daemon down from just before the change to just after it.
        (
            "30 2 * * *",
            utc(2026, 3, 8, 6, 59, 50),
            5,
            utc(2026, 3, 8, 7, 0, 5),
            ["2026-03-08T07:00:00Z"],
            "2026-03-09T06:30:00Z",
        ),
    ],
)
async def test_each_slot_fires_once_across_a_restart_in_a_change(
    tmp_path: Path,
    mock_clock: trio.testing.MockClock,
    crash: bool,
    schedule: str,
    first: datetime,
    awake_s: float,
    restart: datetime,
    fired: list[str],
    next_run_at: str,
) -> None:
    async with running(tmp_path, anchor=first) as rig:
        attributes = {
            "name": "local",
            "schedule": schedule,
            "timezone": NY,
            "configuration": {"url": f"{rig.target.url}/ok"},
            "environments": {"production": {"enabled": True}},
        }
        await post(
            rig.client,
            "/api/v1/jobs",
            {"data": {"type": "job", "id": "local", "attributes": attributes}},
        )
        await trio.sleep(awake_s)
        if crash:
            rig.daemon.crash()
    async with running(tmp_path, anchor=restart) as rig:
        await trio.sleep(90)
        runs = await runs_of(rig.client, "local")
        job = (await rig.client.get("/api/v1/jobs/local")).json()["data"]["attributes"]
    assert [r["attributes"]["scheduled_for"] for r in runs] == fired
    # Each ran (the target is a new one after the restart: an outcome says nothing here).
    assert all(r["attributes"]["started_at"] is not None for r in runs)
    assert job["environments"]["production"]["next_run_at"] == next_run_at
