"""The 2026-08-07 API through the real app and store: kinds, environments,
header maps, run now with `{environment}`, usage; every response checked
against the 2026-08-07 served spec (tests/api/conformance.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobsd.messages import Outcome
from jobsd.runs import RunStatus
from tests.api.conformance import NEW, SEED, Versioned, codes, pointers
from tests.conftest import Harness, job_doc, make_harness

ENVS = 'environments = ["production", "staging"]'


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, acme=ENVS) as harness:
        yield harness


def doc(slug: str = "warm", **attrs: Any) -> dict[str, Any]:
    return job_doc(slug, **attrs)


def attrs(reply: Any) -> dict[str, Any]:
    return reply.body["data"]["attributes"]  # type: ignore[no-any-return]


async def test_a_recurring_job_with_environments_overlays_and_a_header_map(h: Harness) -> None:
    v = Versioned(h)
    r = await v.post_job(
        doc(
            configuration={
                "url": "https://api.example.com/warm",
                "headers": {"Authorization": "Bearer base", "X-Trace": "1"},
            },
            environments={
                "production": {"enabled": True},
                "staging": {
                    "enabled": True,
                    "url": "https://staging.example.com/warm",
                    "schedule": "0 3 * * *",
                    "headers.authorization": "Bearer staging",
                    "timeout": 5,
                },
            },
        )
    )
    assert r.status == 201, r.body
    a = attrs(r)
    assert a["kind"] == "recurring" and a["version"] == 1 and a["timezone"] is None
    assert a["configuration"]["headers"] == {"Authorization": "Bearer base", "X-Trace": "1"}
    assert a["environments"] == {
        "production": {"enabled": True, "next_run_at": "2026-06-06T02:00:00Z"},
        "staging": {
            "enabled": True,
            "url": "https://staging.example.com/warm",
            "timeout": 5,
            "schedule": "0 3 * * *",
            "headers.authorization": "Bearer staging",
            "next_run_at": "2026-06-05T03:00:00Z",
        },
    }
    assert "enabled" not in a and "next_run_at" not in a  # not attributes of this version
    # GET -> PUT of what was read changes nothing but the version.
    got = await v.get_job("warm")
    assert got.body == r.body
    again = await v.put_job("warm", got.body)
    assert again.status == 200
    assert {**attrs(again), "version": 1, "updated_at": a["updated_at"]} == a
    # The staging run sends the staging request: base ⊕ overlay.
    job = await h.store.jobs.get_job("acme", "warm")
    staging = job.environments["staging"].overlay.apply(job.spec.config)
    assert staging.url == "https://staging.example.com/warm" and staging.timeout_s == 5
    assert [(x.name, x.value) for x in staging.headers] == [
        ("authorization", "Bearer staging"),
        ("X-Trace", "1"),
    ]


async def test_a_manual_job_has_no_schedule_and_never_fires(h: Harness) -> None:
    v = Versioned(h)
    r = await v.post_job(doc("button", schedule=None, environments={"staging": {"enabled": True}}))
    assert r.status == 201, r.body
    assert attrs(r)["kind"] == "manual" and attrs(r)["schedule"] is None
    assert attrs(r)["environments"] == {"staging": {"enabled": True, "next_run_at": None}}
    omitted = doc("button2")
    del omitted["data"]["attributes"]["schedule"]
    assert attrs(await v.post_job(omitted))["kind"] == "manual"
    run = await v.run_now("button")  # enabled in exactly one environment: that one
    assert run.status == 200 and run.body["data"]["attributes"]["environment"] == "staging"
    assert run.body["data"]["attributes"]["trigger"] == "MANUAL"


async def test_a_one_off_targets_the_environments_it_names(h: Harness) -> None:
    v = Versioned(h)
    r = await v.post_job(
        doc("once", schedule="2026-06-05T03:00:00Z", environments={"production": {}, "staging": {}})
    )
    assert r.status == 201, r.body
    assert attrs(r)["kind"] == "one_off"
    assert attrs(r)["environments"] == {
        "production": {"enabled": True, "next_run_at": "2026-06-05T03:00:00Z"},
        "staging": {"enabled": True, "next_run_at": "2026-06-05T03:00:00Z"},
    }
    # Several environments and none named: which one is meant is not ours to guess.
    r = await v.post_job(doc("vague", schedule="now"))
    assert r.status == 422 and pointers(r.body) == {"/data/attributes/environments"}


async def test_a_recurring_entry_without_enabled_does_not_run(h: Harness) -> None:
    # The spec: "an environment with no entry, or an entry without `enabled: true`,
    # does not run"; only a one-off's entries are enabled when they say nothing.
    v = Versioned(h)
    r = await v.post_job(doc(environments={"staging": {"timeout": 5}}))
    assert r.status == 201, r.body
    assert attrs(r)["kind"] == "recurring"
    assert attrs(r)["environments"]["staging"]["enabled"] is False


async def test_an_override_to_a_false_or_empty_value_is_shown(h: Harness) -> None:
    # A leaf is left out of an entry only when it inherits (null): `tls_verify: false`
    # or an empty body is an override, and a GET -> PUT must carry it back.
    v = Versioned(h)
    entry = {"enabled": True, "tls_verify": False, "body": ""}
    r = await v.post_job(doc(environments={"staging": entry}))
    assert r.status == 201, r.body
    shown = attrs(r)["environments"]["staging"]
    assert (shown["tls_verify"], shown["body"]) == (False, "")


@pytest.mark.parametrize(
    ("field", "taken", "refused"),
    [("name", "n" * 200, "n" * 201), ("description", "d" * 2000, "d" * 2001)],
)
async def test_the_text_bounds_hold_in_this_version_too(
    h: Harness, field: str, taken: str, refused: str
) -> None:
    v = Versioned(h)
    assert (await v.post_job(doc("at-bound", **{field: taken}))).status == 201
    r = await v.post_job(doc("past-bound", **{field: refused}))
    assert r.status == 422 and pointers(r.body) == {f"/data/attributes/{field}"}, r.body


async def test_an_empty_schedule_is_refused_not_read_as_manual(h: Harness) -> None:
    # Only null (or no schedule) makes a manual job; "" is no schedule of any kind.
    r = await Versioned(h).post_job(doc("blank", schedule=""))
    assert r.status == 422 and pointers(r.body) == {"/data/attributes/schedule"}, r.body


async def test_a_conflicting_type_or_id_is_409_in_this_version_too(h: Harness) -> None:
    v = Versioned(h)
    typed = doc("typed")
    typed["data"]["type"] = "run"
    r = await v.post_job(typed)
    assert r.status == 409 and r.body["errors"][0]["code"] == "type_mismatch", r.body
    assert (await v.post_job(doc("warm"))).status == 201
    r = await v.put_job("warm", doc("other"))
    assert r.status == 409 and r.body["errors"][0]["code"] == "id_mismatch", r.body


async def test_a_single_environment_account_implies_it(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme='api_version = "2026-08-07"') as h:
        v = Versioned(h, version=None)  # the account's own version
        r = await v.post_job(doc("once", schedule="now"))
        assert r.status == 201 and r.version == NEW
        assert list(attrs(r)["environments"]) == ["production"]
        run = await v.run_now("once")
        assert run.body["data"]["attributes"]["environment"] == "production"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"environments": {"qa": {"enabled": True}}},
            {("/data/attributes/environments/qa", "unknown_environment")},
        ),
        (
            {"schedule": None, "environments": {"staging": {"schedule": "0 1 * * *"}}},
            {("/data/attributes/environments/staging/schedule", "not_recurring")},
        ),
        (
            {"schedule": "now", "timezone": "Europe/Paris", "environments": {"staging": {}}},
            {("/data/attributes/timezone", "not_recurring")},
        ),
        (
            {"schedule": "2030-01-01T00:00:00Z", "environments": {"staging": {"timezone": "UTC"}}},
            {("/data/attributes/environments/staging/timezone", "not_recurring")},
        ),
        ({"timezone": "Mars/Olympus"}, {("/data/attributes/timezone", "invalid_timezone")}),
        (
            {"configuration": {"url": "https://x.invalid/", "headers": {"X-A": "1", "x-a": "2"}}},
            {("/data/attributes/configuration/headers/x-a", "duplicate_header")},
        ),
        (
            {"environments": {"staging": {"headers.X-A": "1", "headers.x-A": "2"}}},
            {("/data/attributes/environments/staging/headers.x-A", "duplicate_header")},
        ),
        (
            {"environments": {"staging": {"headers.Host": "evil"}}},
            {("/data/attributes/environments/staging/headers.Host", "invalid_header")},
        ),
        (
            {
                "configuration": {
                    "url": "https://x.invalid/",
                    "headers": [{"name": "A", "value": "1"}],
                }
            },
            {("/data/attributes/configuration/headers", "invalid_type")},
        ),
        (
            {"environments": {"staging": {"schedule": "now"}}},
            {("/data/attributes/environments/staging/schedule", "invalid_schedule")},
        ),
        (
            {"environments": {"staging": {"colour": "blue"}}},
            {("/data/attributes/environments/staging/colour", "unknown_field")},
        ),
        (
            {"environments": {"staging": {"enabled": "yes", "timeout": 0, "url": "ftp://x"}}},
            {
                ("/data/attributes/environments/staging/enabled", "invalid_type"),
                ("/data/attributes/environments/staging/timeout", "invalid_timeout"),
                ("/data/attributes/environments/staging/url", "invalid_url"),
            },
        ),
        (
            {"environments": {"staging": {"timeout": 61}}},
            {("/data/attributes/environments/staging/timeout", "timeout_above_plan")},
        ),
        ({"environments": ["staging"]}, {("/data/attributes/environments", "invalid_type")}),
        (
            {"environments": {"staging": True}},
            {("/data/attributes/environments/staging", "invalid_type")},
        ),
        (
            {"retry_policy": "retry-on-5xx"},
            {("/data/attributes/retry_policy", "unknown_retry_policy")},
        ),
        (
            {"environments": {"staging": {"retry_policy": "gentle"}}},
            {("/data/attributes/environments/staging/retry_policy", "unknown_retry_policy")},
        ),
        ({"retry_policy": 7}, {("/data/attributes/retry_policy", "invalid_type")}),
        # The bounds on one job (issue 7) hold for the map form and for overrides.
        (
            {
                "configuration": {
                    "url": "https://x.invalid/",
                    "headers": {f"H{i}": "v" for i in range(65)},
                }
            },
            {("/data/attributes/configuration/headers", "too_many_headers")},
        ),
        (
            {
                "configuration": {
                    "url": "https://x.invalid/",
                    "headers": {f"H{i}": "v" for i in range(60)},
                },
                "environments": {"staging": {f"headers.S{i}": "v" for i in range(5)}},
            },
            {("/data/attributes/environments/staging", "too_many_headers")},
        ),
        (
            {"configuration": {"url": "https://x.invalid/", "headers": {"X-Jobsd-Run-Id": "1"}}},
            {("/data/attributes/configuration/headers/X-Jobsd-Run-Id", "invalid_header")},
        ),
        (
            {"environments": {"staging": {"headers.x-jobsd-job": "1"}}},
            {("/data/attributes/environments/staging/headers.x-jobsd-job", "invalid_header")},
        ),
        (
            {
                "configuration": {
                    "url": "https://x.invalid/",
                    "headers": {f"H{i}": "v" * 8000 for i in range(40)},
                },
                "environments": {"staging": {"body": "b" * 1_000_000}},
            },
            {("/data/attributes/environments/staging", "configuration_too_large")},
        ),
        (
            {"environments": {"staging": {"url": "http://0177.0.0.1/"}}},
            {("/data/attributes/environments/staging/url", "invalid_url")},
        ),
        # Every bad field at once: a one-off naming no environment is refused for
        # that alongside a bad field elsewhere, not only once the rest is fixed.
        (
            {"name": "", "schedule": "now"},
            {
                ("/data/attributes/name", "too_short"),
                ("/data/attributes/environments", "environment_required"),
            },
        ),
    ],
)
async def test_bad_input_is_refused_with_its_pointer_and_changes_nothing(
    h: Harness, changes: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    v = Versioned(h)
    r = await v.post_job(doc(**changes))
    assert r.status == 422, r.body
    assert codes(r.body) == expected
    assert (await v.get_job("warm")).status == 404
    assert (await v.list_jobs("?filter[kind]=one_off")).body["data"] == []


async def test_run_now_picks_checks_and_refuses_environments(h: Harness) -> None:
    v = Versioned(h)
    envs = {"production": {"enabled": True}, "staging": {"enabled": False}}
    assert (await v.post_job(doc(environments=envs))).status == 201
    r = await v.run_now("warm")  # only production is enabled
    assert r.body["data"]["attributes"]["environment"] == "production"
    r = await v.run_now("warm", {"environment": "staging"})
    assert r.status == 409 and r.body["errors"][0]["code"] == "environment_not_enabled"
    r = await v.run_now("warm", {"environment": "qa"})
    assert r.status == 422 and pointers(r.body) == {"/environment"}
    r = await v.run_now("warm", {"environment": 5})
    assert r.status == 422 and pointers(r.body) == {"/environment"}
    r = await v.run_now("warm", None, data=b"", headers={})  # no body at all
    assert r.status == 200
    r = await v.run_now("warm", {"environment": None})
    assert r.status == 200
    envs["staging"]["enabled"] = True
    assert (await v.put_job("warm", doc(environments=envs))).status == 200
    r = await v.run_now("warm")
    assert r.status == 422 and pointers(r.body) == {"/environment"}
    r = await v.run_now("warm", {"environment": "staging"})
    assert r.status == 200 and r.body["data"]["attributes"]["environment"] == "staging"
    # The seed version runs in the default environment, paused there or not.
    envs["production"]["enabled"] = False
    await v.put_job("warm", doc(environments=envs))
    seed = await Versioned(h, SEED).run_now("warm")
    assert seed.status == 200 and "environment" not in seed.body["data"]["attributes"]
    run = await v.get_run(seed.body["data"]["id"])
    assert run.body["data"]["attributes"]["environment"] == "production"
    assert (await v.run_now("nope")).status == 404


async def test_listing_order_filters_and_one_offs(h: Harness) -> None:
    v = Versioned(h)
    for slug, name, schedule in [
        ("c", "Charlie", "0 1 * * *"),
        ("a", "alpha Ünïcode", None),
        ("b", "Bravo", "2030-01-01T00:00:00Z"),
        ("d", "delta", "*/5 * * * *"),
    ]:
        env = {"production": {"enabled": slug != "d"}}
        assert (
            await v.post_job(doc(slug, name=name, schedule=schedule, environments=env))
        ).status == 201

    async def ids(query: str = "") -> list[str]:
        r = await v.list_jobs(query)
        assert r.status == 200, r.body
        return [j["id"] for j in r.body["data"]]

    assert await ids() == ["a", "c", "d"]  # by name, whatever its case; one-offs left out
    assert await ids("?sort=-name") == ["d", "c", "a"]
    assert await ids("?sort=created_at") == ["c", "a", "d"]
    assert await ids("?sort=-created_at") == ["d", "a", "c"]
    assert await ids("?filter[kind]=one_off") == ["b"]
    assert await ids("?filter[kind]=manual") == ["a"]
    assert await ids("?filter[scheduled]=true") == ["b", "c"]  # one-offs included
    assert await ids("?filter[scheduled]=false") == ["a", "d"]
    assert await ids("?filter[name]=%C3%9CN%C3%8F") == ["a"]  # ÜNÏ
    assert await ids("?filter[name]=A&filter[kind]=recurring") == ["c", "d"]
    r = await v.list_jobs("?meta[total]=true&page[size]=2")
    assert r.body["meta"]["pagination"] == {"page": 1, "size": 2, "total": 3, "total_pages": 2}
    for bad in (
        "?sort=slug",
        "?filter[kind]=cron",
        "?filter[scheduled]=yes",
        "?filter[enabled]=true",
    ):
        r = await v.list_jobs(bad)
        assert r.status == 400, bad
    # The seed version keeps newest first, and cannot show the manual job.
    seed = await Versioned(h, SEED).list_jobs()
    assert [j["id"] for j in seed.body["data"]] == ["d", "b", "c"]
    assert (await Versioned(h, SEED).get_job("a")).status == 404


async def test_seed_scheduled_filter_follows_the_next_run_at_it_shows(h: Harness) -> None:
    # The seed shows the default environment's `next_run_at`, so its
    # `filter[scheduled]` asks about that one, as `filter[enabled]` does: a job
    # scheduled only in staging reads `next_run_at: null` there.
    v, seed = Versioned(h), Versioned(h, SEED)
    for slug, env in [("prod", "production"), ("stag", "staging")]:
        r = await v.post_job(doc(slug, environments={env: {"enabled": True}}))
        assert r.status == 201, r.body

    async def shown(query: str) -> list[tuple[str, object]]:
        r = await seed.list_jobs(query)
        assert r.status == 200, r.body
        return [(j["id"], j["attributes"]["next_run_at"]) for j in r.body["data"]]

    assert await shown("?filter[scheduled]=true") == [("prod", "2026-06-06T02:00:00Z")]
    assert await shown("?filter[scheduled]=false") == [("stag", None)]
    assert [j["id"] for j in (await v.list_jobs("?filter[scheduled]=true")).body["data"]] == [
        "prod",
        "stag",
    ]


async def test_seed_writes_leave_what_they_cannot_see(h: Harness) -> None:
    v, seed = Versioned(h), Versioned(h, SEED)
    envs = {
        "production": {"enabled": True, "url": "https://prod.example.com/"},
        "staging": {"enabled": True, "headers.X-Env": "staging"},
    }
    created = await v.post_job(doc(timezone="Europe/Paris", environments=envs))
    assert created.status == 201, created.body
    seen = await seed.get_job("warm")
    assert seen.body["data"]["attributes"]["enabled"] is True
    assert seen.body["data"]["attributes"]["next_run_at"] == "2026-06-06T00:00:00Z"  # 02:00 Paris
    # A seed PUT: pause, new name, array headers. Staging, the production
    # overlay and the time zone stay as they were.
    put = seen.body["data"]["attributes"] | {"name": "Renamed", "enabled": False}
    put["configuration"]["headers"] = [{"name": "A", "value": "1"}, {"name": "a", "value": "2"}]
    r = await seed.put_job("warm", {"data": {"type": "job", "attributes": put}})
    assert r.status == 200, r.body
    after = attrs(await v.get_job("warm"))
    assert after["name"] == "Renamed" and after["timezone"] == "Europe/Paris"
    assert after["environments"]["production"] == {
        "enabled": False,
        "url": "https://prod.example.com/",
        "next_run_at": None,
    }
    assert after["environments"]["staging"] == attrs(created)["environments"]["staging"]
    # Two headers equal but for case (an array may say that) read as one in a map.
    assert after["configuration"]["headers"] == {"A": "1, 2"}
    # A seed PUT that makes it a one-off drops what applies to cron only, when
    # it leaves the time zone (an extension there) out; sent back, it is refused.
    put = attrs(await seed.get_job("warm")) | {"schedule": "2030-01-01T00:00:00Z"}
    refused = await seed.put_job("warm", {"data": {"attributes": put}})
    assert codes(refused.body) == {("/data/attributes/timezone", "not_recurring")}
    del put["timezone"]
    assert (await seed.put_job("warm", {"data": {"attributes": put}})).status == 200
    after = attrs(await v.get_job("warm"))
    assert after["kind"] == "one_off" and after["timezone"] is None
    assert after["environments"]["staging"]["next_run_at"] == "2030-01-01T00:00:00Z"


async def test_data_written_through_either_version_reads_through_both(h: Harness) -> None:
    v, seed = Versioned(h), Versioned(h, SEED)
    old = await seed.post_job(
        doc(
            "old",
            enabled=False,
            configuration={"url": "https://x.invalid/", "headers": [{"name": "K", "value": "v"}]},
        )
    )
    assert old.status == 201
    new_view = attrs(await v.get_job("old"))
    assert new_view["environments"] == {"production": {"enabled": False, "next_run_at": None}}
    assert new_view["configuration"]["headers"] == {"K": "v"} and new_view["kind"] == "recurring"
    fresh = await v.post_job(
        doc(
            "fresh",
            configuration={"url": "https://x.invalid/", "headers": {"K": "v"}},
            environments={"staging": {"enabled": True}},
        )
    )
    seed_view = attrs(await seed.get_job("fresh"))
    assert seed_view["enabled"] is False and seed_view["next_run_at"] is None  # not in production
    assert seed_view["configuration"]["headers"] == [{"name": "K", "value": "v"}]
    assert fresh.status == 201


async def test_runs_carry_their_environment_and_snapshots_map_headers(h: Harness) -> None:
    v, seed = Versioned(h), Versioned(h, SEED)
    envs = {"staging": {"enabled": True}}
    await v.post_job(
        doc(configuration={"url": "https://x.invalid/", "headers": {"K": "v"}}, environments=envs)
    )
    run_id = (await v.run_now("warm")).body["data"]["id"]
    claim = await h.store.runs.claim(run_id, lambda _: -1)
    assert claim is not None and claim.config is not None
    snapshot = {
        "method": "POST",
        "url": "https://x.invalid/",
        "body": None,
        "headers": [{"name": "K", "value": "<redacted>"}],
    }
    await h.store.runs.finish(run_id, Outcome(RunStatus.SUCCEEDED, None, None, snapshot, None))
    new_run = attrs(await v.get_run(run_id))
    assert new_run["environment"] == "staging" and new_run["retry"] is None
    assert new_run["request"]["headers"] == {"K": "<redacted>"}
    old_run = attrs(await seed.get_run(run_id))
    assert old_run["request"]["headers"] == [{"name": "K", "value": "<redacted>"}]
    listed = await v.list_runs("?filter[environment]=staging&sort=-created_at")
    assert [r["id"] for r in listed.body["data"]] == [run_id]
    assert (await v.list_runs("?filter[environment]=production")).body["data"] == []
    assert (await v.list_runs("?filter[environment]=qa")).status == 400
    assert (await v.list_runs("?sort=state")).status == 400
    rerun = await v.rerun(run_id)
    assert attrs(rerun)["environment"] == "staging" and attrs(rerun)["rerun_of"] == run_id
    canceled = await v.cancel(rerun.body["data"]["id"])
    assert canceled.status == 200 and attrs(canceled)["status"] == "CANCELED"
    assert (await v.cancel(rerun.body["data"]["id"])).status == 409
    assert (await v.cancel("8f2b1c4a-0000-4a1b-9c3d-1e2f3a4b5c6d")).status == 404
    await v.delete_job("warm")
    assert (await v.rerun(run_id)).status == 409
    assert (await v.list_runs()).body["meta"]["page_size"] == 50
    assert (await seed.list_runs()).body["meta"]["page_size"] == 100


async def test_usage_counts_as_each_version_says(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ENVS, active_jobs_limit=2) as h:
        v, seed = Versioned(h), Versioned(h, SEED)
        await v.post_job(doc("manual", schedule=None))  # permanent, enabled nowhere
        await v.post_job(doc("prod", environments={"production": {"enabled": True}}))
        await v.post_job(doc("once", schedule="now", environments={"production": {}}))
        assert attrs(await v.usage())["active_jobs"] == 2  # permanent: recurring + manual
        assert attrs(await seed.usage())["active_jobs"] == 2  # enabled in production
        # The account's version is the seed: the limit counts production's enabled jobs.
        r = await v.post_job(doc("third", environments={"production": {"enabled": True}}))
        assert r.status == 403 and r.body["errors"][0]["code"] == "active_jobs_limit"
        r = await v.post_job(doc("staging-only", environments={"staging": {"enabled": True}}))
        assert r.status == 201
        # Each version counts as it says, whatever the account's version is.
        assert attrs(await v.usage())["active_jobs"] == 3
        assert attrs(await seed.usage())["active_jobs"] == 2
    pinned = 'api_version = "2026-08-07"\n' + ENVS
    async with make_harness(tmp_path / "pinned", acme=pinned, active_jobs_limit=2) as h:
        v = Versioned(h)
        await v.post_job(doc("one", schedule=None))
        await v.post_job(doc("two", environments={"staging": {"enabled": False}}))
        r = await v.post_job(doc("three", schedule=None))
        assert r.status == 403  # permanent jobs, enabled or not
        assert (
            await v.post_job(doc("once", schedule="now", environments={"staging": {}}))
        ).status == 201


async def test_version_header_and_served_spec(h: Harness) -> None:
    r = await h.get("/api/v1/jobs")
    assert r.headers["Jobsd-Version"] == SEED
    r = await h.get("/api/v1/jobs", headers={"Jobsd-Version": NEW})
    assert r.headers["Jobsd-Version"] == NEW
    r = await h.get("/api/v1/jobs", headers={"Jobsd-Version": "2026-07-01"})
    body = await r.get_json()
    assert r.status_code == 400 and r.headers["Jobsd-Version"] == SEED
    assert body["errors"][0]["source"] == {"header": "Jobsd-Version"}
    r = await h.client.get("/api/v1/jobs", headers={"Jobsd-Version": NEW})
    assert r.status_code == 401 and r.headers["Jobsd-Version"] == SEED
    r = await h.client.get("/healthz")
    assert r.headers["Jobsd-Version"] == SEED
    served = await (await h.client.get("/api/v1/openapi.json")).get_json()
    assert served["info"]["x-jobsd-api-version"] == SEED
    served = await (
        await h.client.get("/api/v1/openapi.json", headers={"Jobsd-Version": NEW})
    ).get_json()
    assert served["info"]["x-jobsd-api-version"] == NEW
    assert "/api/v1/run_stats" in served["paths"]
    assert "/api/v1/retry-policies/{policy_id}" in served["paths"]
    r = await h.client.get("/api/v1/openapi.json", headers={"Jobsd-Version": "x"})
    assert r.status_code == 400


async def test_the_account_version_picks_the_served_spec(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme='api_version = "2026-08-07"') as h:
        served = await (await h.get("/api/v1/openapi.json")).get_json()
        assert served["info"]["x-jobsd-api-version"] == NEW
        r = await h.get("/api/v1/openapi.json", headers={"Jobsd-Version": SEED})
        assert (await r.get_json())["info"]["x-jobsd-api-version"] == SEED
        assert r.headers["Jobsd-Version"] == SEED


@pytest.mark.parametrize("version", [SEED, NEW])
async def test_a_full_backlog_is_a_documented_429_for_run_now_and_rerun(
    tmp_path: Path, version: str
) -> None:
    # Run now and rerun answer 429 too_many_pending_runs past max_pending_runs:
    # each version's served spec documents it (Versioned checks every status).
    async with make_harness(tmp_path, scheduler="max_pending_runs = 1") as h:
        v = Versioned(h, version)
        assert (await v.post_job(doc(environments={"production": {"enabled": True}}))).status == 201
        first = await v.run_now("warm")
        assert first.status == 200, first.body
        for refused in (await v.run_now("warm"), await v.rerun(first.body["data"]["id"])):
            assert refused.status == 429, refused.body
            assert refused.body["errors"][0]["code"] == "too_many_pending_runs"
            assert refused.headers["Retry-After"]


async def test_the_seed_spec_documents_the_job_list_parameters_it_takes(h: Harness) -> None:
    # Query parameters are additive: the seed's GET /jobs takes the newer
    # filters and sort, so its served spec names them (its sort defaulting to
    # newest first), as it names the newer runs parameters.
    served = await (await h.client.get("/api/v1/openapi.json")).get_json()
    parameters = {p["name"]: p for p in served["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    for name in ("filter[enabled]", "filter[kind]", "filter[scheduled]", "filter[name]", "sort"):
        assert name in parameters, name
    assert parameters["sort"]["schema"]["default"] == "-created_at"
