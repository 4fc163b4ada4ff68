"""The official SDK on retry policies, scoped tokens and its async client (2026-08-07).

Retry policies through every call the SDK has (every sort, pages to past
the end, full-replace update, delete and its refusal listing the jobs that
still name the policy); a token limited to staging, as the SDK sees it
(narrowed jobs, hidden runs, implied environments, a PUT that keeps what
it cannot see); and `AsyncJobsClient` over the same calls. One daemon
serves the module (tests/sdk_live.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from smplkit import AsyncJobsClient
from smplkit._generated.jobs.api.retry_policies import get_retry_policy, list_retry_policies
from smplkit._generated.jobs.api.runs import get_run_stats
from smplkit.errors import ConflictError, Error, NotFoundError, ValidationError
from smplkit.jobs import Backoff, HttpConfig, RunTrigger

from tests.sdk_live import STAGING_TOKEN, Live, live_daemon, settled

BOTH = {"production": {"enabled": True}, "staging": {"enabled": True}}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_daemon(tmp_path_factory.mktemp("sdk-policies")) as served:
        yield served


def test_retry_policies_through_every_call(live: Live) -> None:
    policies = live.jobs().retry_policies
    made = []
    for slug, name in (("rp-b", "rp Beta"), ("rp-a", "RP alpha"), ("rp-c", "rp gamma")):
        policy = policies.new(
            slug, name=name, max_retries=1, backoff=Backoff.FIXED, delay_seconds=1
        )
        policy.save()
        made.append(slug)
    full = policies.new(
        "rp-full",
        name="rp full",
        max_retries=3,
        backoff=Backoff.EXPONENTIAL,
        delay_seconds=2,
        max_delay_seconds=30,
        retry_on_timeout=True,
        retry_on_connection_error=True,
        retry_statuses=["429", "5xx"],
        retry_statuses_except=["501"],
    )
    full.save()
    assert (full.version, full.max_delay_seconds, full.retry_statuses_except) == (1, 30, ["501"])
    policies.get("rp-b").save()  # touched: updated_at moves
    strict = live.client(strict=True)

    def listed(sort: str) -> list[str]:
        page = list_retry_policies.sync(client=strict, filtername="rp", sort=sort)
        assert page is not None
        return [p.id for p in page.data if isinstance(p.id, str)]

    by_name = ["rp-a", "rp-b", "rp-full", "rp-c"]  # alpha, beta, full, gamma
    assert [p.id for p in policies.list(name="RP")] == by_name
    assert listed("name") == by_name and listed("-name") == list(reversed(by_name))
    assert listed("created_at") == [*made, "rp-full"]
    assert listed("-created_at") == ["rp-full", *reversed(made)]
    assert listed("updated_at") == ["rp-a", "rp-c", "rp-full", "rp-b"]
    assert listed("-updated_at") == ["rp-b", "rp-full", "rp-c", "rp-a"]
    pages = [
        [p.id for p in policies.list(name="rp", page_number=n, page_size=3)] for n in (1, 2, 3)
    ]
    assert pages == [by_name[:3], by_name[3:], []]
    counted = list_retry_policies.sync(client=strict, pagesize=3, pagenumber=2, metatotal=True)
    assert counted is not None
    assert counted.meta.pagination.to_dict() == {"page": 2, "size": 3, "total": 4, "total_pages": 2}
    assert get_retry_policy.sync("rp-full", client=strict) is not None

    full.backoff = Backoff.FIXED  # a PUT replaces: the ceiling must go with exponential
    full.max_delay_seconds = None
    full.retry_statuses_except = []
    full.save()
    again = policies.get("rp-full")
    assert (again.backoff, again.max_delay_seconds, again.retry_statuses_except) == (
        Backoff.FIXED,
        None,
        [],
    )
    assert again.version == 2 and again.updated_at and again.created_at
    assert again.updated_at > again.created_at

    for bad, pointer in (
        ({"max_retries": 11}, "max_retries"),
        ({"delay_seconds": 0}, "delay_seconds"),
        ({"max_delay_seconds": 5}, "max_delay_seconds"),  # with fixed backoff
        ({"retry_statuses": ["6xx"]}, "retry_statuses"),
    ):
        fields = {"max_retries": 1, "delay_seconds": 1, "backoff": Backoff.FIXED, **bad}
        with pytest.raises(ValidationError) as refused:
            policies.new("rp-bad", name="Bad", **fields).save()  # type: ignore[arg-type]
        assert refused.value.errors[0].source["pointer"].startswith(f"/data/attributes/{pointer}")
    with pytest.raises(ConflictError) as taken:
        policies.new(
            "rp-a", name="Again", max_retries=1, backoff=Backoff.FIXED, delay_seconds=1
        ).save()
    assert taken.value.errors[0].source == {"pointer": "/data/id"}

    # A policy named by a job (base or an environment's override) cannot go.
    jobs = live.jobs()
    ok = HttpConfig(url=f"{live.target}/ok")
    jobs.new_manual_job("rp-user", name="U", configuration=ok, retry_policy="rp-a").save()
    env_user = jobs.new_manual_job(
        "rp-env", name="E", configuration=ok, environments={"staging": {"retry_policy": "rp-a"}}
    )
    env_user.save()
    with pytest.raises(ConflictError) as in_use:
        policies.delete("rp-a")
    assert in_use.value.errors[0].meta["referencing_jobs"] == ["rp-env", "rp-user"]
    with pytest.raises(ValidationError) as ghost:
        jobs.new_manual_job("rp-ghost", name="G", configuration=ok, retry_policy="nope").save()
    assert ghost.value.errors[0].source == {"pointer": "/data/attributes/retry_policy"}
    jobs.delete("rp-user")
    env_user.environment("staging").retry_policy = None
    env_user.save()
    policies.get("rp-a").delete()
    with pytest.raises(NotFoundError):
        policies.get("rp-a")
    with pytest.raises(NotFoundError):
        policies.delete("rp-a")


def test_a_staging_token_as_the_sdk_sees_it(live: Live) -> None:
    jobs, staged = live.jobs(), live.jobs(token=STAGING_TOKEN)
    ok = HttpConfig(url=f"{live.target}/ok", headers={"X-Base": "b"})
    jobs.new_manual_job("sc-both", name="Both", configuration=ok, environments=BOTH).save()
    prod_only = {"production": {"enabled": True, "url": f"{live.target}/prod"}}
    jobs.new_manual_job("sc-prod", name="Prod", configuration=ok, environments=prod_only).save()
    prod_run = jobs.run("sc-prod", environment="production")

    seen = {j.id: sorted(j.environments) for j in staged.list()}
    assert seen["sc-both"] == ["staging"] and seen["sc-prod"] == []
    implied = staged.run("sc-both")  # the token's only environment
    assert implied.environment == "staging"
    with pytest.raises(ValidationError) as outside:
        staged.run("sc-both", environment="production")
    assert outside.value.errors[0].code == "unknown_environment"
    with pytest.raises(NotFoundError):
        staged.runs.get(prod_run.id)
    with pytest.raises(ValidationError) as filtered:
        staged.runs.list(environments=["production"])
    assert filtered.value.errors[0].source == {"parameter": "filter[environment]"}
    assert {r.environment for r in staged.runs.list()} == {"staging"}
    stats = get_run_stats.sync_detailed(
        client=live.client(STAGING_TOKEN), filterenvironment="production"
    )
    assert stats.status_code == 400

    narrowed = staged.get("sc-prod")  # a PUT keeps the entries it cannot see
    narrowed.name = "Prod, renamed from staging"
    narrowed.environment("staging").enabled = True
    narrowed.save()
    assert sorted(narrowed.environments) == ["staging"]
    whole = jobs.get("sc-prod")
    assert whole.name == "Prod, renamed from staging"
    assert whole.environments["production"].url == f"{live.target}/prod"
    with pytest.raises(Error) as forbidden:
        staged.delete("sc-prod")  # enabled where the token cannot see
    assert forbidden.value.status_code == 403
    once = staged.schedule(
        "sc-once", name="Once", schedule=datetime(2031, 1, 1, tzinfo=UTC), configuration=ok
    )
    once.save()
    assert list(once.environments) == ["staging"]
    assert settled(jobs, prod_run.id, implied.id) == ["SUCCEEDED"] * 2
    assert staged.usage().active_jobs >= 2


def test_the_async_client_over_the_same_calls(live: Live) -> None:
    async def drive() -> None:
        async with AsyncJobsClient(auth_client=live.client()) as jobs:
            policy = jobs.retry_policies.new(
                "as-p", name="Async", max_retries=1, backoff=Backoff.FIXED, delay_seconds=1
            )
            await policy.save()
            assert [p.id for p in await jobs.retry_policies.list(name="async")] == ["as-p"]
            job = jobs.new_manual_job(
                "as-job",
                name="Async job",
                configuration=HttpConfig(url=f"{live.target}/ok"),
                environments=BOTH,
                retry_policy=policy,
            )
            await job.save()
            assert job.version == 1 and job.retry_policy == "as-p"
            job.environment("staging").enabled = False
            await job.save()
            assert (await jobs.get("as-job")).environments["staging"].enabled is False
            assert [j.id for j in await jobs.list(name="async")] == ["as-job"]
            run = await job.trigger()
            for _ in range(400):
                run = await jobs.runs.get(run.id)
                if run.status not in ("PENDING", "RUNNING"):
                    break
                await asyncio.sleep(0.05)
            assert run.status == "SUCCEEDED"
            again = await run.rerun()
            assert again.rerun_of == run.id
            listed = await jobs.runs.list(job="as-job", triggers=[RunTrigger.MANUAL])
            assert [r.id for r in listed] == [run.id]
            assert [r.id for r in await job.list_runs(environment="production")][-1] == run.id
            with pytest.raises(ConflictError):
                await jobs.runs.cancel(run.id)
            assert (await jobs.usage()).runs_used >= 1
            await job.delete()
            with pytest.raises(NotFoundError):
                await jobs.get("as-job")
            await (await jobs.retry_policies.get("as-p")).delete()

    asyncio.run(drive())
