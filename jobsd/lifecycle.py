"""Starting, stopping and reloading: the signals and the moments they mark.

`Lifecycle` owns the one `stop` event and what must happen the instant a
stop begins, before any actor winds down: `/healthz` turns 503 and systemd
hears STOPPING=1. The signal task calls `begin_stop` itself, so those two
happen in the same step as the signal is read; an embedding caller (tests)
that sets the event directly gets them as soon as the daemon wakes.

Signals are received from the very start of the daemon, so a SIGTERM that
arrives while the database is being opened or recovered still ends in a
clean exit 0 instead of the default death by signal. A second SIGTERM or
SIGINT while stopping is only logged: the stop is already bounded by
`shutdown_grace_s`, and systemd's TimeoutStopSec is the backstop.

Reloads run in a task of their own, one at a time and in order, so the
signal task is never blocked by one: a reload's environment sync takes
seconds over 100,000 jobs (tens over a million), and a SIGTERM read only
once it ended let the stop overrun `shutdown_grace_s`. A stop, whatever
asks for it, cancels the reload under way (`begin_stop`); the sync stops
between two batches (a handed-over write still completes), the reloaded
config stays in force for the stop, and the next start completes the sync
from the file before serving (`jobsd.reload`, `jobsd.store.env_sync`).
That sync at start is cut short by a stop the same way (`cut_by_stop`):
the daemon then exits 0 without serving, and the start after completes it.
SIGHUP while stopping is ignored, and so is one still waiting its turn.

`essential` wraps actors that must run for as long as the daemon serves:
one that returns while no stop was asked for is a bug, and raising brings
the daemon down (systemd restarts it) instead of serving half a daemon.

`watch_writer` does the same for a write connection that could not roll
back a failed write. `check_store` runs the file's integrity check once the daemon serves
(`jobsd.store.integrity`); a damaged file is not a bug but a refusal: it
is logged as CRITICAL and stops the daemon the ordinary way (grace for
runs in flight), and `run_daemon` then raises it, so the process exits 2
with the guidance, as a refusal at start does.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import trio

from jobsd.clock import Clock, to_us
from jobsd.errors import StorageError, is_store_busy
from jobsd.notify import Notifier
from jobsd.observer import Observer
from jobsd.reload import Reloader, environments_of
from jobsd.scheduler import Scheduler
from jobsd.settings import Health, Settings
from jobsd.store import Store, integrity
from jobsd.store.recovery import recover
from jobsd.taskdump import log_task_tree

log = logging.getLogger("jobsd")

# Time beyond shutdown_grace_s that a stop may need: recording abandoned runs,
# closing the store, and the interpreter's exit. Told to systemd on STOPPING=1.
STOP_MARGIN_S = 15.0


class Lifecycle:
    def __init__(
        self, health: Health, notifier: Notifier, stop: trio.Event, shutdown_grace_s: float
    ) -> None:
        self.health = health
        self.notifier = notifier
        self.stop = stop
        self._grace_s = shutdown_grace_s
        self.failure: StorageError | None = None  # why to exit 2 once stopped
        self._cut_by_stop: set[trio.CancelScope] = set()  # reloads, the start's sync

    @property
    def stopping(self) -> bool:
        return self.health.stopping

    def begin_stop(self, why: str) -> None:
        """Idempotent: the first call turns health to 503 and tells systemd."""
        if not self.health.stopping:
            self.health.stopping = True
            log.info("stopping (%s): in-flight runs get up to %g s", why, self._grace_s)
            self.notifier.stopping(f"stopping ({why})", extend_s=self._grace_s + STOP_MARGIN_S)
        for scope in self._cut_by_stop:
            scope.cancel()
        self.stop.set()

    @contextmanager
    def cut_by_stop(self) -> Iterator[trio.CancelScope]:
        """A scope `begin_stop` cancels: work that may stop between its steps
        because the next start redoes it (a reload, the environment sync)."""
        with trio.CancelScope() as scope:
            if self.stopping:
                scope.cancel()
            self._cut_by_stop.add(scope)
            try:
                yield scope
            finally:
                self._cut_by_stop.discard(scope)

    def mark_ready(self, bound: list[str]) -> None:
        """Called once `/healthz` would answer 200; only then may systemd hear READY=1."""
        self.health.ready = True
        if not self.health.stopping:  # READY=1 after STOPPING=1 would confuse systemd
            self.notifier.ready(f"serving on {', '.join(bound)}")


async def check_store(store: Store, lifecycle: Lifecycle) -> None:
    """The integrity check, once; a damaged file stops the daemon (see above)."""
    try:
        await integrity.check(store.engine.open_reader)
    except StorageError as exc:
        log.critical("stopping: %s", exc)
        lifecycle.failure = exc
        lifecycle.begin_stop("the database failed its integrity check")


async def watch_writer(store: Store, lifecycle: Lifecycle) -> None:
    """A write connection gone bad stops the daemon as a damaged file does:
    CRITICAL, the ordinary stop, exit 2, and systemd's restart reopens the
    file (`jobsd.store.engine`). Writes in the stop fail with the same error
    and are told so; runs they could not record are RUNNING in the file,
    and the next start records them as a crash's."""
    exc = await store.engine.broken()
    log.critical("stopping: %s", exc)
    lifecycle.failure = exc
    lifecycle.begin_stop("the database can no longer be written")


