"""The command line: which scenarios, their sizes, one global deadline.

    bench_e2e.py [SCENARIO ...] [options]     SCENARIO: burst paced runnow api cron (default: all)

Everything runs under one deadline (`--timeout-s`): on expiry the children
are killed and the report shows what was measured; a watchdog thread ends
the process a minute later if something blocks outside trio. Exit status 0
only when no scenario reported a problem (goals not met are figures, not
problems).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

from tests.bench.e2e.api_read import run_api_read
from tests.bench.e2e.bare import bare_rows
from tests.bench.e2e.burst import BurstOptions, run_burst
from tests.bench.e2e.cron_ready import run_cron_ready
from tests.bench.e2e.figures import load_text
from tests.bench.e2e.peers import PEER_CLIENTS, run_peer
from tests.bench.e2e.report import Results, report
from tests.bench.e2e.runnow import run_runnow
from tests.bench.e2e.target import Children, Target

SCENARIOS = ("burst", "paced", "runnow", "api", "cron")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="jobsd end to end, beside its peers (issue 11)")
    p.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)}; default: all")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="global time limit")
    p.add_argument("--workers", type=int, default=64, help="scheduler.workers = concurrency")
    g = p.add_argument_group("burst")
    g.add_argument("--runs", type=int, default=10_000, help="runs (and peer/bare requests)")
    g.add_argument("--spread-s", type=float, nargs="+", default=[0.0], help="one daemon each")
    g.add_argument("--probe-rate", type=float, default=20.0, help="GET /jobs/{id} per s; 0: none")
    g.add_argument("--no-peers", action="store_true", help="skip APScheduler")
    g.add_argument("--no-bare", action="store_true", help="skip the bare client loops")
    g.add_argument(
        "--worker-processes",
        type=int,
        nargs="+",
        help="[scheduler] worker_processes; one daemon each",
    )
    g.add_argument("--baseline", type=Path, help="also a daemon from this checkout (before)")
    g.add_argument("--profile", type=Path, help="py-spy the daemon; collapsed stacks here")
    g.add_argument("--profile-gil", action="store_true", help="only samples holding the GIL")
    g = p.add_argument_group("paced")
    g.add_argument("--paced-runs", type=int, default=1000)
    g.add_argument("--paced-s", type=float, default=20.0, help="spread the paced runs over this")
    g = p.add_argument_group("runnow")
    g.add_argument("--rate", type=float, default=500.0, help="run-now calls per second")
    g.add_argument("--seconds", type=float, default=20.0, help="for this long")
    g.add_argument(
        "--runnow-baseline", type=Path, help="then the same with a daemon from this checkout"
    )
    g.add_argument("--body", action="store_true", help="send the SDK's body (2026-08-07)")
    g = p.add_argument_group("api")
    g.add_argument("--rounds", type=int, default=6, help="alternating rounds of each server")
    g.add_argument("--round-s", type=float, default=2.0)
    g.add_argument("--connections", type=int, default=16)
    g.add_argument("--api-baseline", type=Path, help="also a daemon from this checkout (before)")
    g = p.add_argument_group("cron")
    g.add_argument("--cron-jobs", type=int, default=1_000_000)
    g.add_argument("--idle-s", type=float, default=10.0)
    return p


def check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    bounds = [
        (1 <= a.runs <= 100_000, "--runs 1..100000"),
        (1 <= a.workers <= 1024, "--workers 1..1024"),
        (len(a.spread_s) <= 4 and all(0 <= s <= 600 for s in a.spread_s), "--spread-s: 4 x 0..600"),
        (1 <= a.paced_runs <= 100_000 and 0 < a.paced_s <= 600, "--paced-runs/--paced-s"),
        (0 < a.rate <= 5000 and 0 < a.seconds <= 300, "--rate 0..5000, --seconds 0..300"),
        (1 <= a.rounds <= 20 and 0 < a.round_s <= 60 and 1 <= a.connections <= 256, "api sizes"),
        (1 <= a.cron_jobs <= 5_000_000 and 0 < a.idle_s <= 120, "--cron-jobs, --idle-s"),
        (0 <= a.probe_rate <= 1000, "--probe-rate 0..1000"),
    ]
    for name in a.scenarios:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}: {', '.join(SCENARIOS)}")
    for ok, what in bounds:
        if not ok:
            p.error(f"out of bounds: {what}")


async def run(a: argparse.Namespace, deadline: float, children: Children, res: Results) -> None:
    wanted = a.scenarios or list(SCENARIOS)
    target = Target()
    children.append(target.proc)
    try:
        with (
            trio.move_on_at(deadline) as scope,
            tempfile.TemporaryDirectory(prefix="jobsd-bench-") as tmp,
        ):
            work = Path(tmp)
            if "burst" in wanted:
                variants = [(p, None) for p in a.worker_processes or [None]]
                variants += [] if a.baseline is None else [(None, a.baseline)]
                for spread in a.spread_s:
                    for processes, code in variants:
                        opts = BurstOptions(
                            a.runs,
                            a.workers,
                            spread,
                            a.probe_rate,
                            a.profile,
                            a.profile_gil,
                            processes=processes,
                            code=code,
                        )
                        await run_burst(target, opts, work, children, res.bursts)
                for client in () if a.no_peers else PEER_CLIENTS:
                    print(f"  peer: APScheduler + {client} ...", flush=True)
                    res.peers.append(await run_peer(target, a.runs, a.workers, client, children))
                if not a.no_bare:
                    await bare_rows(target, a.runs, a.workers, res.bare)
            if "paced" in wanted:
                opts = BurstOptions(a.paced_runs, a.workers, a.paced_s, label="jobsd paced")
                await run_burst(target, opts, work, children, res.paced)
            if "runnow" in wanted:
                for code in [None] if a.runnow_baseline is None else [None, a.runnow_baseline]:
                    got = await run_runnow(
                        target,
                        work,
                        children,
                        rate=a.rate,
                        seconds=a.seconds,
                        workers=a.workers,
                        profile_dir=None if code else a.profile,
                        profile_gil=a.profile_gil,
                        code=code,
                        body=a.body,
                    )
                    if code is None:
                        res.runnow = got
                    else:
                        res.runnow_baseline = got
            if "api" in wanted:
                res.api = await run_api_read(
                    target,
                    work,
                    children,
                    rounds=a.rounds,
                    round_s=a.round_s,
                    connections=a.connections,
                    baseline=a.api_baseline,
                )
            if "cron" in wanted:
                res.cron = await run_cron_ready(
                    target, work, children, jobs=a.cron_jobs, idle_s=a.idle_s
                )
        if scope.cancelled_caught:
            res.notes.append(f"GLOBAL TIMEOUT ({a.timeout_s:g} s): the figures are partial")
    except Exception as exc:  # report what was measured, then say why it stopped
        res.notes.append(f"ABORTED by {type(exc).__name__}: {exc}")
    finally:
        target.close()


def main() -> int:
    p = parser()
    a = p.parse_args()
    check(p, a)
    load_before = load_text()
    children: Children = []
    deadline_mono = time.monotonic() + a.timeout_s

    def watchdog() -> None:
        """Past the deadline plus a minute, something blocks outside trio: end it all."""
        time.sleep(a.timeout_s + 60)
        print("HARD TIMEOUT: killing the children and exiting", file=sys.stderr, flush=True)
        for child in children:
            if child.poll() is None:
                child.kill()
        os._exit(3)

    async def at_deadline() -> None:
        deadline = trio.current_time() + (deadline_mono - time.monotonic())
        await run(a, deadline, children, res)

    threading.Thread(target=watchdog, daemon=True).start()
    res = Results()
    try:
        trio.run(at_deadline)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    headline = (
        f"jobsd end to end: burst {a.runs} runs, workers = concurrency = {a.workers}, "
        "target trio+h11 in its own process"
    )
    print(report(res, load_before, load_text(), headline))
    return 1 if res.problems() or res.notes else 0
