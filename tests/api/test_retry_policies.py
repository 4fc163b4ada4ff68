"""`/api/v1/retry-policies` through the real app and store, in both API versions.

Every response is checked against the served spec of the version that
answered (tests/api/conformance.py): the seed's carries the newer spec's
retry-policy paths and schemas, and its jobs `retry_policy`, `timezone` and
`kind` as extension attributes (VERSIONS.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobsd.store import policies
from tests.api.conformance import NEW, SEED, Reply, Versioned, codes
from tests.conftest import TOKEN_B, Harness, job_doc, make_harness

ENVS = 'environments = ["production", "staging"]'
ONE = "/api/v1/retry-policies/{policy_id}"
ALL = "/api/v1/retry-policies"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, acme=ENVS) as harness:
        yield harness


def policy(policy_id: str = "retry-on-5xx", **attrs: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": "Retry on server errors",
        "max_retries": 5,
        "backoff": "exponential",
        "delay_seconds": 2,
        "max_delay_seconds": 60,
        "retry_on_connection_error": True,
        "retry_on_timeout": True,
        "retry_statuses": ["429", "5xx"],
        "retry_statuses_except": ["501"],
    }
    attributes.update(attrs)
    return {"data": {"id": policy_id, "type": "retry_policy", "attributes": attributes}}


def job(slug: str = "warm", **attrs: Any) -> dict[str, Any]:
    return job_doc(slug, **attrs)


class Policies:
    def __init__(self, v: Versioned) -> None:
        self.v = v

    async def create(self, doc: Any, **kw: Any) -> Reply:
        return await self.v.call("POST", ALL, ALL, doc, **kw)

    async def list(self, query: str = "", **kw: Any) -> Reply:
        return await self.v.call("GET", f"{ALL}{query}", ALL, **kw)

    async def get(self, policy_id: str, **kw: Any) -> Reply:
        return await self.v.call("GET", f"{ALL}/{policy_id}", ONE, **kw)

    async def put(self, policy_id: str, doc: Any, **kw: Any) -> Reply:
        return await self.v.call("PUT", f"{ALL}/{policy_id}", ONE, doc, **kw)

    async def delete(self, policy_id: str, **kw: Any) -> Reply:
        return await self.v.call("DELETE", f"{ALL}/{policy_id}", ONE, **kw)


@pytest.mark.parametrize("version", [NEW, SEED])
async def test_create_read_replace_delete(h: Harness, version: str) -> None:
    p = Policies(Versioned(h, version))
    created = await p.create(policy())
    assert created.status == 201, created.body
    assert created.headers["Location"] == "/api/v1/retry-policies/retry-on-5xx"
    data = created.body["data"]
    assert data["id"] == "retry-on-5xx" and data["type"] == "retry_policy"
    a = data["attributes"]
    assert a["max_retries"] == 5 and a["backoff"] == "exponential" and a["max_delay_seconds"] == 60
    assert a["retry_statuses"] == ["429", "5xx"] and a["retry_statuses_except"] == ["501"]
    assert a["version"] == 1 and a["deleted_at"] is None and a["created_at"] == a["updated_at"]
    assert (await p.get("retry-on-5xx")).body == created.body

    # PUT replaces every writable field: what it leaves out returns to its default.
    put = policy(name="Fixed", backoff="fixed", delay_seconds=30, max_delay_seconds=None)
    del put["data"]["attributes"]["retry_statuses_except"]
    del put["data"]["id"]
    replaced = await p.put("retry-on-5xx", put)
    assert replaced.status == 200, replaced.body
    b = replaced.body["data"]["attributes"]
    assert (b["name"], b["backoff"], b["delay_seconds"], b["max_delay_seconds"]) == (
        "Fixed",
        "fixed",
        30,
        None,
    )
    assert b["retry_statuses_except"] == [] and b["version"] == 2
    assert b["created_at"] == a["created_at"]
    # A client may send back what it read, read-only attributes and all.
    again = await p.put("retry-on-5xx", replaced.body)
    assert again.status == 200 and again.body["data"]["attributes"]["version"] == 3

    assert (await p.delete("retry-on-5xx")).status == 204
    assert (await p.get("retry-on-5xx")).status == 404
    assert (await p.delete("retry-on-5xx")).status == 404
    assert (await p.put("retry-on-5xx", put)).status == 404
    assert (await p.put("retry-on-5xx", {})).status == 404  # before its document is judged
    # The id is free again.
    assert (await p.create(policy())).status == 201


async def test_the_same_policies_through_both_versions(h: Harness) -> None:
    new, seed = Policies(Versioned(h, NEW)), Policies(Versioned(h, SEED))
    assert (await new.create(policy("a"))).status == 201
    assert (await seed.create(policy("b", name="B"))).status == 201
    assert (await seed.get("a")).body == (await new.get("a")).body
    listed = await seed.list()
    assert [d["id"] for d in listed.body["data"]] == ["b", "a"]  # by name: "B" < "Retry..."
    # Another account sees none of them.
    assert (await new.get("a", token=TOKEN_B)).status == 404
    assert (await new.list(token=TOKEN_B)).body["data"] == []


async def test_list_filters_sorts_and_pages(h: Harness) -> None:
    p = Policies(Versioned(h))
    for policy_id, name in [("c", "charlie"), ("a", "Alpha"), ("b", "bravo"), ("d", "ALPHABET")]:
        assert (await p.create(policy(policy_id, name=name))).status == 201

    async def ids(query: str) -> list[str]:
        r = await p.list(query)
        assert r.status == 200, r.body
        return [d["id"] for d in r.body["data"]]

    assert await ids("") == ["a", "d", "b", "c"]  # name, case-folded
    assert await ids("?sort=-name") == ["c", "b", "d", "a"]
    assert await ids("?sort=created_at") == ["c", "a", "b", "d"]
    assert await ids("?sort=-created_at") == ["d", "b", "a", "c"]
    assert await ids("?filter[name]=ALPH") == ["a", "d"]
    assert await ids("?page[size]=3&page[number]=2") == ["c"]
    assert await ids("?page[number]=999999999999999999") == []  # past any table, not SQLite
    r = await p.list("?page[size]=3&meta[total]=true")
    assert r.body["meta"]["pagination"] == {"page": 1, "size": 3, "total": 4, "total_pages": 2}
    assert (await p.list("?page[size]=3")).body["meta"]["pagination"] == {"page": 1, "size": 3}
    # updated_at moves with a replace.
    assert (await p.put("c", policy("c", name="charlie"))).status == 200
    assert await ids("?sort=-updated_at") == ["c", "d", "b", "a"]
    for query, parameter in [
        ("?sort=max_retries", "sort"),
        ("?page[size]=0", "page[size]"),
        ("?page[size]=1001", "page[size]"),
        ("?page[number]=0", "page[number]"),
        ("?filter[kind]=x", "filter[kind]"),
        ("?meta[total]=yes", "meta[total]"),
    ]:
        r = await p.list(query)
        assert r.status == 400, (query, r.body)
        assert r.body["errors"][0]["source"] == {"parameter": parameter}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"max_retries": 11}, {("/data/attributes/max_retries", "invalid_retry_policy")}),
        ({"max_retries": -1}, {("/data/attributes/max_retries", "invalid_retry_policy")}),
        ({"max_retries": 2.5}, {("/data/attributes/max_retries", "invalid_type")}),
        ({"max_retries": True}, {("/data/attributes/max_retries", "invalid_type")}),
        (
            {"backoff": "fixed", "max_delay_seconds": 60},
            {("/data/attributes/max_delay_seconds", "invalid_retry_policy")},
        ),
        ({"backoff": "Exponential"}, {("/data/attributes/backoff", "invalid_value")}),
        ({"delay_seconds": 0}, {("/data/attributes/delay_seconds", "invalid_retry_policy")}),
        ({"delay_seconds": None}, {("/data/attributes/delay_seconds", "invalid_type")}),
        (
            {"retry_statuses": ["429", "6xx", "5XX"]},
            {
                ("/data/attributes/retry_statuses/1", "invalid_retry_policy"),
                ("/data/attributes/retry_statuses/2", "invalid_retry_policy"),
            },
        ),
        (
            {"retry_statuses_except": [501]},
            {("/data/attributes/retry_statuses_except/0", "invalid_type")},
        ),
        ({"retry_statuses": None}, {("/data/attributes/retry_statuses", "invalid_type")}),
        (
            {"retry_statuses": ["5xx"] * 101},
            {("/data/attributes/retry_statuses", "invalid_retry_policy")},
        ),
        ({"retry_on_timeout": "yes"}, {("/data/attributes/retry_on_timeout", "invalid_type")}),
        ({"name": ""}, {("/data/attributes/name", "too_short")}),
        ({"retry_on_timout": True}, {("/data/attributes/retry_on_timout", "unknown_field")}),
        # Every bad field at once: a field of the wrong type does not hide a rule
        # broken by another.
        (
            {"max_retries": 11, "delay_seconds": "x"},
            {
                ("/data/attributes/max_retries", "invalid_retry_policy"),
                ("/data/attributes/delay_seconds", "invalid_type"),
            },
        ),
        (
            {"retry_statuses_except": [501, "5XX"]},
            {
                ("/data/attributes/retry_statuses_except/0", "invalid_type"),
                ("/data/attributes/retry_statuses_except/1", "invalid_retry_policy"),
            },
        ),
        (
            {"name": "", "retry_statuses": ["6xx"], "backoff": None, "max_delay_seconds": 0},
            {
                ("/data/attributes/name", "too_short"),
                ("/data/attributes/retry_statuses/0", "invalid_retry_policy"),
                ("/data/attributes/backoff", "invalid_value"),
                ("/data/attributes/max_delay_seconds", "invalid_retry_policy"),
            },
        ),
    ],
)
async def test_bad_policies_are_refused_with_their_pointer_and_change_nothing(
    h: Harness, changes: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    p = Policies(Versioned(h))
    assert (await p.create(policy("kept"))).status == 201
    before = (await p.list()).body
    r = await p.create(policy(**changes))
    assert r.status == 422, r.body
    assert codes(r.body) == expected
    r = await p.put("kept", policy("kept", **changes))
    assert r.status == 422 and codes(r.body) == expected
    assert (await p.list()).body == before


async def test_envelope_and_id_refusals(h: Harness) -> None:
    p = Policies(Versioned(h))
    assert (await p.create(policy("taken"))).status == 201
    r = await p.create(policy("taken"))
    assert r.status == 409 and codes(r.body) == {("/data/id", "id_taken")}
    r = await p.create({"data": {"type": "job", "id": "x", "attributes": {}}})
    assert r.status == 409 and codes(r.body) == {("/data/type", "type_mismatch")}
    r = await p.put("taken", policy("other"))
    assert r.status == 409 and codes(r.body) == {("/data/id", "id_mismatch")}
    for bad_id in ("Upper", "-dash", "a" * 101, "sp ace", 7):
        r = await p.create(policy(bad_id))  # type: ignore[arg-type]
        assert r.status == 422 and codes(r.body) <= {
            ("/data/id", "invalid_id"),
            ("/data/id", "invalid_type"),
        }, r.body
    r = await p.create(
        {"data": {"type": "retry_policy", "attributes": policy()["data"]["attributes"]}}
    )
    assert r.status == 422 and codes(r.body) == {("/data/id", "required")}
    r = await p.create([])
    assert r.status == 422
    assert (await p.get("NOT-A-SLUG")).status == 404
    assert (await p.put("NOT-A-SLUG", policy())).status == 404
    assert [d["id"] for d in (await p.list()).body["data"]] == ["taken"]


async def test_an_account_holds_a_bounded_number_of_policies(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policies, "MAX_POLICIES", 3)
    p = Policies(Versioned(h))
    for n in range(3):
        assert (await p.create(policy(f"p{n}"))).status == 201
    r = await p.create(policy("p3"))
    assert r.status == 403 and r.body["errors"][0]["code"] == "retry_policies_limit"
    assert (await p.delete("p0")).status == 204
    assert (await p.create(policy("p3"))).status == 201


@pytest.mark.parametrize("version", [NEW, SEED])
async def test_jobs_name_only_policies_the_account_has(h: Harness, version: str) -> None:
    v = Versioned(h, version)
    p = Policies(v)
    doc = job(retry_policy="gentle")
    if version == SEED:
        doc["data"]["attributes"]["enabled"] = True
    r = await v.post_job(doc)
    assert r.status == 422 and codes(r.body) == {
        ("/data/attributes/retry_policy", "unknown_retry_policy")
    }
    assert (await v.get_job("warm")).status == 404
    assert (await p.create(policy("gentle"))).status == 201
    # Another account's policy of the same id is not this account's.
    assert (await Policies(Versioned(h, version, TOKEN_B)).create(policy("other-s"))).status == 201
    r = await v.post_job(doc)
    assert r.status == 201, r.body
    assert r.body["data"]["attributes"]["retry_policy"] == "gentle"
    r = await v.put_job("warm", job(retry_policy="other-s"))
    assert r.status == 422 and codes(r.body) == {
        ("/data/attributes/retry_policy", "unknown_retry_policy")
    }


async def test_an_overlays_unknown_policy_is_not_told_null_means_no_retries(h: Harness) -> None:
    """In an environment's entry a null leaf inherits the job's (README), so the 422
    for a policy the account lacks may not offer null there as "no retries": that
    sends the user to a value that keeps the job's policy in force."""
    v = Versioned(h, NEW)
    assert (await Policies(v).create(policy("gentle"))).status == 201
    r = await v.post_job(
        job(retry_policy="gentle", environments={"staging": {"retry_policy": "x"}})
    )
    assert r.status == 422, r.body
    [error] = r.body["errors"]
    assert error["source"]["pointer"] == "/data/attributes/environments/staging/retry_policy"
    assert "null for no retries" not in error["detail"]
    assert "inherit" in error["detail"]
    r = await v.post_job(job(retry_policy="x"))
    [error] = r.body["errors"]
    assert "null for no retries" in error["detail"]


