"""The Jobs API through the real app and a real store: every status code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from jobsd.messages import RunOrder
from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B, Harness, auth, job_doc, make_harness


def pointers(body: dict[str, Any]) -> set[str]:
    return {e["source"]["pointer"] for e in body["errors"] if "pointer" in e.get("source", {})}


async def test_create_get_roundtrip(harness: Harness) -> None:
    doc = job_doc(
        "warm-cache",
        description="nightly",
        configuration={
            "url": "https://example.invalid/warm",
            "method": "PUT",
            "headers": [{"name": "Authorization", "value": "Bearer s3cr3t"}],
            "body": '{"scope":"all"}',
            "timeout": 12,
        },
    )
    r = await harness.post("/api/v1/jobs", doc)
    assert r.status_code == 201, await r.get_json()
    assert r.headers["Content-Type"] == JSONAPI
    assert r.headers["Location"] == "/api/v1/jobs/warm-cache"
    body = await r.get_json()
    attrs = body["data"]["attributes"]
    assert body["data"]["id"] == "warm-cache" and body["data"]["type"] == "job"
    assert attrs["version"] == 1
    assert attrs["enabled"] is True
    assert attrs["deleted_at"] is None
    assert attrs["next_run_at"] == "2026-06-06T02:00:00Z"
    assert attrs["configuration"]["headers"] == [
        {"name": "Authorization", "value": "Bearer s3cr3t"}
    ]
    assert attrs["configuration"]["success_status"] == "2xx"
    assert attrs["configuration"]["tls_verify"] is True
    assert attrs["configuration"]["ca_cert"] is None
    got = await harness.get("/api/v1/jobs/warm-cache")
    assert got.status_code == 200
    assert (await got.get_json()) == body


async def test_defaults_and_plan_timeout(tmp_path: Path) -> None:
    async with make_harness(tmp_path, max_timeout=20) as h:
        r = await h.post("/api/v1/jobs", job_doc("a"))
        attrs = (await r.get_json())["data"]["attributes"]
        assert attrs["configuration"]["timeout"] == 20
        assert attrs["configuration"]["method"] == "POST"
        assert attrs["configuration"]["headers"] == []
        assert attrs["description"] is None
        r = await h.post(
            "/api/v1/jobs", job_doc("b", configuration={"url": "https://x.invalid", "timeout": 21})
        )
        assert r.status_code == 422
        assert pointers(await r.get_json()) == {"/data/attributes/configuration/timeout"}


async def test_slug_conflict_and_reuse_after_delete(harness: Harness) -> None:
    assert (await harness.post("/api/v1/jobs", job_doc("dup"))).status_code == 201
    r = await harness.post("/api/v1/jobs", job_doc("dup"))
    assert r.status_code == 409
    assert (await harness.delete("/api/v1/jobs/dup")).status_code == 204
    assert (await harness.get("/api/v1/jobs/dup")).status_code == 404
    assert (await harness.delete("/api/v1/jobs/dup")).status_code == 404
    r = await harness.post("/api/v1/jobs", job_doc("dup"))
    assert r.status_code == 201
    assert (await r.get_json())["data"]["attributes"]["version"] == 1


async def test_type_mismatch_is_409(harness: Harness) -> None:
    doc = job_doc("x")
    doc["data"]["type"] = "jobs"
    assert (await harness.post("/api/v1/jobs", doc)).status_code == 409


async def test_every_bad_field_at_once(harness: Harness) -> None:
    doc = job_doc(
        "Bad Slug!",
        name="",
        schedule="61 * * * *",
        configuration={
            "url": "ftp://x",
            "headers": [{"name": "Host", "value": "x"}],
            "success_status": "6xx",
            "timeout": 0,
            "bogus": 1,
        },
    )
    r = await harness.post("/api/v1/jobs", doc)
    assert r.status_code == 422
    got = pointers(await r.get_json())
    expected = {
        "/data/id",
        "/data/attributes/name",
        "/data/attributes/schedule",
        "/data/attributes/configuration/url",
        "/data/attributes/configuration/success_status",
        "/data/attributes/configuration/timeout",
    }
    assert expected <= got
    assert any(p.startswith("/data/attributes/configuration/headers/0") for p in got)
    assert any(
        p.startswith("/data/attributes/configuration/bogus")
        or p == "/data/attributes/configuration"
        for p in got
    )
    listing = await (await harness.get("/api/v1/jobs")).get_json()
    assert listing["data"] == []


async def test_put_replaces_and_bumps_version(harness: Harness) -> None:
    await harness.post(
        "/api/v1/jobs",
        job_doc("p", description="d", configuration={"url": "https://a.invalid", "method": "GET"}),
    )
    r = await harness.put("/api/v1/jobs/p", job_doc("p", schedule="*/5 * * * *"))
    assert r.status_code == 200, await r.get_json()
    attrs = (await r.get_json())["data"]["attributes"]
    assert attrs["version"] == 2
    assert attrs["description"] is None  # omitted -> default
    assert attrs["configuration"]["method"] == "POST"
    assert attrs["next_run_at"] == "2026-06-05T02:05:00Z"
    r = await harness.put("/api/v1/jobs/p", job_doc("p", schedule="*/5 * * * *", enabled=False))
    attrs = (await r.get_json())["data"]["attributes"]
    assert attrs["version"] == 3 and attrs["next_run_at"] is None
    # id in the body that differs from the path
    assert (await harness.put("/api/v1/jobs/p", job_doc("q"))).status_code == 409
    # PUT without an id is fine
    doc = job_doc("p")
    del doc["data"]["id"]
    assert (await harness.put("/api/v1/jobs/p", doc)).status_code == 200
    assert (await harness.put("/api/v1/jobs/nope", job_doc("nope"))).status_code == 404


async def test_active_jobs_limit(tmp_path: Path) -> None:
    async with make_harness(tmp_path, active_jobs_limit=2) as h:
        for slug in ("a", "b"):
            assert (await h.post("/api/v1/jobs", job_doc(slug))).status_code == 201
        r = await h.post("/api/v1/jobs", job_doc("c"))
        assert r.status_code == 403
        assert (await r.get_json())["errors"][0]["code"] == "active_jobs_limit"
        assert (await h.post("/api/v1/jobs", job_doc("c", enabled=False))).status_code == 201
        r = await h.put("/api/v1/jobs/c", job_doc("c", enabled=True))
        assert r.status_code == 403
        got = await (await h.get("/api/v1/jobs/c")).get_json()
        assert (
            got["data"]["attributes"]["enabled"] is False
            and got["data"]["attributes"]["version"] == 1
        )
        await h.put("/api/v1/jobs/a", job_doc("a", enabled=False))
        assert (await h.put("/api/v1/jobs/c", job_doc("c", enabled=True))).status_code == 200
        usage = await (await h.get("/api/v1/usage")).get_json()
        assert usage["data"]["attributes"]["active_jobs"] == 2
        assert usage["data"]["attributes"]["active_jobs_limit"] == 2


async def test_other_account_sees_404(harness: Harness) -> None:
    await harness.post("/api/v1/jobs", job_doc("mine"))
    assert (await harness.get("/api/v1/jobs/mine", token=TOKEN_B)).status_code == 404
    assert (await harness.delete("/api/v1/jobs/mine", token=TOKEN_B)).status_code == 404
    assert (
        await harness.put("/api/v1/jobs/mine", job_doc("mine"), token=TOKEN_B)
    ).status_code == 404
    assert (await harness.post("/api/v1/jobs/mine/actions/run", token=TOKEN_B)).status_code == 404
    listing = await (await harness.get("/api/v1/jobs", token=TOKEN_B)).get_json()
    assert listing["data"] == []
    # the same slug is free in another account
    assert (await harness.post("/api/v1/jobs", job_doc("mine"), token=TOKEN_B)).status_code == 201


async def test_auth(harness: Harness) -> None:
    r = await harness.client.get("/api/v1/jobs")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await harness.get("/api/v1/jobs", token="jobsd_wrong")
    assert r.status_code == 401
    r = await harness.client.get("/api/v1/jobs", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    assert (await r.get_json())["errors"][0]["status"] == "401"


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("Authorization", [f"Bearer {TOKEN_A}", f"Bearer {TOKEN_B}"]),
        ("Authorization", [f"Bearer {TOKEN_A}", f"Bearer {TOKEN_A}"]),
        ("Jobsd-Version", ["2026-08-07", "2026-06-04"]),
    ],
)
async def test_two_of_a_header_that_holds_one_value_are_refused(
    harness: Harness, name: str, values: list[str]
) -> None:
    # Which of two tokens (or versions) is meant? Taking the first would let
    # whoever adds a header before a proxy's own choose the identity.
    base = Headers({"Authorization": f"Bearer {TOKEN_A}", "Content-Type": JSONAPI})
    base.pop(name, None)
    for value in values:
        base.add(name, value)
    r = await harness.client.post("/api/v1/jobs", headers=base, json=job_doc("twice"))
    assert r.status_code == 400
    error = (await r.get_json())["errors"][0]
    assert error["code"] == "invalid_header" and error["source"] == {"header": name}
    assert TOKEN_A not in error["detail"]
    for token in (TOKEN_A, TOKEN_B):
        assert (await harness.get("/api/v1/jobs/twice", token=token)).status_code == 404


async def test_media_types_and_malformed(harness: Harness) -> None:
    r = await harness.post("/api/v1/jobs", headers={"Content-Type": "text/plain"}, data=b"{}")
    assert r.status_code == 415
    r = await harness.post(
        "/api/v1/jobs", headers={"Content-Type": "application/json"}, data=b"{nope"
    )
    assert r.status_code == 400
    r = await harness.post("/api/v1/jobs", headers={"Content-Type": JSONAPI}, data=b"\xff\xfe")
    assert r.status_code == 400
    r = await harness.post("/api/v1/jobs", headers={"Content-Type": JSONAPI}, data=b"[" * 5_000)
    assert r.status_code == 400
    # Past 10,000 possible values a body is refused before it is parsed at all.
    r = await harness.post("/api/v1/jobs", headers={"Content-Type": JSONAPI}, data=b"[" * 100_000)
    assert r.status_code == 413
    assert (await r.get_json())["errors"][0]["code"] == "too_many_values"
    r = await harness.post("/api/v1/jobs", headers={"Content-Type": JSONAPI}, data=b"NaN")
    assert r.status_code == 400
    big = b'{"data": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = await harness.post("/api/v1/jobs", headers={"Content-Type": JSONAPI}, data=big)
    assert r.status_code == 413
    r = await harness.post(
        "/api/v1/jobs",
        headers={"Content-Type": "application/json; charset=utf-8"},
        json=job_doc("ok"),
    )
    assert r.status_code == 201


async def test_unknown_route_and_method(harness: Harness) -> None:
    r = await harness.get("/api/v1/nothing")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == JSONAPI
    assert (await r.get_json())["errors"][0]["status"] == "404"
    r = await harness.client.patch("/api/v1/jobs/x", headers={})
    assert r.status_code == 405
    assert (await r.get_json())["errors"][0]["status"] == "405"
    assert {"GET", "PUT", "DELETE"} <= {m.strip() for m in r.headers["Allow"].split(",")}


async def test_list_pagination_and_filters(harness: Harness) -> None:
    for i in range(7):
        await harness.post("/api/v1/jobs", job_doc(f"job-{i}", enabled=i % 2 == 0))
    body = await (await harness.get("/api/v1/jobs", query_string={"page[size]": "3"})).get_json()
    assert [j["id"] for j in body["data"]] == ["job-6", "job-5", "job-4"]
    assert body["meta"]["pagination"] == {"page": 1, "size": 3}
    body = await (
        await harness.get(
            "/api/v1/jobs",
            query_string={"page[size]": "3", "page[number]": "3", "meta[total]": "true"},
        )
    ).get_json()
    assert [j["id"] for j in body["data"]] == ["job-0"]
    assert body["meta"]["pagination"] == {"page": 3, "size": 3, "total": 7, "total_pages": 3}
    body = await (await harness.get("/api/v1/jobs", query_string={"page[number]": "9"})).get_json()
    assert body["data"] == []
    body = await (
        await harness.get("/api/v1/jobs", query_string={"filter[enabled]": "false"})
    ).get_json()
    assert [j["id"] for j in body["data"]] == ["job-5", "job-3", "job-1"]
    for name, value in [
        ("page[size]", "0"),
        ("page[size]", "1001"),
        ("page[number]", "0"),
        ("page[number]", "x"),
        ("filter[enabled]", "yes"),
        ("meta[total]", "1"),
        ("page[sise]", "3"),
    ]:
        r = await harness.get("/api/v1/jobs", query_string={name: value})
        assert r.status_code == 400, (name, value)
        assert (await r.get_json())["errors"][0]["source"] == {"parameter": name}


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/retry-policies"])
async def test_page_number_is_bounded_at_eighteen_digits_and_says_so(
    harness: Harness, path: str
) -> None:
    # Past any end, but still a page: answered empty; one digit more is a
    # 400 whose detail names the bound it crossed, not only ">= 1".
    largest = "9" * 18
    r = await harness.get(path, query_string={"page[number]": largest, "meta[total]": "true"})
    body = await r.get_json()
    assert r.status_code == 200 and body["data"] == []
    assert body["meta"]["pagination"]["page"] == int(largest)
    r = await harness.get(path, query_string={"page[number]": "1" + "0" * 18})
    error = (await r.get_json())["errors"][0]
    assert r.status_code == 400 and error["source"] == {"parameter": "page[number]"}
    assert largest in error["detail"], error


async def test_delete_cancels_pending_runs_and_keeps_history(harness: Harness) -> None:
    await harness.post("/api/v1/jobs", job_doc("d"))
    run = await (await harness.post("/api/v1/jobs/d/actions/run")).get_json()
    assert run["data"]["attributes"]["status"] == "PENDING"
    assert run["data"]["attributes"]["trigger"] == "MANUAL"
    assert (await harness.delete("/api/v1/jobs/d")).status_code == 204
    got = await (await harness.get(f"/api/v1/runs/{run['data']['id']}")).get_json()
    assert got["data"]["attributes"]["status"] == "CANCELED"
    listed = await (await harness.get("/api/v1/runs", query_string={"filter[job]": "d"})).get_json()
    assert [r["id"] for r in listed["data"]] == [run["data"]["id"]]


async def test_run_now_on_paused_job_and_orders(harness: Harness) -> None:
    await harness.post("/api/v1/jobs", job_doc("paused", enabled=False))
    r = await harness.post("/api/v1/jobs/paused/actions/run")
    assert r.status_code == 200
    run_id = (await r.get_json())["data"]["id"]
    assert harness.orders.orders == [RunOrder(run_id, "acme")]
    assert (await harness.post("/api/v1/jobs/missing/actions/run")).status_code == 404


async def test_healthz_and_openapi(harness: Harness) -> None:
    r = await harness.client.get("/healthz")
    assert r.status_code == 200
    harness.ctx.health.stopping = True
    r = await harness.client.get("/healthz")
    assert r.status_code == 503
    spec = await (await harness.client.get("/api/v1/openapi.json")).get_json()
    assert "/api/v1/jobs" in spec["paths"] and "/healthz" in spec["paths"]


async def test_usage_periods(harness: Harness) -> None:
    body = await (await harness.get("/api/v1/usage")).get_json()
    assert body["data"]["id"] == "current"
    assert body["data"]["attributes"]["period"] == "2026-06"
    assert body["data"]["attributes"]["runs_used"] == 0
    assert body["data"]["attributes"]["runs_included"] == 100
    body = await (
        await harness.get("/api/v1/usage", query_string={"filter[period]": "2026-05"})
    ).get_json()
    assert body["data"]["attributes"]["period"] == "2026-05"
    assert body["data"]["id"] == "2026-05"  # README: `current` or the month asked for
    for bad in ("2026-07", "2026-13", "last", "2026-6", ""):
        r = await harness.get("/api/v1/usage", query_string={"filter[period]": bad})
        assert r.status_code == 400, bad
        assert (await r.get_json())["errors"][0]["source"] == {"parameter": "filter[period]"}


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/runs", "/api/v1/retry-policies"])
@pytest.mark.parametrize("version", ["2026-06-04", "2026-08-07"])
async def test_an_empty_sort_is_a_400_not_the_default_order(
    harness: Harness, path: str, version: str
) -> None:
    # `sort=` is no value of the spec's enum: a 400 naming it, as every list
    # answers any other sort it does not know, never a silent default order.
    r = await harness.get(path, query_string={"sort": ""}, headers={"Jobsd-Version": version})
    assert r.status_code == 400, await r.get_data()
    assert (await r.get_json())["errors"][0]["source"] == {"parameter": "sort"}


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/api/v1/runs", "filter[status][]", "FAILED"),  # a list, as qs/Rails spell one
        ("/api/v1/runs", "filter[status]]", "FAILED"),
        ("/api/v1/runs", "filter[status", "FAILED"),
        ("/api/v1/jobs", "filter[enabled][]", "false"),
        ("/api/v1/jobs", "page[size][x]", "1"),
        ("/api/v1/usage", "filter[period][]", "2026-05"),
        ("/api/v1/retry-policies", "sort[]", "-name"),
    ],
)
async def test_a_misspelt_family_parameter_is_a_400_not_ignored(
    harness: Harness, path: str, name: str, value: str
) -> None:
    # Any name in the page/filter/meta/sort families that the endpoint does not
    # take is refused naming it: ignored, it would answer as if unfiltered.
    r = await harness.get(path, query_string={name: value})
    assert r.status_code == 400, await r.get_data()
    assert (await r.get_json())["errors"][0]["source"] == {"parameter": name}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs/nightly"),
        ("PUT", "/api/v1/jobs/nightly"),
        ("DELETE", "/api/v1/jobs/nightly"),
        ("POST", "/api/v1/jobs/nightly/actions/run"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/runs/{run}"),
        ("POST", "/api/v1/runs/{run}/actions/cancel"),
        ("POST", "/api/v1/runs/{run}/actions/rerun"),
        ("GET", "/api/v1/retry-policies/none"),
    ],
)
@pytest.mark.parametrize("name", ["include", "sort", "filter[status]", "page[size]"])
async def test_a_family_parameter_where_none_is_taken_is_a_400_and_changes_nothing(
    harness: Harness, method: str, path: str, name: str
) -> None:
    # JSON:API: an endpoint that does not support `include` (or sorting) must
    # answer 400 to a request that asks for it; and, as on every endpoint, a
    # page/filter member it does not take is refused rather than ignored.
    assert (await harness.post("/api/v1/jobs", job_doc())).status_code == 201
    run = await (await harness.post("/api/v1/jobs/nightly/actions/run")).get_json()
    before = await (await harness.get("/api/v1/runs")).get_json()
    r = await harness.client.open(
        path.format(run=run["data"]["id"]),
        method=method,
        query_string={name: "x"},
        json=job_doc("other") if method in ("PUT", "POST") else None,
        headers={**auth(TOKEN_A), "Content-Type": JSONAPI},
    )
    assert r.status_code == 400, await r.get_data()
    assert (await r.get_json())["errors"][0]["source"] == {"parameter": name}
    assert await (await harness.get("/api/v1/runs")).get_json() == before
    assert (await harness.get("/api/v1/jobs/nightly")).status_code == 200
    assert (await harness.get("/api/v1/jobs/other")).status_code == 404


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (f"{JSONAPI}; charset=utf-8", 415),
        (f'{JSONAPI}; ext="https://jsonapi.org/ext/atomic"', 415),
        (f"{JSONAPI};ext=x", 415),
        (f'{JSONAPI}; profile="https://example.com/profile"', 201),
        (JSONAPI, 201),
        ("application/json; charset=utf-8", 201),  # not the JSON:API media type
    ],
)
async def test_the_jsonapi_media_type_with_parameters_is_a_415(
    harness: Harness, content_type: str, status: int
) -> None:
    # JSON:API: a request whose Content-Type is the JSON:API media type with any
    # parameter but ext or profile is 415, and so is an ext this server lacks
    # (it has no extensions); a profile is allowed and may be ignored.
    r = await harness.client.post(
        "/api/v1/jobs",
        data=json.dumps(job_doc()),
        headers={**auth(TOKEN_A), "Content-Type": content_type},
    )
    assert r.status_code == status, await r.get_data()
    if status == 415:
        assert (await r.get_json())["errors"][0]["code"] == "unsupported_media_type"
        assert (await harness.get("/api/v1/jobs/nightly")).status_code == 404


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 200),
        ("*/*", 200),
        ("application/json", 200),
        (JSONAPI, 200),
        (f"{JSONAPI};q=0.9", 200),  # a weight is no media type parameter
        (f'{JSONAPI}; profile="https://example.com/p"', 200),
        (f"{JSONAPI}; charset=utf-8, {JSONAPI}", 200),  # one instance is acceptable
        (f"{JSONAPI}; charset=utf-8", 406),
        (f'{JSONAPI}; ext="https://jsonapi.org/ext/atomic", {JSONAPI}; version=1', 406),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/runs", "/api/v1/usage"])
async def test_an_accept_that_allows_jsonapi_only_with_parameters_is_a_406(
    harness: Harness, path: str, accept: str | None, status: int
) -> None:
    # JSON:API: when every instance of its media type in Accept carries a media
    # type parameter (other than profile; jobsd has no extension), 406.
    headers = {} if accept is None else {"Accept": accept}
    r = await harness.get(path, headers=headers)
    assert r.status_code == status, await r.get_data()
    if status == 406:
        error = (await r.get_json())["errors"][0]
        assert error["code"] == "not_acceptable" and error["source"] == {"header": "Accept"}
