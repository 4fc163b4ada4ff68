"""End to end: how many scheduled runs per second does the real daemon deliver?

Starts the real daemon (`python -m jobsd serve --config <generated toml>`,
a child process) and a fast local target (tests/bench/target_server.py,
trio + h11, another child process, so neither shares a GIL with the other
or with the client loops), creates N jobs through the API whose schedule is
a one-off instant a few seconds ahead (all the same instant, or spread over
`--spread-s` seconds), and waits until every run is terminal. Beside it, in
the same invocation and against the same target, it sends the same N
requests (method, body, headers) with the same concurrency as
`scheduler.workers` from bare client loops: httpx2 with a fresh client per
request (what jobsd's Delivery does), httpx2 with one shared client, trio +
h11 with a new connection per request, and trio + h11 over kept-alive
connections. One table, with ratios; see tests/bench/README.md for what the
figures mean. It is not a test.

    .venv/bin/python tests/bench/bench_e2e.py [--runs 10000] [--workers 64]
        [--spread-s 0 [5 ...]] [--timeout-s 900] [--profile DIR [--profile-gil]]

Why these choices:
- The instant is picked after a pilot measured the API's create rate, so
  all N jobs exist before the first one is due; a create that lands after
  it anyway is counted and reported, never hidden.
- Completion is watched by reading the SQLite file read-only (a count over
  the partial index of live runs), not through the API, so watching costs
  the daemon nothing; the API's cursor walk is run once afterwards as a
  cross-check of the same figures.
- CPU seconds of each process are read from /proc around each phase: on a
  2-core machine shared with others, CPU per request says more than
  wall-clock rate alone, and shows whether the target is the bottleneck.
- Everything is bounded: counts are capped, every phase runs under one
  global deadline (on expiry the children are killed and the table shows
  what was measured), and a watchdog thread kills everything a minute later
  if something blocks outside trio.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx2
import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobsd.config import token_sha256  # noqa: E402
from jobsd.delivery import USER_AGENT  # noqa: E402
from tests.daemon_process import DaemonProcess  # noqa: E402

TOKEN = "jobsd_bench-token-for-account-bench"
HOOK_PATH = "/hook"
JOB_METHOD = "POST"
JOB_BODY = '{"bench": true}'
JOB_HEADERS = (("Content-Type", "application/json"),)
CREATE_CONCURRENCY = 16
PILOT_JOBS = 200
CREATE_MARGIN = 2.5  # x the pilot's estimate of the time to create N jobs
STALL_S = 60.0
POLL_S = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK")

Children = list[subprocess.Popen[Any]]


# -- figures -------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Row:
    name: str
    count: int = 0
    ok: int = 0
    elapsed_s: float = math.nan
    lateness_ms: list[float] = field(default_factory=list)
    exchange_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = math.nan
    target_cpu_s: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else math.nan


def _triple(values: list[float]) -> str:
    if not values:
        return f"{'-':>20}"
    return f"{pct(values, 50):6.1f} {pct(values, 99):6.1f} {max(values):6.0f}"


def table(rows: list[Row]) -> str:
    head = (
        f"{'variant':<28} {'ok/n':>11} {'runs/s':>7}  {'lateness ms p50 p99 max':>23}"
        f"  {'exchange ms p50 p99 max':>23}  {'CPU ms/req':>10} {'target':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        per = max(row.ok, 1)
        lines.append(
            f"{row.name:<28} {f'{row.ok}/{row.count}':>11} {row.rate:7.0f}"
            f"  {_triple(row.lateness_ms):>23}  {_triple(row.exchange_ms):>23}"
            f"  {row.client_cpu_s * 1000 / per:10.2f} {row.target_cpu_s * 1000 / per:6.2f}"
        )
    return "\n".join(lines)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- the target ----------------------------------------------------------------


class Target:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("target_server.py"))],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"target did not start: {self.url!r}")
        self.hook = self.url + HOOK_PATH

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    async def take(self) -> tuple[int, Counter[str]]:
        """Requests and per-run-id counts since the last take (and reset them)."""
        async with httpx2.AsyncClient(trust_env=False, timeout=30) as client:
            doc = (await client.get(f"{self.url}/_bench/take")).json()
        return int(doc["requests"]), Counter(doc["ids"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def check_delivered(row: Row, requests: int, ids: Counter[str], expected: set[str]) -> None:
    if requests != len(expected):
        row.problems.append(f"target received {requests} requests, expected {len(expected)}")
    twice = sum(1 for c in ids.values() if c > 1)
    missing = len(expected - set(ids))
    unknown = len(set(ids) - expected)
    if twice or missing or unknown:
        row.problems.append(
            f"run ids at the target: {twice} more than once, {missing} missing, {unknown} unknown"
        )


# -- bare client loops ---------------------------------------------------------


@dataclass(frozen=True)
class BareRequest:
    headers: list[tuple[str, str]]
    body: bytes


def bare_requests(count: int) -> list[BareRequest]:
    """The requests jobsd would send for `count` runs, with fresh run ids."""
    scheduled = iso_z(datetime.now(UTC))
    body = JOB_BODY.encode()
    out = []
    for i in range(count):
        headers = [
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
            ("Connection", "keep-alive"),
            *JOB_HEADERS,
            ("X-Jobsd-Run-Id", str(uuid.uuid4())),
            ("X-Jobsd-Job", f"bench-{i:06d}"),
            ("X-Jobsd-Scheduled-For", scheduled),
        ]
        out.append(BareRequest(headers, body))
    return out


Send = Callable[[BareRequest], Awaitable[int]]


async def _h11_exchange(
    stream: trio.SocketStream, conn: h11.Connection, host: str, request: BareRequest
) -> int:
    headers = [("Host", host), *request.headers, ("Content-Length", str(len(request.body)))]
    await stream.send_all(
        conn.send(h11.Request(method=JOB_METHOD, target=HOOK_PATH, headers=headers))
        + conn.send(h11.Data(data=request.body))
        + conn.send(h11.EndOfMessage())
    )
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the target closed the connection mid-exchange")


async def run_bare(
    name: str,
    target: Target,
    requests: list[BareRequest],
    workers: int,
    make_worker_send: Callable[[], Awaitable[tuple[Send, Callable[[], Awaitable[None]]]]],
) -> Row:
    """`make_worker_send` gives each worker its send function and its cleanup."""
    row = Row(name, count=len(requests))
    await target.take()
    items = iter(requests)

    async def worker() -> None:
        send, cleanup = await make_worker_send()
        try:
            for request in items:
                started = time.perf_counter()
                try:
                    status = await send(request)
                except Exception as exc:
                    if len(row.problems) < 3:
                        row.problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                row.exchange_ms.append((time.perf_counter() - started) * 1000)
                row.ok += status == 200
        finally:
            await cleanup()

    cpu0, target0 = time.process_time(), target.cpu_s()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    row.elapsed_s = time.perf_counter() - started
    row.client_cpu_s = time.process_time() - cpu0
    row.target_cpu_s = target.cpu_s() - target0
    got, ids = await target.take()
    expected = {dict(r.headers)["X-Jobsd-Run-Id"] for r in requests}
    check_delivered(row, got, ids, expected)
    return row


async def bare_rows(target: Target, count: int, workers: int, rows: list[Row]) -> None:
    """Appends a row per variant as it completes."""
    url = target.hook
    parts = urlsplit(url)
    host, port = parts.netloc, parts.port or 80
    ctx = ssl.create_default_context()  # built once, as Delivery does

    async def nothing() -> None:
        return None

    async def httpx_send(client: httpx2.AsyncClient, request: BareRequest) -> int:
        async with client.stream(
            JOB_METHOD, url, headers=request.headers, content=request.body
        ) as response:
            async for _ in response.aiter_raw():
                pass
            return response.status_code

    def new_client() -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            verify=ctx,
            trust_env=False,
            follow_redirects=False,
            timeout=30,
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=workers),
        )

    async def httpx_fresh() -> tuple[Send, Callable[[], Awaitable[None]]]:
        async def send(request: BareRequest) -> int:
            async with new_client() as client:
                return await httpx_send(client, request)

        return send, nothing

    shared = new_client()

    async def httpx_shared() -> tuple[Send, Callable[[], Awaitable[None]]]:
        return (lambda request: httpx_send(shared, request)), nothing

    async def h11_fresh() -> tuple[Send, Callable[[], Awaitable[None]]]:
        async def send(request: BareRequest) -> int:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                return await _h11_exchange(stream, h11.Connection(h11.CLIENT), host, request)

        return send, nothing

    async def h11_keepalive() -> tuple[Send, Callable[[], Awaitable[None]]]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)

        async def send(request: BareRequest) -> int:
            status = await _h11_exchange(stream, conn, host, request)
            conn.start_next_cycle()
            return status

        return send, stream.aclose

    async with shared:
        for name, make in (
            ("httpx2, fresh client/req", httpx_fresh),
            ("httpx2, one shared client", httpx_shared),
            ("h11, new connection/req", h11_fresh),
            ("h11, kept-alive conns", h11_keepalive),
        ):
            print(f"  bare: {name} ...", flush=True)
            rows.append(await run_bare(name, target, bare_requests(count), workers, make))


# -- the daemon ----------------------------------------------------------------


def iso_z(instant: datetime) -> str:
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def config_toml(data: Path, workers: int) -> str:
    return f"""
