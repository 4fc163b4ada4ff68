"""A million enabled cron jobs: how soon is the daemon ready, at what RSS, and is it idle?

The file is made once and kept (`/tmp/jobsd-bench-cron-<N>/`, rebuilt when
the schema's version changes): a daemon creates one job through the API,
`0 0 1 1 *` (yearly, so none is due while measured), and SQLite copies its
rows N - 1 times with new slugs. Each measurement runs a fresh daemon on a
copy: the time from starting the process to its first `/healthz` 200
(goal <= 2 s), the tree's RSS then and after the idle window (goal <= 100
MiB), and its CPU over `--idle-s` seconds of nothing to do (goal ~ 0).
The file's integrity check runs once the daemon is ready
(`jobsd.store.integrity`): the idle window starts only after the daemon has
logged its end, and how long it took after readiness, and its CPU, are
figures of their own.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from jobsd.store.schema import LATEST, current_version
from tests.bench.e2e.daemon import create_jobs, job_doc, running_daemon
from tests.bench.e2e.figures import rss_mib, tree_cpu_s
from tests.bench.e2e.target import Children, Target

YEARLY = "0 0 1 1 *"
CHECKED = "(PRAGMA quick_check): ok"  # the daemon's line when its integrity check passed


@dataclass
class CronReady:
    jobs: int
    ready_s: float = 0.0
    rss_ready_mib: float = 0.0
    rss_idle_mib: float = 0.0
    idle_s: float = 0.0
    idle_cpu_s: float = 0.0
    check_s: float = 0.0  # from ready to the integrity check's end
    check_cpu_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def _schema_stamp(db: Path) -> int:
    """The file's schema version: a copy made by an older jobsd would be migrated at
    start, and the migration timed as readiness."""
    conn = sqlite3.connect(db)
    try:
        return current_version(conn)
    finally:
        conn.close()


def _multiply(db: Path, jobs: int) -> None:
    """Copy the one job N - 1 times (the jobs row and its environment rows)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        cols = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
        renamed = {
            "id": "NULL",
            "slug": "printf('cron-%07d', n.i)",
            "name": "printf('cron-%07d', n.i)",
            "name_key": "printf('cron-%07d', n.i)",
        }
        picks = ", ".join(renamed.get(c, f"j.{c}") for c in cols)
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO jobs ({', '.join(cols)}) SELECT {picks} FROM n, jobs AS j "
            "WHERE j.slug = 'cron-0000000'",
            (jobs - 1,),
        )
        env_cols = [r[1] for r in conn.execute("PRAGMA table_info(job_environments)")]
        env_picks = ", ".join("j.id" if c == "job_id" else f"e.{c}" for c in env_cols)
        conn.execute(
            f"INSERT INTO job_environments ({', '.join(env_cols)}) SELECT {env_picks} "
            "FROM jobs AS j, job_environments AS e, jobs AS t "
            "WHERE t.slug = 'cron-0000000' AND e.job_id = t.id AND j.id != t.id"
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _build(cache: Path, target: Target, children: Children, jobs: int) -> None:
    if cache.exists():
        shutil.rmtree(cache)
    async with running_daemon(cache, 4, children) as daemon:
        _, errors = await create_jobs(daemon.api, [job_doc("cron-0000000", YEARLY, target.hook)])
        if errors:
            raise RuntimeError(f"creating the template job failed: {errors}")
    print(f"  cron: copying the job {jobs - 1} times (once; kept in {cache}) ...", flush=True)
    await trio.to_thread.run_sync(_multiply, cache / "jobsd.sqlite3", jobs)
    (cache / "stamp").write_text(str(_schema_stamp(cache / "jobsd.sqlite3")))


async def run_cron_ready(
    target: Target, work_dir: Path, children: Children, *, jobs: int = 1_000_000, idle_s: float = 10
) -> CronReady:
    result = CronReady(jobs, idle_s=idle_s)
    cache = Path(f"/tmp/jobsd-bench-cron-{jobs}")
    db = cache / "jobsd.sqlite3"
    stamp = cache / "stamp"
    fresh = db.exists() and stamp.exists() and stamp.read_text() == str(_schema_stamp(db))
    if not fresh or _schema_stamp(db) != LATEST:
        await _build(cache, target, children, jobs)
    data = work_dir / "jobsd-cron"
    data.mkdir()
    for name in ("jobsd.sqlite3", "secret.key"):
        shutil.copy2(cache / name, data / name)
    print(f"  cron: starting a daemon over {jobs} enabled cron jobs ...", flush=True)
    began = time.perf_counter()
    async with running_daemon(data, 64, children, start_s=120) as daemon:
        result.ready_s = time.perf_counter() - began
        result.rss_ready_mib = rss_mib(daemon.pid)
        ready, cpu_ready = time.perf_counter(), tree_cpu_s(daemon.pid)
        with trio.move_on_after(120):
            while CHECKED not in daemon.proc.stderr():
                await trio.sleep(0.05)
        if CHECKED not in daemon.proc.stderr():
            result.problems.append("the integrity check did not end within 120 s of ready")
        result.check_s = time.perf_counter() - ready
        result.check_cpu_s = tree_cpu_s(daemon.pid) - cpu_ready
        await trio.sleep(1.0)  # let start-up work that follows readiness settle
        cpu0 = tree_cpu_s(daemon.pid)
        await trio.sleep(idle_s)
        result.idle_cpu_s = tree_cpu_s(daemon.pid) - cpu0
        result.rss_idle_mib = rss_mib(daemon.pid)
        count = (await daemon.api.get("/api/v1/jobs?page%5Bsize%5D=1")).json()
        total = count.get("meta", {}).get("pagination", {}).get("total")
        if total is not None and total != jobs:
            result.problems.append(f"the API counts {total} jobs, expected {jobs}")
    result.problems.extend(daemon.problems)
    return result
