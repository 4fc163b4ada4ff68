"""jobsd fires N one-off jobs due at one instant (or spread over some seconds).

Creates 200 pilot jobs due in 2099 to measure the create rate, picks the
first instant from it (2.5 x the expected creation time + 5 s ahead:
creating slows as the account grows), creates N jobs that POST to the
target, and waits until every run is terminal. While the runs fire, a
probe offers `GET /api/v1/jobs/{id}` at a steady rate (`--probe-rate`),
for the API's latency under a burst. Then the runs' timestamps are read
from the file, the API's cursor walk cross-checks them, and the target's
counts prove each run arrived once.

`runs/s` is runs / (last `finished_at` - first `scheduled_for`): it includes
the time to fire the first run. Lateness (`started_at - scheduled_for`) is
split into fire lag (`created_at - scheduled_for`) and queue (`started_at
- created_at`). The daemon's CPU is its whole process tree's, from the
moment the jobs exist until the last run is terminal.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import trio

from tests.bench.e2e import paced
from tests.bench.e2e.bare import iso_z
from tests.bench.e2e.daemon import (
    AUTH,
    Daemon,
    api_walk,
    create_jobs,
    job_doc,
    run_rows,
    running_daemon,
    wait_terminal,
)
from tests.bench.e2e.figures import Row, proc_cpu_s, tree_cpu_s
from tests.bench.e2e.profiling import Profiler
from tests.bench.e2e.store_wall import store_sample
from tests.bench.e2e.target import Children, Target, check_delivered

PILOT_JOBS = 200
CREATE_MARGIN = 2.5  # x the pilot's estimate of the time to create N jobs


@dataclass
class Burst:
    row: Row
    create_rate: float = math.nan
    create_cpu_ms: float = math.nan
    fire_lag_ms: list[float] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    finish_span_s: float = math.nan
    fire_rate: float = math.nan
    probe: paced.Paced | None = None
    notes: list[str] = field(default_factory=list)
    profile: str = ""


@dataclass(frozen=True)
class BurstOptions:
    count: int
    workers: int
    spread_s: float = 0.0
    probe_rate: float = 0.0  # GET /jobs/{id} per second while the runs fire; 0: none
    profile_dir: Path | None = None
    profile_gil: bool = False
    label: str = "jobsd"
    processes: int | None = None  # [scheduler] worker_processes; None: the default
    code: Path | None = None  # another checkout to run (a before/after)


async def run_burst(
    target: Target, opts: BurstOptions, work_dir: Path, children: Children, into: list[Burst]
) -> None:
    """Appends its Burst at once, so a global timeout still reports what was measured."""
    which = "" if opts.processes is None else f", {opts.processes} procs"
    which = ", baseline" if opts.code is not None else which
    burst = Burst(Row(f"{opts.label} (spread {opts.spread_s:g} s{which})", count=opts.count))
    into.append(burst)
    data = work_dir / f"jobsd-burst-{opts.spread_s:g}-{opts.count}{which}".replace(", ", "-")
    async with running_daemon(
        data, opts.workers, children, code=opts.code, processes=opts.processes
    ) as daemon:
        try:
            await _fire(target, opts, daemon, burst, children)
        finally:
            if not burst.fire_lag_ms and daemon.db.exists():
                summarize_runs(burst, run_rows(daemon.db, "SCHEDULE"))
                burst.row.problems.append("cut short: figures over the runs finished so far")
    burst.row.problems.extend(daemon.problems)


async def _fire(
    target: Target, opts: BurstOptions, daemon: Daemon, burst: Burst, children: Children
) -> None:
    count, spread_s, label = opts.count, opts.spread_s, burst.row.name
    row, api, pid = burst.row, daemon.api, daemon.pid
    far = "2099-01-01T00:00:00Z"
    pilot = [job_doc(f"pilot-{i:04d}", far, target.hook) for i in range(PILOT_JOBS)]
    pilot_s, errors = await create_jobs(api, pilot)
    if errors:
        raise RuntimeError(f"creating jobs failed: {errors}")
    guess_s = count / (PILOT_JOBS / pilot_s)
    first = datetime.now(UTC) + timedelta(seconds=guess_s * CREATE_MARGIN + 5)
    first = first.replace(microsecond=0) + timedelta(seconds=1)
    step = timedelta(seconds=spread_s / count)
    docs = [job_doc(f"bench-{i:06d}", iso_z(first + step * i), target.hook) for i in range(count)]
    print(
        f"  {label}: pilot {PILOT_JOBS / pilot_s:.0f} jobs/s; creating {count} "
        f"jobs due from {iso_z(first)} ...",
        flush=True,
    )
    await target.take()  # from here on, every request is a run's
    cpu0 = tree_cpu_s(pid)
    create_s, errors = await create_jobs(api, docs)
    burst.create_rate = count / create_s
    burst.create_cpu_ms = (tree_cpu_s(pid) - cpu0) * 1000 / count
    if errors:
        raise RuntimeError(f"creating jobs failed: {errors}")
    early_s = (first - datetime.now(UTC)).total_seconds()
    if early_s < 0:
        burst.notes.append(
            f"job creation ended {-early_s:.1f} s after the first instant: "
            "lateness includes creation"
        )
    profiler = Profiler(opts.profile_dir, pid, f"burst-{spread_s:g}", gil=opts.profile_gil)
    if profiler.missing:
        burst.notes.append("--profile: py-spy is not installed, no profile")
    if profiler.proc is not None:
        children.append(profiler.proc)
    print(f"  {label}: {count} jobs created; waiting for the runs ...", flush=True)
    store0 = await store_sample(api)
    cpu0, target0, own0 = tree_cpu_s(pid), target.cpu_s(), proc_cpu_s(pid)
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        if opts.probe_rate > 0:
            wait_s = max(early_s, 0)
            nursery.start_soon(_probe, daemon.url, opts.probe_rate, count, wait_s, done, burst)
        # Nothing fires before the first instant: a wait for it is no stall.
        quiet_s = max(early_s, 0) + spread_s
        stalled = await wait_terminal(daemon.db, "SCHEDULE", count, stall_s=60 + quiet_s)
        done.set()
    row.client_cpu_s = tree_cpu_s(pid) - cpu0
    row.target_cpu_s = target.cpu_s() - target0
    own_ms = (proc_cpu_s(pid) - own0) * 1000 / count
    burst.notes.append(
        f"CPU per run: the daemon's own process {own_ms:.2f} ms, its worker processes "
        f"{row.client_cpu_s * 1000 / count - own_ms:.2f} ms"
    )
    store1 = await store_sample(api)
    if store0 is not None and store1 is not None:
        burst.notes.append((store1 - store0).describe())
    if stalled:
        burst.notes.append(stalled)
    if profiler.proc is not None:
        burst.profile = f"[{row.name}]\n{profiler.stop()}"
    runs = await trio.to_thread.run_sync(run_rows, daemon.db, "SCHEDULE")
    summarize_runs(burst, runs)
    got, ids = await target.take()
    check_delivered(row, got, ids, {str(r["id"]) for r in runs})
    burst.notes.append(f"target: {got} requests over {target.connections} connections")
    if len(runs) != count:
        row.problems.append(f"{len(runs)} SCHEDULE runs in the database, expected {count}")
    statuses, pages = await api_walk(api)
    if statuses.get("SUCCEEDED", 0) != row.ok or sum(statuses.values()) != len(runs):
        row.problems.append(f"API walk disagrees: {dict(statuses)} over {pages} pages")
    else:
        burst.notes.append(
            f"API cursor walk: {sum(statuses.values())} runs in {pages} pages, agrees"
        )


async def _probe(
    url: str, rate: float, jobs: int, wait_s: float, done: trio.Event, burst: Burst
) -> None:
    """GET one job at `rate`/s from the first instant until the runs are done."""
    await trio.sleep(wait_s)
    parts = urlsplit(url)
    headers = [(k, v) for k, v in AUTH.items()]
    burst.probe = await paced.offer(
        parts.hostname or "127.0.0.1",
        parts.port or 80,
        rate,
        int(rate * 3600),
        lambda i: ("GET", f"/api/v1/jobs/bench-{i % jobs:06d}", headers, b""),
        connections=8,
        stop=done,
    )


def summarize_runs(burst: Burst, runs: list[sqlite3.Row]) -> None:
    row = burst.row
    if not runs:
        row.problems.append("no scheduled run in the database")
        return
    statuses = Counter(str(r["status"]) for r in runs)
    row.ok = statuses.get("SUCCEEDED", 0)
    if row.ok != row.count:
        failures = Counter(f"{r['status']}/{r['failure_reason']}" for r in runs)
        sample = next((r["error"] for r in runs if r["error"]), None)
        row.problems.append(f"statuses {dict(failures)}; an error: {sample}")
    started = [r for r in runs if r["started_at_us"] is not None]
    done = [r for r in runs if r["finished_at_us"] is not None]
    if not done:
        return
    first_us = min(int(r["scheduled_for_us"]) for r in runs)
    last_us = max(int(r["finished_at_us"]) for r in done)
    row.elapsed_s = (last_us - first_us) / 1e6
    row.lateness_ms = [(r["started_at_us"] - r["scheduled_for_us"]) / 1000 for r in started]
    row.exchange_ms = [
        (r["finished_at_us"] - r["started_at_us"]) / 1000 for r in done if r["started_at_us"]
    ]
    burst.fire_lag_ms = [(r["created_at_us"] - r["scheduled_for_us"]) / 1000 for r in runs]
    burst.queue_ms = [(r["started_at_us"] - r["created_at_us"]) / 1000 for r in started]
    last_scheduled = max(int(r["scheduled_for_us"]) for r in runs)
    burst.finish_span_s = (last_us - last_scheduled) / 1e6
    last_created_us = max(int(r["created_at_us"]) for r in runs)
    if last_created_us > first_us:
        burst.fire_rate = len(runs) / ((last_created_us - first_us) / 1e6)
