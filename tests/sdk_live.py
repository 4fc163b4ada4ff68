"""One real daemon and one real target for a whole SDK test module.

The SDK modules (tests/test_sdk_*_surface.py) each drive many calls of the
official `smplkit-sdk` against jobsd as a separate process, as a user's
program would; starting a daemon per test would cost more than the calls,
so a module starts one (`live_daemon`, behind a module-scoped fixture) and
its tests keep to their own job ids. The account is pinned to 2026-08-07
with two environments; a second token sees staging only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from smplkit import JobsClient
from smplkit._generated.jobs.client import AuthenticatedClient

from jobsd.config import token_sha256
from tests.conftest import config_text
from tests.daemon_process import DaemonProcess

TOKEN = "jobsd_sdk-surface-token"
STAGING_TOKEN = "jobsd_sdk-surface-staging-token"
TARGET = Path(__file__).with_name("crash_target.py")
ACCOUNT = f"""api_version = "2026-08-07"
environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(TOKEN)}"
environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING_TOKEN)}"
environments = ["staging"]
"""
JSONAPI = {"Accept": "application/vnd.api+json"}


@dataclass
class Live:
    """The daemon's URL, the target's, and SDK transports pointed at the daemon."""

    daemon: DaemonProcess
    target: str

    def client(self, token: str = TOKEN, *, strict: bool = False) -> AuthenticatedClient:
        """The SDK's generated transport; `strict` makes an unexpected status raise
        instead of leaving `parsed` None, so a document that does not fit shows."""
        return AuthenticatedClient(
            base_url=self.daemon.url,
            token=token,
            headers=JSONAPI,
            raise_on_unexpected_status=strict,
        )

    def jobs(self, token: str = TOKEN, environment: str | None = None) -> JobsClient:
        """The SDK's high-level client, as `client.jobs` would be wired."""
        return JobsClient(auth_client=self.client(token), environment=environment)


@contextmanager
def live_daemon(
    tmp: Path, *, active_jobs_limit: int = -1, plan: str = "", scheduler: str = ""
) -> Iterator[Live]:
    """A daemon (unlimited runs; `plan`/`scheduler` add config lines) and a target,
    both on 127.0.0.1, for as long as the block runs; it must log no traceback."""
    with target_process(tmp) as url:
        cfg = tmp / "jobsd.toml"
        cfg.write_text(
            config_text(
                tmp,
                acme=ACCOUNT,
                active_jobs_limit=active_jobs_limit,
                runs_included=-1,
                plan=plan,
                scheduler=scheduler,
            )
        )
        with DaemonProcess(["serve", "--config", str(cfg)], tmp) as daemon:
            yield Live(daemon, url)
            assert "Traceback" not in daemon.stderr(), daemon.stderr()


@contextmanager
def target_process(tmp: Path) -> Iterator[str]:
    """The crash target in a process of its own on 127.0.0.1; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(TARGET), str(tmp / "target.log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()[-1]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def settled(jobs: JobsClient, *run_ids: str, timeout_s: float = 20) -> list[str]:
    """The runs' statuses once none is PENDING or RUNNING (polled: another process)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [jobs.runs.get(run_id).status for run_id in run_ids]
        if all(s not in ("PENDING", "RUNNING") for s in statuses):
            return statuses
        time.sleep(0.05)
    raise AssertionError(f"runs {run_ids} never finished")
