"""A scoped token may not replace the retry policy a run going out of its reach retries by.

A failed run's retry is decided by the policy in force when it fails (its
environment's override, else the job's), and a run may be going in an
environment where the job is paused: a held retry, a run-now of a paused
job. A token scoped to staging that replaced that policy would choose how
often production's requests, its secret header overrides included, are sent
again: the environment is reached as an enabled one is.
"""

from __future__ import annotations

from typing import Any

from jobsd.plans import UNLIMITED
from tests.api.conformance import NEW, SEED, Versioned
from tests.api.test_scoped_waiting_runs import STAGING, doc, h
from tests.conftest import Harness

__all__ = ["h"]


POLICIES = "/api/v1/retry-policies"


def policy(max_retries: int) -> dict[str, Any]:
    attributes = {"name": "p", "max_retries": max_retries, "backoff": "fixed", "delay_seconds": 5}
    return {"data": {"id": "p", "type": "retry_policy", "attributes": attributes}}


async def test_a_scoped_token_cannot_rewrite_how_a_waiting_run_retries(h: Harness) -> None:
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    assert (await full.call("POST", POLICIES, POLICIES, policy(1))).status == 201
    assert (await full.post_job(doc(False, retry_policy="p"))).status == 201
    run = await Versioned(h, SEED).run_now("warm")  # PENDING in paused production
    assert run.status == 200, run.body
    one = f"{POLICIES}/p"
    r = await staging.call("PUT", one, f"{POLICIES}/{{policy_id}}", policy(10))
    assert r.status == 403, r.body
    assert r.body["errors"][0]["code"] == "environment_scope"
    assert "production" in r.body["errors"][0]["detail"]
    got = await full.call("GET", one, f"{POLICIES}/{{policy_id}}")
    assert got.body["data"]["attributes"]["max_retries"] == 1
    # Started, it still retries by the policy in force when it fails.
    assert await h.store.runs.claim(run.body["data"]["id"], lambda _: UNLIMITED) is not None
    r = await staging.call("PUT", one, f"{POLICIES}/{{policy_id}}", policy(10))
    assert r.status == 403, r.body
    # Ended, nothing out of reach goes by it any more.
    assert (await full.cancel(run.body["data"]["id"])).status == 200
    r = await staging.call("PUT", one, f"{POLICIES}/{{policy_id}}", policy(10))
    assert r.status == 200, r.body
