"""What does the store cost per run? Fire, claim and finish through the real store.

    .venv/bin/python -m tests.bench.bench_store [--runs 5000] [--workers 64] [--manual]

No HTTP: the executors' side is played by `--workers` trio tasks that claim
a run, make the outcome a delivery would (a 200 with a small body), and
finish it, through the same `RunRecords` calls the executor pool makes; the
scheduler's side by `fire_slots` calls of 256 firings, as the scheduler
makes them (`--manual`: by `enqueue_manual` calls, `--workers` in flight, as
run-now makes them). The store is the real one (`open_store`: every migration,
index and count trigger, a key file, one sealed header per job) on a SQLite
file under a temporary directory.

What is printed, per run, for three observers: none, the daemon's
`Observer` with the log at `warning` (metrics only), and with the log at
`info` (the daemon's default: the `run finished` line, text format, written
to /dev/null):
- **writer**: CPU seconds of the writer thread (from
  /proc/self/task/<tid>/schedstat, nanoseconds), for the fire phase and for
  claim + finish;
- **process**: CPU seconds of the whole process (`time.process_time`) in
  claim + finish, and **rest** = process - writer: the trio side (hand-offs,
  the observer, the log line);
- **tx**: write transactions (`BEGIN ... COMMIT` batches) per run;
- **stmts**: SQL statements the writer executed per run in claim + finish,
  and trigger programs beside them (from a second, smaller pass with
  sqlite3's trace callback on, which itself costs CPU, so it is not timed).

CPU seconds rather than wall time: the machine is shared, and load moves
CPU time much less than it moves rates. The load average is printed.

`--floor` times the run's three durable writes alone, as SQL: a fire's
slot advance and `INSERT` (256 per transaction), a claim's read and `UPDATE` to RUNNING and
a finish's `UPDATE` (33 per transaction, the burst's mean), the store's own
statements on the same file and schema, with no savepoint, no trio and no
Python beyond the `execute` calls: what any design that keeps this record
in this schema pays per run, whatever the code around it (issue 11's goals
are weighed against it in tests/bench/README.md).

`--decrypt` times `KeyRing.open` of one header value alone; `--observer`
times `Observer.runs_ended` alone (`--runs` ends, one per call), with the
log at warning, and at info in text and in JSON (to /dev/null).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

import jobsd.store.engine as engine_module
from jobsd.api.context import Settings
from jobsd.clock import Clock, to_us
from jobsd.config import LogConfig, parse_config, token_sha256
from jobsd.crypto import KeyRing, header_aad
from jobsd.job_model import Header, HttpConfig
from jobsd.log_batching import batch_in_this_run
from jobsd.logs import configure as configure_logs
from jobsd.messages import Outcome, RunEnded, RunOrder
from jobsd.observer import Observer
from jobsd.runs import RunStatus, Trigger
from jobsd.store import Store, open_store
from jobsd.store.runs_sql import _FINISH, _INSERT, _START, NewRun, by_id
from jobsd.store.schema import configure
from jobsd.store.slots import SlotFiring
from tests.model import ENV, create_job, next_run, seed_job

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
FIRE_BATCH = 256
REQUEST: dict[str, object] = {
    "method": "POST",
    "url": "http://127.0.0.1:8080/hook",
    "headers": [{"name": "Authorization", "value": "<redacted>"}],
    "body": '{"hello": "world"}',
}
RESULT: dict[str, object] = {
    "status": 200,
    "headers": {"content-type": "text/plain", "content-length": "2"},
    "body": "ok",
    "body_truncated": False,
    "body_bytes": 2,
}
CONFIG = """
[storage]
path = "{dir}/jobsd.sqlite3"
[secrets]
key_file = "{dir}/secret.key"
[outbound]
allow_cidrs = ["127.0.0.1/32"]
[plans.big]
runs_included = -1
active_jobs_limit = -1
max_timeout = 60
[[accounts]]
id = "acme"
plan = "big"
tokens_sha256 = ["{token}"]
"""


def writer_cpu_s() -> float:
    """CPU seconds the store's writer thread has used (0 before it exists)."""
    for thread in threading.enumerate():
        if thread.name == "jobsd-store-writer" and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as f:
                return int(f.read().split()[0]) / 1e9
    return 0.0


@dataclass
class Figures:
    runs: int = 0
    fire_writer_s: float = 0.0
    writer_s: float = 0.0
    process_s: float = 0.0
    wall_s: float = 0.0
    batches: int = 0
    statements: int = 0
    triggers: int = 0
    fire_statements: int = 0

    def row(self, name: str) -> str:
        n = max(1, self.runs)
        stmts = (
            f"{self.statements / n:5.1f} {self.triggers / n:5.1f}  {self.fire_statements / n:5.1f}"
            if self.statements
            else ""
        )
        return (
            f"{name:<26} {self.runs:>6} {self.fire_writer_s / n * 1e6:>8.0f} "
            f"{self.writer_s / n * 1e6:>8.0f} {self.process_s / n * 1e6:>8.0f} "
            f"{(self.process_s - self.writer_s) / n * 1e6:>8.0f} {self.batches / n:>6.2f} "
            f"{self.runs / self.wall_s if self.wall_s else 0:>8.0f}  {stmts}"
        )


