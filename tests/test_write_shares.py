"""One account's heavy writes do not hold up another account's (`jobsd.api.admission`).

The real daemon (a child process, so the flood's client does not share its
loop): account `acme` keeps 160 connections PUTting jobs near the 1.25 MiB
configuration bound, and `other` meanwhile creates small jobs, asks
run-nows and cancels them one at a time. Before the accounts' budgets,
`other` waited behind every flooding body on the loop and in the writer's
queue (seconds; tests/bench/bench_shares.py has the figures at 250).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import trio

from tests.bench.bench_shares import heavy_job
from tests.bench.raw_http import exchange, request_bytes
from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B, config_text
from tests.daemon_process import DaemonProcess

FLOOD_CONNECTIONS = 160
FLOOD_S = 8.0


def _small(slug: str) -> dict[str, object]:
    attributes = {
        "name": slug,
        "enabled": False,
        "schedule": "0 0 1 1 *",
        "configuration": {"url": "http://127.0.0.1:9/x", "timeout": 5},
    }
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


async def test_heavy_writes_of_one_account_leave_another_accounts_writes_prompt(
    tmp_path: Path,
) -> None:
    (tmp_path / "jobsd.toml").write_text(config_text(tmp_path, active_jobs_limit=-1))
    with DaemonProcess(["serve", "--config", str(tmp_path / "jobsd.toml")], tmp_path) as daemon:
        host, port = daemon.url.removeprefix("http://").split(":")
        headers = {"Content-Type": JSONAPI}
        acme = httpx2.AsyncClient(
            base_url=daemon.url,
            headers={**headers, "Authorization": f"Bearer {TOKEN_A}"},
            trust_env=False,
            timeout=60,
        )
        other = httpx2.AsyncClient(
            base_url=daemon.url,
            headers={**headers, "Authorization": f"Bearer {TOKEN_B}"},
            trust_env=False,
            timeout=60,
        )
        async with acme, other:
            for n in range(8):
                r = await acme.post("/api/v1/jobs", content=heavy_job(f"heavy-{n}"))
                assert r.status_code == 201, r.text[:300]
            assert (await other.post("/api/v1/jobs", json=_small("target"))).status_code == 201
            puts = [
                request_bytes("PUT", f"/api/v1/jobs/heavy-{n}", TOKEN_A, heavy_job(f"heavy-{n}"))
                for n in range(8)
            ]
            answered: dict[int, int] = {}
            waits: list[float] = []
            stop_at = trio.current_time() + FLOOD_S

            async def flooder(i: int) -> None:
                while trio.current_time() < stop_at:
                    async with await trio.open_tcp_stream(host, int(port)) as stream:
                        while trio.current_time() < stop_at:
                            status, closes = await exchange(stream, puts[i % 8])
                            answered[status] = answered.get(status, 0) + 1
                            if closes:
                                break

            async def timed(call: object) -> httpx2.Response:
                began = trio.current_time()
                r = await call  # type: ignore[misc]
                waits.append(trio.current_time() - began)
                return r  # type: ignore[no-any-return]

            async def calm() -> None:
                await trio.sleep(2)  # the flood is under way
                n = 0
                while trio.current_time() < stop_at - 1:
                    r = await timed(other.post("/api/v1/jobs", json=_small(f"small-{n}")))
                    assert r.status_code == 201, r.text
                    r = await timed(other.post("/api/v1/jobs/target/actions/run"))
                    assert r.status_code == 200, r.text
                    run = r.json()["data"]["id"]
                    r = await timed(other.post(f"/api/v1/runs/{run}/actions/cancel"))
                    assert r.status_code in (200, 409), r.text
                    n += 1

            with trio.fail_after(FLOOD_S + 60):
                async with trio.open_nursery() as nursery:
                    for i in range(FLOOD_CONNECTIONS):
                        nursery.start_soon(flooder, i)
                    nursery.start_soon(calm)
            scrape = (await other.get("/metrics")).text
        daemon.stop()
    waits.sort()
    median, worst = waits[len(waits) // 2], waits[-1]
    print(f"acme's PUTs: {answered}; other's {len(waits)} writes: median {median:.3f} s,")
    print(f"  worst {worst:.3f} s")
    assert answered.get(200, 0) >= 16  # the flood really ran
    # Before: 3-12 writes in those 5 s, median 0.24-1.6 s, worst 1.5-4.0 s;
    # after: ~140, median ~0.03 s, worst ~0.2 s (2 cores shared).
    assert len(waits) >= 30
    assert median < 0.15 and worst < 2.0
    # An operator sees whose writes waited for their share, and for how long.
    held = re.search(r'jobsd_api_write_wait_seconds_count\{account="acme"\} (\S+)', scrape)
    assert held is not None and float(held.group(1)) >= 1, scrape[-3000:]
    # Only the writes that waited: the other account's, one at a time, never did.
    assert 'jobsd_api_write_wait_seconds_count{account="other"}' not in scrape, scrape[-3000:]
