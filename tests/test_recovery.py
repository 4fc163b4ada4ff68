"""Start-up recovery, as a named step and through the real daemon.

`jobsd.store.recovery.recover` runs once at start, before anything serves:
runs left RUNNING by a crash become FAILED/WORKER_LOST, PENDING runs of
deleted jobs become CANCELED, and the other PENDING runs are handed to the
executors. What the scheduler owes after downtime (one catch-up per cron
job within `misfire_grace_s`, one-offs late rather than never) follows from
the jobs' `next_run_at` on its first pass.

Downtime is simulated with the daemon's clock: a first daemon runs with its
wall clock anchored at T0, is stopped (or "crashed" by cancelling its whole
nursery, so no stop sequence runs), and a second one starts on the same
files with its clock anchored later (or, once, earlier: a wall clock that
stepped back must not make a run finish before it started). The database
state is read, and where no API call can produce it, written, with plain
`sqlite3`. The real SIGKILL version of all this is tests/test_crash.py.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from jobsd.clock import Clock, to_us
from jobsd.config import Config
from jobsd.crypto import KeyRing
from jobsd.messages import RunEnded
from jobsd.runs import RunStatus
from jobsd.store import open_store
from jobsd.store.recovery import LOST_ERROR, Recovery, recover
from tests.conftest import JSONAPI, make_config
from tests.inprocess import daemon_at
from tests.target import Target, open_target
from tests.test_metrics import samples

T0 = datetime(2026, 6, 5, 0, 0, 30, tzinfo=UTC)
DELETED_ERROR = "the job was deleted before this run started"


def with_grace(config: Config, misfire_grace_s: int) -> Config:
    scheduler = config.scheduler.model_copy(update={"misfire_grace_s": misfire_grace_s})
    return config.model_copy(update={"scheduler": scheduler})


def db_rows(config: Config, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{config.storage.path}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def db_write(config: Config, sql: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(config.storage.path, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def run_row(config: Config, run_id: str) -> sqlite3.Row:
    rows = db_rows(config, "SELECT * FROM runs WHERE id = ?", (run_id,))
    assert len(rows) == 1, run_id
    return rows[0]


async def create(client: httpx2.AsyncClient, slug: str, schedule: str, url: str) -> None:
    doc = {
        "data": {
            "type": "job",
            "id": slug,
            "attributes": {"name": slug, "schedule": schedule, "configuration": {"url": url}},
        }
    }
    r = await client.post("/api/v1/jobs", json=doc, headers={"Content-Type": JSONAPI})
    assert r.status_code == 201, r.text


async def run_now(client: httpx2.AsyncClient, slug: str) -> str:
    r = await client.post(f"/api/v1/jobs/{slug}/actions/run")
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["id"])


async def runs_of(client: httpx2.AsyncClient, slug: str) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/runs", params={"filter[job]": slug})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def wait_terminal(client: httpx2.AsyncClient, run_id: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            attrs: dict[str, Any] = (await client.get(f"/api/v1/runs/{run_id}")).json()["data"][
                "attributes"
            ]
            if attrs["status"] not in ("PENDING", "RUNNING"):
                return attrs
            await trio.sleep(0.02)


async def wait_received(target: Target, path: str, count: int) -> None:
    with trio.fail_after(10):
        while len([r for r in target.received if r.path == path]) < count:
            await trio.sleep(0.01)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def received_ids(target: Target) -> list[str]:
    return [r.headers["x-jobsd-run-id"] for r in target.received]


# -- the named step ---------------------------------------------------------------


def _insert_run(conn: sqlite3.Connection, job_pk: int, slug: str, status: str, **cols: Any) -> str:
    run_id = str(uuid.uuid4())
    values = {
        "id": run_id,
        "account_id": "acme",
        "job_id": job_pk,
        "job_slug": slug,
        "environment": "production",
        "trigger": "MANUAL",
        "status": status,
        "created_at_us": to_us(T0),
        **cols,
    }
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    conn.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", tuple(values.values()))
    return run_id


async def test_recover_is_a_step_that_makes_the_record_true(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with daemon_at(config, T0) as d:
        await create(d.client, "live", "0 0 1 1 *", "http://127.0.0.1:9/x")
        await create(d.client, "gone", "0 0 1 1 *", "http://127.0.0.1:9/x")
    live_pk, gone_pk = (
        int(r["id"]) for r in db_rows(config, "SELECT id FROM jobs ORDER BY slug DESC")
    )
    started, finished = to_us(T0) + 1_000, to_us(T0) + 2_000
    conn = sqlite3.connect(config.storage.path, isolation_level=None)
    try:
        running = _insert_run(conn, live_pk, "live", "RUNNING", started_at_us=started)
        first = _insert_run(conn, live_pk, "live", "PENDING")
        of_gone = _insert_run(conn, gone_pk, "gone", "PENDING")
        second = _insert_run(conn, live_pk, "live", "PENDING")
        done = {
            _insert_run(conn, live_pk, "live", status, started_at_us=started, **extra)
            for status, extra in (
                ("SUCCEEDED", {"finished_at_us": finished}),
                ("FAILED", {"finished_at_us": finished, "failure_reason": "TIMEOUT"}),
                ("CANCELED", {"finished_at_us": finished}),
            )
        }
        conn.execute("UPDATE jobs SET deleted_at_us = ? WHERE id = ?", (finished, gone_pk))
        conn.execute("DELETE FROM job_environments WHERE job_id = ?", (gone_pk,))
    finally:
        conn.close()
    before = {r["id"]: dict(r) for r in db_rows(config, "SELECT * FROM runs")}

    now_us = to_us(T0 + timedelta(hours=1))
    async with open_store(
        config.storage.path, KeyRing.load_or_create(config.secrets.key_file), Clock(T0)
    ) as store:
        assert await recover(store.engine, now_us) == Recovery(lost=1, canceled=1, pending=2)
        # Idempotent: a crash during or right after recovery changes nothing on the next start.
        assert await recover(store.engine, now_us + 5) == Recovery(lost=0, canceled=0, pending=2)

    lost = run_row(config, running)
    assert (lost["status"], lost["failure_reason"], lost["error"]) == (
        "FAILED",
        "WORKER_LOST",
        LOST_ERROR,
    )
    assert lost["started_at_us"] == started and lost["finished_at_us"] == now_us
    canceled = run_row(config, of_gone)
    assert (canceled["status"], canceled["error"]) == ("CANCELED", DELETED_ERROR)
    assert canceled["finished_at_us"] == now_us and canceled["started_at_us"] is None
    for run_id in (first, second, *done):
        assert dict(run_row(config, run_id)) == before[run_id], "recovery touched it"


# -- through the daemon -----------------------------------------------------------


async def test_runs_in_flight_at_a_crash_are_lost_and_queued_ones_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """4 workers stuck on requests that never answer, a fifth run queued: crash."""
    config = make_config(tmp_path)
    assert config.scheduler.workers == 4
    caplog.set_level("INFO", logger="jobsd")
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            await create(d.client, "hangs", "0 0 1 1 *", f"{target.url}/hang")
            await create(d.client, "quick", "0 0 1 1 *", f"{target.url}/quick")
            hung = [await run_now(d.client, "hangs") for _ in range(4)]
            await wait_received(target, "/hang", 4)
            queued = await run_now(d.client, "quick")
            await trio.sleep(0.1)
            assert (await d.client.get(f"/api/v1/runs/{queued}")).json()["data"]["attributes"][
                "status"
            ] == "PENDING"
            d.crash()

        left = {r["id"]: r["status"] for r in db_rows(config, "SELECT id, status FROM runs")}
        assert left == {**dict.fromkeys(hung, "RUNNING"), queued: "PENDING"}
        started_us = {r: run_row(config, r)["started_at_us"] for r in hung}

        restart = T0 + timedelta(minutes=10)
        async with daemon_at(config, restart) as d:
            for run_id in hung:
                # Recovery ran before the API served: no waiting needed.
                attrs = (await d.client.get(f"/api/v1/runs/{run_id}")).json()["data"]["attributes"]
                assert attrs["status"] == "FAILED"
                assert attrs["failure_reason"] == "WORKER_LOST"
                assert attrs["error"] == LOST_ERROR
                row = run_row(config, run_id)
                assert row["started_at_us"] == started_us[run_id]
                assert to_us(restart) <= row["finished_at_us"] < to_us(restart) + 10_000_000
            attrs = await wait_terminal(d.client, queued)
            assert attrs["status"] == "SUCCEEDED", attrs
            assert instant(attrs["started_at"]) >= restart
            await trio.sleep(0.2)
            # Lost runs are never retried: one request each, ever.
            assert sorted(received_ids(target)) == sorted([*hung, queued])
    assert "recovery: 4 runs lost in flight, 0 canceled, 1 pending to run" in caplog.text


async def test_pending_runs_of_deleted_jobs_are_canceled(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            await create(d.client, "hangs", "0 0 1 1 *", f"{target.url}/hang")
            await create(d.client, "gone", "0 0 1 1 *", f"{target.url}/gone")
            await create(d.client, "kept", "0 0 1 1 *", f"{target.url}/kept")
            for _ in range(4):
                await run_now(d.client, "hangs")
            await wait_received(target, "/hang", 4)
            doomed = [await run_now(d.client, "gone") for _ in range(2)]
            kept = await run_now(d.client, "kept")
            d.crash()
        # The API cancels a deleted job's PENDING runs in the delete's own
        # transaction; a file where they survived is written by hand.
        db_write(
            config,
            "UPDATE jobs SET deleted_at_us = ? WHERE slug = 'gone'",
            (to_us(T0) + 1,),
        )
        db_write(
            config,
            "DELETE FROM job_environments "
            "WHERE job_id IN (SELECT id FROM jobs WHERE slug = 'gone')",
        )
        restart = T0 + timedelta(minutes=1)
        async with daemon_at(config, restart) as d:
            for run_id in doomed:
                attrs = (await d.client.get(f"/api/v1/runs/{run_id}")).json()["data"]["attributes"]
                assert attrs["status"] == "CANCELED"
                assert attrs["error"] == DELETED_ERROR
                assert attrs["started_at"] is None and attrs["finished_at"] is not None
            assert (await wait_terminal(d.client, kept))["status"] == "SUCCEEDED"
            await trio.sleep(0.2)
            assert not [r for r in target.received if r.path == "/gone"]
            assert len([r for r in target.received if r.path == "/kept"]) == 1


@pytest.mark.parametrize(
    ("down_until", "misfire_grace_s", "fired"),
    [
        # Missed 01:00, 02:00 and 03:00; the latest is 20 s old: one catch-up for it.
        (datetime(2026, 6, 5, 3, 0, 20, tzinfo=UTC), 60, "2026-06-05T03:00:00Z"),
        # The latest missed slot is 5 minutes old: past the grace, skip to 04:00.
        (datetime(2026, 6, 5, 3, 5, tzinfo=UTC), 60, None),
        # The same downtime within a 10-minute grace: caught up.
        (datetime(2026, 6, 5, 3, 5, tzinfo=UTC), 600, "2026-06-05T03:00:00Z"),
    ],
)
async def test_missed_cron_slots_follow_the_catch_up_rule(
    tmp_path: Path, down_until: datetime, misfire_grace_s: int, fired: str | None
) -> None:
    config = with_grace(make_config(tmp_path), misfire_grace_s)
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            await create(d.client, "hourly", "0 * * * *", f"{target.url}/hourly")
            job = (await d.client.get("/api/v1/jobs/hourly")).json()["data"]["attributes"]
            assert job["next_run_at"] == "2026-06-05T01:00:00Z"
        async with daemon_at(config, down_until) as d:
            with trio.fail_after(10):
                while True:
                    job = (await d.client.get("/api/v1/jobs/hourly")).json()["data"]["attributes"]
                    if job["next_run_at"] == "2026-06-05T04:00:00Z":
                        break
                    await trio.sleep(0.02)
            runs = await runs_of(d.client, "hourly")
            assert [r["attributes"]["scheduled_for"] for r in runs] == (
                [] if fired is None else [fired]
            )
            if fired is not None:
                attrs = await wait_terminal(d.client, runs[0]["id"])
                assert attrs["status"] == "SUCCEEDED" and attrs["trigger"] == "SCHEDULE"
                assert instant(attrs["started_at"]) >= down_until
                sent = [r.headers for r in target.received]
                assert [h["x-jobsd-scheduled-for"] for h in sent] == [fired]
            else:
                await trio.sleep(0.2)
                assert target.received == []


async def test_missed_slot_state_written_by_hand_is_caught_up(tmp_path: Path) -> None:
    """The same rule from a file edited directly: next_run_at far in the past."""
    config = make_config(tmp_path)
    now = datetime(2026, 6, 5, 2, 30, 10, tzinfo=UTC)
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            await create(d.client, "halfhour", "*/30 * * * *", f"{target.url}/h")
        db_write(
            config,
            "UPDATE job_environments SET next_run_at_us = ? "
            "WHERE job_id = (SELECT id FROM jobs WHERE slug = 'halfhour')",
            (to_us(datetime(2026, 6, 4, 12, 0, tzinfo=UTC)),),
        )
        async with daemon_at(config, now) as d:
            with trio.fail_after(10):
                while not (runs := await runs_of(d.client, "halfhour")):
                    await trio.sleep(0.02)
            assert [r["attributes"]["scheduled_for"] for r in runs] == ["2026-06-05T02:30:00Z"]
            job = (await d.client.get("/api/v1/jobs/halfhour")).json()["data"]["attributes"]
            assert job["next_run_at"] == "2026-06-05T03:00:00Z"
            await wait_terminal(d.client, runs[0]["id"])
            assert len(target.received) == 1


async def test_one_offs_due_while_down_fire_late_with_their_instant(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    restart = datetime(2026, 6, 5, 3, 0, tzinfo=UTC)
    # Far past the misfire grace (a cron slot that old would be skipped), and
    # one written with an offset: scheduled_for is still the UTC instant.
    instants = {
        "early": ("2026-06-05T01:30:00Z", "2026-06-05T01:30:00Z"),
        "offset": ("2026-06-05T04:59:59.250+02:00", "2026-06-05T02:59:59.250000Z"),
    }
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            for slug, (schedule, _) in instants.items():
                await create(d.client, slug, schedule, f"{target.url}/{slug}")
        assert db_rows(config, "SELECT count(*) AS n FROM runs")[0]["n"] == 0
        async with daemon_at(config, restart) as d:
            for slug, (_, intended) in instants.items():
                with trio.fail_after(10):
                    while not (runs := await runs_of(d.client, slug)):
                        await trio.sleep(0.02)
                assert len(runs) == 1
                attrs = await wait_terminal(d.client, runs[0]["id"])
                assert attrs["status"] == "SUCCEEDED" and attrs["trigger"] == "SCHEDULE"
                assert attrs["scheduled_for"] == intended
                assert instant(attrs["started_at"]) >= restart
                job = (await d.client.get(f"/api/v1/jobs/{slug}")).json()["data"]["attributes"]
                assert job["enabled"] is False and job["next_run_at"] is None
                [sent] = [r for r in target.received if r.path == f"/{slug}"]
                assert sent.headers["x-jobsd-scheduled-for"] == intended
                assert sent.headers["x-jobsd-run-id"] == runs[0]["id"]


async def test_a_slot_fired_just_before_a_crash_runs_once(tmp_path: Path) -> None:
    """The slot's run committed PENDING (workers busy), then the crash: run it, never refire.

    The restart comes past the misfire grace: that rule decides which slots
    fire, never whether a run already committed gets executed.
    """
    config = make_config(tmp_path)
    anchor = datetime(2026, 6, 5, 0, 59, 57, tzinfo=UTC)
    async with open_target() as target:
        async with daemon_at(config, anchor) as d:
            await create(d.client, "hangs", "0 0 1 1 *", f"{target.url}/hang")
            for _ in range(4):
                await run_now(d.client, "hangs")
            await wait_received(target, "/hang", 4)
            await create(d.client, "hourly", "0 * * * *", f"{target.url}/hourly")
            job = (await d.client.get("/api/v1/jobs/hourly")).json()["data"]["attributes"]
            assert job["next_run_at"] == "2026-06-05T01:00:00Z", "set-up took over 3 s"
            with trio.fail_after(10):
                while not (runs := await runs_of(d.client, "hourly")):
                    await trio.sleep(0.02)
            await trio.sleep(0.1)
            assert [r["attributes"]["status"] for r in runs] == ["PENDING"]
            d.crash()
        [row] = db_rows(
            config,
            "SELECT e.next_run_at_us FROM job_environments AS e JOIN jobs AS j "
            "ON j.id = e.job_id WHERE j.slug = 'hourly'",
        )
        assert row["next_run_at_us"] == to_us(datetime(2026, 6, 5, 2, tzinfo=UTC))

        async with daemon_at(config, datetime(2026, 6, 5, 1, 10, tzinfo=UTC)) as d:
            attrs = await wait_terminal(d.client, runs[0]["id"])
            assert attrs["status"] == "SUCCEEDED"
            assert attrs["scheduled_for"] == "2026-06-05T01:00:00Z"
            await trio.sleep(0.2)
            assert len(await runs_of(d.client, "hourly")) == 1
            sent = [r.headers for r in target.received if r.path == "/hourly"]
            assert [h["x-jobsd-run-id"] for h in sent] == [runs[0]["id"]]


async def test_a_clock_stepped_back_across_the_restart_keeps_run_times_ordered(
    tmp_path: Path,
) -> None:
    """Wall time may go backwards between two processes (a VM restored, a bad RTC
    corrected by NTP): recovery and the first claims must not record a run
    finishing before it started, or starting before it was created."""
    config = make_config(tmp_path)
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            await create(d.client, "hangs", "0 0 1 1 *", f"{target.url}/hang")
            await create(d.client, "gone", "0 0 1 1 *", f"{target.url}/gone")
            await create(d.client, "quick", "0 0 1 1 *", f"{target.url}/quick")
            for _ in range(4):
                await run_now(d.client, "hangs")
            await wait_received(target, "/hang", 4)
            await run_now(d.client, "gone")
            queued = await run_now(d.client, "quick")
            d.crash()
        db_write(
            config,
            "UPDATE jobs SET deleted_at_us = ? WHERE slug = 'gone'",
            (to_us(T0) + 1,),
        )
        db_write(
            config,
            "DELETE FROM job_environments "
            "WHERE job_id IN (SELECT id FROM jobs WHERE slug = 'gone')",
        )
        async with daemon_at(config, T0 - timedelta(hours=1)) as d:
            assert (await wait_terminal(d.client, queued))["status"] == "SUCCEEDED"
    rows = db_rows(config, "SELECT * FROM runs")
    assert {r["status"] for r in rows} == {"FAILED", "CANCELED", "SUCCEEDED"}
    for row in rows:
        created, started, finished = (
            row["created_at_us"],
            row["started_at_us"],
            row["finished_at_us"],
        )
        assert started is None or created <= started, dict(row)
        assert created <= finished, dict(row)
        assert started is None or started <= finished, dict(row)


async def test_runs_lost_at_a_crash_are_counted_and_logged_as_finished(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery ends runs like any other ending transaction: the restarted daemon's
    `jobsd_runs_finished_total` and its `run finished` lines include them."""
    config = make_config(tmp_path)
    async with open_target() as target:
        async with daemon_at(config, T0) as d:
            await create(d.client, "hangs", "0 0 1 1 *", f"{target.url}/hang")
            hung = await run_now(d.client, "hangs")
            await wait_received(target, "/hang", 1)
            d.crash()

        caplog.set_level("INFO", logger="jobsd.runs")
        async with daemon_at(config, T0 + timedelta(minutes=10)) as d:
            text = (await d.client.get("/metrics")).text
    lost = [
        (labels, value)
        for labels, value in samples(text, "jobsd_runs_finished_total")
        if labels["failure_reason"] == "WORKER_LOST"
    ]
    assert [(labels["account"], labels["status"], value) for labels, value in lost] == [
        ("acme", "FAILED", 1.0)
    ]
    lines = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "jobsd.runs" and r.getMessage() == "run finished"
    ]
    assert [(f["run"], f["status"], f["reason"]) for f in lines] == [
        (hung, "FAILED", "WORKER_LOST")
    ]


