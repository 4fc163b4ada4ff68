"""The crash test's worker round: SIGKILL one of the daemon's worker processes under load.

The daemon lives on; only the process performing some of its requests dies.
What the round checks, on top of the harness's whole audit (each slot at
most once, every run id at the target at most once, the meter, the counts):
- a replacement worker appears, and the load goes on through it;
- the runs the killed worker held are FAILED/WORKER_LOST with
  `WORKER_LOST_ERROR` at once (recorded by the live daemon, not by a later
  recovery), each started before the kill, and never retried or sent again;
- the daemon logs that death (one ERROR line, allowed by `check_daemon_log`
  only as often as workers were killed) and nothing else above INFO.
The final audit then counts these runs with the ones lost at daemon kills.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from jobsd.workers.child_link import WORKER_LOST_ERROR

WORKER_DEATH = "was killed by signal 9 with"  # in the daemon's line for a killed worker
REPLACED_WITHIN_S = 15.0
_READY = re.compile(r"worker process \d+ \(pid (\d+)\) ready")


def worker_pids(pid: int) -> set[int]:
    """The live child processes of `pid` (spawned from any of its threads)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(FileNotFoundError):  # a thread that just ended
            found |= {int(p) for p in (task / "children").read_text().split()}
    return {p for p in found if not gone(p)}


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # reaped before, or while, it was read
        return True
    return state == "Z"


def until_running(db_path: Path, count: int, timeout_s: float) -> None:
    """Wait (a while at most) for `count` runs RUNNING: requests a worker holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
        try:
            (n,) = conn.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()
        finally:
            conn.close()
        if n >= count:
            return
        time.sleep(0.05)


def ready_pids(stderr: str) -> set[int]:
    """The workers the daemon said were ready (one still starting holds no run)."""
    return {int(pid) for pid in _READY.findall(stderr)}


def kill_a_worker(daemon_pid: int, pick: int, stderr: Callable[[], str]) -> tuple[int, int]:
    """SIGKILL one ready worker (the `pick`-th by pid); wait for its replacement.

    Returns (the killed pid, the wall-clock instant in µs by which the daemon
    had replaced it). Not the kill's own instant: a run claimed just after
    the kill may still be handed to the dying worker before the daemon reads
    its end of file, and is then rightly lost to it."""
    deadline = time.monotonic() + REPLACED_WITHIN_S
    while not (ready := sorted(worker_pids(daemon_pid) & ready_pids(stderr()))):
        assert time.monotonic() < deadline, "no worker process became ready"
        time.sleep(0.05)
    before = worker_pids(daemon_pid)
    victim = ready[pick % len(ready)]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + REPLACED_WITHIN_S
    while True:
        now = worker_pids(daemon_pid)
        if gone(victim) and len(now) == len(before) and victim not in now:
            return victim, time.time_ns() // 1000
        assert time.monotonic() < deadline, f"worker {victim} was not replaced: {now}"
        time.sleep(0.05)


def lost_to_workers(runs: dict[str, dict[str, object]]) -> set[str]:
    return {i for i, r in runs.items() if r["error"] == WORKER_LOST_ERROR}


def check_worker_losses(
    runs: dict[str, dict[str, object]], already: set[str], replaced_us: int
) -> set[str]:
    """The runs this kill lost: each FAILED/WORKER_LOST and started before the
    daemon had replaced the worker (`replaced_us`)."""
    lost = lost_to_workers(runs) - already
    for run_id in lost:
        run = runs[run_id]
        assert (run["status"], run["failure_reason"]) == ("FAILED", "WORKER_LOST"), run
        started = run["started_at_us"]
        assert isinstance(started, int) and started <= replaced_us, run
    return lost


def allowed_lines(stderr: str, worker_kills: int) -> list[str]:
    """The daemon's lines for killed workers: at most one per kill."""
    deaths = [line for line in stderr.splitlines() if WORKER_DEATH in line]
    assert len(deaths) <= worker_kills, f"{len(deaths)} worker deaths, {worker_kills} kills"
    return deaths
