"""The official SDK on run statistics, usage and the plan's limits (2026-08-07).

`get_run_stats` with every bucket and each filter, read into the SDK's
models; `usage()` and `get_usage` for a period; and the refusals a plan's
limits give (`403 active_jobs_limit`, `429 too_many_pending_runs` with its
Retry-After) as the SDK raises them. The daemon allows 3 permanent jobs and
2 waiting runs, so the limits are reached on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from smplkit import JobsClient
from smplkit._generated.jobs.api.jobs import run_job_now
from smplkit._generated.jobs.api.runs import get_run_stats
from smplkit._generated.jobs.api.usage import get_usage
from smplkit._generated.jobs.models.run_now_request import RunNowRequest
from smplkit._generated.jobs.models.run_stats_response import RunStatsResponse
from smplkit._generated.jobs.models.usage_response import UsageResponse
from smplkit.errors import Error
from smplkit.jobs import HttpConfig

from tests.sdk_live import Live, live_daemon, settled

BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("sdk-stats")
    with live_daemon(tmp, active_jobs_limit=3, scheduler="max_pending_runs = 2") as served:
        yield served


def test_run_stats_with_every_bucket_and_filter(live: Live) -> None:
    jobs = live.jobs()
    both = {"production": {"enabled": True}, "staging": {"enabled": True}}
    for slug, path in (("st-ok", "ok"), ("st-bad", "status/500")):
        config = HttpConfig(url=f"{live.target}/{path}")
        jobs.new_manual_job(slug, name=slug.upper(), configuration=config, environments=both).save()
    jobs.new_recurring_job(
        "st-cron",
        name="Cron",
        schedule="0 4 * * *",
        configuration=HttpConfig(url=f"{live.target}/ok"),
        environments={"staging": {"enabled": True}},
    ).save()
    ids = [jobs.run("st-ok", environment="production").id]
    for env in ("production", "staging", "production", "staging"):
        ids.append(jobs.run("st-bad", environment=env).id)
        settled(jobs, ids[-1])  # one at a time: the plan lets 2 wait
    settled(jobs, *ids)
    client = live.client(strict=True)

    stats = get_run_stats.sync(client=client)
    assert isinstance(stats, RunStatsResponse)
    every = stats.data.attributes
    assert every.total == 5 and every.buckets is None
    assert every.tally.to_dict() == {
        "pending": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 4,
        "canceled": 0,
    }
    failures = every.recent_failures
    assert len(failures) == 3 and [f.job_name for f in failures] == ["ST-BAD"] * 3
    assert [f.created_at for f in failures] == sorted(
        (f.created_at for f in failures), reverse=True
    )
    assert {f.failure_reason for f in failures} == {"NON_SUCCESS_STATUS"}
    assert every.next_scheduled is not None and every.next_scheduled.job == "st-cron"
    for bucket, seconds in BUCKETS.items():
        series = get_run_stats.sync(client=client, bucket=bucket)  # type: ignore[arg-type]
        assert series is not None and series.data.attributes.buckets, bucket
        starts = series.data.attributes.buckets
        assert sum(b.count for b in starts) == 5, bucket
        assert all(int(b.bucket.timestamp()) % seconds == 0 for b in starts), bucket

    staging = get_run_stats.sync(client=client, filterenvironment="staging")
    assert staging is not None and staging.data.attributes.total == 2
    production = get_run_stats.sync(client=client, filterenvironment="production")
    assert production is not None and production.data.attributes.next_scheduled is None
    future = get_run_stats.sync(
        client=client, filtercreated_at="[2100-01-01T00:00:00Z,*)", bucket="1h"
    )
    assert future is not None
    assert (future.data.attributes.total, future.data.attributes.buckets) == (0, [])
    assert future.data.attributes.next_scheduled is not None  # the range does not apply to it
    jobs.delete("st-bad")
    gone = get_run_stats.sync(client=client)
    assert gone is not None and gone.data.attributes.recent_failures[0].job_name is None
    refused = get_run_stats.sync_detailed(client=live.client(), bucket="2h")  # type: ignore[arg-type]
    assert refused.status_code == 400 and b'"parameter":"bucket"' in refused.content


def running(jobs: JobsClient, slug: str) -> str:
    """Run `slug` now and return once a worker has its run (so it waits no more)."""
    run = jobs.run(slug, environment="production")
    deadline = time.monotonic() + 10
    while jobs.runs.get(run.id).status == "PENDING":
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.02)
    return run.id


def test_usage_and_the_plan_limits_as_the_sdk_raises_them(live: Live) -> None:
    jobs = live.jobs()
    for job in jobs.list():  # what other tests left: this one counts from none
        job.delete()
    slow = HttpConfig(url=f"{live.target}/sleep/10000", timeout=20)
    prod = {"production": {"enabled": True}}
    for slug in ("lim-a", "lim-b", "lim-c"):
        jobs.new_manual_job(slug, name=slug, configuration=slow, environments=prod).save()
    usage = jobs.usage()
    assert usage.period == datetime.now(UTC).strftime("%Y-%m")
    assert (usage.active_jobs, usage.active_jobs_limit, usage.runs_included) == (3, 3, -1)
    with pytest.raises(Error) as limit:
        jobs.new_manual_job("lim-d", name="D", configuration=slow).save()
    assert limit.value.status_code == 403 and limit.value.errors[0].code == "active_jobs_limit"
    one_off = jobs.schedule(  # one-offs are not permanent: not counted, not refused
        "lim-once",
        name="Once",
        schedule=datetime(2031, 1, 1, tzinfo=UTC),
        configuration=slow,
        environment="production",
    )
    one_off.save()
    assert jobs.usage().active_jobs == 3

    for period in ("current", usage.period, "2020-01"):
        report = get_usage.sync(client=live.client(strict=True), filterperiod=period)
        assert isinstance(report, UsageResponse) and report.data.attributes.active_jobs == 3
    assert get_usage.sync_detailed(client=live.client(), filterperiod="2020-13").status_code == 400

    busy = [running(jobs, "lim-a") for _ in range(4)]  # every worker
    waiting = [jobs.run("lim-a", environment="production").id for _ in range(2)]
    with pytest.raises(Error) as backlog:
        jobs.run("lim-a", environment="production")
    assert backlog.value.status_code == 429
    assert backlog.value.errors[0].code == "too_many_pending_runs"
    raw = run_job_now.sync_detailed(
        "lim-a", client=live.client(), body=RunNowRequest(environment="production")
    )
    assert raw.status_code == 429 and int(raw.headers["retry-after"]) >= 1
    for run_id in waiting + busy:  # the waiting ones first: nothing more starts
        jobs.runs.cancel(run_id)
