"""`GET /api/v1/jobs/{id}` against a hello-world endpoint on the same server stack.

Both servers run in their own process: the daemon (with `--jobs` jobs that
never fire) and `hello_server` (quart-trio, jobsd's connection handling).
Rounds alternate A, B, A, B ... so both see the same machine: each round
runs `--connections` closed loops over kept-alive h11 connections for
`--round-s` seconds. Figures: requests per second, latency p50/p99, and
each server's CPU per request (from /proc, which shared cores disturb far
less than wall-clock rates). The ratio is jobsd ÷ hello, on rates summed
over the rounds.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import trio

from tests.bench.e2e.daemon import AUTH, create_jobs, job_doc, running_daemon
from tests.bench.e2e.figures import pct, proc_cpu_s, tree_cpu_s
from tests.bench.e2e.h11_client import H11Conn
from tests.bench.e2e.hello_server import HELLO_PATH
from tests.bench.e2e.target import Children, Target


@dataclass
class Served:
    name: str
    requests: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    bad: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / max(self.requests, 1)

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:8.0f} req/s  p50 {pct(self.latency_ms, 50):6.2f}"
            f" p99 {pct(self.latency_ms, 99):6.2f} ms  server CPU {self.cpu_ms:5.2f} ms/req"
            + (f"  NOT 200: {self.bad}" if self.bad else "")
        )


@dataclass
class ApiRead:
    jobsd: Served
    hello: Served
    baseline: Served | None = None  # the same GETs to a daemon from another checkout
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.jobsd.rate / self.hello.rate


async def closed_loops(
    url: str,
    paths: list[str],
    connections: int,
    seconds: float,
    served: Served,
    cpu: Callable[[], float],
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = list(AUTH.items())
    conns = [await H11Conn.open(host, port) for _ in range(connections)]
    cpu0, began = cpu(), time.perf_counter()
    end = began + seconds

    async def loop(conn: H11Conn, offset: int) -> None:
        i = offset
        while time.perf_counter() < end:
            started = time.perf_counter()
            status, _ = await conn.exchange("GET", paths[i % len(paths)], headers)
            served.latency_ms.append((time.perf_counter() - started) * 1000)
            served.requests += 1
            served.bad += status != 200
            i += connections

    async with trio.open_nursery() as nursery:
        for n, conn in enumerate(conns):
            nursery.start_soon(loop, conn, n)
    served.seconds += time.perf_counter() - began
    served.cpu_s += cpu() - cpu0
    for conn in conns:
        await conn.aclose()


async def run_api_read(
    target: Target,
    work_dir: Path,
    children: Children,
    *,
    jobs: int = 100,
    connections: int = 16,
    rounds: int = 3,
    round_s: float = 3.0,
    baseline: Path | None = None,
) -> ApiRead:
    result = ApiRead(Served("GET /api/v1/jobs/{id}"), Served("hello-world quart-trio"))
    if baseline is not None:
        result.baseline = Served(f"the same, {baseline.name}")
    hello = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.e2e.hello_server"],
        cwd=Path(__file__).parents[3],
        stdout=subprocess.PIPE,
        text=True,
    )
    children.append(hello)
    try:
        assert hello.stdout is not None
        hello_url = hello.stdout.readline().strip()
        async with contextlib.AsyncExitStack() as stack:
            daemons = [
                await stack.enter_async_context(running_daemon(work_dir / "jobsd-api", 4, children))
            ]
            if baseline is not None:
                old = running_daemon(work_dir / "jobsd-api-old", 4, children, code=baseline)
                daemons.append(await stack.enter_async_context(old))
            docs = [
                job_doc(f"read-{i:04d}", "2099-01-01T00:00:00Z", target.hook) for i in range(jobs)
            ]
            for daemon in daemons:
                _, errors = await create_jobs(daemon.api, docs)
                result.problems.extend(errors)
            paths = [f"/api/v1/jobs/read-{i:04d}" for i in range(jobs)]
            servers = [
                (d.url, paths, s, partial(tree_cpu_s, d.pid))
                for d, s in zip(daemons, [result.jobsd, result.baseline], strict=False)
            ]
            servers.append((hello_url, [HELLO_PATH], result.hello, partial(proc_cpu_s, hello.pid)))
            for n in range(rounds):
                print(f"  api: round {n + 1}/{rounds} ...", flush=True)
                for url, todo, served, cpu in servers:
                    assert served is not None
                    await closed_loops(url, todo, connections, round_s, served, cpu)
        result.problems.extend(p for d in daemons for p in d.problems)
    finally:
        hello.terminate()
        hello.wait(timeout=30)
    return result
