"""Failure alerts and auto-pause through the real daemon, against real servers on 127.0.0.1.

The daemon runs in this process (`tests.inprocess.daemon_at`) on trio's
MockClock, moved by `tests.idle_clock.jump_when_idle` (only when the loop is
idle and no thread, the store's writer included, is at work): retries, the
10-minute rate limit, the backoff and the 24 hours of tries play out in a
moment, at exact instants. The target records each request with the (mock)
instant it arrived.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from jobsd import signing_secrets
from jobsd.clock import system_utc_now
from jobsd.config import Config
from jobsd.crypto import KeyRing
from tests.api.conformance import check
from tests.conftest import JSONAPI, TOKEN_B, make_config
from tests.idle_clock import jump_when_idle
from tests.inprocess import Daemon, daemon_at
from tests.target import Received, Target, open_target
from tests.test_retry_runs import db_counts, manual_job, policy, post, run_now, runs_of

T = datetime(2026, 6, 5, 2, 0, 30, tzinfo=UTC)
NEW = {"Jobsd-Version": "2026-08-07"}
SEED = {"Jobsd-Version": "2026-06-04"}
MINUTE = 60.0


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`, started in `daemon`


def alert_config(
    tmp_path: Path,
    alert_url: str,
    *,
    signs: bool = False,
    auto_pause_after: int = 0,
    other_alert_url: str = "",
) -> Config:
    acme = (
        'api_version = "2026-08-07"\nenvironments = ["production", "staging"]\n'
        f'alert_url = "{alert_url}"\n' + ("sign_requests = true\n" if signs else "")
    )
    return make_config(
        tmp_path,
        acme=acme,
        plan=f"auto_pause_after = {auto_pause_after}",
        extra=f'alert_url = "{other_alert_url}"' if other_alert_url else "",
        runs_included=-1,
        active_jobs_limit=-1,
        max_timeout=300,
    )


@asynccontextmanager
async def daemon(config: Config, anchor: datetime = T) -> AsyncIterator[Daemon]:
    async with trio.open_nursery() as clock_hand:
        clock_hand.start_soon(jump_when_idle)
        async with daemon_at(config, anchor) as running:
            running.client.timeout = httpx2.Timeout(None)  # the mock clock may jump meanwhile
            yield running
        clock_hand.cancel_scope.cancel()


def alerts(target: Target, path: str = "/alerts") -> list[Received]:
    return [r for r in target.received if r.path == path]


async def alerts_in(target: Target, count: int, path: str = "/alerts") -> list[Received]:
    with trio.fail_after(10 * MINUTE):  # mock time; the daemon wakes every few seconds
        while len(alerts(target, path)) < count:
            await trio.sleep(1)
    return alerts(target, path)


def body(received: Received) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(received.body)
    return parsed


async def finished(db: Path, slug: str) -> None:
    with trio.fail_after(600):
        while db_counts(db, slug)[1]:
            await trio.sleep(1)


async def run_to_end(d: Daemon, db: Path, slug: str) -> str:
    run_id = await run_now(d.client, slug)
    await finished(db, slug)
    return run_id


async def set_url(client: httpx2.AsyncClient, slug: str, url: str) -> None:
    attributes = {
        "name": slug,
        "schedule": None,
        "configuration": {"url": url, "timeout": 5},
        "environments": {"production": {"enabled": True}},
    }
    r = await client.put(
        f"/api/v1/jobs/{slug}",
        json={"data": {"type": "job", "id": slug, "attributes": attributes}},
        headers={"Content-Type": JSONAPI, **NEW},
    )
    assert r.status_code == 200, r.text


async def metrics(
    client: httpx2.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name.startswith("jobsd_alerts_")
    }


def as_alert_run(run: dict[str, Any]) -> dict[str, Any]:
    """A run as the API (2026-08-07) shows it, as an alert carries it."""
    attributes = {k: v for k, v in run["attributes"].items() if k not in ("request", "result")}
    return {"id": run["id"], **attributes}


async def test_a_failure_for_good_alerts_once_signed_and_the_first_success_recovers(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with open_target() as target:
        config = alert_config(tmp_path, f"{target.url}/alerts", signs=True)
        KeyRing.load_or_create(config.secrets.key_file)
        secret = signing_secrets.active_secret(config, "acme")
        async with daemon(config, system_utc_now()) as d:
            await policy(d.client, "twice", max_retries=2, delay_seconds=5, retry_statuses=["5xx"])
            await manual_job(d.client, "flaky", f"{target.url}/flaky/f/3/500", retry_policy="twice")
            await run_now(d.client, "flaky")
            (failed,) = await alerts_in(target, 1)
            await trio.sleep(30)  # within the signature's 5 minutes of tolerance
            assert len(alerts(target)) == 1  # not one per attempt: one for the chain
            await run_now(d.client, "flaky")
            recovered = (await alerts_in(target, 2))[1]
            runs = await runs_of(d.client, "flaky")
            counted = await metrics(d.client)
    for got in (failed, recovered):
        Webhook(secret).verify(got.body, got.headers)  # raises unless signed by the secret
        assert got.method == "POST" and got.headers["content-type"] == "application/json"
        assert got.headers["webhook-id"] == got.headers["x-jobsd-alert-id"]
        assert [k for k, _ in got.raw_headers].count("webhook-id") == 1  # the signer's only
    assert failed.headers["webhook-id"] != recovered.headers["webhook-id"]
    assert [r["attributes"]["status"] for r in runs] == ["FAILED"] * 3 + ["SUCCEEDED"]
    last_failure = runs[2]
    assert body(failed) == {
        "type": "job.failed",
        "timestamp": last_failure["attributes"]["finished_at"],
        "data": {
            "account": "acme",
            "job": "flaky",
            "environment": "production",
            "run": as_alert_run(last_failure),
        },
    }
    assert body(failed)["data"]["run"]["retry"]["attempt"] == 2
    assert body(recovered)["type"] == "job.recovered"
    assert body(recovered)["data"]["run"] == as_alert_run(runs[3])
    sent = ("jobsd_alerts_sent_total", (("account", "acme"), ("type", "job.failed")))
    assert counted[sent] == 1


async def test_consecutive_failures_pause_where_they_happen_and_enabling_clears_it(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with open_target() as target:
        config = alert_config(tmp_path, f"{target.url}/alerts", auto_pause_after=2)
        db = config.storage.path
        async with daemon(config) as d:
            c = d.client
            envs = {"production": {"enabled": True}, "staging": {"enabled": True}}
            doc = {
                "data": {
                    "type": "job",
                    "id": "cron",
                    "attributes": {
                        "name": "cron",
                        "schedule": "0 0 1 1 *",
                        "configuration": {"url": f"{target.url}/status/500", "timeout": 5},
                        "environments": envs,
                    },
                }
            }
            await post(c, "/api/v1/jobs", doc)

            async def fail_in(env: str, times: int) -> None:
                for _ in range(times):
                    await run_now(c, "cron", env)
                    await finished(db, "cron")

            await fail_in("production", 2)  # job.failed, (suppressed), job.paused
            await fail_in("staging", 2)
            got = await alerts_in(target, 4)
            new = (await c.get("/api/v1/jobs/cron", headers=NEW)).json()
            seed = (await c.get("/api/v1/jobs/cron", headers=SEED)).json()
            check("2026-08-07", "GET", "/api/v1/jobs/{job_id}", 200, new)
            check("2026-06-04", "GET", "/api/v1/jobs/{job_id}", 200, seed)
            entries = new["data"]["attributes"]["environments"]
            for env in ("production", "staging"):
                assert entries[env]["enabled"] is False and entries[env]["next_run_at"] is None
                assert entries[env]["paused_reason"].startswith(
                    "auto-paused after 2 consecutive failed runs"
                )
            attrs = seed["data"]["attributes"]
            assert attrs["enabled"] is False and attrs["next_run_at"] is None
            assert attrs["paused_reason"] == entries["production"]["paused_reason"]

            # Through the seed, send back what was read with enabled: true.
            back = {"data": {**seed["data"], "attributes": {**attrs, "enabled": True}}}
            r = await c.put(
                "/api/v1/jobs/cron", json=back, headers={**SEED, "Content-Type": JSONAPI}
            )
            assert r.status_code == 200, r.text
            assert r.json()["data"]["attributes"]["paused_reason"] is None
            read = (await c.get("/api/v1/jobs/cron", headers=NEW)).json()["data"]
            after = read["attributes"]["environments"]
            assert "paused_reason" not in after["production"] and after["production"]["enabled"]
            assert after["production"]["next_run_at"] is not None
            assert "paused_reason" in after["staging"]  # paused there still
            # Through 2026-08-07, the entry as read (paused_reason in it) with enabled: true.
            after["staging"]["enabled"] = True
            r = await c.put(
                "/api/v1/jobs/cron", json={"data": read}, headers={**NEW, "Content-Type": JSONAPI}
            )
            assert r.status_code == 200, r.text
            staging = r.json()["data"]["attributes"]["environments"]["staging"]
            assert staging["enabled"] and "paused_reason" not in staging
            # The count starts again: two more failures pause it again (the first of
            # them inside the window of staging's job.failed, which still holds).
            await fail_in("staging", 2)
            again = (await alerts_in(target, 5))[4]
            assert (body(again)["type"], body(again)["data"]["environment"]) == (
                "job.paused",
                "staging",
            )
    for env in ("production", "staging"):
        mine = [body(a) for a in got if body(a)["data"]["environment"] == env]
        assert [m["type"] for m in mine] == ["job.failed", "job.paused"]
        assert entries[env]["paused_reason"].endswith(
            f"the last: run {mine[1]['data']['run']['id']}, NON_SUCCESS_STATUS. "
            "Enable it again to resume."
        )


async def test_an_alert_url_outside_the_address_policy_is_refused_where_it_dials(
    tmp_path: Path, mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_target() as target:
        port = target.url.rsplit(":", 1)[1]
        # 127.0.0.2 is loopback too, but outside allow_cidrs (127.0.0.1/32).
        config = alert_config(tmp_path, f"http://127.0.0.2:{port}/alerts")
        async with daemon(config) as d:
            await manual_job(d.client, "m", f"{target.url}/status/500", timeout=5)
            with caplog.at_level(logging.INFO, logger="jobsd.alerts"):
                await run_now(d.client, "m")
                await trio.sleep(MINUTE)
    tries = [r for r in caplog.records if r.getMessage().startswith("alert not delivered")]
    assert tries and all(r.fields["reason"] == "SSRF_BLOCKED" for r in tries)  # type: ignore[attr-defined]
    assert alerts(target) == [] and len(target.received) == 1  # the run's own request only


async def test_an_account_whose_receiver_hangs_delays_no_one_else(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with open_target() as target:
        config = alert_config(
            tmp_path, f"{target.url}/hang", other_alert_url=f"{target.url}/alerts"
        )
        async with daemon(config) as d:
            for n in range(6):
                await manual_job(d.client, f"m{n}", f"{target.url}/status/500", timeout=5)
                await run_now(d.client, f"m{n}")
            await alerts_in(target, 1, "/hang")
            other = {"Authorization": f"Bearer {TOKEN_B}", "Content-Type": JSONAPI}
            job = {
                "data": {
                    "type": "job",
                    "id": "o",
                    "attributes": {
                        "name": "o",
                        "schedule": "0 0 1 1 *",
                        "enabled": False,
                        "configuration": {"url": f"{target.url}/status/500", "timeout": 5},
                    },
                }
            }
            r = await d.client.post("/api/v1/jobs", json=job, headers={**other, **SEED})
            assert r.status_code == 201, r.text
            start = trio.current_time()
            r = await d.client.post("/api/v1/jobs/o/actions/run", headers={**other, **SEED})
            assert r.status_code == 200, r.text
            (got,) = await alerts_in(target, 1)
            waited = got.at - start
            hanging = len(alerts(target, "/hang"))
    assert body(got)["data"]["account"] == "other"
    assert waited < 1  # no wait behind acme's receiver (it takes 10 s to give up each)
    assert hanging == 2  # acme has its share in flight (PER_ACCOUNT), no more


async def test_an_alert_in_flight_at_a_crash_is_sent_again_the_same(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with open_target() as target:
        # The receiver never answers the first request; it answers the second.
        config = alert_config(tmp_path, f"{target.url}/flaky/a/1/hang")
        async with daemon(config) as d:
            await manual_job(d.client, "m", f"{target.url}/status/500", timeout=5)
            await run_now(d.client, "m")
            await alerts_in(target, 1, "/flaky/a/1/hang")
            d.crash()  # no stop sequence: the alert stays `sending` in the file
        async with daemon(config) as d:
            both = await alerts_in(target, 2, "/flaky/a/1/hang")
            await trio.sleep(MINUTE)
            assert (await metrics(d.client))[
                ("jobsd_alerts_sent_total", (("account", "acme"), ("type", "job.failed")))
            ] == 1
    first, again = both
    assert first.headers["x-jobsd-alert-id"] == again.headers["x-jobsd-alert-id"]
    assert first.body == again.body
    assert len(alerts(target, "/flaky/a/1/hang")) == 2  # delivered once it was answered
