"""The worker processes, seen from the daemon: one `Performer` over N children.

The executor pool (`jobsd.executor`) stays in the daemon: it takes a run,
claims it in the store, stamps and signs it there (no signing secret ever
leaves the daemon), and hands the request to `WorkerProcesses.perform`,
which sends it to the least busy live worker (`jobsd.workers.child`; each
one seen from here is a `jobsd.workers.child_link.Child`) and waits for the
outcome, which the executor then records. So the store, the
scheduler, the fair queue and the bound of `workers` runs RUNNING stay where
they were; only the exchange itself, and its CPU, moves to another core.

- Cancel: a cancelled `perform` (a user's cancel, or the end of the stop's
  grace) sends `cancel` for its request before it unwinds; the worker
  cancels that request's scope at once, closing its connection. One whose
  frame is still queued withdraws it instead: never written, nothing sent.
- Death: a worker that exits or breaks the framing has every request it
  held answered FAILED/WORKER_LOST (`child_link.WORKER_LOST_ERROR`, recorded by the
  executors like any outcome, so never retried and never sent again) and is
  replaced; one that dies young is replaced after a growing pause, so a
  worker that cannot start does not spin. Only a frame written whole can
  have reached it (`jobsd.workers.sender`): a run whose frame was still
  queued, or cut short, was never sent and goes to another worker.
- Start: one not ready within `START_WAIT_S` (hung, or stopped, before its
  `ready`) is killed and replaced like one that died young; without this
  it would hold its place, and no replacement come, for good.
- Stuck: a worker enforces each request's timeout itself, so an outcome
  that has not come `STUCK_S` past its run's timeout (from the moment its
  frame is offered, room in the queue or not) means the worker no
  longer runs its loop (a bug that spins without yielding, a process
  stopped): it is killed, which is a death as above. Without this its runs
  would stay RUNNING, and the process keep its share of the work, for good.
  One timer per worker watches the earliest deadline of the runs it holds
  (`Child.expect`), not a deadline scope per run, which every run paid for.
- Stop: when the daemon's actors end (after the executor pool has
  stopped), each worker's pair is closed; a worker exits on end of file,
  and one still there after `child_link.EXIT_WAIT_S` is killed. A daemon killed
  outright closes the pairs too (the kernel does), so no worker outlives it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress

import trio

from jobsd.config import LogConfig
from jobsd.delivery import BODY_CAP_BYTES, BODY_KEEP_BYTES
from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome
from jobsd.workers import wire
from jobsd.workers.child_link import Child, Waiter, lost
from jobsd.workers.sender import QUEUED, WITHDRAWN, WRITTEN

log = logging.getLogger("jobsd.workers")

# How long a run waits for a live worker (one starting takes about half a
# second; a replacement as long, plus its pause).
WORKER_WAIT_S = 30.0
# A worker not ready by then is killed and replaced (one starts in about half
# a second; under a loaded machine a few).
START_WAIT_S = 60.0
YOUNG_S = 10.0
# Past a run's timeout before its worker is taken for stuck: far more than the
# worker needs to notice its own deadline and send its answer under load.
STUCK_S = 30.0
BACKOFF_S = (0.1, 5.0)
NOT_TAKEN_ERROR = "cancelled before any worker process took this run's request; nothing was sent"
# A run whose worker dies before its frame is written goes to another, this
# many times at most: a worker that never reads does not hold it for good.
RESENDS = 3
NEVER_WRITTEN_ERROR = (
    f"the worker processes given this run's request died before it was written to them, "
    f"{1 + RESENDS} times; nothing was sent"
)
_NOT_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def _exit(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"


class WorkerProcesses:
    """`count` worker processes behind one `perform`, each replaced when it dies."""

    def __init__(
        self,
        count: int,
        *,
        allow_cidrs: Sequence[str],
        log: LogConfig,
        workers: int,
        keepalive_s: float = 0.0,
    ) -> None:
        self._count = count
        # Frames one end may queue: every executor's perform, and a cancel each.
        self._capacity = 2 * workers + 16
        self._hello = {
            "kind": "hello",
            "capacity": self._capacity,
            "allow_cidrs": list(allow_cidrs),
            "body_keep_bytes": BODY_KEEP_BYTES,
            "body_cap_bytes": BODY_CAP_BYTES,
            "keepalive_s": keepalive_s,
            "log_format": log.format,
            "log_level": log.level,
        }
        self._children: list[Child] = []
        self._changed = trio.Event()
        self._env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children if c.alive]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep `count` workers until cancelled. Started once each is spawned: the
        workers import and come up meanwhile (a run waits for one in
        `perform`), which costs the daemon's start nothing."""
        async with trio.open_nursery() as nursery:
            for number in range(self._count):
                await nursery.start(self._keep, number)
            task_status.started()

    async def _keep(self, number: int, *, task_status: trio.TaskStatus[None]) -> None:
        pause = BACKOFF_S[0]
        spawned: Callable[[], None] | None = task_status.started
        while True:
            child = await self._start(number, spawned)
            spawned = None
            if child is None:
                await trio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            born = trio.current_time()
            self._children.append(child)
            self._announce()
            try:
                await child.serve(self._capacity)
            finally:
                self._children.remove(child)
                with trio.CancelScope(shield=True):
                    lost, unsent = child.lose_all()
                    code = await child.end()
            log.error(
                "worker process %d (pid %d) %s with %d runs in flight, recorded "
                "FAILED/WORKER_LOST%s; starting another",
                number,
                child.process.pid,
                _exit(code),
                lost,
                f" ({unsent} more not yet sent to it go to another)" if unsent else "",
            )
            if trio.current_time() - born < YOUNG_S:
                await trio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
            else:
                pause = BACKOFF_S[0]

    async def _start(self, number: int, spawned: Callable[[], None] | None) -> Child | None:
        """A new worker, ready; None if it could not start. `spawned` is called
        once the process exists (or could not be made), before it is ready."""
        ours, theirs = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "jobsd.workers.child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=self._env,
            )
        except OSError as exc:
            ours.close()
            log.error("worker process %d could not be started: %s", number, exc)
            return None
        finally:
            theirs.close()
            if spawned is not None:
                spawned()
        child = Child(number, process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        # One that cannot start exits, which ends the read; one that hangs (or
        # was stopped) before its ready would hold its place for good.
        ready: wire.Doc | None = None
        try:
            with trio.move_on_after(START_WAIT_S) as waited:
                await child.stream.send_all(wire.encode(self._hello))
                ready = await child.reader.receive()
            if waited.cancelled_caught:
                log.error(
                    "worker process %d (pid %d) was not ready within %g s: killed",
                    number,
                    process.pid,
                    START_WAIT_S,
                )
                with suppress(ProcessLookupError):
                    process.kill()
        except (wire.FrameError, trio.BrokenResourceError, OSError):
            ready = None
        except BaseException:  # the daemon stops while it starts
            with trio.CancelScope(shield=True):
                await child.end()
            raise
        if ready is not None and ready.get("kind") == "ready":
            log.info("worker process %d (pid %d) ready", number, process.pid)
            return child
        with trio.CancelScope(shield=True):
            code = await child.end()
        log.error(
            "worker process %d (pid %d) never became ready: it %s", number, process.pid, _exit(code)
        )
        return None

    def _announce(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _least_busy(self) -> Child | None:
        best: Child | None = None
        for child in self._children:
            if child.alive and (best is None or len(child.waiting) < len(best.waiting)):
                best = child
        return best

    async def _pick(self) -> Child:
        while (child := self._least_busy()) is None:
            await self._changed.wait()
        return child

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        """The outcome from a worker; FAILED/WORKER_LOST if the worker died meanwhile.

        With a worker live, a run's only wait here is for its outcome: its
        frame is queued at once (`FrameSender.send`). A worker that died
        before the frame was written to it whole never had the request:
        another takes it, as when none was live yet (`RESENDS` times)."""
        for _ in range(1 + RESENDS):
            child = self._least_busy()
            if child is None:
                try:
                    with trio.move_on_after(WORKER_WAIT_S):
                        child = await self._pick()
                except trio.Cancelled:
                    # The stop's grace (or a cancel) ended the wait: no request
                    # left, so the outcome says so and the record gives the meter back.
                    return lost(config, stamp, NOT_TAKEN_ERROR, sent=False)
                if child is None or not child.alive:
                    error = (
                        f"no worker process could take this run's request within "
                        f"{WORKER_WAIT_S:g} s"
                    )
                    return lost(config, stamp, error, sent=False)
            outcome = await self._exchange(child, config, stamp)
            if outcome is not None:
                return outcome
        return lost(config, stamp, NEVER_WRITTEN_ERROR, sent=False)

    async def _exchange(
        self, child: Child, config: HttpConfig, stamp: Sequence[tuple[str, str]]
    ) -> Outcome | None:
        """The request through `child`; None if it died before having it."""
        assert child.sender is not None
        seq = child.next_seq
        child.next_seq += 1
        # Stuck from the moment its frame is offered: a worker that does not read
        # may leave it no room in the queue (`FrameSender.send` waits). The
        # worker's stuck timer kills it then, and its death answers (`lose_all`).
        waiter = Waiter(config, stamp, config.timeout_s + STUCK_S)
        child.expect(seq, waiter)
        try:
            try:
                await child.sender.send(wire.perform_doc(seq, config, stamp), waiter)
            except trio.BrokenResourceError:  # it died while the frame waited for room
                child.waiting.pop(seq, None)
                return None
            return await waiter.wait()
        except BaseException as exc:
            if child.waiting.pop(seq, None) is not None and child.alive:
                if waiter.state == QUEUED:
                    waiter.state = WITHDRAWN  # never written: no cancel needed
                else:
                    child.cancel(seq)
            # Written whole to a worker still alive: whether it was sent is unknown.
            never_sent = waiter.state == WITHDRAWN or (not child.alive and waiter.state != WRITTEN)
            if never_sent and isinstance(exc, trio.Cancelled):
                return lost(config, stamp, NOT_TAKEN_ERROR, sent=False)
            raise