[server]
listen = "127.0.0.1:0"
[storage]
path = "{data / "jobsd.sqlite3"}"
[secrets]
key_file = "{data / "secret.key"}"
[scheduler]
workers = {workers}
[outbound]
allow_cidrs = ["127.0.0.1/32"]
[plans.bench]
runs_included = -1
active_jobs_limit = -1
max_timeout = 60
[[accounts]]
id = "bench"
plan = "bench"
tokens_sha256 = ["{token_sha256(TOKEN)}"]
"""


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


def progress(db: Path) -> tuple[int, int]:
    """(SCHEDULE runs inserted, runs still PENDING or RUNNING)."""
    conn = read_only(db)
    try:
        total = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        live = conn.execute(
            "SELECT count(*) FROM runs WHERE status IN ('PENDING', 'RUNNING')"
        ).fetchone()[0]
        return int(total), int(live)
    finally:
        conn.close()


def run_rows(db: Path) -> list[sqlite3.Row]:
    conn = read_only(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT id, status, failure_reason, error, scheduled_for_us, created_at_us, "
            "started_at_us, finished_at_us FROM runs WHERE trigger = 'SCHEDULE'"
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


@dataclass
class Scenario:
    row: Row
    create_rate: float = math.nan
    create_cpu_ms: float = math.nan
    fire_lag_ms: list[float] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    finish_span_s: float = math.nan
    fire_rate: float = math.nan
    notes: list[str] = field(default_factory=list)


Results = tuple[list[Row], list[Scenario], list[str], list[str]]  # bare, jobsd, profiles, notes


class Profiler:
    """py-spy attached to the daemon for the firing phase, if asked for."""

    def __init__(self, out_dir: Path | None, pid: int, label: str, *, gil: bool) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.path: Path | None = None
        self.missing = False
        if out_dir is None:
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            self.missing = True
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / f"jobsd-{label}.collapsed"
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--nonblocking",
                "--threads",
                "--rate",
                "200",
                "--format",
                "raw",
                "-o",
                str(self.path),
                *(["--gil"] if gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> str:
        if self.proc is None or self.path is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "py-spy did not stop"
        if not self.path.exists():
            return f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}"
        return summarize_profile(self.path)


# Where a sample belongs: the first rule whose marker is on its stack (writer
# rules only for the writer thread). py-spy without --idle drops most idle
# samples but not all: a leaf in trio's epoll wait or the writer's queue.get
# is waiting, not working, so those two are counted apart.
_COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("writer", "fire_slot.<locals>.tx", "writer: fire_slot transactions (scheduler)"),
    ("writer", "claim.<locals>.tx", "writer: claim transactions (incl. decrypting headers)"),
    ("writer", "finish (jobsd/store/runs_sql.py", "writer: finish transactions"),
    ("writer", "Engine._run_batch", "writer: BEGIN/SAVEPOINT/COMMIT, other transactions"),
    ("main", "Delivery.perform", "main: delivery (httpx2 client, connect, close)"),
    # trio runs each connection attempt in its own task, below no Delivery frame.
    ("main", "open_tcp_stream", "main: delivery (httpx2 client, connect, close)"),
    ("main", "SocketStream.", "main: delivery (httpx2 client, connect, close)"),
    ("main", "ExecutorPool._execute", "main: executor awaiting the store (claim/finish)"),
    ("main", "Scheduler.", "main: scheduler"),
    ("main", "jobsd/api/", "main: API handlers"),
    ("main", "hypercorn", "main: hypercorn"),
)


def _component(thread: str, frames: list[str]) -> str:
    leaf = frames[-1]
    if thread == "writer" and leaf.startswith("Engine._loop ("):
        return "idle: writer waiting for work (queue.get)"
    if thread == "main" and "get_events" in leaf:
        return "idle: trio waiting in epoll"
    for where, marker, name in _COMPONENTS:
        if where == thread and any(marker in frame for frame in frames):
            return name
    return f"{thread}: other (trio run loop, threads, logging ...)"


def summarize_profile(path: Path, top: int = 15) -> str:
    """Samples by component, then the top frames by self and inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        thread = "writer" if "jobsd-store-writer" in frames[0] else "main"
        components[_component(thread, frames)] += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
    if not total:
        return "py-spy recorded no samples"

    def lines(counts: Counter[str], n: int) -> list[str]:
        return [f"  {100 * k / total:5.1f}%  {name}" for name, k in counts.most_common(n)]

    out = [f"py-spy: {total} samples, threads not idle ({path})", "by component:"]
    out += lines(components, len(components))
    out += ["self (the frame itself was running):", *lines(own, top)]
    out += ["inclusive (the frame was on the stack):", *lines(inclusive, top)]
    return "\n".join(out)


