"""Any job 2026-08-07 can write, read and written back as read through
2026-06-04, reads unchanged through 2026-08-07 (VERSIONS.md: one model, two
renderings; a write never destroys what only the other version can express,
and a client may send back what it read)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.api.v2026_08_07.documents import parse_job_document
from jobsd.job_model import JobCounting, JobWrite
from jobsd.plans import UNLIMITED
from jobsd.store.job_writes import Limit
from tests.api.conformance import NEW, SEED, Versioned
from tests.api.test_retry_policies import Policies, policy
from tests.conftest import make_harness

ENVS = 'environments = ["production", "staging"]'
_ALL = ("production", "staging")
_counter = itertools.count()

header_names = st.sampled_from(["Authorization", "X-Trace", "x-env", "Accept"])
values = st.text("abcXYZ019 -", min_size=1, max_size=8).map(str.strip).filter(bool)
zones = st.sampled_from([None, "Europe/Paris", "Asia/Tokyo", "America/New_York"])
policies = st.sampled_from([None, "p1"])


@st.composite
def overlays(draw: st.DrawFn, recurring: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if draw(st.booleans()):
        entry["enabled"] = draw(st.booleans())
    if draw(st.booleans()):
        entry["url"] = draw(st.sampled_from(["https://a.invalid/", "https://b.invalid/x"]))
    if draw(st.booleans()):
        entry["timeout"] = draw(st.integers(1, 60))
    if draw(st.booleans()):
        entry["retry_policy"] = "p1"
    for name in draw(st.sets(header_names, max_size=2)):
        entry[f"headers.{name}"] = draw(values)
    if recurring and draw(st.booleans()):
        entry["schedule"] = draw(st.sampled_from(["0 3 * * *", "*/15 * * * *"]))
    if recurring and draw(st.booleans()):
        entry["timezone"] = draw(zones.filter(bool))
    return entry


@st.composite
def new_jobs(draw: st.DrawFn) -> dict[str, Any]:
    schedule = draw(st.sampled_from(["0 2 * * *", "30 1 * * 1-5", "2030-01-01T00:00:00Z"]))
    recurring = " " in schedule
    names = draw(st.sets(header_names, max_size=3))
    envs = draw(st.sets(st.sampled_from(["production", "staging"]), min_size=0 if recurring else 1))
    attrs: dict[str, Any] = {
        "name": draw(values),
        "description": draw(st.none() | values),
        "schedule": schedule,
        "configuration": {
            "url": "https://example.invalid/hook",
            "method": draw(st.sampled_from(["POST", "GET", "PUT"])),
            "headers": {n: draw(values) for n in names},
            "timeout": draw(st.integers(1, 60)),
        },
        "environments": {env: draw(overlays(recurring)) for env in sorted(envs)},
        "retry_policy": draw(policies),
        "overlap_policy": draw(st.sampled_from(["ALLOW", "SKIP"])),
    }
    if recurring:
        attrs["timezone"] = draw(zones)
    return attrs


def _kept(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in ("version", "updated_at")}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(attrs=new_jobs())
async def test_a_newer_job_written_back_as_read_through_the_seed_is_unchanged(
    tmp_path: Path, attrs: dict[str, Any]
) -> None:
    async with make_harness(tmp_path / f"r{next(_counter)}", acme=ENVS) as h:
        v, seed = Versioned(h, NEW), Versioned(h, SEED)
        assert (await Policies(v).create(policy("p1"))).status == 201
        doc = {"data": {"type": "job", "id": "j", "attributes": attrs}}
        created = await v.post_job(doc)
        assert created.status == 201, created.body
        before = (await v.get_job("j")).body["data"]["attributes"]
        read = await seed.get_job("j")
        assert read.status == 200, read.body
        put = await seed.put_job("j", read.body)
        assert put.status == 200, put.body
        assert _kept(put.body["data"]["attributes"]) == _kept(read.body["data"]["attributes"])
        after = (await v.get_job("j")).body["data"]["attributes"]
        assert _kept(after) == _kept(before)


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


@st.composite
def seed_jobs(draw: st.DrawFn) -> dict[str, Any]:
    schedule = draw(st.sampled_from(["0 2 * * *", "*/5 * * * *", "2030-01-01T00:00:00Z", "now"]))
    names = draw(st.sets(header_names, max_size=3))
    attrs: dict[str, Any] = {
        "name": draw(values),
        "description": draw(st.none() | values),
        "enabled": draw(st.booleans()),
        "schedule": schedule,
        "configuration": {
            "url": "https://example.invalid/hook",
            "headers": [{"name": n, "value": draw(values)} for n in sorted(names)],
        },
    }
    if draw(st.booleans()):
        attrs["retry_policy"] = draw(policies)
    if " " in schedule and draw(st.booleans()):
        attrs["timezone"] = draw(zones)
    if draw(st.booleans()):
        attrs["overlap_policy"] = draw(st.sampled_from(["ALLOW", "SKIP"]))
    return attrs


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(attrs=seed_jobs(), newer=new_jobs())
async def test_each_version_written_back_as_read_changes_nothing_either_shows(
    tmp_path: Path, attrs: dict[str, Any], newer: dict[str, Any]
) -> None:
    async with make_harness(tmp_path / f"s{next(_counter)}", acme=ENVS) as h:
        v, seed = Versioned(h, NEW), Versioned(h, SEED)
        assert (await Policies(v).create(policy("p1"))).status == 201
        created = await seed.post_job({"data": {"type": "job", "id": "s", "attributes": attrs}})
        assert created.status == 201, created.body
        created = await v.post_job({"data": {"type": "job", "id": "n", "attributes": newer}})
        assert created.status == 201, created.body
        for slug in ("s", "n"):
            before = {w.version: (await w.get_job(slug)).body for w in (v, seed)}
            for writer in (v, seed):
                put = await writer.put_job(slug, (await writer.get_job(slug)).body)
                assert put.status == 200, put.body
                for w in (v, seed):
                    after = (await w.get_job(slug)).body["data"]["attributes"]
                    assert _kept(after) == _kept(before[w.version]["data"]["attributes"])


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
            limit = Limit(UNLIMITED, JobCounting(None))
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
