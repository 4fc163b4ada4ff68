"""py-spy attached to the daemon while it fires, and its samples by component.

`--profile DIR` keeps the collapsed stacks in `DIR/jobsd-<label>.collapsed`
and prints the samples by component (delivery, executor awaiting the store,
scheduler, the writer thread's transactions, idle), then the top frames by
self and inclusive samples. Without `--profile-gil`, samples include
threads waiting for the GIL and some waiting py-spy does not recognise as
idle (trio's epoll wait, the writer's `queue.get`: counted apart as idle).
Worker processes, when the daemon has them, are profiled too (`--subprocesses`).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Profiler:
    """py-spy attached to the daemon for the firing phase, if asked for."""

    def __init__(self, out_dir: Path | None, pid: int, label: str, *, gil: bool) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.path: Path | None = None
        self.missing = False
        if out_dir is None:
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            self.missing = True
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / f"jobsd-{label}.collapsed"
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--nonblocking",
                "--threads",
                "--subprocesses",
                "--rate",
                "200",
                "--format",
                "raw",
                "-o",
                str(self.path),
                *(["--gil"] if gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> str:
        if self.proc is None or self.path is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "py-spy did not stop"
        if not self.path.exists():
            return f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}"
        return summarize_profile(self.path)


# Where a sample belongs: the first rule whose marker is on its stack (writer
# rules only for the writer thread). py-spy without --idle drops most idle
# samples but not all: a leaf in trio's epoll wait or the writer's queue.get
# is waiting, not working, so those two are counted apart.
_COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("writer", "fire_slot.<locals>.tx", "writer: fire_slot transactions (scheduler)"),
    ("writer", "claim.<locals>.tx", "writer: claim transactions (incl. decrypting headers)"),
    ("writer", "finish (jobsd/store/runs_sql.py", "writer: finish transactions"),
    ("writer", "Engine._run_batch", "writer: BEGIN/SAVEPOINT/COMMIT, other transactions"),
    ("main", "Delivery.perform", "main: delivery (httpx2 client, connect, close)"),
    # trio runs each connection attempt in its own task, below no Delivery frame.
    ("main", "open_tcp_stream", "main: delivery (httpx2 client, connect, close)"),
    ("main", "SocketStream.", "main: delivery (httpx2 client, connect, close)"),
    ("worker", "Delivery.perform", "workers: delivery (httpx2, connect, close)"),
    ("worker", "open_tcp_stream", "workers: delivery (httpx2, connect, close)"),
    ("worker", "SocketStream.", "workers: delivery (httpx2, connect, close)"),
    ("worker", "jobsd/workers/", "workers: the socket pair (frames, JSON)"),
    ("main", "jobsd/workers/", "main: the socket pair to the workers (frames, JSON)"),
    ("main", "ExecutorPool._execute", "main: executor awaiting the store (claim/finish)"),
    ("main", "Scheduler.", "main: scheduler"),
    ("main", "jobsd/api/", "main: API handlers"),
    ("main", "hypercorn", "main: hypercorn"),
)


def _component(thread: str, frames: list[str]) -> str:
    leaf = frames[-1]
    if thread == "writer" and leaf.startswith("Engine._loop ("):
        return "idle: writer waiting for work (queue.get)"
    if thread in ("main", "worker") and "get_events" in leaf:
        return "idle: trio waiting in epoll"
    for where, marker, name in _COMPONENTS:
        if where == thread and any(marker in frame for frame in frames):
            return name
    return f"{thread}: other (trio run loop, threads, logging ...)"


def summarize_profile(path: Path, top: int = 15) -> str:
    """Samples by component, then the top frames by self and inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # --subprocesses puts the process (and its parents) first: which one it was.
        processes = [f for f in frames if f.startswith("process ")]
        frames = frames[len(processes) :]
        if not frames:
            continue
        total += count
        thread = "writer" if "jobsd-store-writer" in frames[0] else "main"
        if processes and "jobsd.workers.child" in processes[-1]:
            thread = "worker"
        components[_component(thread, frames)] += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
    if not total:
        return "py-spy recorded no samples"

    def lines(counts: Counter[str], n: int) -> list[str]:
        return [f"  {100 * k / total:5.1f}%  {name}" for name, k in counts.most_common(n)]

    out = [f"py-spy: {total} samples, threads not idle ({path})", "by component:"]
    out += lines(components, len(components))
    out += ["self (the frame itself was running):", *lines(own, top)]
    out += ["inclusive (the frame was on the stack):", *lines(inclusive, top)]
    return "\n".join(out)
