"""Which jobs a policy's scoped replace is judged by (`jobsd.store.policy_reach`): the
account's own, not deleted. A mutation round found neither term watched."""

from __future__ import annotations

from typing import Any

from tests.api.conformance import NEW, SEED, Versioned
from tests.api.test_scoped_policy_runs import POLICIES, policy
from tests.api.test_scoped_waiting_runs import STAGING, h
from tests.conftest import TOKEN_B, Harness, job_doc

__all__ = ["h"]


async def put_policy(v: Versioned, retries: int) -> Any:
    return await v.call(
        "PUT", f"{POLICIES}/p", "/api/v1/retry-policies/{policy_id}", policy(retries)
    )


async def test_another_accounts_jobs_do_not_hold_back_a_scoped_policy_replace(h: Harness) -> None:
    full, staging, theirs = (
        Versioned(h, NEW),
        Versioned(h, NEW, token=STAGING),
        Versioned(h, token=TOKEN_B),
    )
    for v in (full, theirs):
        assert (await v.call("POST", POLICIES, POLICIES, policy(1))).status == 201
    on = {"production": {"enabled": True}}
    # Theirs retries by their own "p" in production, a run of it going there too.
    assert (await theirs.post_job(job_doc("o", retry_policy="p", environments=on))).status == 201
    assert (await theirs.run_now("o")).status == 200
    r = await put_policy(staging, 2)
    assert r.status == 200, r.body


async def test_a_deleted_job_does_not_hold_back_a_scoped_policy_replace(h: Harness) -> None:
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    assert (await full.call("POST", POLICIES, POLICIES, policy(1))).status == 201
    envs = {"production": {"enabled": True}}
    assert (await full.post_job(job_doc("d", retry_policy="p", environments=envs))).status == 201
    assert (await put_policy(staging, 2)).status == 403
    run = await full.run_now("d", {"environment": "production"})
    assert run.status == 200, run.body
    assert (await full.delete_job("d")).status == 204  # its request is never sent again
    r = await put_policy(staging, 2)
    assert r.status == 200, r.body


async def test_a_run_going_out_of_reach_retries_by_its_own_environments_policy(
    h: Harness,
) -> None:
    """A run going in production (the job paused there) retries by production's
    override, else the job's policy: not by staging's override, nor the job's when
    production overrides it."""
    full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
    for policy_id in ("p", "q"):
        attributes = {**policy(1)["data"]["attributes"], "name": policy_id}
        body = {"data": {"id": policy_id, "type": "retry_policy", "attributes": attributes}}
        assert (await full.call("POST", POLICIES, POLICIES, body)).status == 201
    for slug, production, mine in [
        ("overridden", {"retry_policy": "p"}, {}),  # production retries by p
        ("inherits", {}, {"retry_policy": "p"}),  # production retries by q
    ]:
        envs = {
            "production": {"enabled": False, **production},
            "staging": {"enabled": True, **mine},
        }
        doc = job_doc(slug, retry_policy="q", environments=envs)
        assert (await full.post_job(doc)).status == 201
        run = await Versioned(h, SEED).run_now(slug)  # the seed runs a paused job
        assert run.status == 200, run.body
        r = await put_policy(staging, 2)
        assert r.status == (403 if slug == "overridden" else 200), (slug, r.body)
        assert (await full.cancel(run.body["data"]["id"])).status == 200