async def run_jobsd(
    target: Target,
    count: int,
    workers: int,
    spread_s: float,
    work_dir: Path,
    profile_dir: Path | None,
    profile_gil: bool,
    children: Children,
    scenarios: list[Scenario],
    profiles: list[str],
) -> None:
    """Appends its scenario at once, so a global timeout still reports it."""
    label = f"spread {spread_s:g} s"
    scenario = Scenario(Row(f"jobsd e2e ({label})", count=count))
    scenarios.append(scenario)
    row = scenario.row
    profiler: Profiler | None = None
    summarized = False
    data = work_dir / f"jobsd-spread-{spread_s:g}"
    data.mkdir()
    config = data / "jobsd.toml"
    config.write_text(config_toml(data, workers))
    db = data / "jobsd.sqlite3"
    daemon = DaemonProcess(["serve", "--config", str(config)], cwd=data)
    daemon.start()
    assert daemon.proc is not None
    children.append(daemon.proc)
    pid = daemon.proc.pid
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx2.Limits(max_connections=CREATE_CONCURRENCY)
    try:
        async with httpx2.AsyncClient(
            base_url=daemon.url, headers=headers, trust_env=False, timeout=60, limits=limits
        ) as api:
            far = "2099-01-01T00:00:00Z"
            pilot = [job_doc(f"pilot-{i:04d}", far, target.hook) for i in range(PILOT_JOBS)]
            pilot_s, errors = await create_jobs(api, pilot)
            if errors:
                raise RuntimeError(f"creating jobs failed: {errors}")
            guess_s = count / (PILOT_JOBS / pilot_s)
            # Creating slows as the account grows (see README), hence the margin.
            first = datetime.now(UTC) + timedelta(seconds=guess_s * CREATE_MARGIN + 5)
            first = first.replace(microsecond=0) + timedelta(seconds=1)
            step = timedelta(seconds=spread_s / count)
            instants = [first + step * i for i in range(count)]
            docs = [
                job_doc(f"bench-{i:06d}", iso_z(at), target.hook) for i, at in enumerate(instants)
            ]
            print(
                f"  jobsd ({label}): pilot {PILOT_JOBS / pilot_s:.0f} jobs/s; creating {count} "
                f"jobs due from {iso_z(first)} ...",
                flush=True,
            )
            await target.take()  # from here on, every request is a run's
            cpu0 = proc_cpu_s(pid)
            create_s, errors = await create_jobs(api, docs)
            scenario.create_rate = count / create_s
            scenario.create_cpu_ms = (proc_cpu_s(pid) - cpu0) * 1000 / count
            if errors:
                raise RuntimeError(f"creating jobs failed: {errors}")
            early_s = (first - datetime.now(UTC)).total_seconds()
            if early_s < 0:
                scenario.notes.append(
                    f"job creation ended {-early_s:.1f} s after the first instant: "
                    "lateness includes creation"
                )
            profiler = Profiler(profile_dir, pid, f"spread-{spread_s:g}", gil=profile_gil)
            if profiler.missing:
                scenario.notes.append("--profile: py-spy is not installed, no profile")
            if profiler.proc is not None:
                children.append(profiler.proc)
            cpu0, target0 = proc_cpu_s(pid), target.cpu_s()
            print(f"  jobsd ({label}): {count} jobs created; waiting for the runs ...", flush=True)
            last_change, seen = time.monotonic(), (-1, -1)
            while True:
                total, live = await trio.to_thread.run_sync(progress, db)
                if total >= count and live == 0:
                    break
                if (total, live) != seen:
                    seen, last_change = (total, live), time.monotonic()
                elif time.monotonic() - last_change > STALL_S and datetime.now(UTC) > first:
                    scenario.notes.append(f"stalled at {total} runs, {live} live: gave up")
                    break
                await trio.sleep(POLL_S)
            row.client_cpu_s = proc_cpu_s(pid) - cpu0
            row.target_cpu_s = target.cpu_s() - target0
            if profiler.proc is not None:
                profiles.append(f"[{row.name}]\n{profiler.stop()}")
            profiler = None
            runs = await trio.to_thread.run_sync(run_rows, db)
            summarize_runs(scenario, runs)
            summarized = True
            got, ids = await target.take()
            check_delivered(row, got, ids, {str(r["id"]) for r in runs})
            if len(runs) != count:
                row.problems.append(f"{len(runs)} SCHEDULE runs in the database, expected {count}")
            statuses, pages = await api_walk(api)
            if statuses.get("SUCCEEDED", 0) != row.ok or sum(statuses.values()) != len(runs) + 0:
                row.problems.append(f"API walk disagrees: {dict(statuses)} over {pages} pages")
            else:
                scenario.notes.append(
                    f"API cursor walk: {sum(statuses.values())} runs in {pages} pages, agrees"
                )
    finally:
        if profiler is not None and profiler.proc is not None:
            profiles.append(f"[{row.name}, cut short]\n{profiler.stop()}")
        if not summarized and db.exists():
            summarize_runs(scenario, run_rows(db))
            row.problems.append("cut short: figures over the runs finished so far")
        try:
            code = daemon.stop(timeout_s=60)
            if code != 0:
                row.problems.append(f"daemon exited {code}: {daemon.stderr()[-500:]}")
        except subprocess.TimeoutExpired:
            row.problems.append("daemon did not stop within 60 s of SIGTERM: killed")


