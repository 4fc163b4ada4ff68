"""Keep-alive across the whole daemon: a run reuses only its own account's connections.

The daemon in-process (its runs in a worker process, as by default), a
hypercorn target on 127.0.0.1 that records the client port each request
came on, and two accounts firing runs at the same URL one after another:
each account's runs share connections, no connection ever carries both
accounts' requests, and each run arrives exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from tests.test_concurrency_accounts import create, runs_of, two_accounts

RUNS = 6


async def test_each_account_reuses_only_its_own_connections(tmp_path: Path) -> None:
    async with two_accounts(tmp_path) as (target, live, acme, other):
        for client in (acme, other):
            await create(client, "hook", "0 0 1 1 *", f"{target.url}/ok")
        for n in range(RUNS):
            for client in (acme, other):
                assert (await client.post("/api/v1/jobs/hook/actions/run")).status_code == 200
                with trio.fail_after(10):
                    while len(target.received) < 2 * n + 1 + (client is other):
                        await trio.sleep(0.01)
        with trio.fail_after(10):
            while not all(
                r["status"] == "SUCCEEDED" for a in ("acme", "other") for r in runs_of(live.db, a)
            ):
                await trio.sleep(0.02)
        run_ids = {a: {r["id"] for r in runs_of(live.db, a)} for a in ("acme", "other")}
    ports: dict[str, set[int]] = {"acme": set(), "other": set()}
    arrived: Counter[str] = Counter()
    for received in target.received:
        run_id = received.headers["x-jobsd-run-id"]
        arrived[run_id] += 1
        account = "acme" if run_id in run_ids["acme"] else "other"
        assert received.client is not None
        ports[account].add(received.client[1])
    assert arrived == Counter({run_id: 1 for ids in run_ids.values() for run_id in ids})
    assert len(run_ids["acme"]) == len(run_ids["other"]) == RUNS
    assert not ports["acme"] & ports["other"]
    assert len(ports["acme"]) < RUNS and len(ports["other"]) < RUNS
