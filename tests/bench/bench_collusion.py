"""Can accounts together deny service to one more? The list snapshots; figures, not a test.

The real daemon (`python -m jobsd serve`, a child process) with five
accounts. Four colluders (each may send two lists at once, the daemon
eight) each hold two `GET /jobs` of 12 jobs with 1 MiB bodies, read just
fast enough to meet `write_timeout_s` (16 KiB every 0.25 s through a small
receive buffer), so each list lasts until its 60 s deadline, and open
another as each ends. The fifth account asks its own `GET /jobs` (three
small jobs) every second for `--seconds`. Reported: its latencies and
answers by status.

    .venv/bin/python -m tests.bench.bench_collusion [--seconds 70]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx2
import trio

from jobsd.config import token_sha256
from tests.bench.bench_shares import paused_job
from tests.bench.e2e.figures import pct
from tests.bench.raw_http import request_bytes
from tests.daemon_process import DaemonProcess

COLLUDERS = 4
MiB = 1024 * 1024


def token(n: int) -> str:
    return f"jobsd_bench-collusion-account-{n}"


def config_toml(data: Path) -> str:
    accounts = "".join(
        f'[[accounts]]\nid = "a{n}"\nplan = "big"\ntokens_sha256 = ["{token_sha256(token(n))}"]\n'
        for n in range(COLLUDERS + 1)
    )
    return f"""
[server]
listen = "127.0.0.1:0"
[storage]
path = "{data / "jobsd.sqlite3"}"
[secrets]
key_file = "{data / "secret.key"}"
[plans.big]
runs_included = -1
active_jobs_limit = -1
max_timeout = 300
{accounts}"""


def job(slug: str, body: str) -> bytes:
    configuration = {"url": "http://127.0.0.1:9/x", "body": body}
    return json.dumps(paused_job(slug, configuration)).encode()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="jobsd-bench-collusion-") as tmp:
        data = Path(tmp)
        (data / "jobsd.toml").write_text(config_toml(data))
        with (
            trio.fail_after(args.seconds + 240),
            DaemonProcess(["serve", "--config", str(data / "jobsd.toml")], data) as daemon,
        ):
            await measure(daemon.url, args.seconds)
            daemon.stop()


async def measure(url: str, seconds: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    for n in range(COLLUDERS + 1):
        headers = {
            "Authorization": f"Bearer {token(n)}",
            "Content-Type": "application/vnd.api+json",
        }
        async with httpx2.AsyncClient(
            base_url=url, headers=headers, trust_env=False, timeout=60
        ) as c:
            count, body = (12, "b" * MiB) if n < COLLUDERS else (3, "small")
            for j in range(count):
                r = await c.post("/api/v1/jobs", content=job(f"j{j}", body))
                assert r.status_code == 201, r.text[:200]
    stop_at = trio.current_time() + seconds
    lists = [0]
    seen: dict[str, list[float]] = defaultdict(list)

    async def slow_list(n: int) -> None:
        get = request_bytes("GET", "/api/v1/jobs?page[size]=100", token(n))
        while trio.current_time() < stop_at:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect((host, int(port)))
            async with trio.SocketStream(sock) as stream:
                await stream.send_all(get)
                lists[0] += 1
                while trio.current_time() < stop_at:
                    try:
                        if not await stream.receive_some(16384):
                            break
                    except trio.BrokenResourceError:
                        break
                    await trio.sleep(0.25)

    async def fifth() -> None:
        await trio.sleep(3)  # every colluder's lists are under way
        headers = {"Authorization": f"Bearer {token(COLLUDERS)}"}
        async with httpx2.AsyncClient(
            base_url=url, headers=headers, trust_env=False, timeout=70
        ) as c:
            while trio.current_time() < stop_at:
                began = trio.current_time()
                r = await c.get("/api/v1/jobs")
                seen[str(r.status_code)].append(trio.current_time() - began)
                await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for n in range(COLLUDERS):
            for _ in range(2):
                nursery.start_soon(slow_list, n)
        nursery.start_soon(fifth)
    print(
        f"\n## {COLLUDERS} accounts x 2 slow lists ({lists[0]} lists started) for {seconds:.0f} s"
    )
    for status, values in sorted(seen.items()):
        ms = " / ".join(f"{pct(values, p) * 1000:.0f}" for p in (50, 99, 100))
        print(f"fifth account's GET /jobs {status}: {len(values)}, latency p50/p99/max ms {ms}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=70)
    began = time.monotonic()
    trio.run(main, parser.parse_args())
    print(f"\n(total {time.monotonic() - began:.0f} s)")
