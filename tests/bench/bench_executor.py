"""The executor path alone: what the daemon's loop spends per run between a
committed run and its recorded outcome, without the store, the API or the
scheduler.

    python tests/bench/bench_executor.py [--runs 10000] [--workers 64] [--rounds 3]
    PYTHONPATH=/other/checkout python tests/bench/bench_executor.py   # that checkout's jobsd

The real `Dispatcher`, `ExecutorPool` and `WorkerProcesses` (one worker
process, its own delivery) against `target_server.py` in its own process;
the store is a stand-in whose claim and finish each yield once and return
at once, so what is left in this process is the executor's tasks, scopes
and hand-offs, the socket pair and its frames, and the fair queue. Prints,
per round, runs/s, CPU per run of this process (the daemon's side; it has
no other thread) and of the worker process, and the task steps per run in
this process (trips through trio's scheduler: the instrument costs a little
CPU of its own, the same for any checkout).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

from jobsd.config import LogConfig
from jobsd.dispatch import Dispatcher, lane_depth
from jobsd.executor import ExecutorPool
from jobsd.job_model import HttpConfig
from jobsd.messages import CancelRun, Outcome, RunOrder
from jobsd.store.claims import Claim
from jobsd.workers.pool import WorkerProcesses

TARGET = Path(__file__).with_name("target_server.py")


class Records:
    """Claim and finish as a store's would look from the loop: one yield each."""

    def __init__(self, url: str, runs: int) -> None:
        self._config = HttpConfig(url=url, method="POST", body='{"n": 1}', timeout_s=30)
        self.left = runs
        self.pending = {f"run-{n}": None for n in range(runs)}  # insertion order: oldest first
        self.failed = 0
        self.all_done = trio.Event()

    async def claim(self, run_id: str, runs_included_of: Callable[[str], int]) -> Claim | None:
        await trio.lowlevel.checkpoint()
        if run_id not in self.pending:
            return None
        del self.pending[run_id]
        return Claim(run_id, "acct", self._config, job_slug="bench")

    async def finish(self, run_id: str, outcome: Outcome) -> bool:
        await trio.lowlevel.checkpoint()
        if outcome.status.value != "SUCCEEDED":
            self.failed += 1
        self.left -= 1
        if self.left == 0:
            self.all_done.set()
        return True

    async def mark_lost(
        self, run_ids: list[str], error: str, *, request: dict[str, object] | None = None
    ) -> int:
        return 0

    async def record_request(self, run_id: str, request: dict[str, object]) -> bool:
        return False

    async def pending_accounts(self, limit: int) -> list[str]:
        return ["acct"] if self.pending else []

    async def oldest_pending(self, account_id: str, limit: int) -> list[str]:
        await trio.lowlevel.checkpoint()
        found = []
        for run_id in self.pending:
            if len(found) == limit:
                break
            found.append(run_id)
        return found


class Steps(trio.abc.Instrument):
    """Task steps (each a trip through trio's scheduler) while counting."""

    def __init__(self) -> None:
        self.counting = False
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.counting:
            self.steps += 1


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_round(
    url: str, runs: int, workers: int, steps: Steps
) -> tuple[float, float, float, int]:
    records = Records(url, runs)
    processes = WorkerProcesses(1, allow_cidrs=["127.0.0.1/32"], log=LogConfig(), workers=workers)
    dispatcher = Dispatcher(records, depth=lane_depth(workers), cap=lambda: workers)
    _, cancels = trio.open_memory_channel[CancelRun](16)
    pool = ExecutorPool(
        records, processes, lambda _: 0, workers=workers, dispatcher=dispatcher, cancels=cancels
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(processes.run)
        while not processes.pids:
            await trio.sleep(0.05)
        await nursery.start(pool.run)
        (pid,) = processes.pids
        cpu0, worker0, began = time.process_time(), _cpu_of(pid), time.perf_counter()
        steps.counting = True
        for n in range(runs):
            dispatcher.offer(RunOrder(f"run-{n}", "acct"))
            if n % 64 == 63:
                await trio.lowlevel.checkpoint()
        await records.all_done.wait()
        steps.counting = False
        wall = time.perf_counter() - began
        cpu, worker = time.process_time() - cpu0, _cpu_of(pid) - worker0
        await pool.stop(1.0)
        nursery.cancel_scope.cancel()
    return runs / wall, cpu / runs * 1e6, worker / runs * 1e6, records.failed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if not (1 <= a.runs <= 200_000 and 1 <= a.workers <= 1024 and 1 <= a.rounds <= 20):
        p.error("--runs 1..200000, --workers 1..1024, --rounds 1..20")
    import jobsd

    print(f"jobsd from {Path(jobsd.__file__).parent}; load {os.getloadavg()}")
    target = subprocess.Popen(
        [sys.executable, str(TARGET)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert target.stdout is not None
        url = target.stdout.readline().strip()
        for r in range(a.rounds):
            steps = Steps()
            rate, daemon_us, worker_us, failed = trio.run(
                one_round, url, a.runs, a.workers, steps, instruments=[steps]
            )
            print(
                f"round {r}: {rate:7.0f} runs/s  daemon {daemon_us:6.1f} us/run  "
                f"worker {worker_us:6.1f} us/run  task steps/run {steps.steps / a.runs:5.2f}  "
                f"failed {failed}",
                flush=True,
            )
    finally:
        target.kill()
        target.wait()


if __name__ == "__main__":
    main()
