"""Figures from lists and from /proc: percentiles, CPU seconds, RSS.

CPU is read from /proc rather than timed: on a 2-core machine shared with
other work, the CPU a process spends per request moves much less than
wall-clock rates do. A daemon that runs worker processes is measured as
its whole process tree (live descendants, plus what exited children left
in the parent's `cutime`/`cstime`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def triple(values: list[float]) -> str:
    """p50, p99 and max, for a table cell."""
    if not values:
        return f"{'-':>20}"
    return f"{pct(values, 50):6.1f} {pct(values, 99):6.1f} {max(values):6.0f}"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process, all its threads."""
    fields = _stat_fields(pid)
    if fields is None:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children() -> dict[int, list[int]]:
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            by_parent.setdefault(int(fields[1]), []).append(int(entry.name))
    return by_parent


def tree_pids(pid: int) -> list[int]:
    """`pid` and its live descendants."""
    by_parent = _children()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(by_parent.get(current, []))
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process tree: every live process, and reaped children's."""
    total = 0.0
    for member in tree_pids(pid):
        fields = _stat_fields(member)
        if fields is not None:
            total += sum(int(f) for f in fields[11:15]) / CLK_TCK
    return total if total or _stat_fields(pid) else math.nan


def rss_mib(pid: int) -> float:
    """Resident memory of a process tree, MiB (VmRSS summed)."""
    total_kib = 0
    for member in tree_pids(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass
class Row:
    """One variant of the burst: what it delivered, how fast, at what CPU."""

    name: str
    count: int = 0
    ok: int = 0
    elapsed_s: float = math.nan
    lateness_ms: list[float] = field(default_factory=list)
    exchange_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = math.nan
    target_cpu_s: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def cpu_ms_per_run(self) -> float:
        return self.client_cpu_s * 1000 / max(self.ok, 1)


def table(rows: list[Row]) -> str:
    head = (
        f"{'variant':<34} {'ok/n':>11} {'runs/s':>7}  {'lateness ms p50 p99 max':>23}"
        f"  {'exchange ms p50 p99 max':>23}  {'CPU ms/req':>10} {'target':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        per = max(row.ok, 1)
        lines.append(
            f"{row.name:<34} {f'{row.ok}/{row.count}':>11} {row.rate:7.0f}"
            f"  {triple(row.lateness_ms):>23}  {triple(row.exchange_ms):>23}"
            f"  {row.cpu_ms_per_run:10.2f} {row.target_cpu_s * 1000 / per:6.2f}"
        )
    return "\n".join(lines)