class Heard:
    """A run observer that keeps what it hears."""

    def __init__(self) -> None:
        self.ends: list[RunEnded] = []

    def runs_ended(self, ends: Sequence[RunEnded]) -> None:
        self.ends += ends

    def retry_scheduled(self) -> None:
        pass


async def test_a_held_retry_of_a_deleted_job_is_canceled_and_held_no_longer(
    tmp_path: Path,
) -> None:
    """A retry held for its instant whose job was deleted while down is canceled,
    and its hold goes with it: a CANCELED run left held stayed among the retries
    the scheduler reads as due at every pass (`held_before`), for good."""
    config = make_config(tmp_path)
    async with daemon_at(config, T0) as d:
        await create(d.client, "gone", "0 0 1 1 *", "http://127.0.0.1:9/x")
    (gone_pk,) = (int(r["id"]) for r in db_rows(config, "SELECT id FROM jobs"))
    due_us = to_us(T0 + timedelta(hours=2))
    finished = to_us(T0) + 2_000
    conn = sqlite3.connect(config.storage.path, isolation_level=None)
    try:
        failed = _insert_run(
            conn,
            gone_pk,
            "gone",
            "FAILED",
            started_at_us=to_us(T0) + 1_000,
            finished_at_us=finished,
            failure_reason="TIMEOUT",
        )
        held = _insert_run(
            conn,
            gone_pk,
            "gone",
            "PENDING",
            trigger="RETRY",
            retry_of=failed,
            retried_run=failed,
            retry_attempt=1,
            scheduled_for_us=due_us,
            held_until_us=due_us,
        )
        conn.execute("UPDATE jobs SET deleted_at_us = ? WHERE id = ?", (finished, gone_pk))
        conn.execute("DELETE FROM job_environments WHERE job_id = ?", (gone_pk,))
    finally:
        conn.close()
    now_us = to_us(T0 + timedelta(hours=1))
    async with open_store(
        config.storage.path, KeyRing.load_or_create(config.secrets.key_file), Clock(T0)
    ) as store:
        heard = Heard()
        recovery = await recover(store.engine, now_us, observer=heard)
        assert recovery == Recovery(lost=0, canceled=1, pending=0)
    # The observer hears of it (`jobsd_runs_finished_total`, its `run finished` line).
    assert [(e.run_id, e.status) for e in heard.ends] == [(held, RunStatus.CANCELED)]
    row = run_row(config, held)
    assert (row["status"], row["error"], row["held_until_us"]) == ("CANCELED", DELETED_ERROR, None)
    assert db_rows(config, "SELECT id FROM runs WHERE held_until_us IS NOT NULL") == []
