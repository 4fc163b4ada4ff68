"""The printed report: the burst table, each scenario's figures, and one table of goals.

Every goal of issue 11 is a line with its figure, the goal, and whether it
is met; a scenario that did not run shows `-`. Ratios are of rows measured
in the same invocation, side by side, on the same machine.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field

from tests.bench.e2e.api_read import ApiRead
from tests.bench.e2e.bare import H11_FRESH
from tests.bench.e2e.burst import Burst
from tests.bench.e2e.cron_ready import CronReady
from tests.bench.e2e.figures import Row, pct, table, triple
from tests.bench.e2e.paced import Paced
from tests.bench.e2e.peers import peer_name
from tests.bench.e2e.runnow import RunNow

PRIMARY_PEER = peer_name("aiohttp")


@dataclass
class Results:
    bursts: list[Burst] = field(default_factory=list)
    peers: list[Row] = field(default_factory=list)
    bare: list[Row] = field(default_factory=list)
    paced: list[Burst] = field(default_factory=list)
    runnow: RunNow | None = None
    runnow_baseline: RunNow | None = None
    api: ApiRead | None = None
    cron: CronReady | None = None
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[Row]:
        return [b.row for b in self.bursts + self.paced] + self.peers + self.bare

    def problems(self) -> list[str]:
        out = [f"[{r.name}] {p}" for r in self.rows() for p in r.problems]
        parts = (
            ("runnow", self.runnow),
            ("runnow before", self.runnow_baseline),
            ("api", self.api),
            ("cron", self.cron),
        )
        for name, part in parts:
            if part is not None:
                out += [f"[{name}] {p}" for p in part.problems]
        return out


def _rate_of(rows: list[Row], name: str) -> float:
    return next((r.rate for r in rows if r.name == name), math.nan)


def goals(res: Results) -> list[tuple[str, float, str, bool | None]]:
    """(figure, value, goal, met) for every goal of the issue."""
    burst = res.bursts[0] if res.bursts else None
    j_rate = burst.row.rate if burst else math.nan
    nan = math.nan
    probe = burst.probe if burst else None
    runnow = res.runnow
    paced = res.paced[0] if res.paced else None
    cron = res.cron
    idle_ms_per_s = cron.idle_cpu_s * 1000 / cron.idle_s if cron else nan
    figures = [
        (
            f"burst: jobsd ÷ {PRIMARY_PEER} runs/s",
            j_rate / _rate_of(res.peers, PRIMARY_PEER),
            ">= 1.5",
        ),
        (f"burst: jobsd ÷ bare {H11_FRESH}", j_rate / _rate_of(res.bare, H11_FRESH), ">= 0.5"),
        ("burst: daemon CPU ms per run", burst.row.cpu_ms_per_run if burst else nan, "<= 0.5"),
        ("burst: GET /jobs/{id} p99 ms", pct(probe.latency_ms, 99) if probe else nan, "<= 50"),
        (
            "run-now: started_at - created_at p99 ms",
            pct(runnow.pending_ms, 99) if runnow else nan,
            "<= 100",
        ),
        ("run-now: API p99 ms", pct(runnow.api.latency_ms, 99) if runnow else nan, "<= 50"),
        ("api: GET /jobs/{id} ÷ hello-world req/s", res.api.ratio if res.api else nan, ">= 0.8"),
        ("paced: lateness p99 ms", pct(paced.row.lateness_ms, 99) if paced else nan, "<= 10"),
        (f"cron: {cron.jobs if cron else 0} jobs ready s", cron.ready_s if cron else nan, "<= 2"),
        ("cron: RSS MiB (after idle)", cron.rss_idle_mib if cron else nan, "<= 100"),
        ("cron: idle CPU ms per s", idle_ms_per_s, "<= 10"),
    ]
    out = []
    for name, value, goal in figures:
        op, bound = goal.split()
        met = (
            None
            if math.isnan(value)
            else (value >= float(bound) if op == ">=" else value <= float(bound))
        )
        out.append((name, value, goal, met))
    return out


def _probe_line(probe: Paced) -> str:
    return (
        f"  GET /jobs/{{id}} while firing: {len(probe.latency_ms)} of {probe.offered} answered, "
        f"ms p50 p99 max {triple(probe.latency_ms)}, statuses {dict(probe.statuses)}"
    )


def _burst_lines(b: Burst) -> list[str]:
    lines = [
        "",
        f"{b.row.name}:",
        f"  create-job API: {b.create_rate:.0f} jobs/s, daemon CPU {b.create_cpu_ms:.2f} ms/job",
        f"  fire lag ms p50 p99 max {triple(b.fire_lag_ms)}  (created_at - scheduled_for)",
        f"  queue    ms p50 p99 max {triple(b.queue_ms)}  (started_at - created_at)",
        f"  runs inserted at {b.fire_rate:.0f}/s; last finished {b.finish_span_s:.2f} s "
        "after the last instant",
    ]
    if b.probe is not None:
        lines.append(_probe_line(b.probe))
    lines += [f"  note: {n}" for n in b.notes]
    return lines


def report(res: Results, load_before: str, load_after: str, headline: str) -> str:
    out = [
        "",
        headline,
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average before {load_before}, after {load_after}",
    ]
    rows = res.rows()
    if rows:
        out += ["", table(rows)]
        for b in res.bursts:
            parts = [
                f"÷ {r.name}: {b.row.rate / r.rate:.2f}" for r in res.peers + res.bare if r.rate > 0
            ]
            out.append(f"{b.row.name} runs/s " + "; ".join(parts))
        for b in res.bursts + res.paced:
            out += _burst_lines(b)
    for rn in (r for r in (res.runnow, res.runnow_baseline) if r is not None):
        out += [
            "",
            f"run-now ({rn.label}{', SDK body' if rn.body else ''}) offered at "
            f"{rn.rate:g}/s for {rn.seconds:g} s: "
            f"{rn.api.offered} offered, answers {dict(rn.api.statuses)}, "
            f"{rn.succeeded}/{rn.runs} runs SUCCEEDED",
            f"  API latency ms p50 p99 max {triple(rn.api.latency_ms)}",
            f"  started_at - created_at ms p50 p99 max {triple(rn.pending_ms)}",
            f"  daemon CPU {rn.cpu_ms_per_run:.2f} ms per run (API call, run, record)",
        ]
        if rn.store:
            out.append(f"  {rn.store}")
    if res.runnow is not None and (old_rn := res.runnow_baseline) is not None:
        out.append(
            f"run-now daemon CPU per run, after / before ({old_rn.label}): "
            f"{res.runnow.cpu_ms_per_run:.2f} / {old_rn.cpu_ms_per_run:.2f} ms = "
            f"{res.runnow.cpu_ms_per_run / old_rn.cpu_ms_per_run:.2f}"
        )
    if res.api is not None:
        out += [
            "",
            "API reads, alternating rounds:",
            "  " + res.api.jobsd.line(),
            "  " + res.api.hello.line(),
            f"  ratio jobsd ÷ hello: {res.api.ratio:.2f} req/s, "
            f"{res.api.jobsd.cpu_ms / res.api.hello.cpu_ms:.2f} CPU per request",
        ]
        if (old := res.api.baseline) is not None:
            out += [
                "  " + old.line(),
                f"  ratio {old.name} ÷ hello: {old.rate / res.api.hello.rate:.2f} req/s, "
                f"{old.cpu_ms / res.api.hello.cpu_ms:.2f} CPU per request",
            ]
    if res.cron is not None:
        c = res.cron
        out += [
            "",
            f"{c.jobs} enabled cron jobs: ready in {c.ready_s:.2f} s, RSS {c.rss_ready_mib:.0f} "
            f"MiB at ready, {c.rss_idle_mib:.0f} MiB after {c.idle_s:g} s idle, idle CPU "
            f"{c.idle_cpu_s * 1000:.0f} ms over {c.idle_s:g} s (after the integrity check, "
            f"which ended {c.check_s:.2f} s after ready, {c.check_cpu_s * 1000:.0f} ms CPU)",
        ]
    out += ["", "goals (issue 11):"]
    for name, value, goal, met in goals(res):
        verdict = "-" if met is None else ("met" if met else "NOT MET")
        out.append(f"  {name:<48} {value:9.2f}  goal {goal:<7} {verdict}")
    out += [f"PROBLEM {p}" for p in res.problems()]
    out += [f"NOTE: {n}" for n in res.notes]
    out += [b.profile for b in res.bursts if b.profile]
    if res.runnow is not None and res.runnow.profile:
        out.append(res.runnow.profile)
    return "\n".join(out)