def summarize_runs(scenario: Scenario, runs: list[sqlite3.Row]) -> None:
    row = scenario.row
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
    if not runs or not done:
        return
    first_us = min(int(r["scheduled_for_us"]) for r in runs)
    last_us = max(int(r["finished_at_us"]) for r in done)
    row.elapsed_s = (last_us - first_us) / 1e6
    row.lateness_ms = [(r["started_at_us"] - r["scheduled_for_us"]) / 1000 for r in started]
    row.exchange_ms = [
        (r["finished_at_us"] - r["started_at_us"]) / 1000 for r in done if r["started_at_us"]
    ]
    scenario.fire_lag_ms = [(r["created_at_us"] - r["scheduled_for_us"]) / 1000 for r in runs]
    scenario.queue_ms = [(r["started_at_us"] - r["created_at_us"]) / 1000 for r in started]
    last_scheduled = max(int(r["scheduled_for_us"]) for r in runs)
    scenario.finish_span_s = (last_us - last_scheduled) / 1e6
    last_created_us = max(int(r["created_at_us"]) for r in runs)
    if last_created_us > first_us:
        scenario.fire_rate = len(runs) / ((last_created_us - first_us) / 1e6)


# -- main ----------------------------------------------------------------------


def ratios(jobsd_rows: list[Row], bare: list[Row]) -> list[str]:
    lines = []
    for j in jobsd_rows:
        parts = [f"÷ {b.name}: {j.rate / b.rate:.2f}" for b in bare if b.rate > 0]
        lines.append(f"{j.name} runs/s " + "; ".join(parts))
    return lines


