"""The official Python SDK (`smplkit-sdk`) on retry policies, time zones and RETRY runs.

Against the real daemon (a process of its own) with its account on
2026-08-07, and a real target process on 127.0.0.1 (tests/test_sdk.py's
fixtures). The SDK creates, lists,
updates and deletes retry policies, creates jobs naming a policy and a time
zone, runs one against a target that answers 500, and reads the RETRY runs
with their `retry` object, through its high-level client and through the
generated functions whose `parsed` is the SDK's own model (None if the
document did not fit it).
"""

from __future__ import annotations

import time

import pytest
from smplkit import JobsClient
from smplkit._generated.jobs.api.retry_policies import get_retry_policy, list_retry_policies
from smplkit._generated.jobs.api.runs import get_run
from smplkit._generated.jobs.client import AuthenticatedClient
from smplkit._generated.jobs.models.retry_policy_list_response import RetryPolicyListResponse
from smplkit._generated.jobs.models.retry_policy_response import RetryPolicyResponse
from smplkit._generated.jobs.models.run_response import RunResponse
from smplkit.errors import ConflictError, NotFoundError, ValidationError
from smplkit.jobs import Backoff, HttpConfig, JobKind

from tests.test_sdk import auth, target  # the daemon (account on 2026-08-07) and target

__all__ = ["auth", "target"]  # fixtures, used by name


def test_the_official_sdk_on_retry_policies_and_retry_runs(
    auth: AuthenticatedClient, target: str
) -> None:
    jobs = JobsClient(auth_client=auth)
    policies = jobs.retry_policies

    # Create, list, get, update.
    quick = policies.new(
        "quick",
        name="Quick",
        max_retries=2,
        backoff=Backoff.FIXED,
        delay_seconds=1,
        retry_statuses=["5xx"],
        retry_statuses_except=["501"],
    )
    quick.save()
    assert quick.version == 1 and quick.created_at is not None
    patient = policies.new(
        "patient",
        name="patient",
        max_retries=5,
        backoff=Backoff.EXPONENTIAL,
        delay_seconds=2,
        max_delay_seconds=60,
        retry_on_timeout=True,
    )
    patient.save()
    assert [p.id for p in policies.list()] == ["patient", "quick"]  # by name, case-folded
    assert [p.id for p in policies.list(name="QUI")] == ["quick"]
    assert policies.get("patient").max_delay_seconds == 60
    patient.retry_on_connection_error = True
    patient.save()
    assert patient.version == 2 and policies.get("patient").retry_on_connection_error is True
    listed = list_retry_policies.sync_detailed(client=auth)
    assert isinstance(listed.parsed, RetryPolicyListResponse), listed.content
    one = get_retry_policy.sync_detailed("quick", client=auth)
    assert isinstance(one.parsed, RetryPolicyResponse), one.content

    # Bad policies are refused.
    with pytest.raises(ValidationError):
        policies.new(
            "bad", name="Bad", max_retries=11, backoff=Backoff.FIXED, delay_seconds=1
        ).save()
    with pytest.raises(ValidationError):
        policies.new(
            "bad",
            name="Bad",
            max_retries=1,
            backoff=Backoff.FIXED,
            delay_seconds=1,
            max_delay_seconds=5,
        ).save()

    # Jobs name a policy (a policy object or its id) and a time zone.
    nightly = jobs.new_recurring_job(
        "nightly",
        name="Nightly",
        schedule="30 2 * * *",
        timezone="America/New_York",
        retry_policy=patient,
        configuration=HttpConfig(url=f"{target}/ok"),
        environments={"production": {"enabled": True}, "staging": {"retry_policy": "quick"}},
    )
    nightly.save()
    assert nightly.kind is JobKind.RECURRING and nightly.timezone == "America/New_York"
    assert nightly.retry_policy == "patient"
    assert nightly.environments["staging"].retry_policy == "quick"
    with pytest.raises(ValidationError):
        jobs.new_manual_job(
            "ghost", name="Ghost", configuration=HttpConfig(url=f"{target}/ok"), retry_policy="gone"
        ).save()
    failing = jobs.new_manual_job(
        "failing",
        name="Failing",
        configuration=HttpConfig(url=f"{target}/status/503"),
        environments={"production": {"enabled": True}},
        retry_policy=quick,
    )
    failing.save()

    # A run that fails is retried twice; the SDK reads each RETRY with its chain.
    first = failing.trigger(environment="production")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = jobs.runs.list(job="failing")
        if len(runs) == 3 and all(r.status not in ("PENDING", "RUNNING") for r in runs):
            break
        time.sleep(0.1)
    runs = list(reversed(jobs.runs.list(job="failing")))
    assert [(r.trigger, r.status) for r in runs] == [
        ("MANUAL", "FAILED"),
        ("RETRY", "FAILED"),
        ("RETRY", "FAILED"),
    ]
    assert [r.retry for r in runs[1:]] == [
        type(runs[1].retry)(of=first.id, attempt=1),
        type(runs[1].retry)(of=first.id, attempt=2),
    ]
    assert runs[0].retry is None
    for run in runs[1:]:
        assert run.scheduled_for is not None and run.started_at >= run.scheduled_for
        parsed = get_run.sync_detailed(run.id, client=auth).parsed
        assert isinstance(parsed, RunResponse)

    # A policy still in use cannot be deleted; once nothing names it, it can.
    with pytest.raises(ConflictError):
        policies.delete("quick")
    jobs.delete("failing")
    nightly.environments["staging"].retry_policy = None
    nightly.save()
    policies.delete("quick")
    with pytest.raises(NotFoundError):
        policies.get("quick")
    nightly.retry_policy = None
    nightly.save()
    patient.delete()
    assert policies.list() == []
