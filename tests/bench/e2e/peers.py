"""Run the APScheduler peer (`peer_apscheduler`) as a child and read its row.

The parent builds the requests (so their run ids are known here and the
target's counts prove each arrived once), picks the instant a few seconds
ahead, and reads back one JSON line. The child's CPU is its own
`process_time` from the scheduler's start to the last job's end: the
firing phase, as the daemon's is measured.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from tests.bench.e2e.bare import bare_requests
from tests.bench.e2e.figures import Row
from tests.bench.e2e.target import JOB_METHOD, Children, Target, check_delivered

LEAD_S = 4.0  # the child starts and adds its jobs in this time (about 1 s for 10,000)
PEER_CLIENTS = ("httpx2", "aiohttp")


def peer_name(client: str) -> str:
    return f"APScheduler 3.11 + {client}"


async def run_peer(
    target: Target, count: int, workers: int, client: str, children: Children
) -> Row:
    row = Row(peer_name(client), count=count)
    for module in ("apscheduler", client):
        if importlib.util.find_spec(module) is None:
            row.problems.append(f"{module} is not installed: pip install -e '.[test,bench]'")
            return row
    requests = bare_requests(count)
    timeout_s = 60 + count / 50
    with tempfile.TemporaryDirectory(prefix="jobsd-peer-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        at = time.time() + LEAD_S + count / 20_000
        spec = {
            "url": target.hook,
            "method": JOB_METHOD,
            "workers": workers,
            "client": client,
            "at": at,
            "timeout_s": timeout_s,
            "requests": [(r.headers, r.body.decode()) for r in requests],
        }
        spec_path.write_text(json.dumps(spec))
        await target.take()
        target0 = target.cpu_s()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.e2e.peer_apscheduler", str(spec_path)],
            cwd=Path(__file__).parents[3],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(proc)
        out, err = await trio.to_thread.run_sync(
            lambda: proc.communicate(timeout=timeout_s + 30), abandon_on_cancel=True
        )
    row.target_cpu_s = target.cpu_s() - target0
    if proc.returncode != 0:
        row.problems.append(f"the peer exited {proc.returncode}: {err[-500:]}")
        return row
    result = json.loads(out.strip().splitlines()[-1])
    row.ok = result["ok"]
    row.elapsed_s = result["elapsed_s"]
    row.lateness_ms = result["lateness_ms"]
    row.exchange_ms = result["exchange_ms"]
    row.client_cpu_s = result["cpu_s"]
    row.problems.extend(result["problems"])
    if result["added_s_before"] < 0:
        row.problems.append(f"jobs added {-result['added_s_before']:.1f} s after the instant")
    got, ids = await target.take()
    check_delivered(row, got, ids, {r.run_id for r in requests})
    return row
