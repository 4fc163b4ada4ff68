"""The official Python SDK (`smplkit-sdk`) on a job jobsd auto-paused.

Against the real daemon (a process of its own; its account on 2026-08-07,
its plan pausing after 2 failures) and tests/test_sdk.py's target process.
`paused_reason` is jobsd's read-only extension inside the environment
entry: the SDK ignores the leaf it does not know, so it reads the paused
job, parses it into its generated model, and re-enabling it through the
SDK (which sends back no `paused_reason`) clears it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from smplkit import JobsClient
from smplkit._generated.jobs.api.jobs import get_job
from smplkit._generated.jobs.client import AuthenticatedClient
from smplkit._generated.jobs.models.job_response import JobResponse
from smplkit.jobs import HttpConfig

from tests.conftest import config_text
from tests.daemon_process import DaemonProcess
from tests.test_sdk import ACCOUNT, TOKEN, finished, target

__all__ = ["target"]  # a fixture, used by name


@pytest.fixture
def pausing(tmp_path: Path) -> Iterator[AuthenticatedClient]:
    cfg = tmp_path / "jobsd.toml"
    text = config_text(tmp_path, acme=ACCOUNT, active_jobs_limit=-1, plan="auto_pause_after = 2")
    cfg.write_text(text)
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        yield AuthenticatedClient(
            base_url=daemon.url, token=TOKEN, headers={"Accept": "application/vnd.api+json"}
        )
        assert "Traceback" not in daemon.stderr(), daemon.stderr()


def raw_entry(auth: AuthenticatedClient, slug: str, env: str) -> dict[str, object]:
    r = httpx2.get(
        f"{auth._base_url}/api/v1/jobs/{slug}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    entry: dict[str, object] = r.json()["data"]["attributes"]["environments"][env]
    return entry


def test_the_official_sdk_reads_and_clears_an_auto_pause(
    pausing: AuthenticatedClient, target: str
) -> None:
    jobs = JobsClient(auth_client=pausing)
    job = jobs.new_manual_job(
        "flaky",
        name="Flaky",
        configuration=HttpConfig(url=f"{target}/status/500"),
        environments={"production": {"enabled": True}},
    )
    job.save()
    for _ in range(2):
        assert finished(jobs, jobs.run("flaky", environment="production").id) == "FAILED"
    assert str(raw_entry(pausing, "flaky", "production")["paused_reason"]).startswith(
        "auto-paused after 2 consecutive failed runs"
    )

    paused = jobs.get("flaky")
    assert paused.environments["production"].enabled is False
    assert isinstance(get_job.sync_detailed("flaky", client=pausing).parsed, JobResponse)

    paused.environment("production").enabled = True
    paused.save()
    assert paused.environments["production"].enabled is True
    assert "paused_reason" not in raw_entry(pausing, "flaky", "production")
