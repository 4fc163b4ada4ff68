"""What one account's stored data costs everyone: the two cases of issue 7.

Runs the real daemon (`python -m jobsd serve`, tests/daemon_process.py) and
prints figures; not a test. Point PYTHONPATH at another checkout to measure
that one instead (the daemon child inherits it).

- `flood`: account A (free plan) sends 12 creates with 60,000 headers each,
  then four concurrent `GET /jobs?page[size]=1000` while account B polls
  `/healthz` and its own `GET /jobs`. Prints each create's time and answer,
  the lists' times, B's latencies, the daemon's RSS and peak RSS.
- `runlist`: account A runs one job with a 1 MiB body 300 times (at a
  closed port: each run is recorded with its request snapshot), then one
  `GET /runs?page[size]=1000`; the same figures.
- `biglist`: account A creates 300 paused jobs with 1 MiB bodies, then one
  `GET /jobs?page[size]=1000` (read to the end, counted, not kept); prints
  the response size and time, and the daemon's RSS before and after and its
  peak (VmHWM), with B's `/healthz` latencies during the list.

    .venv/bin/python -m tests.bench.bench_abuse flood
    .venv/bin/python -m tests.bench.bench_abuse biglist [--jobs 300]
    .venv/bin/python -m tests.bench.bench_abuse runlist [--jobs 300]
    PYTHONPATH=/work/main .venv/bin/python -m tests.bench.bench_abuse biglist
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B, config_text
from tests.daemon_process import DaemonProcess

MiB = 1024 * 1024


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def client(url: str, token: str, timeout_s: float = 120.0) -> httpx2.Client:
    return httpx2.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI},
        timeout=timeout_s,
        trust_env=False,
    )


def job(slug: str, **config: Any) -> bytes:
    attributes = {
        "name": slug,
        "enabled": False,
        "schedule": "0 0 1 1 *",
        "configuration": {"url": "http://127.0.0.1:9/never", **config},
    }
    doc = {"data": {"type": "job", "id": slug, "attributes": attributes}}
    return json.dumps(doc, separators=(",", ":")).encode()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def list_bytes(c: httpx2.Client, path: str) -> tuple[int, int]:
    """(status, body bytes) of a GET read to the end without keeping it."""
    size = 0
    with c.stream("GET", path) as r:
        for chunk in r.iter_raw():
            size += len(chunk)
        return r.status_code, size


class Poller:
    """Account B's requests in a thread while A does its worst: latencies in s."""

    def __init__(self, url: str, path: str) -> None:
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, path), daemon=True)

    def _run(self, url: str, path: str) -> None:
        with client(url, TOKEN_B, timeout_s=60) as c:
            while not self._stop.is_set():
                try:
                    elapsed, r = timed(lambda: c.get(path))
                    self.latencies.append(elapsed)
                    self.failures += r.status_code != 200
                except httpx2.HTTPError:
                    self.failures += 1
                time.sleep(0.05)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)

    def summary(self) -> str:
        if not self.latencies:
            return "no answers"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{len(ordered)} answers, median {statistics.median(ordered) * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms, failures {self.failures}"
        )


