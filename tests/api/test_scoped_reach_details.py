"""The finer terms of `jobsd.store.job_reach`, each caught by a test of its own.

A mutation round found them unwatched: the overlap policy of an environment
out of reach, a schedule or a time zone override (each alone) a cadence drop
would lose, an override's own retry policy that makes the job's the token's,
and a run going in the token's own environment (which is no reach out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobsd.config import token_sha256
from tests.api.conformance import NEW, SEED, Versioned
from tests.api.test_scoped_tokens import POLICIES, policy
from tests.conftest import Harness, job_doc, make_harness

STAGING = "jobsd_scoped-to-staging"
PRODUCTION = "jobsd_scoped-to-production"
ACME = f"""environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING)}"
environments = ["staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(PRODUCTION)}"
environments = ["production"]
"""
MINE = {"staging": {"enabled": True}}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, acme=ACME) as harness:
        yield harness


def refused(r: Any) -> bool:
    return bool(
        r.status == 403
        and r.body["errors"][0]["code"] == "environment_scope"
        and "production" in r.body["errors"][0]["detail"]
    )


async def test_a_scoped_put_cannot_change_the_overlap_policy_out_of_reach(h: Harness) -> None:
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    envs = {"production": {"enabled": True}, **MINE}
    doc = job_doc("j", environments=envs, overlap_policy="SKIP")
    assert (await full.post_job(doc)).status == 201, doc
    r = await staging.put_job("j", job_doc("j", environments=MINE, overlap_policy="ALLOW"))
    assert refused(r), r.body
    r = await staging.put_job("j", job_doc("j", environments=MINE, overlap_policy="SKIP"))
    assert r.status == 200, r.body


@pytest.mark.parametrize(
    "override", [{"schedule": "0 5 * * *"}, {"timezone": "Europe/Paris"}], ids=["schedule", "tz"]
)
async def test_either_cadence_override_alone_is_not_dropped_out_of_reach(
    h: Harness, override: dict[str, str]
) -> None:
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    envs = {"production": {"enabled": False, **override}, **MINE}
    assert (await full.post_job(job_doc("j", environments=envs))).status == 201
    r = await staging.put_job("j", job_doc("j", environments=MINE, schedule=None))
    assert refused(r), r.body


async def test_the_jobs_retry_policy_is_the_tokens_where_production_overrides_it(
    h: Harness,
) -> None:
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    for policy_id in ("p", "q"):
        assert (await full.call("POST", POLICIES, POLICIES, policy(policy_id))).status == 201
    envs = {"production": {"enabled": True, "retry_policy": "q"}, **MINE}
    assert (await full.post_job(job_doc("j", retry_policy="p", environments=envs))).status == 201
    r = await staging.put_job("j", job_doc("j", retry_policy="q", environments=MINE))
    assert r.status == 200, r.body


async def test_a_run_going_in_the_tokens_own_environment_is_no_reach_out(h: Harness) -> None:
    # The seed's run-now goes to production (the default), where the job has no
    # entry: the production token reaches it, so the base is its to change.
    full, prod = Versioned(h, NEW), Versioned(h, NEW, token=PRODUCTION)
    paused = {"staging": {"enabled": False}}
    assert (await full.post_job(job_doc("j", environments=paused))).status == 201
    run = await Versioned(h, SEED).run_now("j")
    assert run.status == 200, run.body
    elsewhere = {"url": "https://production.example/"}
    r = await prod.put_job("j", job_doc("j", environments={}, configuration=elsewhere))
    assert r.status == 200, r.body