HEADER = (
    f"{'observer':<26} {'runs':>6} {'fire us':>8} {'writer':>8} {'process':>8} {'rest':>8} "
    f"{'tx/run':>6} {'runs/s':>8}  statements + in triggers /run (claim+finish); "
    "statements /run (fire)"
)


class _Counting(sqlite3.Connection):
    """The writer's connection, counting the statements our code executes."""

    figures: Figures

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        self.figures.statements += 1
        return super().execute(sql, *args)


class _Sqlite3:
    """`sqlite3` as the engine sees it, with the write connection counting."""

    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def __getattr__(self, name: str) -> object:
        return getattr(sqlite3, name)

    def connect(self, path: object, **kw: object) -> sqlite3.Connection:
        if isinstance(path, str) and path.startswith("file:"):
            return sqlite3.connect(path, **kw)  # type: ignore[arg-type]
        conn = sqlite3.connect(path, factory=_Counting, **kw)  # type: ignore[arg-type]
        assert isinstance(conn, _Counting)
        conn.figures = self._figures
        # Each top-level statement is traced once; each trigger program it
        # runs, and each statement inside that program, once more.
        conn.set_trace_callback(self._traced)
        return conn

    def _traced(self, sql: str) -> None:
        self._figures.triggers += 1


@contextmanager
def traced(on: bool, figures: Figures) -> Iterator[None]:
    """Count the writer's statements, and what its triggers run beside them."""
    if not on:
        yield
        return
    engine_module.sqlite3 = _Sqlite3(figures)  # type: ignore[assignment]
    try:
        yield
    finally:
        engine_module.sqlite3 = sqlite3


async def make_jobs(store: Store, jobs: int) -> list[tuple[int, datetime]]:
    config = HttpConfig(
        url="http://127.0.0.1:8080/hook",
        method="POST",
        headers=(Header("Authorization", "Bearer bench-secret-value"),),
        body='{"hello": "world"}',
    )
    made = []
    for j in range(jobs):
        job = await create_job(
            store, "acme", seed_job(f"job-{j}", "n", None, True, "* * * * *", config)
        )
        due = next_run(job)
        assert due is not None
        made.append((job.pk, due))
    return made


async def fire(store: Store, jobs: list[tuple[int, datetime]], runs: int) -> list[RunOrder]:
    firings = []
    due_of = dict(jobs)
    while len(firings) < runs:
        for pk, _ in jobs:
            due = due_of[pk]
            nxt = due + timedelta(minutes=1)
            firings.append(SlotFiring(pk, ENV, due, due, nxt))
            due_of[pk] = nxt
            if len(firings) == runs:
                break
    orders = []
    for i in range(0, runs, FIRE_BATCH):
        for advanced, order in await store.runs.fire_slots(firings[i : i + FIRE_BATCH]):
            assert advanced and order is not None
            orders.append(order)
    return orders


async def enqueue(
    store: Store, jobs: list[tuple[int, datetime]], runs: int, workers: int
) -> list[RunOrder]:
    """`runs` MANUAL runs (run-now), `workers` calls in flight, as the API makes them."""
    orders: list[RunOrder] = []
    todo = iter(range(runs))

    async def caller() -> None:
        for i in todo:
            run = await store.runs.enqueue_manual(
                "acme", f"job-{i % len(jobs)}", ENV, require_enabled=False, max_pending=10**9
            )
            orders.append(RunOrder(run.id, run.account_id))

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(caller)
    return orders


async def execute(store: Store, orders: list[RunOrder], workers: int) -> None:
    todo = iter(orders)
    unlimited: Callable[[str], int] = lambda _account: -1  # noqa: E731

    async def worker() -> None:
        for order in todo:
            claim = await store.runs.claim(order.run_id, unlimited)
            assert claim is not None and claim.config is not None
            outcome = Outcome(RunStatus.SUCCEEDED, None, None, dict(REQUEST), dict(RESULT))
            assert await store.runs.finish(order.run_id, outcome)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)


