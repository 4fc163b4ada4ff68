"""The official SDK's whole runs surface against the real daemon (2026-08-07).

Every sort `list_runs` can send, walked page by page to the end through the
SDK's generated client (whose models must parse each page); every filter;
`last_run_only`; cancel and rerun, their refusals as the SDK maps them; and
the links' cursor read the way the SDK reads the platform's cursors. One
daemon serves the module (tests/sdk_live.py); each test keeps to its own
jobs, so each filters by them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from smplkit import JobsClient
from smplkit._generated.jobs.api.runs import cancel_run, get_run, list_runs, rerun_run
from smplkit._generated.jobs.client import AuthenticatedClient
from smplkit._generated.jobs.models.error_response import ErrorResponse
from smplkit._generated.jobs.models.run_list_response import RunListResponse
from smplkit._generated.jobs.types import UNSET
from smplkit.audit.clients import _extract_next_cursor
from smplkit.errors import ConflictError, NotFoundError, ValidationError
from smplkit.jobs import Backoff, HttpConfig, RunTrigger

from tests.sdk_live import Live, live_daemon, settled

FIELDS = ("created_at", "started_at", "finished_at", "scheduled_for", "status", "job")
SORTS = [s for f in (*FIELDS, "total_duration_ms") for s in (f, f"-{f}")]  # all 14
BOTH_ENVS = {"production": {"enabled": True}, "staging": {"enabled": True}}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_daemon(tmp_path_factory.mktemp("sdk-runs")) as served:
        yield served


def walk(client: AuthenticatedClient, **query: Any) -> list[str]:
    """Every run id a listing gives, page after page, as the SDK's models read them."""
    seen: list[str] = []
    after: Any = UNSET
    while True:
        page = list_runs.sync(client=client, pagesize=2, pageafter=after, **query)
        assert isinstance(page, RunListResponse)
        seen += [run.id for run in page.data]
        link = page.links.next_ if page.links else None
        if not link:
            return seen
        after = link.split("page[after]=")[1].split("&")[0]


def settled_one(jobs: JobsClient, slug: str) -> str:
    """The id of a one-off's run once it has one and it has finished."""
    deadline = time.monotonic() + 20
    while not (runs := jobs.runs.list(job=slug)):
        assert time.monotonic() < deadline, f"{slug} never fired"
        time.sleep(0.05)
    settled(jobs, runs[0].id)
    return runs[0].id


def manual(jobs: JobsClient, slug: str, url: str) -> None:
    job = jobs.new_manual_job(
        slug, name=slug.title(), configuration=HttpConfig(url=url), environments=BOTH_ENVS
    )
    job.save()


def test_links_next_carries_the_cursor_where_the_sdk_reads_it(live: Live) -> None:
    """The SDK reads the platform's cursors by slicing `links.next` at `page[after]=`
    (smplkit.audit's `_extract_next_cursor`): a percent-encoded name hides it."""
    jobs = live.jobs()
    manual(jobs, "paged", f"{live.target}/ok")
    ids = [jobs.run("paged", environment="production").id for _ in range(5)]
    settled(jobs, *ids)
    client = live.client()
    seen: list[str] = []
    after: Any = UNSET
    while True:
        response = list_runs.sync_detailed(
            client=client, filterjob="paged", pagesize=2, pageafter=after
        )
        body = json.loads(response.content)
        seen += [run["id"] for run in body["data"]]
        after = _extract_next_cursor(body)
        if after is None:
            break
    assert seen == list(reversed(ids))
    first = list_runs.sync_detailed(client=client, filterjob="paged", pagesize=2)
    cursor = _extract_next_cursor(json.loads(first.content))  # the high-level client takes it
    assert [r.id for r in jobs.runs.list(job="paged", page_size=2, after=cursor)] == seen[2:4]
    followed: list[str] = []  # and following the link itself walks the same runs
    link = f"{live.daemon.url}/api/v1/runs?filter[job]=paged&page[size]=2"
    while link:
        body = client.get_httpx_client().get(link).json()
        followed += [run["id"] for run in body["data"]]
        link = body["links"]["next"]
    assert followed == seen


