"""The official Python SDK (`smplkit-sdk`) against the real daemon, on 2026-08-07.

The account is pinned to `api_version = "2026-08-07"` in the config, as an
operator would for a team using today's clients, so the SDK needs no
header of its own. The SDK's public constructor builds its host from a
domain (`https://jobs.<domain>`); its generated client takes a base URL,
which is how it is pointed at the daemon here (`JobsClient(auth_client=...)`).

Every call the issue names must succeed, and every document must parse
into the SDK's models: the high-level client reads the JSON itself, so the
same operations are also made through the generated functions, whose
`parsed` is the SDK's own model (or None when it could not be built).
Runs are real: the jobs call a target process on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from smplkit import JobsClient
from smplkit._generated.jobs.api.jobs import get_job, list_jobs, run_job_now
from smplkit._generated.jobs.api.runs import get_run, list_runs
from smplkit._generated.jobs.api.usage import get_usage
from smplkit._generated.jobs.client import AuthenticatedClient
from smplkit._generated.jobs.models.job_list_response import JobListResponse
from smplkit._generated.jobs.models.job_response import JobResponse
from smplkit._generated.jobs.models.run_list_response import RunListResponse
from smplkit._generated.jobs.models.run_now_request import RunNowRequest
from smplkit._generated.jobs.models.run_response import RunResponse
from smplkit._generated.jobs.models.usage_response import UsageResponse
from smplkit.errors import NotFoundError
from smplkit.jobs import HttpConfig, JobEnvironment, JobKind

from jobsd.config import token_sha256
from tests.conftest import config_text
from tests.daemon_process import DaemonProcess
from tests.sdk_live import target_process

TOKEN = "jobsd_sdk-test-token"
ACCOUNT = f"""api_version = "2026-08-07"
environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(TOKEN)}"
environments = ["production", "staging"]
"""


@pytest.fixture
def target(tmp_path: Path) -> Iterator[str]:
    with target_process(tmp_path) as url:
        yield url


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[AuthenticatedClient]:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path, acme=ACCOUNT, active_jobs_limit=-1))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        client = AuthenticatedClient(
            base_url=daemon.url, token=TOKEN, headers={"Accept": "application/vnd.api+json"}
        )
        yield client
        assert "Traceback" not in daemon.stderr(), daemon.stderr()


def finished(jobs: JobsClient, run_id: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = jobs.runs.get(run_id).status
        if status not in ("PENDING", "RUNNING"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never finished")


def test_the_official_sdk_end_to_end(auth: AuthenticatedClient, target: str) -> None:
    jobs = JobsClient(auth_client=auth)
    manual = jobs.new_manual_job(
        "button",
        name="Button",
        configuration=HttpConfig(url=f"{target}/ok", headers={"Authorization": "Bearer base"}),
        environments={
            "production": {"enabled": True},
            "staging": JobEnvironment(
                enabled=True, url=f"{target}/staging", headers={"X-Env": "s"}
            ),
        },
    )
    manual.save()
    assert manual.kind is JobKind.MANUAL and manual.version == 1
    nightly = jobs.new_recurring_job(
        "nightly",
        name="Nightly warm",
        schedule="0 2 * * *",
        timezone="Europe/Paris",
        configuration=HttpConfig(url=f"{target}/ok", method="PUT", headers={"X-A": "1"}),
        environments={
            "production": {"enabled": True},
            "staging": {"enabled": True, "schedule": "0 3 * * *", "timeout": 5},
        },
    )
    nightly.save()
    assert nightly.kind is JobKind.RECURRING and nightly.timezone == "Europe/Paris"
    assert nightly.environments["staging"].schedule == "0 3 * * *"
    assert nightly.environments["production"].next_run_at is not None
    once = jobs.schedule(
        "once",
        name="Once",
        schedule=datetime(2030, 1, 1, tzinfo=UTC),
        configuration=HttpConfig(url=f"{target}/ok"),
        environment="staging",
    )
    once.save()
    assert once.kind is JobKind.ONE_OFF and list(once.environments) == ["staging"]

    # List, filter, get.
    assert [j.id for j in jobs.list()] == ["button", "nightly"]  # by name; no one-offs
    assert [j.id for j in jobs.list(kind=JobKind.ONE_OFF)] == ["once"]
    assert {j.id for j in jobs.list(scheduled=True)} == {"nightly", "once"}
    assert [j.id for j in jobs.list(name="WARM")] == ["nightly"]
    got = jobs.get("nightly")
    assert got.configuration.headers == {"X-A": "1"} and got.configuration.method == "PUT"

    # Update: rename, pause staging, add a header override; the reply is the new state.
    got.name = "Nightly cache warm"
    got.environment("staging").enabled = False
    got.environment("production").set_header("X-A", "prod")
    got.save()
    assert got.version == 2 and got.name == "Nightly cache warm"
    assert got.environments["staging"].enabled is False
    assert got.environments["staging"].next_run_at is None
    assert got.environments["production"].headers == {"X-A": "prod"}

    # Run now, with and without an environment; the runs run.
    in_staging = jobs.run("button", environment="staging")
    assert in_staging.environment == "staging" and in_staging.trigger == "MANUAL"
    implied = jobs.run("nightly")  # enabled in production only now
    assert implied.environment == "production"
    assert finished(jobs, in_staging.id) == "SUCCEEDED"
    assert finished(jobs, implied.id) == "SUCCEEDED"
    sent = jobs.runs.get(in_staging.id)
    assert sent.request is not None
    assert sent.request["url"] == f"{target}/staging"
    assert sent.request["headers"] == {"Authorization": "<redacted>", "X-Env": "<redacted>"}
    prod = jobs.runs.get(implied.id)
    assert prod.request is not None and prod.request["headers"] == {"X-A": "<redacted>"}
    assert {r.id for r in jobs.runs.list()} == {in_staging.id, implied.id}
    assert [r.id for r in jobs.runs.list(job="button")] == [in_staging.id]
    assert [r.id for r in jobs.runs.list(environments=["staging"])] == [in_staging.id]
    again = jobs.runs.rerun(in_staging.id)
    assert again.rerun_of == in_staging.id and again.environment == "staging"
    assert finished(jobs, again.id) == "SUCCEEDED"

    # Usage counts permanent jobs: the manual and the recurring one.
    usage = jobs.usage()
    assert (usage.active_jobs, usage.active_jobs_limit, usage.runs_used) == (2, -1, 3)

    # Every document parses into the SDK's generated models.
    assert isinstance(list_jobs.sync_detailed(client=auth).parsed, JobListResponse)
    assert isinstance(get_job.sync_detailed("nightly", client=auth).parsed, JobResponse)
    run = run_job_now.sync_detailed(
        "button", client=auth, body=RunNowRequest(environment="production")
    ).parsed
    assert isinstance(run, RunResponse)
    assert isinstance(get_run.sync_detailed(run.data.id, client=auth).parsed, RunResponse)
    assert isinstance(list_runs.sync_detailed(client=auth).parsed, RunListResponse)
    assert isinstance(get_usage.sync_detailed(client=auth).parsed, UsageResponse)

    # Delete.
    jobs.delete("once")
    with pytest.raises(NotFoundError):
        jobs.get("once")
    manual.delete()
    assert [j.id for j in jobs.list()] == ["nightly"]