async def run_signals(
    lifecycle: Lifecycle,
    reloader: Reloader,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """TERM and INT stop, HUP reloads (one at a time, in order), USR1 logs the task tree."""
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
    # One reload waiting is enough: it reads the file as it is when its turn comes.
    wanted_tx, wanted_rx = trio.open_memory_channel[None](1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_reloads, lifecycle, reloader, wanted_rx)
        with trio.open_signal_receiver(*handled) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGUSR1:
                    log_task_tree("received SIGUSR1")
                elif signum != signal.SIGHUP:
                    if lifecycle.stopping:
                        log.info("received %s while stopping: the stop is already under way", name)
                    lifecycle.begin_stop(f"received {name}")
                elif lifecycle.stopping:
                    log.info("received SIGHUP while stopping: ignored")
                else:
                    with suppress(trio.WouldBlock):  # one already waits its turn
                        wanted_tx.send_nowait(None)


async def _reloads(
    lifecycle: Lifecycle, reloader: Reloader, wanted: trio.MemoryReceiveChannel[None]
) -> None:
    """The reloads asked for, in turn, each in a scope a stop cancels."""
    async for _ in wanted:
        if lifecycle.stopping:
            log.info("received SIGHUP while stopping: ignored")
            continue
        with lifecycle.cut_by_stop():
            await reloader.reload()


async def essential(
    name: str,
    lifecycle: Lifecycle,
    actor: Callable[..., Awaitable[Any]],
    *args: Any,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `actor(*args, task_status=...)`; its return before a stop is an error."""
    await actor(*args, task_status=task_status)
    if not lifecycle.stop.is_set():
        raise RuntimeError(f"the {name} stopped while jobsd was not stopping")


async def run_scheduler(
    scope: trio.CancelScope,
    scheduler: Scheduler,
    lifecycle: Lifecycle,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The scheduler as an essential actor inside `scope`, which a stop cancels first."""
    with scope:
        await essential("scheduler", lifecycle, scheduler.run, task_status=task_status)


def _round_trip(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()


async def store_answers(store: Store) -> None:
    """The watchdog's probe: one transaction through the store's only writer thread.

    Its answer comes back on the event loop, so it proves the loop, the
    writer thread and SQLite all move; a wedged writer would also wedge
    every claim, finish and fire. The scheduler and the executors are not
    probed: they may wait for long, legitimately (a full pool holds the
    scheduler back, a run may take its whole timeout), and if either dies
    the daemon dies with it (`essential`), which stops the pings too.

    SQLite's word that another process keeps the database locked past the
    busy timeout is an answer too: the loop, the writer thread and SQLite
    all moved to give it. Raised, it ended the daemon (exit 2) whenever an
    operator's `sqlite3` shell held the lock 5 s under systemd's watchdog.
    """
    try:
        await store.engine.write(_round_trip)
    except sqlite3.OperationalError as exc:
        if not is_store_busy(exc):
            raise


async def settle(
    store: Store,
    clock: Clock,
    observer: Observer,
    settings: Settings,
    reloader: Reloader,
    lifecycle: Lifecycle,
) -> bool:
    """Make the record true before any actor starts: the runs a crash left
    RUNNING ended, each account's environment rows in line with the file
    (cut short by a stop between two batches: the next start completes it).
    False if a stop was asked for by then: the daemon does not serve."""
    await recover(store.engine, to_us(clock.now()), store.alerts, observer)
    with lifecycle.cut_by_stop() as syncing:
        await store.jobs.sync_environments(environments_of(settings.config), announce=False)
    if syncing.cancelled_caught:
        log.warning("the environment sync was interrupted by the stop; the next start completes it")
    reloader.after_reload(lambda fresh: store.jobs.sync_environments(environments_of(fresh)))
    if lifecycle.stop.is_set():
        log.info("asked to stop while starting: not serving")
        return False
    return True