async def test_delete_is_refused_while_a_job_or_an_overlay_uses_the_policy(h: Harness) -> None:
    new, seed = Versioned(h, NEW), Versioned(h, SEED)
    p = Policies(new)
    assert (await p.create(policy("gentle"))).status == 201
    assert (await new.post_job(job("base-user", retry_policy="gentle"))).status == 201
    overlay = {"staging": {"enabled": True, "retry_policy": "gentle"}}
    assert (await new.post_job(job("env-user", environments=overlay))).status == 201
    r = await p.delete("gentle")
    assert r.status == 409, r.body
    (error,) = r.body["errors"]
    assert error["code"] == "retry_policy_in_use"
    assert error["meta"] == {
        "referencing_jobs": ["base-user", "env-user"],
        "referencing_jobs_total": 2,
    }
    # A seed PUT that leaves retry_policy out keeps it: still referenced.
    seen = (await seed.get_job("base-user")).body["data"]["attributes"]
    del seen["retry_policy"]
    assert (await seed.put_job("base-user", {"data": {"attributes": seen}})).status == 200
    assert (await new.get_job("base-user")).body["data"]["attributes"]["retry_policy"] == "gentle"
    r = await p.delete("gentle")
    assert r.status == 409 and r.body["errors"][0]["meta"]["referencing_jobs_total"] == 2
    # An explicit null resets it; the overlay's user is deleted; then the policy goes.
    assert (
        await seed.put_job("base-user", {"data": {"attributes": seen | {"retry_policy": None}}})
    ).status == 200
    assert (await new.get_job("base-user")).body["data"]["attributes"]["retry_policy"] is None
    assert (await p.delete("gentle")).status == 409
    assert (await new.delete_job("env-user")).status == 204
    assert (await p.delete("gentle")).status == 204


