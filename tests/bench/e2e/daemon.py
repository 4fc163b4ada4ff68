"""The real daemon for a scenario: its config, its API, and reading its file.

`python -m jobsd serve --config <generated toml>` in a child process
(tests/daemon_process.py), allowed to reach 127.0.0.1 only, on a plan
without limits. Progress is read from the SQLite file read-only (a count
over the partial index of live runs), not through the API, so watching
costs the daemon nothing; the API's cursor walk is a cross-check after.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import trio

from jobsd.config import token_sha256
from tests.bench.e2e.target import JOB_BODY, JOB_HEADERS, JOB_METHOD, Children
from tests.daemon_process import DaemonProcess

TOKEN = "jobsd_bench-token-for-account-bench"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CREATE_CONCURRENCY = 16


def config_toml(data: Path, workers: int, extra: str = "", processes: int | None = None) -> str:
    """`processes`: `[scheduler] worker_processes` (None: the default)."""
    line = "" if processes is None else f"worker_processes = {processes}"
    return f"""
[server]
listen = "127.0.0.1:0"
[storage]
path = "{data / "jobsd.sqlite3"}"
[secrets]
key_file = "{data / "secret.key"}"
[scheduler]
workers = {workers}
max_pending_runs = 1000000
{line}
[outbound]
allow_cidrs = ["127.0.0.1/32"]
[plans.bench]
runs_included = -1
active_jobs_limit = -1
max_timeout = 60
max_jobs = -1
[[accounts]]
id = "bench"
plan = "bench"
tokens_sha256 = ["{token_sha256(TOKEN)}"]
{extra}"""


class Daemon:
    """A started daemon: its URL, pid, database file, and an API client."""

    def __init__(self, proc: DaemonProcess, db: Path, api: httpx2.AsyncClient) -> None:
        self.proc = proc
        self.db = db
        self.api = api
        self.problems: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    @property
    def url(self) -> str:
        return self.proc.url


@asynccontextmanager
async def running_daemon(
    data: Path,
    workers: int,
    children: Children,
    *,
    extra_config: str = "",
    start_s: float = 30,
    code: Path | None = None,
    processes: int | None = None,
) -> AsyncIterator[Daemon]:
    """Starts it in `data`, yields it, stops it with SIGTERM (problems noted on the Daemon).

    `code`: another checkout whose `jobsd` to run (first on PYTHONPATH), for a before/after.
    """
    data.mkdir(parents=True, exist_ok=True)
    config = data / "jobsd.toml"
    config.write_text(config_toml(data, workers, extra_config, processes))
    env = None if code is None else {"PYTHONPATH": str(code)}
    process = DaemonProcess(["serve", "--config", str(config)], cwd=data, env=env)
    await trio.to_thread.run_sync(lambda: process.start(timeout_s=start_s))
    assert process.proc is not None
    children.append(process.proc)
    limits = httpx2.Limits(max_connections=CREATE_CONCURRENCY)
    async with httpx2.AsyncClient(
        base_url=process.url, headers=AUTH, trust_env=False, timeout=60, limits=limits
    ) as api:
        daemon = Daemon(process, data / "jobsd.sqlite3", api)
        try:
            yield daemon
        finally:
            try:
                code = await trio.to_thread.run_sync(lambda: process.stop(timeout_s=60))
                if code != 0:
                    daemon.problems.append(f"daemon exited {code}: {process.stderr()[-500:]}")
            except subprocess.TimeoutExpired:
                daemon.problems.append("daemon did not stop within 60 s of SIGTERM: killed")


def job_doc(slug: str, schedule: str, hook: str) -> dict[str, object]:
    config = {
        "url": hook,
        "method": JOB_METHOD,
        "headers": [{"name": n, "value": v} for n, v in JOB_HEADERS],
        "body": JOB_BODY,
        "timeout": 30,
    }
    attributes = {"name": slug, "schedule": schedule, "configuration": config}
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


async def create_jobs(
    api: httpx2.AsyncClient, docs: list[dict[str, object]]
) -> tuple[float, list[str]]:
    """Create with CREATE_CONCURRENCY requests in flight; (seconds, errors)."""
    items = iter(docs)
    errors: list[str] = []

    async def worker() -> None:
        for doc in items:
            response = await api.post("/api/v1/jobs", json=doc)
            if response.status_code != 201 and len(errors) < 3:
                errors.append(f"{response.status_code} {response.text[:200]}")

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(CREATE_CONCURRENCY):
            nursery.start_soon(worker)
    return time.perf_counter() - started, errors


def read_only(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.execute("PRAGMA query_only = ON")
    return conn


def progress(db: Path, trigger: str) -> tuple[int, int]:
    """(runs of `trigger` inserted, runs still PENDING or RUNNING)."""
    conn = read_only(db)
    try:
        total = conn.execute("SELECT count(*) FROM runs WHERE trigger = ?", (trigger,)).fetchone()
        live = conn.execute(
            "SELECT count(*) FROM runs WHERE status IN ('PENDING', 'RUNNING')"
        ).fetchone()
        return int(total[0]), int(live[0])
    finally:
        conn.close()


async def wait_terminal(db: Path, trigger: str, count: int, stall_s: float = 60) -> str | None:
    """Until `count` runs of `trigger` exist and none is live; a note if it stalled."""
    last_change, seen = time.monotonic(), (-1, -1)
    while True:
        total, live = await trio.to_thread.run_sync(progress, db, trigger)
        if total >= count and live == 0:
            return None
        if (total, live) != seen:
            seen, last_change = (total, live), time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return f"stalled at {total} runs, {live} live: gave up"
        await trio.sleep(0.25)


def run_rows(db: Path, trigger: str) -> list[sqlite3.Row]:
    conn = read_only(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT id, status, failure_reason, error, scheduled_for_us, created_at_us, "
            "started_at_us, finished_at_us FROM runs WHERE trigger = ?",
            (trigger,),
        ).fetchall()
    finally:
        conn.close()


async def api_walk(api: httpx2.AsyncClient) -> tuple[Counter[str], int]:
    """Every run through GET /api/v1/runs and its cursor: status counts, pages."""
    statuses: Counter[str] = Counter()
    url: str | None = "/api/v1/runs?page%5Bsize%5D=1000"
    pages = 0
    while url is not None and pages < 10_000:
        response = await api.get(url)
        response.raise_for_status()
        doc = response.json()
        statuses.update(r["attributes"]["status"] for r in doc["data"])
        url = doc["links"]["next"]
        pages += 1
    return statuses, pages
