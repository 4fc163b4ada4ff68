"""Rendered resources against the OpenAPI schemas, and the duration rules.

The schemas are the contract, so every rendered job, run and usage resource is
validated with jsonschema against jobsd/openapi.json itself (refs resolved in
the whole document, formats checked) and against the spec jobsd serves for
the seed version (the contract plus its extension attributes, VERSIONS.md),
and must carry exactly the served schema's attributes: every one present,
none extra, and so every one of the contract's.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import jobsd
from jobsd.api.render import render_job, render_run, render_usage
from jobsd.api.spec import served_spec
from jobsd.api.v2026_08_07.render import render_run as render_run_2026_08_07
from jobsd.clock import duration_ms
from jobsd.job_model import Header, HttpConfig, Job, JobEnvironment, JobKind, JobSpec
from jobsd.messages import Run
from jobsd.runs import FailureReason, RunStatus, Trigger
from tests.api.conformance import check

CONTRACT = json.loads((Path(jobsd.__file__).parent / "openapi.json").read_text("utf-8"))
SPEC = json.loads(served_spec("2026-06-04"))
SPEC_URI = "urn:jobsd:openapi"
SCHEMAS = SPEC["components"]["schemas"]
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
FORMATS = FormatChecker()


def _is_date_time(value: object) -> bool:
    """RFC 3339 `date-time` (jsonschema checks it only with an optional extra)."""
    if not isinstance(value, str):
        return True
    return _RFC3339.fullmatch(value) is not None and bool(
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    )


FORMATS.checks("date-time")(_is_date_time)


class Both:
    """Validates against the contract and against the served spec."""

    def __init__(self, schema_name: str) -> None:
        self._validators = [validator(schema_name, spec) for spec in (CONTRACT, SPEC)]

    def validate(self, instance: object) -> None:
        for one in self._validators:
            one.validate(instance)

    def is_valid(self, instance: object) -> bool:
        """Valid for both (each is checked, so neither can pass a bad one alone)."""
        return all(one.is_valid(instance) for one in self._validators)


def validator(schema_name: str, spec: dict[str, Any] = SPEC) -> Draft202012Validator:
    """A validator for one component, its $refs resolved against the whole spec."""
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=registry, format_checker=FORMATS)


JOB_RESPONSE = Both("JobResponse")
RUN_RESPONSE = Both("RunResponse")
USAGE_RESPONSE = Both("UsageResponse")
T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)


def make_job(
    spec: JobSpec | None = None,
    *,
    enabled: bool = True,
    next_run_at: datetime | None = T0,
    **fields: Any,
) -> Job:
    """A job enabled (or not) in the default environment, `production`."""
    if spec is None:
        spec = JobSpec("nightly", "Nightly", None, "0 2 * * *", HttpConfig("https://x.test/"))
    values: dict[str, Any] = {
        "pk": 1,
        "account_id": "acme",
        "spec": spec,
        "environments": MappingProxyType({"production": JobEnvironment(enabled, next_run_at)}),
        "created_at": T0 - timedelta(days=1),
        "updated_at": T0 - timedelta(days=1),
        "deleted_at": None,
        "version": 1,
    }
    values.update(fields)
    return Job(**values)


def make_run(**fields: Any) -> Run:
    values: dict[str, Any] = {
        "id": "8f2b1c4a-0000-4a1b-9c3d-1e2f3a4b5c6d",
        "account_id": "acme",
        "job_pk": 1,
        "job_slug": "nightly",
        "job_version": 3,
        "environment": "production",
        "trigger": Trigger.SCHEDULE,
        "rerun_of": None,
        "scheduled_for": T0,
        "status": RunStatus.PENDING,
        "created_at": T0,
        "started_at": None,
        "finished_at": None,
        "failure_reason": None,
        "error": None,
        "request": None,
        "result": None,
    }
    values.update(fields)
    return Run(**values)


def assert_valid_job(resource: dict[str, object]) -> None:
    JOB_RESPONSE.validate({"data": resource})
    attrs = resource["attributes"]
    assert isinstance(attrs, dict)
    assert set(attrs) == set(SCHEMAS["Job"]["properties"])
    assert set(attrs["configuration"]) == set(SCHEMAS["JobHttpConfiguration"]["properties"])
    json.dumps(resource, ensure_ascii=False).encode("utf-8")


def assert_valid_run(resource: dict[str, object]) -> None:
    RUN_RESPONSE.validate({"data": resource})
    assert isinstance(resource["attributes"], dict)
    assert set(resource["attributes"]) == set(SCHEMAS["Run"]["properties"])


def test_the_validator_really_checks_formats_and_refs() -> None:
    good = render_run(make_run())
    bad_time = {**good, "attributes": {**good["attributes"], "created_at": "yesterday"}}  # type: ignore[dict-item]
    bad_ref = {**good, "attributes": {**good["attributes"], "rerun_of": "not-a-uuid"}}  # type: ignore[dict-item]
    bad_enum = {**good, "attributes": {**good["attributes"], "status": "DONE"}}  # type: ignore[dict-item]
    for resource in (bad_time, bad_ref, bad_enum):
        assert not RUN_RESPONSE.is_valid({"data": resource})
    assert not JOB_RESPONSE.is_valid({"data": {"id": "x", "attributes": {"name": "x"}}})


def test_minimal_job_has_every_attribute_with_nulls_and_empty_headers() -> None:
    resource = render_job(make_job(), "production")
    assert_valid_job(resource)
    assert resource["id"] == "nightly"
    assert resource["type"] == "job"
    assert resource["attributes"] == {
        "name": "Nightly",
        "description": None,
        "enabled": True,
        "type": "http",
        "schedule": "0 2 * * *",
        "configuration": {
            "method": "POST",
            "url": "https://x.test/",
            "headers": [],
            "success_status": "2xx",
            "tls_verify": True,
            "ca_cert": None,
            "body": None,
            "timeout": 30,
        },
        "concurrency_policy": "ALLOW",
        "timezone": None,
        "retry_policy": None,
        "kind": "recurring",
        "overlap_policy": "ALLOW",
        "next_run_at": "2026-06-05T02:00:00Z",
        "paused_reason": None,
        "created_at": "2026-06-04T02:00:00Z",
        "updated_at": "2026-06-04T02:00:00Z",
        "deleted_at": None,
        "version": 1,
    }


def test_full_job_renders_header_values_in_plaintext_and_timeout_from_timeout_s() -> None:
    config = HttpConfig(
        url="https://api.example.com/cache/warm",
        method="PUT",
        headers=(Header("Authorization", "Bearer s3cr3t"), Header("X-A", "")),
        success_status="204",
        tls_verify=False,
        ca_cert="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
        body='{"scope":"all"}',
        timeout_s=7,
    )
    spec = JobSpec("warm", "Warm", "Warms it.", "now", config, kind=JobKind.ONE_OFF)
    deleted = T0 + timedelta(microseconds=120_000)
    job = make_job(spec, enabled=False, next_run_at=None, deleted_at=deleted, version=4)
    resource = render_job(job, "production")
    assert_valid_job(resource)
    attrs: Any = resource["attributes"]
    assert attrs["configuration"]["headers"] == [
        {"name": "Authorization", "value": "Bearer s3cr3t"},
        {"name": "X-A", "value": ""},
    ]
    assert attrs["configuration"]["timeout"] == 7
    assert attrs["configuration"]["method"] == "PUT"
    assert attrs["configuration"]["tls_verify"] is False
    assert attrs["enabled"] is False
    assert attrs["description"] == "Warms it."
    assert attrs["next_run_at"] is None
    assert attrs["deleted_at"] == "2026-06-05T02:00:00.120000Z"
    assert attrs["version"] == 4


def test_a_pending_run_has_every_attribute_and_no_durations() -> None:
    resource = render_run(make_run())
    assert_valid_run(resource)
    assert resource["id"] == "8f2b1c4a-0000-4a1b-9c3d-1e2f3a4b5c6d"
    assert resource["type"] == "run"
    attrs: Any = resource["attributes"]
    assert attrs["job"] == "nightly"
    assert attrs["trigger"] == "SCHEDULE" and type(attrs["trigger"]) is str
    assert attrs["status"] == "PENDING" and type(attrs["status"]) is str
    assert attrs["scheduled_for"] == "2026-06-05T02:00:00Z"
    for key in ("started_at", "finished_at", "failure_reason", "error", "request", "result"):
        assert attrs[key] is None
    for key in ("pending_duration_ms", "run_duration_ms", "total_duration_ms"):
        assert attrs[key] is None


def test_a_finished_run_matches_the_spec_example() -> None:
    run = make_run(
        status=RunStatus.SUCCEEDED,
        started_at=T0 + timedelta(milliseconds=120),
        finished_at=T0 + timedelta(milliseconds=430),
        request={"method": "POST", "url": "https://x.test/", "headers": [], "body": None},
        result={"status": 200, "headers": {}, "body": "", "body_truncated": False, "body_bytes": 0},
    )
    resource = render_run(run)
    assert_valid_run(resource)
    attrs: Any = resource["attributes"]
    assert (attrs["pending_duration_ms"], attrs["run_duration_ms"], attrs["total_duration_ms"]) == (
        120,
        310,
        430,
    )
    assert attrs["started_at"] == "2026-06-05T02:00:00.120000Z"
    assert attrs["result"]["status"] == 200


def test_a_run_canceled_while_pending_has_only_a_total_duration() -> None:
    run = make_run(status=RunStatus.CANCELED, finished_at=T0 + timedelta(seconds=2))
    attrs: Any = render_run(run)["attributes"]
    assert attrs["pending_duration_ms"] is None
    assert attrs["run_duration_ms"] is None
    assert attrs["total_duration_ms"] == 2000


def test_a_rerun_and_a_failed_run_render_their_enums_as_strings() -> None:
    run = make_run(
        trigger=Trigger.RERUN,
        rerun_of="0b5e7a3c-1111-4a1b-9c3d-1e2f3a4b5c6d",
        scheduled_for=None,
        job_version=None,
        status=RunStatus.FAILED,
        failure_reason=FailureReason.QUOTA_EXCEEDED,
        error="quota of 3000 runs used",
        finished_at=T0,
    )
    resource = render_run(run)
    assert_valid_run(resource)
    attrs: Any = resource["attributes"]
    assert attrs["failure_reason"] == "QUOTA_EXCEEDED" and type(attrs["failure_reason"]) is str
    assert attrs["trigger"] == "RERUN"
    assert attrs["rerun_of"] == "0b5e7a3c-1111-4a1b-9c3d-1e2f3a4b5c6d"
    assert attrs["total_duration_ms"] == 0


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), 0),
        (timedelta(microseconds=999), 0),
        (timedelta(microseconds=1999), 1),
        (timedelta(seconds=1, microseconds=500), 1000),
        (timedelta(days=40), 40 * 86_400_000),
        (timedelta(microseconds=-1), 0),  # a clock stepped back never reads negative
        (timedelta(seconds=-5), 0),
    ],
)
def test_durations_are_floored_whole_milliseconds(delta: timedelta, expected: int) -> None:
    assert duration_ms(T0, T0 + delta) == expected
    assert type(duration_ms(T0, T0 + delta)) is int


def test_durations_are_null_without_both_ends() -> None:
    assert duration_ms(None, T0) is None
    assert duration_ms(T0, None) is None


def test_usage_renders_the_current_period_and_unlimited_plans() -> None:
    resource = render_usage(
        period="2026-06",
        runs_used=412,
        runs_included=-1,
        active_jobs=2,
        active_jobs_limit=-1,
        resource_id="current",
    )
    USAGE_RESPONSE.validate({"data": resource})
    assert resource == {
        "id": "current",
        "type": "usage",
        "attributes": {
            "period": "2026-06",
            "runs_used": 412,
            "runs_included": -1,
            "active_jobs": 2,
            "active_jobs_limit": -1,
        },
    }
    attrs: Any = resource["attributes"]
    assert set(attrs) == set(SCHEMAS["Usage"]["properties"])


# -- generated resources --------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
texts = st.text(max_size=20)
headers = st.lists(st.builds(Header, st.text(min_size=1, max_size=10), texts), max_size=3)
configs = st.builds(
    HttpConfig,
    url=st.just("https://example.com/"),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    headers=headers.map(tuple),
    success_status=st.sampled_from(["2xx", "200", "5xx"]),
    tls_verify=st.booleans(),
    ca_cert=st.none() | texts,
    body=st.none() | texts,
    timeout_s=st.integers(1, 3600),
)
specs = st.builds(
    JobSpec,
    slug=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
    name=st.text(min_size=1, max_size=20),
    description=st.none() | texts,
    schedule=st.sampled_from(["now", "0 2 * * *", "2030-01-01T00:00:00Z"]),
    config=configs,
)


@settings(max_examples=60, deadline=None)
@given(
    spec=specs,
    enabled=st.booleans(),
    next_run_at=st.none() | instants,
    created_at=instants,
    deleted_at=st.none() | instants,
    version=st.integers(1, 10**6),
)
def test_every_generated_job_validates(
    spec: JobSpec,
    enabled: bool,
    next_run_at: datetime | None,
    created_at: datetime,
    deleted_at: datetime | None,
    version: int,
) -> None:
    job = make_job(
        spec,
        enabled=enabled,
        next_run_at=next_run_at,
        created_at=created_at,
        updated_at=created_at,
        deleted_at=deleted_at,
        version=version,
    )
    assert_valid_job(render_job(job, "production"))


@settings(max_examples=80, deadline=None)
@given(
    created_at=instants,
    pending=st.none() | st.timedeltas(timedelta(0), timedelta(days=2)),
    running=st.none() | st.timedeltas(timedelta(0), timedelta(hours=1)),
    status=st.sampled_from(RunStatus),
    trigger=st.sampled_from(Trigger),
    reason=st.none() | st.sampled_from(FailureReason),
    rerun_of=st.none() | st.uuids().map(str),
)
def test_every_generated_run_validates_and_its_durations_add_up(
    created_at: datetime,
    pending: timedelta | None,
    running: timedelta | None,
    status: RunStatus,
    trigger: Trigger,
    reason: FailureReason | None,
    rerun_of: str | None,
) -> None:
    started = None if pending is None else created_at + pending
    finished = None if running is None else (started or created_at) + running
    run = make_run(
        created_at=created_at,
        started_at=started,
        finished_at=finished,
        status=status,
        trigger=trigger,
        failure_reason=reason,
        rerun_of=rerun_of,
    )
    resource = render_run(run)
    assert_valid_run(resource)
    attrs: Any = resource["attributes"]
    parts = (attrs["pending_duration_ms"], attrs["run_duration_ms"], attrs["total_duration_ms"])
    assert (parts[0] is None) == (started is None)
    assert (parts[2] is None) == (finished is None)
    if None not in parts:
        # Each part is floored on its own, so the sum may trail the total by 1 ms.
        assert parts[2] - 1 <= parts[0] + parts[1] <= parts[2]


def test_a_retry_reads_as_a_rerun_of_the_run_it_retries_in_the_seed() -> None:
    """VERSIONS.md's rule: the seed's trigger enum has no RETRY."""
    original, previous = (
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    )
    retry = make_run(
        trigger=Trigger.RETRY,
        scheduled_for=T0 + timedelta(seconds=40),
        retry_of=original,
        retry_attempt=2,
        retried_run=previous,
    )
    seed = render_run(retry)
    assert_valid_run(seed)
    a = seed["attributes"]
    assert isinstance(a, dict)
    assert (a["trigger"], a["rerun_of"], a["scheduled_for"]) == ("RERUN", previous, None)
    new = render_run_2026_08_07(retry)
    check("2026-08-07", "GET", "/api/v1/runs/{run_id}", 200, {"data": new})
    b = new["attributes"]
    assert isinstance(b, dict)
    assert (b["trigger"], b["rerun_of"], b["retry"]) == (
        "RETRY",
        None,
        {"of": original, "attempt": 2},
    )
    assert b["scheduled_for"] == "2026-06-05T02:00:40Z"
    # Any other run has no retry object.
    plain = render_run_2026_08_07(make_run())["attributes"]
    assert isinstance(plain, dict) and plain["retry"] is None
