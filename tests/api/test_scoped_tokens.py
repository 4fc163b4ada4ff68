"""Tokens limited to some of an account's environments (VERSIONS.md, "Settled details").

A scoped token sees, lists, runs and changes only its environments: another
environment is unknown wherever it is named (422 in bodies, 400 in filters),
its runs are 404 and never listed, jobs are listed with their map narrowed,
a PUT keeps the entries it cannot see, and deleting a job enabled where the
token cannot reach is 403, as is a PUT that changes what such an environment
sends (it inherits the base), and replacing a retry policy that decides how
jobs retry there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobsd.buckets import MAX_BUCKETS
from jobsd.config import token_sha256
from tests.api.conformance import NEW, SEED, Versioned, codes, pointers
from tests.conftest import Harness, job_doc, make_harness

STAGING_TOKEN = "jobsd_scoped-to-staging"
BOTH_TOKEN = "jobsd_scoped-to-both"
ACME = f"""environments = ["production", "staging", "qa"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING_TOKEN)}"
environments = ["staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(BOTH_TOKEN)}"
environments = ["production", "staging"]
"""


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, acme=ACME) as harness:
        yield harness


POLICIES = "/api/v1/retry-policies"
ONE_POLICY = "/api/v1/retry-policies/{policy_id}"


def doc(slug: str = "warm", **attrs: Any) -> dict[str, Any]:
    return job_doc(slug, **attrs)


def policy(policy_id: str, max_retries: int = 1) -> dict[str, Any]:
    attributes = {
        "name": policy_id,
        "max_retries": max_retries,
        "backoff": "fixed",
        "delay_seconds": 5,
    }
    return {"data": {"id": policy_id, "type": "retry_policy", "attributes": attributes}}


async def test_a_scoped_token_sees_and_changes_only_its_environments(h: Harness) -> None:
    full, staging = Versioned(h), Versioned(h, token=STAGING_TOKEN)
    envs = {
        "production": {"enabled": True, "url": "https://prod.example.com/"},
        "staging": {"enabled": True, "headers.X-Env": "staging"},
        "qa": {"enabled": False},
    }
    assert (await full.post_job(doc(environments=envs))).status == 201
    seen = await staging.get_job("warm")
    assert list(seen.body["data"]["attributes"]["environments"]) == ["staging"]
    listed = await staging.list_jobs()
    assert [list(j["attributes"]["environments"]) for j in listed.body["data"]] == [["staging"]]
    # Naming another environment is naming an unknown one.
    r = await staging.put_job("warm", doc(environments={"production": {"enabled": False}}))
    assert r.status == 422
    assert codes(r.body) == {("/data/attributes/environments/production", "unknown_environment")}
    # A PUT replaces the base and its own entries, and keeps the others.
    r = await staging.put_job(
        "warm", doc(name="renamed", environments={"staging": {"enabled": False}})
    )
    assert r.status == 200, r.body
    after = (await full.get_job("warm")).body["data"]["attributes"]
    assert after["name"] == "renamed"
    assert after["environments"]["production"] == {
        "enabled": True,
        "url": "https://prod.example.com/",
        "next_run_at": "2026-06-06T02:00:00Z",
    }
    assert after["environments"]["qa"] == {"enabled": False, "next_run_at": None}
    assert after["environments"]["staging"] == {"enabled": False, "next_run_at": None}
    # A PUT that leaves its own entry out removes it, and only it.
    r = await Versioned(h, token=BOTH_TOKEN).put_job("warm", doc(environments={}))
    after = (await full.get_job("warm")).body["data"]["attributes"]["environments"]
    assert r.status == 200 and list(after) == ["qa"]


async def test_runs_outside_the_scope_do_not_exist(h: Harness) -> None:
    full, staging = Versioned(h), Versioned(h, token=STAGING_TOKEN)
    envs = {"production": {"enabled": True}, "staging": {"enabled": True}}
    await full.post_job(doc(environments=envs))
    prod_run = (await full.run_now("warm", {"environment": "production"})).body["data"]["id"]
    mine = await staging.run_now("warm")  # the token's only environment is implied
    assert mine.status == 200 and mine.body["data"]["attributes"]["environment"] == "staging"
    mine_id = mine.body["data"]["id"]
    for call in (staging.get_run, staging.cancel, staging.rerun):
        r = await call(prod_run)
        assert r.status == 404, call
    listed = await staging.list_runs()
    assert [r["id"] for r in listed.body["data"]] == [mine_id]
    r = await staging.list_runs("?filter[environment]=production")
    assert r.status == 400 and r.body["errors"][0]["source"] == {"parameter": "filter[environment]"}
    r = await staging.run_now("warm", {"environment": "production"})
    assert r.status == 422 and pointers(r.body) == {"/environment"}
    assert {r["id"] for r in (await full.list_runs()).body["data"]} == {prod_run, mine_id}
    assert (await staging.get_run(mine_id)).status == 200


async def test_deleting_a_job_enabled_out_of_reach_is_forbidden(h: Harness) -> None:
    full, staging = Versioned(h), Versioned(h, token=STAGING_TOKEN)
    await full.post_job(doc("a", environments={"production": {"enabled": True}}))
    await full.post_job(doc("b", environments={"production": {"enabled": False}}))
    r = await staging.delete_job("a")
    assert r.status == 403 and r.body["errors"][0]["code"] == "environment_scope"
    assert (await full.get_job("a")).status == 200
    assert (await staging.delete_job("b")).status == 204


async def test_the_seed_version_needs_the_default_environment(h: Harness) -> None:
    await Versioned(h).post_job(doc(environments={"staging": {"enabled": True}}))
    seed = Versioned(h, SEED, token=STAGING_TOKEN)
    for r in (await seed.get_job("warm"), await seed.list_jobs(), await seed.run_now("warm")):
        assert r.status == 403 and r.body["errors"][0]["code"] == "environment_scope"
    both = Versioned(h, SEED, token=BOTH_TOKEN)
    r = await both.get_job("warm")
    assert r.status == 200 and r.body["data"]["attributes"]["enabled"] is False
    # Runs and usage need no environment of their own.
    assert (await seed.list_runs()).status == 200
    assert (await Versioned(h, NEW, token=STAGING_TOKEN).usage()).status == 200


async def test_a_scoped_put_cannot_change_what_an_environment_out_of_reach_sends(
    h: Harness,
) -> None:
    # The base is what every environment inherits: a staging token that could
    # point it elsewhere would send production's own secret header override
    # (and its schedule, its retries) wherever it liked. So a scoped PUT may
    # change what an enabled environment out of its reach sends or when: no;
    # its own entries and the job's name: yes; a job not enabled out of reach: yes.
    full, staging = Versioned(h), Versioned(h, token=STAGING_TOKEN)
    envs = {
        "production": {"enabled": True, "headers.Authorization": "Bearer prod-secret"},
        "staging": {"enabled": True},
        "qa": {"enabled": False},
    }
    assert (await full.post_job(doc(environments=envs))).status == 201
    before = (await full.get_job("warm")).body["data"]["attributes"]
    mine = {"staging": {"enabled": True}}
    elsewhere = {"url": "https://attacker.example/steal"}
    for attrs in (
        {"configuration": elsewhere},
        {"configuration": {**before["configuration"], "tls_verify": False}},
        {"configuration": {**before["configuration"], "headers": {"X-Extra": "1"}}},
        {"schedule": "* * * * *", "configuration": before["configuration"]},
        {"timezone": "Asia/Tokyo", "configuration": before["configuration"]},
    ):
        r = await staging.put_job("warm", doc(environments=mine, **attrs))
        assert r.status == 403, (attrs, r.body)
        assert r.body["errors"][0]["code"] == "environment_scope"
        assert "production" in r.body["errors"][0]["detail"]
        assert (await full.get_job("warm")).body["data"]["attributes"] == before
    # The same base sent back (as read), with only its own entry and the name changed.
    same = {"configuration": before["configuration"], "schedule": before["schedule"]}
    r = await staging.put_job(
        "warm", doc(name="renamed", environments={"staging": {"enabled": False}}, **same)
    )
    assert r.status == 200, r.body
    # A staging override of its own may still point staging anywhere.
    own = {"staging": {"enabled": True, "url": "https://staging.example/"}}
    assert (await staging.put_job("warm", doc(environments=own, **same))).status == 200
    # Where nothing out of reach is enabled, the base is the token's to change.
    await full.post_job(doc("b", environments={"production": {"enabled": False}}))
    r = await staging.put_job("b", doc("b", environments=mine, configuration=elsewhere))
    assert r.status == 200, r.body


async def test_a_scoped_token_cannot_rewrite_a_policy_in_effect_out_of_reach(h: Harness) -> None:
    full, staging = Versioned(h), Versioned(h, token=STAGING_TOKEN)
    for policy_id in ("p", "q"):
        assert (await full.call("POST", POLICIES, POLICIES, policy(policy_id))).status == 201
    envs = {"production": {"enabled": True}, "staging": {"enabled": True}}
    assert (await full.post_job(doc("a", retry_policy="p", environments=envs))).status == 201

    async def put_policy(v: Versioned, policy_id: str, retries: int) -> Any:
        return await v.call(
            "PUT", f"{POLICIES}/{policy_id}", ONE_POLICY, policy(policy_id, retries)
        )

    # Production inherits the job's policy: staging may not choose its retries.
    r = await put_policy(staging, "p", 10)
    assert r.status == 403 and r.body["errors"][0]["code"] == "environment_scope", r.body
    assert "production" in r.body["errors"][0]["detail"] and "a" in r.body["errors"][0]["detail"]
    got = await full.call("GET", f"{POLICIES}/p", ONE_POLICY)
    assert got.body["data"]["attributes"]["max_retries"] == 1
    # Production's own override wins: then the job's policy is staging's to change,
    # and the override's is not.
    envs["production"] = {"enabled": True, "retry_policy": "q"}
    assert (await full.put_job("a", doc("a", retry_policy="p", environments=envs))).status == 200
    assert (await put_policy(staging, "p", 10)).status == 200
    assert (await put_policy(staging, "q", 10)).status == 403
    # Disabled out of reach, or a token that reaches production: allowed.
    envs["production"] = {"enabled": False, "retry_policy": "q"}
    assert (await full.put_job("a", doc("a", retry_policy="p", environments=envs))).status == 200
    assert (await put_policy(staging, "q", 3)).status == 200
    assert (await put_policy(Versioned(h, token=BOTH_TOKEN), "p", 2)).status == 200


async def test_the_bucket_bound_counts_only_runs_the_caller_may_see(h: Harness) -> None:
    # Production's runs a month back made a staging token's `bucket=1m` a 400
    # that printed when they were created: a span of runs it may not see.
    full, staging = Versioned(h), Versioned(h, token=STAGING_TOKEN)
    envs = {"production": {"enabled": True}, "staging": {"enabled": True}}
    await full.post_job(doc(environments=envs))
    old = (await full.run_now("warm", {"environment": "production"})).body["data"]["id"]
    await h.store.engine.write(
        lambda c: c.execute(
            "UPDATE runs SET created_at_us = created_at_us - 30 * 86400000000 WHERE id = ?", (old,)
        )
    )
    assert (await staging.run_now("warm")).status == 200
    for query in ("bucket=1m", "bucket=1m&filter[environment]=staging"):
        r = await staging.call("GET", f"/api/v1/run_stats?{query}", "/api/v1/run_stats")
        assert r.status == 200, r.body
        assert [b["count"] for b in r.body["data"]["attributes"]["buckets"]] == [1]
    # Narrowed by the environment filter as by the scope.
    r = await full.call(
        "GET", "/api/v1/run_stats?bucket=1m&filter[environment]=staging", "/api/v1/run_stats"
    )
    assert r.status == 200, r.body
    r = await full.call("GET", "/api/v1/run_stats?bucket=1m", "/api/v1/run_stats")
    assert r.status == 400 and r.body["errors"][0]["source"] == {"parameter": "bucket"}
    # The bound itself: MAX_BUCKETS minutes are answered, one more is not.
    for spanned, status in ((MAX_BUCKETS, 200), (MAX_BUCKETS + 1, 400)):
        await h.store.engine.write(
            lambda c, back=(spanned - 1) * 60_000_000: c.execute(
                "UPDATE runs SET created_at_us ="
                " (SELECT MAX(created_at_us) FROM runs WHERE id != ?) - ? WHERE id = ?",
                (old, back, old),
            )
        )
        r = await full.call("GET", "/api/v1/run_stats?bucket=1m", "/api/v1/run_stats")
        assert r.status == status, (spanned, r.body)