async def test_the_409_lists_a_bounded_number_of_jobs(h: Harness) -> None:
    v = Versioned(h, NEW, TOKEN_B)  # the unlimited plan
    p = Policies(v)
    assert (await p.create(policy("busy"))).status == 201
    count = policies.MAX_REFERENCING_LISTED + 5
    for n in range(count):
        assert (await v.post_job(job(f"j{n:03}", retry_policy="busy"))).status == 201
    r = await p.delete("busy")
    assert r.status == 409
    meta = r.body["errors"][0]["meta"]
    assert meta["referencing_jobs_total"] == count
    assert meta["referencing_jobs"] == [f"j{n:03}" for n in range(policies.MAX_REFERENCING_LISTED)]
    assert f"{count} jobs" in r.body["errors"][0]["detail"]


@pytest.mark.parametrize("version", [NEW, SEED])
async def test_extension_attributes_survive_a_put_that_omits_them(h: Harness, version: str) -> None:
    """VERSIONS.md: an extension left out of a PUT keeps its value; null or the
    default resets it; read-only attributes sent back are ignored."""
    v = Versioned(h, version)
    assert (await Policies(v).create(policy("gentle"))).status == 201
    # The version's extensions: in 2026-08-07 `timezone` and `retry_policy` are
    # the spec's own attributes, and a PUT that leaves them out sets them null.
    extras: dict[str, Any] = {"overlap_policy": "SKIP"}
    if version == SEED:
        extras |= {"timezone": "Europe/Paris", "retry_policy": "gentle"}
    created = await v.post_job(job(**extras))
    assert created.status == 201, created.body
    read = created.body["data"]["attributes"]
    assert read["overlap_policy"] == "SKIP" and read["kind"] == "recurring"
    # A client that knows none of them (as generated from the contract) sends them not.
    bare = {k: read[k] for k in ("name", "schedule", "configuration")}
    kept = (await v.put_job("warm", {"data": {"attributes": bare}})).body["data"]["attributes"]
    assert {k: kept[k] for k in extras} == extras
    # Sent back as read, read-only ones included: accepted, nothing changes but the version.
    again = await v.put_job("warm", {"data": {"attributes": kept}})
    assert (
        again.status == 200 and again.body["data"]["attributes"]["version"] == kept["version"] + 1
    )
    # An explicit null (or the default) resets.
    reset = {**bare, "overlap_policy": None, "timezone": None, "retry_policy": None}
    after = (await v.put_job("warm", {"data": {"attributes": reset}})).body["data"]["attributes"]
    assert (after["overlap_policy"], after["timezone"], after["retry_policy"]) == (
        "ALLOW",
        None,
        None,
    )
    skip = await v.put_job("warm", {"data": {"attributes": {**bare, "overlap_policy": "SKIP"}}})
    assert skip.body["data"]["attributes"]["overlap_policy"] == "SKIP"
    allow = await v.put_job("warm", {"data": {"attributes": {**bare, "overlap_policy": "ALLOW"}}})
    assert allow.body["data"]["attributes"]["overlap_policy"] == "ALLOW"


