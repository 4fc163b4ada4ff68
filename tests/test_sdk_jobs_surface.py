"""The official SDK's whole jobs surface against the real daemon (2026-08-07).

Listing (every sort, every filter, page by page to past the end), the
update paths a `Job.save()` takes (kind changes, resets to defaults,
overrides cleared), run now with and without an environment and each of
its refusals, one-offs, delete, and the JSON:API errors as the SDK maps
them. Each document is also read through the SDK's generated models with
`raise_on_unexpected_status`, so one that does not fit them fails here.
One daemon serves the module (tests/sdk_live.py); tests keep to their own
job ids, and listings filter by a name prefix of their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from smplkit._generated.jobs.api.jobs import get_job, list_jobs, run_job_now, update_job
from smplkit._generated.jobs.models.job_request import JobRequest
from smplkit._generated.jobs.models.run_now_request import RunNowRequest
from smplkit.errors import ConflictError, Error, NotFoundError, ValidationError
from smplkit.jobs import HttpConfig, JobKind

from tests.sdk_live import Live, live_daemon, settled

PROD = {"production": {"enabled": True}}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_daemon(tmp_path_factory.mktemp("sdk-jobs")) as served:
        yield served


def test_listing_every_sort_filter_and_page(live: Live) -> None:
    jobs = live.jobs()
    ok = HttpConfig(url=f"{live.target}/ok")
    for slug, name in (("l-b", "lst b"), ("l-a", "LST A"), ("l-c", "lst_c"), ("l-d", "lst%d")):
        jobs.new_manual_job(slug, name=name, configuration=ok, environments=PROD).save()
    jobs.new_recurring_job(
        "l-rec", name="lst rec", schedule="0 3 * * *", configuration=ok, environments=PROD
    ).save()
    once = datetime(2031, 1, 1, tzinfo=UTC)
    jobs.schedule(
        "l-once", name="lst once", schedule=once, configuration=ok, environment="production"
    ).save()
    jobs.get("l-b").save()  # touched last: updated_at leads
    client = live.client(strict=True)

    def listed(**query: object) -> list[str]:
        page = list_jobs.sync(client=client, filtername="lst", **query)
        assert page is not None
        return [job.id for job in page.data if isinstance(job.id, str)]

    by_name = ["l-a", "l-b", "l-rec", "l-d", "l-c"]  # "lst a" < "lst b" < "lst rec" < "lst%d"...
    assert listed() == by_name  # the default: name, without regard to case; no one-offs
    assert listed(sort="-name") == list(reversed(by_name))
    created = ["l-b", "l-a", "l-c", "l-d", "l-rec"]
    assert listed(sort="created_at") == created
    assert listed(sort="-created_at") == list(reversed(created))
    assert listed(sort="updated_at") == ["l-a", "l-c", "l-d", "l-rec", "l-b"]
    assert listed(sort="-updated_at")[0] == "l-b"
    assert listed(filterkind="one_off") == ["l-once"]
    assert listed(filterkind="recurring") == ["l-rec"]
    assert listed(filterkind="manual") == ["l-a", "l-b", "l-d", "l-c"]
    assert listed(filterscheduled=True) == ["l-once", "l-rec"]
    assert listed(filterscheduled=False) == ["l-a", "l-b", "l-d", "l-c"]
    assert [j.id for j in jobs.list(name="T_C")] == ["l-c"]  # `_` and `%` are literal
    assert [j.id for j in jobs.list(name="t%")] == ["l-d"]
    assert [j.id for j in jobs.list(kind=JobKind.ONE_OFF, name="LST")] == ["l-once"]
    assert [j.id for j in jobs.list(scheduled=True, name="lst")] == ["l-once", "l-rec"]

    # Page by page to past the end, with and without totals.
    pages, number = [], 1
    while batch := jobs.list(name="lst", page_number=number, page_size=2):
        pages.append([j.id for j in batch])
        number += 1
    assert pages == [["l-a", "l-b"], ["l-rec", "l-d"], ["l-c"]]
    page = list_jobs.sync(client=client, filtername="lst", pagenumber=2, pagesize=2, metatotal=True)
    assert page is not None
    assert page.meta.pagination.to_dict() == {"page": 2, "size": 2, "total": 5, "total_pages": 3}
    plain = list_jobs.sync(client=client, filtername="lst")
    assert plain is not None and plain.meta.pagination.to_dict() == {"page": 1, "size": 1000}
    with pytest.raises(ValidationError) as refused:
        jobs.list(page_number=0)
    assert refused.value.errors[0].source == {"parameter": "page[number]"}


def test_update_paths_a_save_takes(live: Live) -> None:
    jobs = live.jobs()
    job = jobs.new_recurring_job(
        "upd",
        name="Upd",
        description="nightly",
        schedule="30 2 * * *",
        timezone="Asia/Tokyo",
        configuration=HttpConfig(url=f"{live.target}/ok", headers={"X-A": "1", "X-B": "2"}),
        environments={
            "production": {"enabled": True, "headers": {"x-a": "p", "X.Dot": "d"}},
            "staging": {"enabled": True, "schedule": "0 5 * * *", "timezone": "Europe/Paris"},
        },
    )
    job.save()
    assert job.kind is JobKind.RECURRING and job.version == 1
    assert job.environments["production"].headers == {"x-a": "p", "X.Dot": "d"}
    cadence = job.environments["production"].next_run_at
    assert cadence is not None and cadence.tzinfo is not None and cadence.minute == 30

    job.name = "Upd renamed"  # an edit that leaves the schedule: same cadence
    job.save()
    assert job.version == 2 and job.environments["production"].next_run_at == cadence
    job.description = None
    job.timezone = None  # omitted on the wire: back to UTC
    job.environment("production").headers = {}
    job.environment("staging").timezone = None
    job.environment("staging").enabled = False
    job.save()
    got = jobs.get("upd")
    assert (got.description, got.timezone, got.version) == (None, None, 3)
    assert got.environments["production"].headers == {}
    assert got.environments["production"].next_run_at != cadence  # now 02:30 UTC
    assert got.environments["staging"].enabled is False
    assert got.environments["staging"].next_run_at is None
    assert got.environments["staging"].schedule == "0 5 * * *"  # the kept override

    got.schedule = None  # recurring -> manual: no timezone, no cadence
    got.environment("staging").schedule = None
    got.save()
    assert got.kind is JobKind.MANUAL and got.environments["production"].next_run_at is None
    got.schedule = "*/10 * * * *"
    got.save()
    assert got.kind is JobKind.RECURRING and got.environments["production"].next_run_at
    got.timezone = "Europe/Paris"
    got.schedule = None
    with pytest.raises(ValidationError) as tz:
        got.save()
    assert tz.value.errors[0].source == {"pointer": "/data/attributes/timezone"}

    strict = live.client(strict=True)
    body = JobRequest.from_dict(
        {
            "data": {
                "id": "upd",
                "type": "job",
                "attributes": {"name": "Minimal", "configuration": {"url": f"{live.target}/ok"}},
            }
        }
    )
    replaced = update_job.sync("upd", client=strict, body=body)  # PUT replaces
    assert replaced is not None
    attributes = replaced.data.attributes
    assert (attributes.name, attributes.kind, attributes.environments.to_dict()) == (
        "Minimal",
        "manual",
        {},
    )
    assert get_job.sync("upd", client=strict) is not None
    jobs.delete("upd")
    with pytest.raises(NotFoundError):
        got.save()  # a PUT of a job that is gone


def test_run_now_with_and_without_an_environment(live: Live) -> None:
    jobs = live.jobs()
    ok = HttpConfig(url=f"{live.target}/ok")
    one = jobs.new_manual_job("rn-one", name="One", configuration=ok, environments=PROD)
    one.save()
    both = {"production": {"enabled": True}, "staging": {"enabled": True}}
    jobs.new_manual_job("rn-two", name="Two", configuration=ok, environments=both).save()
    jobs.new_manual_job("rn-off", name="Off", configuration=ok).save()

    implied = jobs.run("rn-one")
    assert (implied.environment, implied.trigger, implied.status) == (
        "production",
        "MANUAL",
        "PENDING",
    )
    named = one.trigger(environment="production")
    defaulted = live.jobs(environment="staging").run("rn-two")  # the client's environment
    assert defaulted.environment == "staging"
    strict = live.client(strict=True)
    for request in (RunNowRequest(), RunNowRequest(environment=None)):
        run = run_job_now.sync("rn-one", client=strict, body=request)
        assert run is not None and run.data.attributes.environment == "production"
        settled(jobs, run.data.id)
    assert settled(jobs, implied.id, named.id, defaulted.id) == ["SUCCEEDED"] * 3

    for slug in ("rn-two", "rn-off"):  # several enabled, or none: name one
        with pytest.raises(ValidationError) as ambiguous:
            jobs.run(slug)
        assert ambiguous.value.errors[0].code == "environment_required"
        assert ambiguous.value.errors[0].source == {"pointer": "/environment"}
    with pytest.raises(ConflictError) as disabled:
        jobs.run("rn-one", environment="staging")
    assert disabled.value.errors[0].code == "environment_not_enabled"
    with pytest.raises(ValidationError) as unknown:
        jobs.run("rn-one", environment="qa")
    assert unknown.value.errors[0].code == "unknown_environment"
    with pytest.raises(NotFoundError):
        jobs.run("rn-ghost", environment="production")


def test_one_offs_fire_once_per_environment(live: Live) -> None:
    jobs = live.jobs()
    ok = HttpConfig(url=f"{live.target}/ok")
    tokyo = timezone(timedelta(hours=9))
    later = jobs.schedule(
        "oo-later",
        name="Later",
        schedule=datetime(2031, 1, 1, 9, tzinfo=tokyo),
        configuration=ok,
        environment="staging",
    )
    later.save()
    assert later.kind is JobKind.ONE_OFF and list(later.environments) == ["staging"]
    assert later.environments["staging"].next_run_at == datetime(2031, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError) as naive:
        jobs.schedule(
            "oo-naive",
            name="Naive",
            schedule=datetime(2031, 1, 1),
            configuration=ok,
            environment="production",
        ).save()
    assert naive.value.errors[0].code == "invalid_schedule"

    now = jobs.new_manual_job("oo-now", name="Now", configuration=ok)
    now.schedule = "now"
    now.environment("production").enabled = True
    now.environment("staging").enabled = True
    now.save()
    assert now.kind is JobKind.ONE_OFF
    runs = []
    for _ in range(400):  # its runs are created as it fires: poll
        runs = jobs.runs.list(job="oo-now")
        if len(runs) == 2:
            break
        time.sleep(0.05)
    assert sorted(r.environment for r in runs) == ["production", "staging"]
    assert settled(jobs, *[r.id for r in runs]) == ["SUCCEEDED"] * 2
    assert {r.trigger for r in runs} == {"SCHEDULE"} and all(r.scheduled_for for r in runs)
    spent = jobs.get("oo-now")
    assert {k: (e.enabled, e.next_run_at) for k, e in spent.environments.items()} == {
        "production": (False, None),
        "staging": (False, None),
    }
    spent.name = "Now, spent"  # sending back what was read fires nothing more
    spent.save()
    assert len(jobs.runs.list(job="oo-now")) == 2
    assert get_job.sync("oo-now", client=live.client(strict=True)) is not None


def test_delete_and_the_errors_the_sdk_maps(live: Live) -> None:
    jobs = live.jobs()
    ok = HttpConfig(url=f"{live.target}/ok")
    doomed = jobs.new_manual_job("del", name="Del", configuration=ok, environments=PROD)
    doomed.save()
    run = doomed.trigger()
    settled(jobs, run.id)
    doomed.delete()
    with pytest.raises(NotFoundError) as gone:
        jobs.get("del")
    assert gone.value.status_code == 404 and gone.value.errors[0].code == "not_found"
    with pytest.raises(NotFoundError):
        jobs.delete("del")
    assert jobs.runs.get(run.id).job == "del"  # its history stays
    jobs.new_manual_job("del", name="Del again", configuration=ok).save()  # the id is free

    with pytest.raises(ConflictError) as taken:
        jobs.new_manual_job("del", name="Twice", configuration=ok).save()
    assert taken.value.errors[0].source == {"pointer": "/data/id"}
    bad = HttpConfig(url="ftp://x", success_status="7xx", timeout=0)
    with pytest.raises(ValidationError) as invalid:
        jobs.new_manual_job("Bad Id", name="", configuration=bad).save()
    assert {e.source["pointer"] for e in invalid.value.errors} == {
        "/data/id",
        "/data/attributes/name",
        "/data/attributes/configuration/url",
        "/data/attributes/configuration/success_status",
        "/data/attributes/configuration/timeout",
    }
    assert str(invalid.value).splitlines()[0].endswith("(and 4 more errors)")
    with pytest.raises(Error) as unauthorized:
        live.jobs(token="jobsd_not-a-token").list()
    assert unauthorized.value.status_code == 401
    assert unauthorized.value.errors[0].code == "unauthorized"
