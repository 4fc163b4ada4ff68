"""The crash harness's burst: many one-offs due at one instant, killed mid-burst.

`create_burst` creates `BURST_JOBS` one-off jobs in the default environment,
all due at the same instant, as the load's one-offs are (an `X-Env` header,
the retry policy; every fourth answered `500`, so finishes write retries
too). At that instant the scheduler fires them in one transaction and the
executors claim and finish them as fast as the target answers: the store's
writer then runs queued claims and finishes together, several per
transaction (`jobsd.store.engine`). The harness kills the daemon at a
random moment just after the instant (`burst_kill_delay_s`), so the kill
lands while a firing, a batch of claims or a batch of finishes is being
written, and every audit rule must hold for each run of the burst: one run
per slot, none lost, none sent twice, the ones RUNNING at the kill lost and
said so.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx2

from jobsd.clock import iso, system_utc_now, to_us

BURST_JOBS = 48
BURST_LEAD_S = 2.5  # creating the jobs takes ~1 s on a loaded machine
BURST_KILL_WINDOW_S = 0.6  # 48 runs through 4 executors at a fast target


def create_burst(
    url: str,
    target_url: str,
    token: str,
    at: datetime,
    job_doc: Callable[[str, str, str], dict[str, Any]],
    tag: int,
) -> dict[str, int]:
    """Create the burst's jobs, due at `at`; their slugs and instant (us), all acknowledged."""
    paths = {
        f"once-burst-{tag}-{n}": "/status/500" if n % 4 == 3 else "/ok" for n in range(BURST_JOBS)
    }
    return create_one_offs(url, target_url, token, at, job_doc, paths)


def create_one_offs(
    url: str,
    target_url: str,
    token: str,
    at: datetime,
    job_doc: Callable[[str, str, str], dict[str, Any]],
    paths: dict[str, str],
) -> dict[str, int]:
    """Create a one-off per slug, due at `at`, calling its path on the target; their
    slugs and instant (us), all acknowledged."""
    made: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.api+json"}
    with httpx2.Client(base_url=url, headers=headers, timeout=10, trust_env=False) as client:
        for slug, path in paths.items():
            r = client.post(
                "/api/v1/jobs", json=job_doc(slug, iso(at) or "", f"{target_url}{path}")
            )
            assert r.status_code == 201, f"create {slug}: {r.status_code} {r.text}"
            made[slug] = to_us(at)
    return made


def burst_kill_delay_s(at: datetime, rng: random.Random) -> float:
    """How long from now until the kill: a random moment inside the burst."""
    until_s = (at - system_utc_now()).total_seconds()
    return max(0.0, until_s) + rng.uniform(0.0, BURST_KILL_WINDOW_S)