def since_now() -> str:
    """`filter[created_at]` from this instant on: a test's own runs, in a shared daemon."""
    return f"[{datetime.now(UTC).isoformat()},*)"


def test_every_sort_walks_to_the_end_and_unset_fields_go_last(live: Live) -> None:
    jobs = live.jobs()
    mine = since_now()
    manual(jobs, "sort-a", f"{live.target}/ok")
    manual(jobs, "sort-b", f"{live.target}/status/500")
    ids = [jobs.run(slug, environment="staging").id for slug in ("sort-a", "sort-b") * 2]
    once = jobs.schedule(
        "sort-now",
        name="Now",
        schedule=datetime.now(UTC),
        configuration=HttpConfig(url=f"{live.target}/ok"),
        environment="staging",
    )
    once.save()
    settled(jobs, *ids)
    fired = settled_one(jobs, "sort-now")
    ids.append(fired)
    client = live.client(strict=True)
    for sort in SORTS:
        whole = list_runs.sync(client=client, filtercreated_at=mine, sort=sort, pagesize=1000)
        assert whole is not None
        expected = [run.id for run in whole.data]
        assert sorted(expected) == sorted(ids), sort
        assert walk(client, filtercreated_at=mine, sort=sort) == expected, sort
    # The only run with a `scheduled_for` (the one-off's) leads either way.
    for sort in ("scheduled_for", "-scheduled_for"):
        first = list_runs.sync(client=client, filtercreated_at=mine, sort=sort)
        assert first is not None and first.data[0].id == fired
    by_status = list_runs.sync(client=client, filtercreated_at=mine, sort="status")
    assert by_status is not None
    assert [r.attributes.status for r in by_status.data] == ["SUCCEEDED"] * 3 + ["FAILED"] * 2


def test_every_filter_the_sdk_can_send(live: Live) -> None:
    jobs = live.jobs()
    mine = since_now()
    manual(jobs, "filt-ok", f"{live.target}/ok")
    manual(jobs, "filt-bad", f"{live.target}/status/500")
    ok = jobs.run("filt-ok", environment="production")
    bad = jobs.run("filt-bad", environment="staging")
    settled(jobs, ok.id, bad.id)
    again = jobs.runs.rerun(ok.id)
    settled(jobs, again.id)
    client = live.client(strict=True)

    def ids(**query: Any) -> set[str]:
        query.setdefault("filtercreated_at", mine)
        page = list_runs.sync(client=client, **query)
        assert page is not None
        return {run.id for run in page.data}

    assert ids() == {ok.id, bad.id, again.id}
    assert ids(filterjob="filt-bad") == {bad.id}
    assert ids(filterstatus="FAILED") == {bad.id}
    assert ids(filterstatus="SUCCEEDED,FAILED") == {ok.id, bad.id, again.id}
    assert ids(filtertrigger="RERUN") == {again.id}
    assert ids(filtertrigger="MANUAL,SCHEDULE") == {ok.id, bad.id}
    assert ids(filterenvironment="staging") == {bad.id}
    assert ids(filterenvironment="production,staging") == {ok.id, bad.id, again.id}
    assert ids(last_run_only=True) == {again.id, bad.id}  # one per job and environment
    raw = json.loads(get_run.sync_detailed(bad.id, client=client).content)["data"]["attributes"]
    for field in ("created_at", "started_at", "finished_at"):
        bound = raw[field]  # copied from a response, it is exact
        assert ids(**{f"filter{field}": f"[{bound},{bound}]"}) == {bad.id}, field
        assert bad.id not in ids(**{f"filter{field}": f"({bound},*)"}), field
        assert bad.id in ids(**{f"filter{field}": f"[*,{bound}]"}), field
    assert ids(filterscheduled_for="[2000-01-01T00:00:00Z,*)") == set()  # none scheduled

    # The high-level client sends the same filters.
    assert {r.id for r in jobs.runs.list(job="filt-ok", triggers=[RunTrigger.RERUN])} == {again.id}
    assert [r.id for r in jobs.runs.list(job="filt-bad", environments=["staging"])] == [bad.id]
    assert len(jobs.runs.list(job="filt-ok", page_size=1)) == 1
    job = jobs.get("filt-ok")
    assert [r.id for r in job.list_runs(environment="production", last_run_only=True)] == [again.id]
    assert jobs.runs.list(job="filt-ok", environments=["staging"]) == []
    staged = live.jobs(environment="staging")  # the client's environment scopes its reads
    assert [r.id for r in staged.runs.list(job="filt-bad")] == [bad.id]
    assert staged.runs.list(job="filt-ok") == []
    refused = list_runs.sync_detailed(client=live.client(), filterstatus="DONE")
    assert refused.status_code == 400 and b'"parameter":"filter[status]"' in refused.content
    with pytest.raises(ValidationError) as cursor:
        jobs.runs.list(after="not-a-cursor")
    assert cursor.value.status_code == 400


