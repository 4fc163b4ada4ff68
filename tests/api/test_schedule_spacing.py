"""A cron's fields are separated by spaces or tabs, as crontab separates them.

Found by the API model machine (tests/test_api_model.py): `str.split()`
splits on any Unicode space, so `"0\u00a00 * * *"` (a no-break space inside
what reads as four fields) was taken as `0 0 * * *`, and a line or
paragraph separator as a field's end; the schedule was stored as written.
No cron (Vixie, cronie, ISC) reads such a line, and the job's owner would
see four fields where jobsd fires on five. Such a schedule is now a `422`
that names the character, in a job's schedule and in an environment's.
"""

from __future__ import annotations

import pytest

from tests.conftest import Harness, job_doc

ODD_SPACES = [
    "0\u00a00 * * *",
    "0 2 * *\u20031",
    "0 2 * * 1\u2028",
    "\u30000 2 * * *",
    "0\n0 * * *",  # a line end between fields: two crontab lines, not one
    "0 0 * *\r\n*",
]


@pytest.mark.parametrize("schedule", ODD_SPACES)
async def test_a_cron_split_by_an_odd_space_is_refused(harness: Harness, schedule: str) -> None:
    r = await harness.post("/api/v1/jobs", job_doc("odd", schedule=schedule))
    assert r.status_code == 422, await r.get_json()
    (error,) = (await r.get_json())["errors"]
    assert error["code"] == "invalid_schedule"
    assert error["source"]["pointer"] == "/data/attributes/schedule"
    assert "U+" in error["detail"], error["detail"]
    assert (await (await harness.get("/api/v1/jobs")).get_json())["data"] == []


async def test_an_environments_cron_split_by_an_odd_space_is_refused(harness: Harness) -> None:
    envs = {"production": {"enabled": True, "schedule": "0\u00a00 * * *"}}
    r = await harness.post(
        "/api/v1/jobs", job_doc("odd", environments=envs), headers={"Jobsd-Version": "2026-08-07"}
    )
    assert r.status_code == 422, await r.get_json()
    (error,) = (await r.get_json())["errors"]
    assert error["source"]["pointer"] == "/data/attributes/environments/production/schedule"


async def test_spaces_and_tabs_still_separate_and_surround(harness: Harness) -> None:
    r = await harness.post("/api/v1/jobs", job_doc("tabs", schedule=" 0\t2  * * *\n"))
    assert r.status_code == 201, await r.get_json()
