"""The official SDK (smplkit-sdk, generated from the 2026-08-07 spec) finds runs on the real daemon.

Its `list_runs` with filters and sort, following its own cursor, and its
`get_run_stats` with a bucket: each call parses our response into the
SDK's models, which is what a dashboard built on it would do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from smplkit._generated.jobs.api.runs import get_run_stats, list_runs
from smplkit._generated.jobs.client import AuthenticatedClient

from tests.conftest import TOKEN_A, config_text
from tests.daemon_process import DaemonProcess

NEW = "2026-08-07"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    cfg = tmp_path / "jobsd.toml"
    text = config_text(tmp_path, active_jobs_limit=-1, runs_included=-1)
    text = text.replace(
        '[[accounts]]\nid = "acme"',
        f'[[accounts]]\nid = "acme"\napi_version = "{NEW}"\n'
        'environments = ["production", "staging"]',
    )
    cfg.write_text(text)
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as process:
        yield process


def test_sdk_lists_runs_with_filters_and_sort_and_reads_stats(daemon: DaemonProcess) -> None:
    headers = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": "application/vnd.api+json"}
    api = f"{daemon.url}/api/v1"
    with httpx2.Client(headers=headers, timeout=10) as http:
        for slug, env in (("refused", "production"), ("blocked", "staging")):
            target = "http://127.0.0.1:9/" if slug == "refused" else "http://127.0.0.2:9/"
            doc = {
                "data": {
                    "type": "job",
                    "id": slug,
                    "attributes": {
                        "name": f"Job {slug}",
                        "configuration": {"url": target, "timeout": 2},
                        "environments": {env: {"enabled": True}},
                    },
                }
            }
            assert http.post(f"{api}/jobs", json=doc).status_code == 201
            for _ in range(3):
                r = http.post(f"{api}/jobs/{slug}/actions/run", json={"environment": env})
                assert r.status_code == 200, r.text
        for _ in range(400):  # bounded: the runs fail fast (refused, or SSRF-blocked)
            body = http.get(f"{api}/runs?filter[status]=PENDING,RUNNING").json()
            if not body["data"]:
                break
            time.sleep(0.05)  # a real daemon in another process: poll it
        else:
            pytest.fail("runs did not finish")
    client = AuthenticatedClient(
        base_url=daemon.url, token=TOKEN_A, raise_on_unexpected_status=True
    )
    with client:
        page = list_runs.sync(
            client=client, filterstatus="FAILED", filtertrigger="MANUAL", sort="job", pagesize=2
        )
        assert page is not None
        seen = [run.attributes.job for run in page.data]
        after = page.links.next_ if page.links else None
        while after:
            cursor = after.split("page[after]=")[1].split("&")[0]
            page = list_runs.sync(
                client=client,
                filterstatus="FAILED",
                filtertrigger="MANUAL",
                sort="job",
                pagesize=2,
                pageafter=cursor,
            )
            assert page is not None
            seen += [run.attributes.job for run in page.data]
            after = page.links.next_ if page.links else None
        assert seen == ["blocked"] * 3 + ["refused"] * 3
        staging = list_runs.sync(
            client=client, filterenvironment="staging", last_run_only=True, sort="-created_at"
        )
        assert staging is not None and [r.attributes.job for r in staging.data] == ["blocked"]
        stats = get_run_stats.sync(client=client, bucket="1h")
        assert stats is not None
        attributes = stats.data.attributes
        assert attributes.total == 6 and attributes.tally.failed == 6
        assert [b.count for b in attributes.buckets] == [6]
        assert len(attributes.recent_failures) == 3
        assert {f.job_name for f in attributes.recent_failures} <= {"Job refused", "Job blocked"}
        assert attributes.next_scheduled is None  # manual jobs: nothing is due