async def one_pass(
    tmp: Path, args: argparse.Namespace, observer: str, runs: int, trace: bool
) -> Figures:
    figures = Figures(runs=runs)
    text = CONFIG.format(dir=tmp, token=token_sha256("bench-token-0123456789"))
    obs: Observer | None = None
    if observer != "none":
        obs = Observer(Settings(parse_config(text)))
        on_batch = obs.store_batch

        def store_batch(size: int, seconds: float) -> None:
            figures.batches += 1
            on_batch(size, seconds)

        obs.store_batch = store_batch  # type: ignore[method-assign]
    level = "info" if observer == "log info" else "warning"
    with open(os.devnull, "w") as devnull:
        handler = configure_logs(LogConfig(format="text", level=level), devnull, {})
        batch_in_this_run()  # as the daemon writes its lines (`jobsd.log_batching`)
        with traced(trace, figures):
            async with open_store(
                tmp / "jobsd.sqlite3",
                KeyRing.load_or_create(tmp / "secret.key"),
                Clock(T0),
                observer=obs,
            ) as store:
                jobs = await make_jobs(store, args.jobs)
                figures.statements = 0
                w0 = writer_cpu_s()
                if args.manual:
                    orders = await enqueue(store, jobs, runs, args.workers)
                else:
                    orders = await fire(store, jobs, runs)
                w1, p1, t1 = writer_cpu_s(), time.process_time(), time.perf_counter()
                figures.fire_statements = figures.statements
                figures.statements, figures.triggers, figures.batches = 0, 0, 0
                await execute(store, orders, args.workers)
                figures.triggers -= figures.statements
                w2, p2, t2 = writer_cpu_s(), time.process_time(), time.perf_counter()
        logging.getLogger().removeHandler(handler)
    figures.fire_writer_s = w1 - w0
    figures.writer_s, figures.process_s, figures.wall_s = w2 - w1, p2 - p1, t2 - t1
    if observer == "none":
        figures.batches = 0  # not observed
    return figures


async def floor_pass(tmp: Path, args: argparse.Namespace) -> tuple[float, float, float]:
    """CPU seconds per run of the three writes' SQL alone: (fire, claim, finish)."""
    path = tmp / "jobsd.sqlite3"
    async with open_store(path, KeyRing.load_or_create(tmp / "secret.key"), Clock(T0)) as store:
        jobs = await make_jobs(store, args.jobs)
    return await trio.to_thread.run_sync(floor_writes, path, jobs, args.runs)


# The slot's advance, as `jobsd.store.slots.fire` makes it for a job that fires again.
_ADVANCE = (
    "UPDATE job_environments SET next_run_at_us = ? WHERE job_id = ? AND environment = ? "
    "AND enabled = 1 AND next_run_at_us = ?"
)


def floor_writes(path: Path, jobs: list[tuple[int, datetime]], runs: int) -> tuple[float, ...]:
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn)
    conn.execute("PRAGMA temp_store = MEMORY")
    now_us = int(T0.timestamp() * 1e6)
    minute_us = 60_000_000
    # Each job's slots in turn from its first due instant, as the scheduler fires them.
    news = [
        NewRun("acme", pk, f"job-{j}", ENV, Trigger.SCHEDULE, now_us, to_us(due) + i * minute_us)
        for i in range(runs // len(jobs) + 1)
        for j, (pk, due) in enumerate(jobs)
    ][:runs]
    request, result = json.dumps(REQUEST), json.dumps(RESULT)
    finish = _FINISH[RunStatus.SUCCEEDED]
    ids: list[str] = []

    def fire(chunk: list[NewRun]) -> None:
        """The slot moves on (what makes a slot fire once) and its run is inserted."""
        for new in chunk:
            due_us = new.scheduled_for_us
            assert due_us is not None
            moved = conn.execute(_ADVANCE, (due_us + minute_us, new.job_pk, ENV, due_us))
            assert moved.rowcount == 1
            values = new.values()
            conn.execute(_INSERT, values)
            ids.append(str(values[0]))

    def claim(chunk: list[str]) -> None:
        for run_id in chunk:
            row = by_id(conn, run_id)
            assert row is not None
            assert conn.execute(_START, (now_us, 1, "2026-06", run_id)).rowcount == 1

    def end(chunk: list[str]) -> None:
        for run_id in chunk:
            done = (RunStatus.SUCCEEDED.value, None, None, request, result, now_us, run_id)
            assert conn.execute(finish, done).fetchall()

    def timed(step: Callable[[list[Any]], None], items: list[Any], per_tx: int) -> float:
        began = time.thread_time()
        for i in range(0, len(items), per_tx):
            conn.execute("BEGIN IMMEDIATE")
            step(items[i : i + per_tx])
            conn.execute("COMMIT")
        return (time.thread_time() - began) / len(items)

    try:
        return (timed(fire, news, FIRE_BATCH), timed(claim, ids, 33), timed(end, ids, 33))
    finally:
        conn.close()


async def time_floor(args: argparse.Namespace) -> None:
    passes = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="jobsd-bench-store-") as tmp:
            passes.append(await floor_pass(Path(tmp), args))
    fire_s, claim_s, end_s = (statistics.median(p[i] for p in passes) for i in range(3))
    print(
        f"the record's SQL alone, {args.runs} runs, medians of {args.repeat} passes, CPU us per "
        f"run: fire {fire_s * 1e6:.0f}, claim {claim_s * 1e6:.0f}, finish {end_s * 1e6:.0f}, "
        f"all {(fire_s + claim_s + end_s) * 1e6:.0f} (load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})"
    )


