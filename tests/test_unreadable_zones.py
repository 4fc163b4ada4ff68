"""A cadence stored when it was valid that this jobsd can no longer read.

`tzdata` has dropped zone names before (`US/Pacific-New` in 2020b,
`Canada/East-Saskatchewan` in 2017c), and a database moved to an install
with an older `tzdata` meets names it does not know yet. The job was valid
when written; now it cannot fire. It must not take the daemon down (the
scheduler raised while tracking it, at every start), nor make its job's
writes a 500: the job is paused saying why, and a write that keeps the
zone is a 422 at the attribute that holds it. The stored name is set in
the file directly, as an upgrade of `tzdata` would leave it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.conftest import Harness, job_doc, make_harness
from tests.test_retry_runs import NEW, SEED, T, post, running, runs_of

GONE = "US/Pacific-New"  # in tzdata until 2020b


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`, which `running` starts


def set_zone(db: Path, zone: str, where: str = "1") -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"UPDATE jobs SET timezone = ? WHERE {where}", (zone,))
        conn.commit()
    finally:
        conn.close()


def job_attributes(slug: str, url: str, schedule: str, zone: str | None) -> dict[str, object]:
    attributes = {
        "name": slug,
        "schedule": schedule,
        "timezone": zone,
        "configuration": {"url": url},
        "environments": {"production": {"enabled": True}},
    }
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


async def test_a_stored_zone_tzdata_no_longer_ships_pauses_its_job_not_the_daemon(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as rig:
        url = f"{rig.target.url}/ok"
        await post(
            rig.client, "/api/v1/jobs", job_attributes("kyiv", url, "*/5 * * * *", "Europe/Kyiv")
        )
        await post(rig.client, "/api/v1/jobs", job_attributes("plain", url, "*/5 * * * *", None))
    set_zone(rig.db, GONE, "slug = 'kyiv'")
    async with running(tmp_path, anchor=T) as rig:
        assert (await rig.client.get("/healthz")).status_code == 200
        await trio.sleep(11 * 60)
        kyiv = (await rig.client.get("/api/v1/jobs/kyiv", headers=NEW)).json()["data"]
        seed = (await rig.client.get("/api/v1/jobs/kyiv", headers=SEED)).json()["data"]
        fired = [r["attributes"]["scheduled_for"] for r in await runs_of(rig.client, "plain")]
        assert await runs_of(rig.client, "kyiv") == []
    production = kyiv["attributes"]["environments"]["production"]
    assert production["enabled"] is False and production["next_run_at"] is None
    assert GONE in production["paused_reason"] and "enable it again" in production["paused_reason"]
    assert seed["attributes"]["paused_reason"] == production["paused_reason"]
    assert fired == ["2026-06-05T02:05:00Z", "2026-06-05T02:10:00Z"]  # the others fire on


async def set_zone_in(h: Harness, zone: str) -> None:
    await h.store.engine.write(lambda c: c.execute("UPDATE jobs SET timezone = ?", (zone,)))


async def test_a_put_keeping_a_zone_tzdata_no_longer_ships_is_a_422(tmp_path: Path) -> None:
    async with make_harness(tmp_path) as h:
        doc = job_doc("kyiv", schedule="*/5 * * * *", timezone="Europe/Kyiv")
        assert (await h.post("/api/v1/jobs", doc)).status_code == 201
        await set_zone_in(h, GONE)
        # The seed version keeps an omitted extension: a new cadence in the stored zone.
        r = await h.put("/api/v1/jobs/kyiv", job_doc("kyiv", schedule="*/7 * * * *"))
        assert r.status_code == 422, await r.get_json()
        (error,) = (await r.get_json())["errors"]
        assert error["source"]["pointer"] == "/data/attributes/timezone"
        assert error["code"] == "invalid_timezone" and GONE in error["detail"]
        # Nothing changed; naming a zone that exists mends it.
        job = (await (await h.get("/api/v1/jobs/kyiv")).get_json())["data"]["attributes"]
        assert (job["schedule"], job["version"]) == ("*/5 * * * *", 1)
        mended = job_doc("kyiv", schedule="*/7 * * * *", timezone="Europe/Kyiv")
        assert (await h.put("/api/v1/jobs/kyiv", mended)).status_code == 200


async def test_waking_an_environment_whose_zone_tzdata_no_longer_ships_pauses_it(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A start whose config lists an environment again computes its next fire
    (`jobsd.store.env_sync`): there too, the zone failed the whole start."""
    async with running(tmp_path) as rig:
        doc = job_attributes("kyiv", f"{rig.target.url}/ok", "*/5 * * * *", "Europe/Kyiv")
        doc["data"]["attributes"]["environments"] = {  # type: ignore[index]
            "production": {"enabled": True},
            "staging": {"enabled": True},
        }
        await post(rig.client, "/api/v1/jobs", doc)
    set_zone(rig.db, GONE)
    conn = sqlite3.connect(rig.db)
    try:  # staging as a start whose config left it out leaves it: dormant
        conn.execute(
            "UPDATE job_environments SET next_run_at_us = NULL WHERE environment = 'staging'"
        )
        conn.commit()
    finally:
        conn.close()
    async with running(tmp_path, anchor=T) as rig:
        assert (await rig.client.get("/healthz")).status_code == 200
        await trio.sleep(6 * 60)
        kyiv = (await rig.client.get("/api/v1/jobs/kyiv", headers=NEW)).json()["data"]
        assert await runs_of(rig.client, "kyiv") == []
    for entry in kyiv["attributes"]["environments"].values():
        assert entry["enabled"] is False and entry["next_run_at"] is None
        assert GONE in entry["paused_reason"]