@pytest.mark.parametrize("version", [NEW, SEED])
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"overlap_policy": "FORBID"}, {("/data/attributes/overlap_policy", "invalid_value")}),
        ({"overlap_policy": "skip"}, {("/data/attributes/overlap_policy", "invalid_value")}),
        ({"overlap_policy": 1}, {("/data/attributes/overlap_policy", "invalid_value")}),
        ({"timezone": "Mars/Olympus"}, {("/data/attributes/timezone", "invalid_timezone")}),
        ({"timezone": "europe/paris"}, {("/data/attributes/timezone", "invalid_timezone")}),
        ({"timezone": ""}, {("/data/attributes/timezone", "too_short")}),
        (
            # (the one-off names its environment: 2026-08-07 asks for one)
            {
                "schedule": "2030-01-01T00:00:00Z",
                "timezone": "UTC",
                "environments": {"staging": {}},
            },
            {("/data/attributes/timezone", "not_recurring")},
        ),
        ({"retry_policy": "nope"}, {("/data/attributes/retry_policy", "unknown_retry_policy")}),
        ({"retry_policy": "\ud800"}, {("/data/attributes/retry_policy", "invalid_characters")}),
    ],
)
async def test_bad_extension_values_are_refused_with_their_pointer(
    h: Harness, version: str, changes: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    v = Versioned(h, version)
    r = await v.post_job(job(**changes))
    assert r.status == 422 and codes(r.body) == expected, r.body
    assert (await v.get_job("warm")).status == 404