def test_cancel_and_rerun_as_the_sdk_maps_them(live: Live) -> None:
    jobs = live.jobs()
    later = jobs.retry_policies.new(
        "later",
        name="Later",
        max_retries=1,
        backoff=Backoff.FIXED,
        delay_seconds=300,
        retry_statuses=["5xx"],
    )
    later.save()
    flaky = jobs.new_manual_job(
        "flaky",
        name="Flaky",
        configuration=HttpConfig(url=f"{live.target}/status/503"),
        environments={"staging": {"enabled": True}},
        retry_policy=later,
    )
    flaky.save()
    used = jobs.usage().runs_used
    first = flaky.trigger()  # the job's only environment
    assert first.environment == "staging"
    settled(jobs, first.id)
    [retry] = jobs.runs.list(job="flaky", triggers=[RunTrigger.RETRY])
    assert retry.status == "PENDING" and retry.retry is not None and retry.retry.of == first.id
    canceled = retry.cancel()  # a PENDING run: canceled, and not metered
    assert canceled.status == "CANCELED" and canceled.started_at is None
    assert jobs.usage().runs_used == used + 1

    manual(jobs, "sleepy", f"{live.target}/sleep/10000")
    running = jobs.run("sleepy", environment="production")
    assert jobs.runs.cancel(running.id).status == "CANCELED"

    with pytest.raises(ConflictError) as terminal:
        jobs.runs.cancel(first.id)
    assert terminal.value.errors[0].code == "run_terminal"
    parsed = cancel_run.sync_detailed(first.id, client=live.client()).parsed
    assert isinstance(parsed, ErrorResponse) and parsed.errors[0].status == "409"
    for call in (jobs.runs.cancel, jobs.runs.rerun):
        with pytest.raises(NotFoundError):
            call(str(uuid4()))
    missing = rerun_run.sync_detailed(uuid4(), client=live.client()).parsed
    assert isinstance(missing, ErrorResponse) and missing.errors[0].status == "404"

    again = canceled.rerun()
    assert (again.trigger, again.rerun_of, again.environment) == ("RERUN", retry.id, "staging")
    settled(jobs, again.id)
    rerun = rerun_run.sync(first.id, client=live.client(strict=True))
    assert rerun is not None and rerun.data.attributes.trigger == "RERUN"
    settled(jobs, rerun.data.id)
    jobs.delete("flaky")  # its waiting retries are canceled with it
    with pytest.raises(ConflictError) as deleted:
        jobs.runs.rerun(first.id)
    assert deleted.value.errors[0].code == "job_deleted"
    assert len(jobs.runs.list(job="flaky")) >= 3  # the history stays readable
