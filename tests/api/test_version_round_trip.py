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


def kept(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in ("version", "updated_at")}


def round_trips(examples: int) -> Any:
    """Each property's settings: every example runs a whole app (slow, and on the
    function's `tmp_path`, each in a folder of its own)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@round_trips(40)
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
        assert kept(put.body["data"]["attributes"]) == kept(read.body["data"]["attributes"])
        after = (await v.get_job("j")).body["data"]["attributes"]
        assert kept(after) == kept(before)


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


@round_trips(30)
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
                    assert kept(after) == kept(before[w.version]["data"]["attributes"])


@st.composite
def seed_edits(draw: st.DrawFn) -> dict[str, Any]:
    """Changes a seed client may make to what it read: base fields only."""
    edits: dict[str, Any] = {}
    if draw(st.booleans()):
        edits["name"] = draw(values)
    if draw(st.booleans()):
        edits["enabled"] = draw(st.booleans())
    if draw(st.booleans()):
        edits["url"] = draw(st.sampled_from(["https://c.invalid/", "https://d.invalid/y"]))
    if draw(st.booleans()):
        names = draw(st.sets(header_names, max_size=3))
        edits["headers"] = [{"name": n, "value": draw(values)} for n in sorted(names)]
    return edits


@round_trips(30)
@given(attrs=new_jobs(), edits=seed_edits())
async def test_a_seed_edit_keeps_what_only_the_newer_version_says(
    tmp_path: Path, attrs: dict[str, Any], edits: dict[str, Any]
) -> None:
    async with make_harness(tmp_path / f"e{next(_counter)}", acme=ENVS) as h:
        v, seed = Versioned(h, NEW), Versioned(h, SEED)
        assert (await Policies(v).create(policy("p1"))).status == 201
        created = await v.post_job({"data": {"type": "job", "id": "j", "attributes": attrs}})
        assert created.status == 201, created.body
        before = (await v.get_job("j")).body["data"]["attributes"]
        read = (await seed.get_job("j")).body["data"]["attributes"]
        sent = {k: x for k, x in read.items() if k not in ("timezone", "retry_policy")}
        sent["configuration"] = dict(read["configuration"])
        for key in ("url", "headers"):
            if key in edits:
                sent["configuration"][key] = edits[key]
        sent.update({k: x for k, x in edits.items() if k in ("name", "enabled")})
        put = await seed.put_job("j", {"data": {"type": "job", "attributes": sent}})
        assert put.status == 200, put.body
        after = (await v.get_job("j")).body["data"]["attributes"]
        for key in ("timezone", "retry_policy", "overlap_policy", "schedule", "kind"):
            assert after[key] == before[key], key
        envs_before, envs_after = before["environments"], after["environments"]
        assert {e: s for e, s in envs_after.items() if e != "production"} == {
            e: s for e, s in envs_before.items() if e != "production"
        }
        old = envs_before.get("production")
        new = envs_after.get("production")
        if old is None:
            assert new is None if not edits.get("enabled") else new["enabled"] is True
        else:
            assert new is not None
            leaves = {k: x for k, x in old.items() if k not in ("enabled", "next_run_at")}
            assert {k: x for k, x in new.items() if k not in ("enabled", "next_run_at")} == leaves
            assert new["enabled"] == edits.get("enabled", old["enabled"])
            if new["enabled"] == old["enabled"]:
                assert new["next_run_at"] == old["next_run_at"]


async def test_a_seed_jobs_repeated_headers_written_back_through_the_newer_version(
    tmp_path: Path,
) -> None:
    """The seed's array may name a header twice (or in two cases), which 2026-08-07
    shows as one, its values joined: sent back as read, that is not a new header
    value but the same ones. It used to be judged as one value (a 422 once the
    join passed the 8,192-character bound, so the job could not be saved through
    the newer version at all), and otherwise stored joined (the seed then read one
    header where it wrote three)."""
    long_value = "v" * 8000
    headers = [
        {"name": "X-Env", "value": long_value},
        {"name": "Accept", "value": "text/plain"},
        {"name": "x-env", "value": long_value},
        {"name": "X-Env", "value": "3"},
        {"name": "X-Trace", "value": "a"},
        {"name": "x-trace", "value": "b"},
    ]
    attrs = {
        "name": "repeated",
        "enabled": True,
        "schedule": "0 2 * * *",
        "configuration": {"url": "https://example.invalid/hook", "headers": headers},
    }
    async with make_harness(tmp_path, acme=ENVS) as h:
        v, seed = Versioned(h, NEW), Versioned(h, SEED)
        created = await seed.post_job({"data": {"type": "job", "id": "r", "attributes": attrs}})
        assert created.status == 201, created.body
        before = {w.version: (await w.get_job("r")).body for w in (v, seed)}
        shown = before[NEW]["data"]["attributes"]["configuration"]["headers"]
        assert shown["X-Env"] == f"{long_value}, {long_value}, 3"
        put = await v.put_job("r", before[NEW])
        assert put.status == 200, put.body
        for w in (v, seed):
            after = (await w.get_job("r")).body["data"]["attributes"]
            assert kept(after) == kept(before[w.version]["data"]["attributes"]), w.version
        # A value changed is one header from then on, as any written in an object.
        edited = before[NEW]["data"]["attributes"]
        edited["configuration"]["headers"] = {**shown, "X-Trace": "c"}
        edited["configuration"]["headers"].pop("X-Env")
        put = await v.put_job("r", {"data": {"type": "job", "attributes": edited}})
        assert put.status == 200, put.body
        read = (await seed.get_job("r")).body["data"]["attributes"]["configuration"]["headers"]
        assert read == [
            {"name": "Accept", "value": "text/plain"},
            {"name": "X-Trace", "value": "c"},
        ]