async def bench(args: argparse.Namespace, deadline: float, children: Children) -> Results:
    bare: list[Row] = []
    scenarios: list[Scenario] = []
    profiles: list[str] = []
    notes: list[str] = []
    target = Target()
    children.append(target.proc)
    try:
        with (
            trio.move_on_at(deadline) as scope,
            tempfile.TemporaryDirectory(prefix="jobsd-bench-") as tmp,
        ):
            for spread in args.spread_s:
                await run_jobsd(
                    target,
                    args.runs,
                    args.workers,
                    spread,
                    Path(tmp),
                    args.profile,
                    args.profile_gil,
                    children,
                    scenarios,
                    profiles,
                )
            await bare_rows(target, args.runs, args.workers, bare)
        if scope.cancelled_caught:
            notes.append(f"GLOBAL TIMEOUT ({args.timeout_s:g} s): the figures are partial")
    except Exception as exc:  # report what was measured, then say why it stopped
        notes.append(f"ABORTED by {type(exc).__name__}: {exc}")
    finally:
        target.close()
    return bare, scenarios, profiles, notes


def report(
    args: argparse.Namespace,
    results: Results,
    load_before: tuple[float, float, float],
) -> None:
    bare, scenarios, profiles, notes = results
    load_after = os.getloadavg()
    print()
    print(
        f"jobsd end-to-end benchmark: {args.runs} runs, workers = concurrency = {args.workers}, "
        f"POST {len(JOB_BODY)} B body, target trio+h11 in its own process"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print()
    print(table([s.row for s in scenarios] + bare))
    print()
    for line in ratios([s.row for s in scenarios], bare):
        print(line)
    for s in scenarios:
        print()
        print(f"{s.row.name}:")
        print(
            f"  create-job API: {s.create_rate:.0f} jobs/s ({CREATE_CONCURRENCY} in flight), "
            f"daemon CPU {s.create_cpu_ms:.2f} ms/job"
        )
        print(
            "  lateness = fire lag (created_at - scheduled_for) + queue (started_at - created_at):"
        )
        print(f"    fire lag ms p50 p99 max {_triple(s.fire_lag_ms)}")
        print(f"    queue    ms p50 p99 max {_triple(s.queue_ms)}")
        print(
            f"  the scheduler inserted runs at {s.fire_rate:.0f}/s (runs / (last created_at -"
            " first scheduled_for))"
        )
        print(f"  last run finished {s.finish_span_s:.2f} s after the last scheduled instant")
        for note in s.notes:
            print(f"  note: {note}")
    for row in [s.row for s in scenarios] + bare:
        for problem in row.problems:
            print(f"PROBLEM [{row.name}]: {problem}")
    for note in notes:
        print(f"NOTE: {note}")
    for profile in profiles:
        print()
        print(profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs (and bare requests)")
    parser.add_argument("--workers", type=int, default=64, help="scheduler.workers = concurrency")
    parser.add_argument(
        "--spread-s",
        type=float,
        nargs="+",
        default=[0.0],
        help="spread the instants over this many seconds; several values, several daemons",
    )
    parser.add_argument("--timeout-s", type=float, default=900.0, help="global time limit")
    parser.add_argument("--profile", type=Path, help="py-spy the daemon; collapsed stacks here")
    parser.add_argument(
        "--profile-gil", action="store_true", help="with --profile: only samples holding the GIL"
    )
    args = parser.parse_args()
    if not 1 <= args.runs <= 100_000 or not 1 <= args.workers <= 1024:
        parser.error("--runs must be 1..100000 and --workers 1..1024")
    if len(args.spread_s) > 4 or any(not 0 <= s <= 600 for s in args.spread_s):
        parser.error("--spread-s: at most 4 values, each 0..600")
    load_before = os.getloadavg()
    children: Children = []
    deadline_mono = time.monotonic() + args.timeout_s

    def watchdog() -> None:
        """Past the deadline plus a minute, something blocks outside trio: end it all."""
        time.sleep(args.timeout_s + 60)
        print("HARD TIMEOUT: killing the children and exiting", file=sys.stderr, flush=True)
        for child in children:
            if child.poll() is None:
                child.kill()
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        results = trio.run(_bench_at, args, deadline_mono, children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    report(args, results, load_before)
    bare, scenarios, _, notes = results
    problems = any(r.problems for r in [s.row for s in scenarios] + bare)
    return 1 if problems or notes else 0


async def _bench_at(args: argparse.Namespace, deadline_mono: float, children: Children) -> Results:
    """Translate the monotonic deadline into trio's clock."""
    deadline = trio.current_time() + (deadline_mono - time.monotonic())
    return await bench(args, deadline, children)


if __name__ == "__main__":
    sys.exit(main())
