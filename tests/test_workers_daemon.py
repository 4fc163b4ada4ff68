"""The real daemon (`jobsd serve`, a child process) with its worker processes.

What issue 11 promised would not be given up by moving requests to other
processes, each seen from outside: the bound of `workers` runs RUNNING
across every process, a user's cancel closing a request's connection at
once, header values absent from the workers' argv and environment (read
from /proc) and from the log, SIGTERM ending everything within the grace,
a killed worker losing only its own runs (recorded FAILED/WORKER_LOST) and
being replaced, and no worker outliving a killed daemon.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx2
import trio

from jobsd.workers.child_link import WORKER_LOST_ERROR
from tests.conftest import TOKEN_A, config_text
from tests.crash_workers import gone, worker_pids
from tests.daemon_process import DaemonProcess
from tests.holding_target import holding_target

SECRET = "hdr-secret-in-a-worker-5f4e3d"
GRACE_S = 1


async def start(tmp_path: Path, workers: int) -> DaemonProcess:
    cfg = tmp_path / "jobsd.toml"
    scheduler = f"worker_processes = 2\nshutdown_grace_s = {GRACE_S}"
    cfg.write_text(config_text(tmp_path, workers=workers, scheduler=scheduler))
    daemon = DaemonProcess(["serve", "--config", str(cfg)], tmp_path)
    await trio.to_thread.run_sync(daemon.start)
    # Both workers ready, so that requests spread over the two.
    with trio.fail_after(30):
        while daemon.stderr().count(") ready") < 2:
            await trio.sleep(0.05)
    return daemon


def api(daemon: DaemonProcess) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    return httpx2.AsyncClient(base_url=daemon.url, headers=headers, trust_env=False)


async def create_job(client: httpx2.AsyncClient, slug: str, url: str) -> None:
    configuration = {
        "url": url,
        "headers": [{"name": "X-Api-Key", "value": SECRET}],
        "timeout": 60,
    }
    attributes = {"name": slug, "schedule": "0 0 1 1 *", "configuration": configuration}
    doc = {"data": {"type": "job", "id": slug, "attributes": attributes}}
    r = await client.post("/api/v1/jobs", json=doc)
    assert r.status_code == 201, r.text


async def run_now(client: httpx2.AsyncClient, slug: str) -> str:
    r = await client.post(f"/api/v1/jobs/{slug}/actions/run")
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["id"])


async def run(client: httpx2.AsyncClient, run_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/runs/{run_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"]["attributes"])


async def running(client: httpx2.AsyncClient, ids: list[str]) -> set[str]:
    return {i for i in ids if (await run(client, i))["status"] == "RUNNING"}


def nothing_secret_in_the_workers(pids: set[int]) -> None:
    assert pids
    for pid in pids:
        for part in ("cmdline", "environ"):
            seen = Path(f"/proc/{pid}/{part}").read_bytes()
            assert seen, f"/proc/{pid}/{part} is empty: not a worker's"
            assert SECRET.encode() not in seen, f"a header value in /proc/{pid}/{part}"
        assert b"jobsd.workers.child" in Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_bound_cancel_secrets_and_sigterm_across_worker_processes(tmp_path: Path) -> None:
    async with holding_target() as target:
        daemon = await start(tmp_path, workers=3)
        assert daemon.proc is not None
        try:
            async with api(daemon) as client:
                await create_job(client, "hold", f"{target.url}/hold")
                ids = [await run_now(client, "hold") for _ in range(6)]
                await target.until(lambda: len(target.open_ids) == 3)
                await trio.sleep(0.5)  # time for a fourth to start, were the bound broken
                assert target.peak == 3 and len(target.open_ids) == 3
                assert await running(client, ids) == target.open_ids
                workers = worker_pids(daemon.proc.pid)
                assert len(workers) == 2
                nothing_secret_in_the_workers(workers)
                assert all(h["x-api-key"] == SECRET for h in target.headers)  # it did cross

                victim = sorted(target.open_ids)[0]
                r = await client.post(f"/api/v1/runs/{victim}/actions/cancel")
                cancelled_at = trio.current_time()
                assert r.status_code == 200, r.text
                await target.until(lambda: victim in target.closed_at, timeout_s=5)
                assert target.closed_at[victim] - cancelled_at < 1.0
                canceled = await run(client, victim)
                assert canceled["status"] == "CANCELED"
                # What it was sending is recorded (once the executor has unwound),
                # its header's value redacted.
                with trio.fail_after(5):
                    while (canceled := await run(client, victim))["request"] is None:
                        await trio.sleep(0.02)
                assert canceled["request"]["headers"] == [
                    {"name": "X-Api-Key", "value": "<redacted>"}
                ]
                await target.until(lambda: len(target.open_ids) == 3)  # the slot was freed
                held = set(target.open_ids)
            # (outside the client: an idle API connection would hold the stop for
            # hypercorn's graceful timeout, with or without worker processes)
            stopping = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = await trio.to_thread.run_sync(daemon.proc.wait, 30)
            took = time.monotonic() - stopping
            assert code == 0, daemon.stderr()
            assert took < GRACE_S + 4, took
            assert all(gone(pid) for pid in workers)
            await target.until(lambda: not target.open_ids, timeout_s=5)
        finally:
            await trio.to_thread.run_sync(daemon.stop)
        restarted = await start(tmp_path, workers=3)
        try:
            async with api(restarted) as client:
                for run_id in held:
                    attributes = await run(client, run_id)
                    assert (attributes["status"], attributes["failure_reason"]) == (
                        "FAILED",
                        "WORKER_LOST",
                    ), attributes
                    assert "shutdown_grace_s" in attributes["error"]
        finally:
            await trio.to_thread.run_sync(restarted.stop)
    assert SECRET not in daemon.stderr() + "".join(daemon.stdout_lines)


async def wait_for(check: Any, timeout_s: float = 15.0) -> None:
    with trio.fail_after(timeout_s):
        while not check():
            await trio.sleep(0.05)


async def test_a_killed_worker_process_and_a_killed_daemon(tmp_path: Path) -> None:
    async with holding_target() as target:
        daemon = await start(tmp_path, workers=4)
        assert daemon.proc is not None
        try:
            async with api(daemon) as client:
                await create_job(client, "hold", f"{target.url}/hold")
                await create_job(client, "ok", f"{target.url}/ok")
                ids = [await run_now(client, "hold") for _ in range(4)]
                await target.until(lambda: len(target.open_ids) == 4)
                first = worker_pids(daemon.proc.pid)
                assert len(first) == 2
                killed = min(first)
                os.kill(killed, signal.SIGKILL)
                await wait_for(lambda: gone(killed))
                await target.until(lambda: len(target.closed_at) >= 1, timeout_s=5)
                await wait_for(lambda: len(worker_pids(daemon.proc.pid) - first) == 1)
                lost = set(target.closed_at)
                assert lost and len(target.open_ids) == 4 - len(lost)
                await wait_for_lost(client, lost)
                assert await running(client, ids) == target.open_ids  # the others go on
                after = await run_now(client, "ok")
                await target.until(lambda: len(target.headers) == 5)
                await wait_for_status(client, after, "SUCCEEDED")
                workers = worker_pids(daemon.proc.pid)
                daemon.kill9()
            await wait_for(lambda: all(gone(pid) for pid in workers), timeout_s=10)
            await target.until(lambda: not target.open_ids, timeout_s=5)
        finally:
            if daemon.proc.poll() is None:
                await trio.to_thread.run_sync(daemon.stop)
    log = daemon.stderr()
    assert f"(pid {killed}) was killed by signal 9" in log, log
    assert SECRET not in log


async def wait_for_status(client: httpx2.AsyncClient, run_id: str, status: str) -> None:
    with trio.fail_after(15):
        while (await run(client, run_id))["status"] != status:
            await trio.sleep(0.05)


async def wait_for_lost(client: httpx2.AsyncClient, lost: set[str]) -> None:
    for run_id in lost:
        await wait_for_status(client, run_id, "FAILED")
        attributes = await run(client, run_id)
        assert attributes["failure_reason"] == "WORKER_LOST"
        assert attributes["error"] == WORKER_LOST_ERROR
