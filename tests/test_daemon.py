"""The real daemon over a real socket: jobs fire, runs are recorded, it stops.

The daemon runs in-process (its whole nursery tree, hypercorn on an
ephemeral port) against a real target server on 127.0.0.1. Its wall clock
is anchored two seconds before a minute boundary so a `* * * * *` job fires
within seconds of real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import trio

from tests.conftest import JSONAPI, job_doc, make_config
from tests.inprocess import daemon_at
from tests.target import open_target

ANCHOR = datetime(2026, 6, 5, 1, 59, 58, tzinfo=UTC)


@asynccontextmanager
async def running_daemon(tmp_path: Path, **config: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with daemon_at(make_config(tmp_path, **config), ANCHOR) as daemon:
        yield daemon.client


def job(slug: str, schedule: str, url: str, **config: Any) -> dict[str, Any]:
    return job_doc(slug, name=slug, schedule=schedule, configuration={"url": url, **config})


async def create(client: httpx2.AsyncClient, doc: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/api/v1/jobs", json=doc, headers={"Content-Type": JSONAPI})
    assert r.status_code == 201, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def wait_runs(
    client: httpx2.AsyncClient, slug: str, count: int, *, terminal: bool = True
) -> list[dict[str, Any]]:
    with trio.fail_after(20):
        while True:
            r = await client.get("/api/v1/runs", params={"filter[job]": slug})
            runs: list[dict[str, Any]] = r.json()["data"]
            done = [x for x in runs if x["attributes"]["status"] not in ("PENDING", "RUNNING")]
            if len(done if terminal else runs) >= count:
                return runs
            await trio.sleep(0.05)


async def test_every_schedule_kind_fires(tmp_path: Path) -> None:
    async with open_target() as target, running_daemon(tmp_path) as client:
        assert (await client.get("/healthz")).status_code == 200
        secret = [{"name": "X-Api-Key", "value": "k3y-in-plaintext-on-the-wire"}]
        await create(client, job("now-job", "now", f"{target.url}/now", headers=secret))
        await create(client, job("later", "2026-06-05T02:00:01Z", f"{target.url}/later"))
        cron = await create(client, job("minutely", "* * * * *", f"{target.url}/cron"))
        assert cron["attributes"]["next_run_at"] == "2026-06-05T02:00:00Z"

        now_runs = await wait_runs(client, "now-job", 1)
        attrs = now_runs[0]["attributes"]
        assert attrs["status"] == "SUCCEEDED", attrs
        assert attrs["trigger"] == "SCHEDULE"
        assert attrs["request"]["headers"] == [{"name": "X-Api-Key", "value": "<redacted>"}]
        assert attrs["result"]["status"] == 200
        assert attrs["result"]["headers"]["x-target"] == "yes"
        assert attrs["result"]["body"] == '{"ok":true}'
        assert attrs["job_version"] == 1
        sent = [r for r in target.received if r.path == "/now"]
        assert sent[0].headers["x-api-key"] == "k3y-in-plaintext-on-the-wire"
        assert sent[0].headers["x-jobsd-run-id"] == now_runs[0]["id"]
        assert sent[0].headers["x-jobsd-job"] == "now-job"
        assert sent[0].headers["x-jobsd-scheduled-for"] == attrs["scheduled_for"]

        cron_runs = await wait_runs(client, "minutely", 1)
        assert cron_runs[0]["attributes"]["scheduled_for"] == "2026-06-05T02:00:00Z"
        later = await wait_runs(client, "later", 1)
        assert later[0]["attributes"]["scheduled_for"] == "2026-06-05T02:00:01Z"
        assert later[0]["attributes"]["status"] == "SUCCEEDED"
        got = (await client.get("/api/v1/jobs/later")).json()["data"]["attributes"]
        assert got["enabled"] is False and got["next_run_at"] is None
        now_job = (await client.get("/api/v1/jobs/now-job")).json()["data"]["attributes"]
        assert now_job["enabled"] is False

        usage = (await client.get("/api/v1/usage")).json()["data"]["attributes"]
        assert usage["runs_used"] >= 3


async def test_run_now_rerun_cancel_and_failures(tmp_path: Path) -> None:
    async with open_target() as target, running_daemon(tmp_path) as client:
        await create(client, job("fails", "0 0 1 1 *", f"{target.url}/status/500"))
        r = await client.post("/api/v1/jobs/fails/actions/run")
        assert r.status_code == 200 and r.json()["data"]["attributes"]["status"] == "PENDING"
        runs = await wait_runs(client, "fails", 1)
        attrs = runs[0]["attributes"]
        assert attrs["status"] == "FAILED" and attrs["failure_reason"] == "NON_SUCCESS_STATUS"
        assert attrs["result"]["status"] == 500 and attrs["trigger"] == "MANUAL"

        rerun = await client.post(f"/api/v1/runs/{runs[0]['id']}/actions/rerun")
        assert rerun.status_code == 200
        assert rerun.json()["data"]["attributes"]["rerun_of"] == runs[0]["id"]
        runs = await wait_runs(client, "fails", 2)
        assert runs[0]["attributes"]["trigger"] == "RERUN"

        await create(client, job("hangs", "0 0 1 1 *", f"{target.url}/hang", timeout=30))
        run_id = (await client.post("/api/v1/jobs/hangs/actions/run")).json()["data"]["id"]
        with trio.fail_after(10):
            while not any(x.path == "/hang" for x in target.received):
                await trio.sleep(0.02)
        r = await client.post(f"/api/v1/runs/{run_id}/actions/cancel")
        assert r.status_code == 200 and r.json()["data"]["attributes"]["status"] == "CANCELED"
        assert (await client.post(f"/api/v1/runs/{run_id}/actions/cancel")).status_code == 409
        await trio.sleep(0.2)
        final = (await client.get(f"/api/v1/runs/{run_id}")).json()["data"]["attributes"]
        assert final["status"] == "CANCELED"

        await create(client, job("blocked", "0 0 1 1 *", "http://127.0.0.2:9/x"))
        await client.post("/api/v1/jobs/blocked/actions/run")
        attrs = (await wait_runs(client, "blocked", 1))[0]["attributes"]
        assert attrs["failure_reason"] == "SSRF_BLOCKED", attrs


async def test_quota_exceeded(tmp_path: Path) -> None:
    async with open_target() as target, running_daemon(tmp_path, runs_included=1) as client:
        await create(client, job("q", "0 0 1 1 *", f"{target.url}/q"))
        await client.post("/api/v1/jobs/q/actions/run")
        await wait_runs(client, "q", 1)
        await client.post("/api/v1/jobs/q/actions/run")
        runs = await wait_runs(client, "q", 2)
        assert runs[0]["attributes"]["failure_reason"] == "QUOTA_EXCEEDED"
        assert runs[0]["attributes"]["started_at"] is None
        assert len([r for r in target.received if r.path == "/q"]) == 1
        usage = (await client.get("/api/v1/usage")).json()["data"]["attributes"]
        assert usage["runs_used"] == 1
