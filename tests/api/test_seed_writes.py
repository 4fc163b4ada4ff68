"""Seed-version writes against what only 2026-08-07 can say: a default
environment the job has no entry in, and a job made manual (no seed form)
between the route's check and its write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobsd.api.v2026_08_07.documents import parse_job_document
from jobsd.job_model import JobCounting, JobWrite
from jobsd.plans import UNLIMITED
from jobsd.store.job_writes import Limit
from tests.api.conformance import NEW, SEED, Versioned
from tests.conftest import make_harness

ENVS = 'environments = ["production", "staging"]'
_ALL = ("production", "staging")


async def test_a_seed_write_back_adds_no_default_environment_entry(tmp_path: Path) -> None:
    # A job with no entry in the default environment reads `enabled: false`
    # through the seed; written back as read, it must not gain one (`{"production":
    # {"enabled": false}}`): the one-off below still targets staging alone.
    async with make_harness(tmp_path, acme=ENVS) as h:
        v, seed = Versioned(h, NEW), Versioned(h, SEED)
        for slug, schedule in [("rec", "0 2 * * *"), ("once", "2030-01-01T00:00:00Z")]:
            envs = {"staging": {"enabled": True}}
            doc = {
                "data": {
                    "type": "job",
                    "id": slug,
                    "attributes": {
                        "name": slug,
                        "schedule": schedule,
                        "environments": envs,
                        "configuration": {"url": "https://example.invalid/"},
                    },
                }
            }
            assert (await v.post_job(doc)).status == 201
            read = await seed.get_job(slug)
            assert read.body["data"]["attributes"]["enabled"] is False
            assert (await seed.put_job(slug, read.body)).status == 200
            after = (await v.get_job(slug)).body["data"]["attributes"]["environments"]
            assert list(after) == ["staging"], after
            # Enabling it through the seed does add the entry, as it must.
            enabled = read.body["data"]["attributes"] | {"enabled": True}
            assert (await seed.put_job(slug, {"data": {"attributes": enabled}})).status == 200
            after = (await v.get_job(slug)).body["data"]["attributes"]["environments"]
            assert after["production"]["enabled"] is True


@pytest.mark.parametrize("action", ["put", "delete"])
async def test_a_seed_write_never_lands_on_a_job_that_became_manual(
    tmp_path: Path, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seed route checks that the job has a seed form (not manual) before it
    # judges the body; a 2026-08-07 write that makes it manual may commit right
    # after that check. The seed's write must then be the 404 a manual job is
    # through the seed, not a replace (or delete) of a job it cannot show.
    async with make_harness(tmp_path, acme=ENVS) as h:
        v, seed = Versioned(h, NEW), Versioned(h, SEED)
        envs = {"staging": {"enabled": True}}
        doc = {
            "data": {
                "type": "job",
                "id": "j",
                "attributes": {
                    "name": "j",
                    "schedule": "0 2 * * *",
                    "environments": envs,
                    "configuration": {"url": "https://example.invalid/"},
                },
            }
        }
        assert (await v.post_job(doc)).status == 201
        read = (await seed.get_job("j")).body
        manual = {
            "data": {
                "type": "job",
                "id": "j",
                "attributes": {**doc["data"]["attributes"], "schedule": None},
            }
        }
        checked = h.store.jobs.get_job

        async def then_made_manual(*args: Any, **kw: Any) -> Any:
            job = await checked(*args, **kw)
            monkeypatch.setattr(h.store.jobs, "get_job", checked)
            spec, entries = parse_job_document(
                manual, path_slug="j", max_timeout_s=60, environments=_ALL
            )
            write = JobWrite(spec, entries, owns=frozenset(_ALL))
            limit = Limit(UNLIMITED, JobCounting(None), UNLIMITED)
            await h.store.jobs.replace_job("acme", "j", write, configured=_ALL, limit=limit)
            return job

        monkeypatch.setattr(h.store.jobs, "get_job", then_made_manual)
        if action == "put":
            r = await seed.put_job("j", read)
        else:
            r = await seed.delete_job("j")
        assert r.status == 404, r.body
        after = (await v.get_job("j")).body["data"]["attributes"]
        assert after["kind"] == "manual" and after["environments"]["staging"]["enabled"]