def flood(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    print("before:", rss_kib(pid))
    headers = [{"name": f"H{i}", "value": "v"} for i in range(60_000)]
    with client(daemon.url, TOKEN_A) as a:
        for n in range(12):
            body = job(f"flood-{n}", headers=headers)
            elapsed, r = timed(lambda b=body: a.post("/api/v1/jobs", content=b))
            code = r.json()["errors"][0]["code"] if r.status_code >= 400 else ""
            print(f"create {n}: {len(body)} bytes -> {r.status_code} {code} in {elapsed:.3f} s")
        print("after creates:", rss_kib(pid))
    results: list[tuple[float, str, int]] = []

    def one_list() -> None:
        start = time.perf_counter()
        with client(daemon.url, TOKEN_A) as c:
            try:
                status, size = list_bytes(c, "/api/v1/jobs?page[size]=1000")
            except httpx2.HTTPError as exc:
                status, size = -1, 0
                print("GET /jobs failed:", type(exc).__name__, exc)
        results.append((time.perf_counter() - start, str(status), size))

    with Poller(daemon.url, "/healthz") as health, Poller(daemon.url, "/api/v1/jobs") as lists:
        threads = [threading.Thread(target=one_list) for _ in range(4)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        wall = time.perf_counter() - start
    for elapsed, status, size in results:
        print(f"GET /jobs: {status}, {size} bytes in {elapsed:.2f} s")
    print(f"four concurrent lists: {wall:.2f} s wall")
    print("B /healthz:", health.summary())
    print("B GET /jobs:", lists.summary())
    print("after lists:", rss_kib(pid))


def biglist(daemon: DaemonProcess, jobs: int) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    body = "b" * MiB
    with client(daemon.url, TOKEN_A) as a:
        start = time.perf_counter()
        for n in range(jobs):
            r = a.post("/api/v1/jobs", content=job(f"big-{n:04d}", body=body))
            assert r.status_code == 201, r.text[:300]
        print(f"{jobs} paused jobs with 1 MiB bodies in {time.perf_counter() - start:.1f} s")
        before = rss_kib(pid)
        print("before the list:", before)
        with Poller(daemon.url, "/healthz") as health:
            elapsed, (status, size) = timed(
                lambda: list_bytes(a, "/api/v1/jobs?page[size]=1000&meta[total]=true")
            )
        after = rss_kib(pid)
        print(f"GET /jobs?page[size]=1000: {status}, {size / MiB:.1f} MiB in {elapsed:.2f} s")
        print("after the list:", after)
        print(
            f"RSS growth {(after['VmRSS'] - before['VmRSS']) / 1024:.1f} MiB, "
            f"peak growth {(after['VmHWM'] - before['VmHWM']) / 1024:.1f} MiB"
        )
        print("B /healthz during the list:", health.summary())


def runlist(daemon: DaemonProcess, runs: int) -> None:
    """Runs whose request snapshots hold a 1 MiB body each, then one big GET /runs."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    with client(daemon.url, TOKEN_A) as a:
        r = a.post("/api/v1/jobs", content=job("big-runs", body="b" * MiB, timeout=1))
        assert r.status_code == 201, r.text[:300]
        start = time.perf_counter()
        ids = []
        for _ in range(runs):
            r = a.post("/api/v1/jobs/big-runs/actions/run")
            assert r.status_code == 200, r.text[:300]
            ids.append(r.json()["data"]["id"])
        deadline = time.monotonic() + 600
        for run_id in ids:
            while a.get(f"/api/v1/runs/{run_id}").json()["data"]["attributes"]["status"] in (
                "PENDING",
                "RUNNING",
            ):
                assert time.monotonic() < deadline, "runs did not finish"
                time.sleep(0.1)
        print(
            f"{runs} finished runs with 1 MiB request bodies in {time.perf_counter() - start:.1f} s"
        )
        before = rss_kib(pid)
        print("before the list:", before)
        with Poller(daemon.url, "/healthz") as health:
            elapsed, (status, size) = timed(lambda: list_bytes(a, "/api/v1/runs?page[size]=1000"))
        after = rss_kib(pid)
        print(f"GET /runs?page[size]=1000: {status}, {size / MiB:.1f} MiB in {elapsed:.2f} s")
        print("after the list:", after)
        print(
            f"RSS growth {(after['VmRSS'] - before['VmRSS']) / 1024:.1f} MiB, "
            f"peak growth {(after['VmHWM'] - before['VmHWM']) / 1024:.1f} MiB"
        )
        print("B /healthz during the list:", health.summary())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=["flood", "biglist", "runlist"])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobsd-abuse-") as tmp:
        root = Path(tmp)
        cfg = root / "jobsd.toml"
        cfg.write_text(config_text(root, active_jobs_limit=10, runs_included=3000))
        with DaemonProcess(["serve", "--config", str(cfg)], root) as daemon:
            where = subprocess.run(
                [sys.executable, "-c", "import jobsd; print(jobsd.__file__)"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            print("the daemon runs", where.stdout.strip())
            if args.case == "flood":
                flood(daemon)
            elif args.case == "biglist":
                biglist(daemon, min(args.jobs, 1000))
            else:
                runlist(daemon, min(args.jobs, 1000))
            daemon.stop()


if __name__ == "__main__":
    main()
