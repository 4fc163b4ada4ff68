"""Run-now offered at a steady rate: does the daemon keep up?

`POST /api/v1/jobs/{id}/actions/run` is offered at `--rate` per second for
`--seconds` (open loop, `paced.offer`: latency from each request's instant)
over 64 kept-alive connections, round-robin over `--jobs` jobs that POST to
the target and never fire on their own. Then every MANUAL run is awaited
and read from the file. Figures: the API's latency (goal p99 <= 50 ms), how
long a run waited for an executor, `started_at - created_at` (goal p99
<= 100 ms), and the daemon's CPU per run over the offer and the drain.

`body`: each call as the official SDK sends it (`jobs.run(id,
environment="production")`): the JSON body `{"environment":"production"}`,
in 2026-08-07 (`Jobsd-Version`; the SDK's account is pinned to it), where
the route reads that body; without it, no body (`Content-Length: 0`), as
`curl -X POST` sends it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.bench.e2e import paced
from tests.bench.e2e.daemon import (
    AUTH,
    create_jobs,
    job_doc,
    run_rows,
    running_daemon,
    wait_terminal,
)
from tests.bench.e2e.figures import Row, tree_cpu_s
from tests.bench.e2e.profiling import Profiler
from tests.bench.e2e.store_wall import store_sample
from tests.bench.e2e.target import Children, Target, check_delivered

SDK_BODY = b'{"environment":"production"}'  # httpx's spelling of RunNowRequest.to_dict()


@dataclass
class RunNow:
    rate: float
    seconds: float
    label: str = "jobsd"
    body: bool = False
    api: paced.Paced = field(default_factory=paced.Paced)
    pending_ms: list[float] = field(default_factory=list)
    succeeded: int = 0
    runs: int = 0
    cpu_ms_per_run: float = math.nan
    problems: list[str] = field(default_factory=list)
    profile: str = ""
    store: str = ""


async def run_runnow(
    target: Target,
    work_dir: Path,
    children: Children,
    *,
    rate: float = 500,
    seconds: float = 20,
    workers: int = 64,
    jobs: int = 100,
    profile_dir: Path | None = None,
    profile_gil: bool = False,
    code: Path | None = None,
    body: bool = False,
) -> RunNow:
    """`code`: another checkout's daemon (a before, `--runnow-baseline`); `body`: the
    SDK's (see the module note)."""
    result = RunNow(rate, seconds, "jobsd" if code is None else code.name, body=body)
    where = work_dir / f"jobsd-runnow-{result.label}"
    async with running_daemon(where, workers, children, code=code) as daemon:
        docs = [job_doc(f"now-{i:04d}", "2099-01-01T00:00:00Z", target.hook) for i in range(jobs)]
        _, errors = await create_jobs(daemon.api, docs)
        if errors:
            raise RuntimeError(f"creating jobs failed: {errors}")
        await target.take()
        parts = urlsplit(daemon.url)
        headers = [*AUTH.items(), ("Content-Type", "application/vnd.api+json")]
        sent = b""
        if body:
            headers.append(("Jobsd-Version", "2026-08-07"))
            sent = SDK_BODY
        print(f"  runnow: {rate:g}/s for {seconds:g} s ...", flush=True)
        profiler = Profiler(profile_dir, daemon.pid, "runnow", gil=profile_gil)
        if profiler.proc is not None:
            children.append(profiler.proc)
        store0 = await store_sample(daemon.api)
        cpu0 = tree_cpu_s(daemon.pid)
        result.api = await paced.offer(
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            rate,
            int(rate * seconds),
            lambda i: ("POST", f"/api/v1/jobs/now-{i % jobs:04d}/actions/run", headers, sent),
            connections=64,
        )
        accepted = sum(n for status, n in result.api.statuses.items() if 200 <= status < 300)
        stalled = await wait_terminal(daemon.db, "MANUAL", accepted)
        result.runs = accepted
        result.cpu_ms_per_run = (tree_cpu_s(daemon.pid) - cpu0) * 1000 / max(accepted, 1)
        store1 = await store_sample(daemon.api)
        if store0 is not None and store1 is not None:
            result.store = (store1 - store0).describe()
        if stalled:
            result.problems.append(stalled)
        if profiler.proc is not None:
            result.profile = f"[run-now]\n{profiler.stop()}"
        runs = run_rows(daemon.db, "MANUAL")
        result.succeeded = sum(r["status"] == "SUCCEEDED" for r in runs)
        result.pending_ms = [
            (r["started_at_us"] - r["created_at_us"]) / 1000
            for r in runs
            if r["started_at_us"] is not None
        ]
        got, ids = await target.take()
        check = Row("runnow")
        check_delivered(check, got, ids, {str(r["id"]) for r in runs})
        result.problems.extend(check.problems)
        if result.api.statuses.keys() - {201, 202, 200}:
            result.problems.append(f"run-now answers: {dict(result.api.statuses)}")
        result.problems.extend(result.api.errors)
    result.problems.extend(daemon.problems)
    return result
