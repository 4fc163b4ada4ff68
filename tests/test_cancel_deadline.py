"""A cancel whose request ran out of time after its write still abandons the request.

The request deadline (`server.request_timeout_s`) answers 503 and cancels
the route while its store write, shielded, still completes: a database
another process keeps locked makes the write wait that long. The run is
then CANCELED in the file, so its request must be abandoned as for any
cancel (SEMANTICS: at once). The route told the executors with an awaited
channel send, whose first act is to raise the route's cancellation: the
run read CANCELED while its request stayed open until its own timeout.
The real daemon (a child process) and a target that holds its requests.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import trio

from tests.conftest import TOKEN_A, config_text
from tests.daemon_process import DaemonProcess
from tests.holding_target import holding_target
from tests.test_store_locked import while_locked
from tests.test_workers_daemon import create_job, run, run_now

LOCK_S = 3.0  # past the request's deadline (2 s), within the store's busy timeout (5 s)


async def test_a_cancel_cut_by_the_request_deadline_still_abandons_the_request(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "jobsd.toml"
    text = config_text(tmp_path, scheduler="worker_processes = 0")
    text = text.replace(
        'listen = "127.0.0.1:0"',
        'listen = "127.0.0.1:0"\nbody_timeout_s = 1\nrequest_timeout_s = 2',
    )
    cfg.write_text(text)
    daemon = DaemonProcess(["serve", "--config", str(cfg)], tmp_path)
    async with holding_target() as target:
        await trio.to_thread.run_sync(daemon.start)
        try:
            headers = {"Authorization": f"Bearer {TOKEN_A}"}
            async with httpx2.AsyncClient(
                base_url=daemon.url, headers=headers, trust_env=False, timeout=30
            ) as client:
                await create_job(client, "hold", f"{target.url}/hold")
                run_id = await run_now(client, "hold")
                await target.until(lambda: run_id in target.open_ids)

                cancel = client.post(f"/api/v1/runs/{run_id}/actions/cancel")
                r = await while_locked(tmp_path / "jobsd.sqlite3", cancel, held_s=LOCK_S)
                assert r.status_code == 503, r.text  # the deadline's answer
                with trio.fail_after(10):
                    while (await run(client, run_id))["status"] != "CANCELED":
                        await trio.sleep(0.05)
                # Its request is abandoned once the cancel committed, not 60 s later.
                await target.until(lambda: run_id in target.closed_at, timeout_s=5)
        finally:
            await trio.to_thread.run_sync(daemon.stop)
