"""A run still going out of a scoped token's reach is sent as the job is when it starts.

A run reads its request (the job's base under its environment's overrides)
when an executor claims it, not when it was created, and a failed run's
retry is decided by the policy in force when it fails. So a run PENDING or
RUNNING in production (a retry held while production is paused, which
retries go on through; a run-now, which works on a paused job through
2026-06-04) would carry production's secret header override to wherever a
staging token had pointed the base meanwhile, or retry as often as that
token chose. Such an environment is reached as an enabled one is: the token
may not change what that run (or its retries) sends, nor how it retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobsd.config import token_sha256
from jobsd.plans import UNLIMITED
from tests.api.conformance import NEW, SEED, Versioned
from tests.conftest import Harness, job_doc, make_harness

STAGING = "jobsd_scoped-to-staging"
ACME = f"""environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING)}"
environments = ["staging"]
"""
SECRET = "Bearer prod-secret"
ELSEWHERE = {"url": "https://attacker.example/steal"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, acme=ACME) as harness:
        yield harness


def doc(production_enabled: bool, **attrs: Any) -> dict[str, Any]:
    envs = {
        "production": {"enabled": production_enabled, "headers.Authorization": SECRET},
        "staging": {"enabled": True},
    }
    return job_doc("warm", environments=envs, **attrs)


async def paused_with_a_waiting_run(h: Harness) -> str:
    """The job paused in production, a run of it still PENDING there; its id."""
    full = Versioned(h, NEW)
    assert (await full.post_job(doc(True))).status == 201
    assert (await full.put_job("warm", doc(False))).status == 200
    run = await Versioned(h, SEED).run_now("warm")  # the seed runs a paused job
    assert run.status == 200, run.body
    assert (await full.get_run(run.body["data"]["id"])).body["data"]["attributes"][
        "environment"
    ] == "production"
    return str(run.body["data"]["id"])


async def test_a_scoped_put_cannot_redirect_a_run_waiting_out_of_reach(h: Harness) -> None:
    run_id = await paused_with_a_waiting_run(h)
    staging = Versioned(h, NEW, token=STAGING)
    sent_back = {"staging": {"enabled": True}}
    r = await staging.put_job(
        "warm", job_doc("warm", environments=sent_back, configuration=ELSEWHERE)
    )
    assert r.status == 403, r.body
    assert r.body["errors"][0]["code"] == "environment_scope"
    assert "production" in r.body["errors"][0]["detail"]
    # What the waiting run sends when it starts: still the job's own URL.
    claim = await h.store.runs.claim(run_id, lambda _: UNLIMITED)
    assert claim is not None and claim.config is not None
    assert claim.config.url == "https://example.invalid/hook"
    assert ("Authorization", SECRET) in [(x.name, x.value) for x in claim.config.headers]
    # RUNNING, its retry (written if it fails) would be sent as the job is then.
    r = await staging.put_job(
        "warm", job_doc("warm", environments=sent_back, configuration=ELSEWHERE)
    )
    assert r.status == 403, r.body


async def test_once_nothing_waits_out_of_reach_the_base_is_the_tokens_again(h: Harness) -> None:
    run_id = await paused_with_a_waiting_run(h)
    staging = Versioned(h, NEW, token=STAGING)
    assert (await Versioned(h, NEW).cancel(run_id)).status == 200
    sent_back = {"staging": {"enabled": True}}
    r = await staging.put_job(
        "warm", job_doc("warm", environments=sent_back, configuration=ELSEWHERE)
    )
    assert r.status == 200, r.body


async def test_a_scoped_token_cannot_delete_a_job_going_out_of_reach(h: Harness) -> None:
    run_id = await paused_with_a_waiting_run(h)
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    r = await staging.delete_job("warm")
    assert r.status == 403, r.body
    assert r.body["errors"][0]["code"] == "environment_scope"
    assert "production" in r.body["errors"][0]["detail"]
    run = await full.get_run(run_id)
    assert run.body["data"]["attributes"]["status"] == "PENDING"  # not canceled by staging
    assert (await full.cancel(run_id)).status == 200
    assert (await staging.delete_job("warm")).status == 204


async def test_a_run_going_where_the_job_has_no_entry_is_reached_too(h: Harness) -> None:
    # The seed runs a job in the default environment even with no entry there: that
    # run sends the base alone, which the staging token may then not repoint.
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    mine = {"staging": {"enabled": True}}
    assert (await full.post_job(job_doc("warm", environments=mine))).status == 201
    run = await Versioned(h, SEED).run_now("warm")
    assert run.status == 200, run.body
    r = await staging.put_job("warm", job_doc("warm", environments=mine, configuration=ELSEWHERE))
    assert r.status == 403 and "production" in r.body["errors"][0]["detail"], r.body
    assert (await full.cancel(run.body["data"]["id"])).status == 200
    r = await staging.put_job("warm", job_doc("warm", environments=mine, configuration=ELSEWHERE))
    assert r.status == 200, r.body
