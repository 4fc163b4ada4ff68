"""A scoped token's PUT of a job as it read it (its `environments` narrowed to
its scope) changes nothing: VERSIONS.md keeps the entries it cannot see, and
a client may send back what it read. A one-off's entries are its targets, so
a one-off aimed only outside the token's scope reads with an empty map; sent
back, that must not aim it at the token's environment too (nor be a 422)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.config import token_sha256
from tests.api.conformance import NEW, SEED, Versioned
from tests.api.test_retry_policies import Policies, policy
from tests.api.test_version_round_trip import kept, new_jobs
from tests.conftest import make_harness

STAGING = "jobsd_scoped-to-staging"
PRODUCTION = "jobsd_scoped-to-production"
ACME = f"""environments = ["production", "staging", "qa"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING)}"
environments = ["staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(PRODUCTION)}"
environments = ["production", "qa"]
"""
_counter = itertools.count()


def one_off(targets: dict[str, Any]) -> dict[str, Any]:
    attributes = {
        "name": "once",
        "schedule": "2030-01-01T00:00:00Z",
        "configuration": {"url": "https://example.invalid/"},
        "environments": targets,
    }
    return {"data": {"type": "job", "id": "once", "attributes": attributes}}


async def test_a_one_off_aimed_out_of_scope_written_back_as_read(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ACME) as h:
        v = Versioned(h, NEW)
        for token, elsewhere in [(STAGING, "production"), (PRODUCTION, "staging")]:
            assert (await v.post_job(one_off({elsewhere: {}}))).status == 201
            before = (await v.get_job("once")).body["data"]["attributes"]
            scoped = Versioned(h, NEW, token=token)
            read = await scoped.get_job("once")
            assert read.body["data"]["attributes"]["environments"] == {}
            put = await scoped.put_job("once", read.body)
            assert put.status == 200, put.body
            after = (await v.get_job("once")).body["data"]["attributes"]
            assert kept(after) == kept(before)
            assert (await v.delete_job("once")).status == 204
        # Aimed nowhere at all, a one-off still needs its targets named.
        scoped = Versioned(h, NEW, token=PRODUCTION)
        assert (await scoped.post_job(one_off({}))).status == 422
        # A token with one environment implies it where nothing else is aimed at.
        assert (await Versioned(h, NEW, token=STAGING).post_job(one_off({}))).status == 201
        shown = (await v.get_job("once")).body["data"]["attributes"]["environments"]
        assert list(shown) == ["staging"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    attrs=new_jobs(),
    token=st.sampled_from([STAGING, PRODUCTION]),
    version=st.sampled_from([NEW, SEED]),
)
async def test_a_scoped_write_back_as_read_changes_nothing(
    tmp_path: Path, attrs: dict[str, Any], token: str, version: str
) -> None:
    async with make_harness(tmp_path / f"s{next(_counter)}", acme=ACME) as h:
        v = Versioned(h, NEW)
        assert (await Policies(v).create(policy("p1"))).status == 201
        created = await v.post_job({"data": {"type": "job", "id": "j", "attributes": attrs}})
        assert created.status == 201, created.body
        before = (await v.get_job("j")).body["data"]["attributes"]
        scoped = Versioned(h, version, token=token)
        read = await scoped.get_job("j")
        if read.status == 403:  # the seed acts on production, which STAGING cannot reach
            assert version == SEED and token == STAGING
            return
        put = await scoped.put_job("j", read.body)
        assert put.status == 200, put.body
        assert kept((await v.get_job("j")).body["data"]["attributes"]) == kept(before)


async def test_a_scoped_put_cannot_drop_the_cadence_of_an_entry_out_of_reach(
    tmp_path: Path,
) -> None:
    """Making a job manual or a one-off drops every entry's schedule and time zone
    overrides (they apply to cron only): out of the token's reach, paused or not,
    that entry is not its to lose, unseen."""
    async with make_harness(tmp_path, acme=ACME) as h:
        full, staging = Versioned(h, NEW), Versioned(h, NEW, token=STAGING)
        prod = {"enabled": False, "schedule": "0 5 * * *", "timezone": "Europe/Paris"}
        attrs = {
            "name": "warm",
            "schedule": "0 2 * * *",
            "configuration": {"url": "https://example.invalid/"},
            "environments": {"production": prod, "staging": {"enabled": True}},
        }
        assert (
            await full.post_job({"data": {"type": "job", "id": "j", "attributes": attrs}})
        ).status == 201
        before = (await full.get_job("j")).body["data"]["attributes"]
        for schedule in (None, "2030-01-01T00:00:00Z"):
            mine = {**attrs, "schedule": schedule, "environments": {"staging": {"enabled": True}}}
            r = await staging.put_job("j", {"data": {"type": "job", "id": "j", "attributes": mine}})
            assert r.status == 403, r.body
            assert r.body["errors"][0]["code"] == "environment_scope"
            assert "production" in r.body["errors"][0]["detail"]
            assert kept((await full.get_job("j")).body["data"]["attributes"]) == kept(before)
        # Its own entry's cadence, and the base's, stay the token's to change.
        mine = {**attrs, "schedule": "0 3 * * *", "environments": {"staging": {"enabled": True}}}
        r = await staging.put_job("j", {"data": {"type": "job", "id": "j", "attributes": mine}})
        assert r.status == 200, r.body


async def test_a_seed_jobs_repeated_header_written_back_by_a_scoped_token(tmp_path: Path) -> None:
    """A header the seed wrote twice reads joined; a staging token sending the job
    back as read changes nothing production sends, so it is not refused (it was a
    403 environment_scope: the joined value was taken for a new base header)."""
    headers = [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]
    attrs = {
        "name": "twice",
        "enabled": True,
        "schedule": "0 2 * * *",
        "configuration": {"url": "https://example.invalid/", "headers": headers},
    }
    async with make_harness(tmp_path, acme=ACME) as h:
        seed = Versioned(h, SEED)
        created = await seed.post_job({"data": {"type": "job", "id": "t", "attributes": attrs}})
        assert created.status == 201, created.body
        scoped = Versioned(h, NEW, token=STAGING)
        read = await scoped.get_job("t")
        assert read.body["data"]["attributes"]["configuration"]["headers"] == {"X-A": "1, 2"}
        put = await scoped.put_job("t", read.body)
        assert put.status == 200, put.body
        after = (await seed.get_job("t")).body["data"]["attributes"]["configuration"]["headers"]
        assert after == headers
