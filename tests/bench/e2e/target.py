"""The local target every variant sends to, and the proof that each run arrived once.

The target is `tests/bench/target_server.py` (trio + h11) in its own
process, so it shares no GIL with the clients under test; it counts
requests per `X-Jobsd-Run-Id`, and `take` reads and resets those counts.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2

from tests.bench.e2e.figures import Row, proc_cpu_s

HOOK_PATH = "/hook"
JOB_METHOD = "POST"
JOB_BODY = '{"bench": true}'
JOB_HEADERS = (("Content-Type", "application/json"),)

Children = list[subprocess.Popen[Any]]


class Target:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).parents[1] / "target_server.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"target did not start: {self.url!r}")
        self.hook = self.url + HOOK_PATH
        self.connections = 0  # of the last take: how many connections carried its requests

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    async def take(self) -> tuple[int, Counter[str]]:
        """Requests and per-run-id counts since the last take (and reset them)."""
        async with httpx2.AsyncClient(trust_env=False, timeout=30) as client:
            doc = (await client.get(f"{self.url}/_bench/take")).json()
        self.connections = int(doc["connections"])
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
