"""The nursery tree and signal handling: wiring only.

    store (open_store)                       closes last
    └── nursery
        ├── executor pool                    stops after the front, with grace
        ├── signals (TERM/INT stop, HUP reload), watchdog pings
        └── front
            ├── scheduler                    stops first: nothing new fires
            └── api (hypercorn)              stops accepting at once

Nesting order is shutdown order. On SIGTERM/SIGINT `/healthz` turns 503 and
systemd hears STOPPING=1, the API stops accepting and the scheduler stops,
running requests get `shutdown_grace_s`, the ones still running are
recorded WORKER_LOST, and the store closes; the process then exits 0.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from jobsd.address_policy import AddressPolicy
from jobsd.api.context import ApiContext, Health, Settings
from jobsd.api.server import run_api
from jobsd.clock import Clock, to_us
from jobsd.config import Config, load_config
from jobsd.crypto import KeyRing
from jobsd.delivery import Delivery, Resolver
from jobsd.errors import ConfigError
from jobsd.executor import ExecutorPool
from jobsd.messages import CancelRun, JobChanged, RunOrder
from jobsd.notify import Notifier
from jobsd.scheduler import Scheduler
from jobsd.store import open_store
from jobsd.store.recovery import recover

log = logging.getLogger("jobsd")

INTAKE_BUFFER = 10_000
CHANGES_BUFFER = 1_024


@dataclass
class DaemonOptions:
    config: Config
    config_path: Path | None = None
    announce: Callable[[list[str]], None] = lambda bound: None
    notifier: Notifier = field(default_factory=Notifier)
    resolver: Resolver | None = None
    clock: Clock | None = None


def _reload(settings: Settings, path: Path | None, notifier: Notifier) -> None:
    """Swap in the file's accounts, plans and tokens; keep the old on any error."""
    if path is None:
        log.warning("SIGHUP ignored: jobsd runs on built-in defaults, there is no file to reload")
        return
    notifier.reloading()
    try:
        fresh = load_config(path)
    except ConfigError as exc:
        log.error("reload refused, the running config stays: %s", exc)
    else:
        old = settings.config
        kept = {
            k
            for k in ("server", "storage", "secrets", "scheduler", "outbound", "retention")
            if getattr(fresh, k) != getattr(old, k)
        }
        if kept:
            log.warning(
                "reload: %s changed and take effect at the next restart", ", ".join(sorted(kept))
            )
        settings.config = old.model_copy(update={"plans": fresh.plans, "accounts": fresh.accounts})
        log.info("reloaded accounts, plans and tokens from %s", path)
    notifier.ready("reloaded")


async def _handle_signals(
    stop: trio.Event,
    settings: Settings,
    path: Path | None,
    notifier: Notifier,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                _reload(settings, path, notifier)
            else:
                log.info("received %s: stopping", signal.Signals(signum).name)
                stop.set()


async def _feed(intake: trio.MemorySendChannel[RunOrder], run_ids: tuple[str, ...]) -> None:
    """Hand the runs recovery found PENDING to the pool, oldest first."""
    for run_id in run_ids:
        await intake.send(RunOrder(run_id))


async def _watchdog(notifier: Notifier) -> None:
    if notifier.watchdog_s is None:
        return
    while True:
        notifier.watchdog()
        await trio.sleep(notifier.watchdog_s / 3)


async def run_daemon(
    options: DaemonOptions,
    stop: trio.Event | None = None,
    *,
    task_status: trio.TaskStatus[ApiContext] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = options.config
    stop = trio.Event() if stop is None else stop
    clock = options.clock or Clock()
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    settings = Settings(config)
    health = Health()
    changes_tx, changes_rx = trio.open_memory_channel[JobChanged](CHANGES_BUFFER)
    orders_tx, orders_rx = trio.open_memory_channel[RunOrder](config.scheduler.workers)
    intake_tx, intake_rx = trio.open_memory_channel[RunOrder](INTAKE_BUFFER)
    cancels_tx, cancels_rx = trio.open_memory_channel[CancelRun](CHANGES_BUFFER)
    delivery = Delivery(
        AddressPolicy([str(n) for n in config.outbound.allow_cidrs]), resolver=options.resolver
    )

    def runs_included_of(account_id: str) -> int:
        current = settings.config
        for account in current.accounts:
            if account.id == account_id:
                return current.plan_of(account).runs_included
        return 0  # an account removed from the config may no longer spend runs

    async with open_store(config.storage.path, keyring, clock, changes_tx) as store:
        recovery = await recover(store.engine, to_us(clock.now()))
        if recovery.lost or recovery.canceled or recovery.pending:
            log.info(
                "recovery: %d runs lost in flight, %d canceled, %d pending to run",
                recovery.lost,
                recovery.canceled,
                len(recovery.pending),
            )
        pool = ExecutorPool(
            store.runs,
            delivery,
            runs_included_of,
            workers=config.scheduler.workers,
            orders=orders_rx,
            forward_to=orders_tx,
            intake=intake_rx,
            cancels=cancels_rx,
        )
        scheduler = Scheduler(
            store.runs,
            clock,
            orders_tx,
            changes_rx,
            misfire_grace_s=config.scheduler.misfire_grace_s,
        )
        ctx = ApiContext(store, settings, intake_tx, cancels_tx, health)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            nursery.start_soon(_feed, intake_tx, recovery.pending)
            await nursery.start(
                _handle_signals, stop, settings, options.config_path, options.notifier
            )
            async with trio.open_nursery() as front:
                scheduler_scope = trio.CancelScope()

                async def scheduler_task(
                    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                ) -> None:
                    with scheduler_scope:
                        await scheduler.run(task_status=task_status)

                await front.start(scheduler_task)
                bound: list[str] = await front.start(run_api, ctx, config.server, stop.wait)
                health.ready = True
                options.notifier.ready(f"serving on {', '.join(bound)}")
                nursery.start_soon(_watchdog, options.notifier)
                options.announce(bound)
                task_status.started(ctx)
                await stop.wait()
                health.stopping = True
                options.notifier.stopping()
                scheduler_scope.cancel()
            await pool.stop(config.scheduler.shutdown_grace_s)
            nursery.cancel_scope.cancel()
    log.info("stopped")
