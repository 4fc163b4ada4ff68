"""Any job 2026-08-07 can write, read and written back as read through
2026-06-04, reads unchanged through 2026-08-07 (VERSIONS.md: one model, two
renderings; a write never destroys what only the other version can express,
and a client may send back what it read)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conformance import NEW, SEED, Versioned
from tests.api.test_retry_policies import Policies, policy
from tests.conftest import make_harness

ENVS = 'environments = ["production", "staging"]'
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