def median_of(passes: list[Figures]) -> Figures:
    """Each figure's median over the passes (they all ran the same runs)."""

    def mid(name: str) -> float:
        return float(statistics.median(getattr(p, name) for p in passes))

    return Figures(
        runs=passes[0].runs,
        fire_writer_s=mid("fire_writer_s"),
        writer_s=mid("writer_s"),
        process_s=mid("process_s"),
        wall_s=mid("wall_s"),
        batches=round(mid("batches")),
    )


def time_observer(rounds: int) -> None:
    """`Observer.runs_ended` alone, one end per call as a finish tells it, per log setting."""
    with tempfile.TemporaryDirectory() as tmp:
        text = CONFIG.format(dir=tmp, token=token_sha256("bench-token-0123456789"))
    at = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
    ends = [
        RunEnded(
            run_id=f"00000000-0000-4000-8000-{i:012d}",
            account_id="acme",
            job_slug=f"job-{i % 500}",
            environment=ENV,
            trigger=Trigger.SCHEDULE,
            status=RunStatus.SUCCEEDED,
            failure_reason=None,
            created_at=at,
            scheduled_for=at,
            started_at=at + timedelta(milliseconds=3),
            finished_at=at + timedelta(milliseconds=9),
        )
        for i in range(rounds)
    ]
    for name, fmt, level in (
        ("metrics only (log warning)", "text", "warning"),
        ("log info, text", "text", "info"),
        ("log info, json", "json", "info"),
    ):
        observer = Observer(Settings(parse_config(text)))
        with open(os.devnull, "w") as devnull:
            handler = configure_logs(LogConfig(format=fmt, level=level), devnull, {})
            began = time.process_time()
            for end in ends:
                observer.runs_ended([end])
            took = time.process_time() - began
            logging.getLogger().removeHandler(handler)
        print(f"Observer.runs_ended, {name:<28} {took / rounds * 1e6:6.1f} us CPU per run")


def time_decrypt(rounds: int = 20000) -> None:
    ring = KeyRing({"k1": os.urandom(32)}, "k1")
    aad = header_aad("acme", 1, "Authorization")
    sealed = ring.seal("Bearer bench-secret-value", aad=aad)
    began = time.process_time()
    for _ in range(rounds):
        ring.open(sealed, aad=header_aad("acme", 1, "Authorization"))
    took = time.process_time() - began
    print(f"KeyRing.open + header_aad: {took / rounds * 1e6:.1f} us CPU per header value")


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"bench_store: {args.runs} runs over {args.jobs} jobs, {args.workers} workers; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"medians of {args.repeat} passes; per run, CPU microseconds: fire = writer in "
        f"{'enqueue_manual' if args.manual else 'fire_slots'}; writer/process/rest in claim+finish"
    )
    print(HEADER)
    for observer in ("none", "metrics (log warning)", "log info"):
        passes = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="jobsd-bench-store-") as tmp:
                passes.append(await one_pass(Path(tmp), args, observer, args.runs, trace=False))
        timed = median_of(passes)
        with tempfile.TemporaryDirectory(prefix="jobsd-bench-store-") as tmp:
            counted = await one_pass(Path(tmp), args, observer, min(args.runs, 1000), trace=True)
        timed.statements = round(counted.statements / counted.runs * timed.runs)
        timed.triggers = round(counted.triggers / counted.runs * timed.runs)
        timed.fire_statements = round(counted.fire_statements / counted.runs * timed.runs)
        print(timed.row(observer), flush=True)
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="passes per observer; medians")
    parser.add_argument(
        "--manual", action="store_true", help="runs made by run-now (enqueue_manual), not fired"
    )
    parser.add_argument("--decrypt", action="store_true", help="time one header decryption")
    parser.add_argument("--observer", action="store_true", help="time the observer alone")
    parser.add_argument("--floor", action="store_true", help="time the record's SQL alone")
    args = parser.parse_args()
    # One job per run, as a burst fires: a recurring job's next slot is not
    # fired while its previous slot's run is still PENDING (README, overlap).
    args.jobs = args.runs
    if not 1 <= args.runs <= 200_000 or args.repeat < 1:
        parser.error("--runs 1..200000, --repeat 1 or more")
    if args.decrypt:
        time_decrypt()
        return
    if args.observer:
        time_observer(args.runs)
        return
    if args.floor:
        trio.run(time_floor, args)
        return
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
