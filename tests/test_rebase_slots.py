"""The store's side of a step back of the clock (`jobsd.store.slots.rebase`).

Every `next_run_at` was planned on the clock before the step. The scheduler
asks the store, in batches, to plan each enabled recurring environment's
next fire again from the new now when its cadence has an earlier slot; the
scheduler's side is in tests/test_clock_watch.py. Real SQLite, a batch of
one environment, so that going on from a batch's end is exercised too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.api.conformance import Versioned
from tests.conftest import job_doc, make_harness

BACK = datetime(2026, 6, 4, 23, 58, tzinfo=UTC)  # the harness's clock reads 2026-06-05 02:00


async def test_a_step_back_plans_recurring_next_fires_again_and_nothing_else(
    tmp_path: Path,
) -> None:
    acme = 'environments = ["production", "staging"]'
    async with make_harness(tmp_path, acme=acme, active_jobs_limit=-1) as h:
        v = Versioned(h)
        on = {"enabled": True}
        kathmandu = {"enabled": True, "schedule": "0 2 * * *", "timezone": "Asia/Kathmandu"}
        docs = [
            job_doc(
                "every5",
                schedule="*/5 * * * *",
                environments={"production": on, "staging": kathmandu},
            ),
            job_doc(
                "paused", schedule="*/5 * * * *", environments={"production": {"enabled": False}}
            ),
            job_doc("once", schedule="2026-06-05T03:00:00Z", environments={"production": on}),
            job_doc("hourly", schedule="0 * * * *", environments={"production": on}),
        ]
        for doc in docs:
            assert (await v.post_job(doc)).status == 201
        after, moved, batches = (-1, ""), 0, 0
        while True:
            count, going_on = await h.store.runs.rebase_slots(BACK, after, 1)
            moved, batches = moved + count, batches + 1
            if going_on is None:
                break
            after = going_on
        shown = {}
        for slug in ("every5", "paused", "once", "hourly"):
            envs = (await v.get_job(slug)).body["data"]["attributes"]["environments"]
            shown[slug] = {env: entry["next_run_at"] for env, entry in envs.items()}
    assert shown == {
        "every5": {"production": "2026-06-05T00:00:00Z", "staging": "2026-06-05T20:15:00Z"},
        "paused": {"production": None},
        "once": {"production": "2026-06-05T03:00:00Z"},
        "hourly": {"production": "2026-06-05T00:00:00Z"},
    }
    assert moved == 2 and batches >= 4  # staging's 02:00 in Kathmandu was already the next
