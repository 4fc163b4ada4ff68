"""The nursery tree: wiring only.

    signals (TERM/INT stop, HUP reload,     from the first moment to the last
             USR1 task tree)
    │   └── reloads                          one at a time, in order; a stop cancels one
    └── store (open_store)                   closes last
        └── actors
            ├── worker processes             perform the requests; end after the pool
            ├── executor pool                stops after the front, with grace
            ├── alerts                       delivers the outbox; cut off at the end
            ├── watchdog pings               while the store answers (store_answers)
            ├── integrity check              once ready; a damaged file stops it, exit 2
            ├── writer watch                 a write connection gone bad stops it, exit 2
            ├── clock watch                  re-anchors on a system clock stepped or slept
            │                                (the system's clock only, not a test's)
            ├── kept connections (tidy)      closes idle keep-alive connections as they
            │                                expire, and all of them at the end
            ├── retention                    prunes run history in small batches
            └── front
                ├── scheduler                stops first: nothing new fires
                └── api (hypercorn)          stops accepting at once

Nesting order is shutdown order. A stop (SIGTERM, SIGINT, or the `stop`
event) runs, in this order and without waiting in between:
1. `/healthz` turns 503 and systemd hears STOPPING=1 (`Lifecycle.begin_stop`),
   and a reload under way is cancelled: its environment sync (seconds to
   tens of seconds over many jobs) stops between two batches, the reloaded
   config stays for the stop, and the next start completes the sync;
2. the API refuses new work: hypercorn closes its listening sockets, so a
   new connection is refused outright (no 503 to retry against), idle
   keep-alive connections are closed, and a request already being handled
   is answered with `Connection: close` (for up to `GRACEFUL_TIMEOUT_S`);
3. the scheduler is cancelled: nothing new fires;
4. the executors stop taking runs (queued runs stay PENDING in the
   database and run after the next start) and running requests get
   `shutdown_grace_s` to finish; those still running are then recorded
   FAILED/WORKER_LOST with an error that says so. The API drains meanwhile,
   so the whole stop takes about `shutdown_grace_s` at most, not the sum;
5. the alert actor is cancelled: alerts being sent stay in the outbox and
   go out after the next start (at least once, same id and body);
6. the worker processes' socket pairs close: each worker, with nothing in
   flight by then, exits on end of file (one still there after 5 s is
   killed), and the daemon reaps it; the daemon's own kept connections
   (`[outbound] keepalive_s`) are closed as the tidy task is cancelled;
7. the store closes and the process exits 0 (2 if the integrity check failed
   or the store's write connection went bad: systemd restarts it).

Worker processes (`[scheduler] worker_processes`, "auto" = one per core but
the daemon's own; `jobsd.workers`): `python -m jobsd.workers.child FD`,
each a trio loop with its own delivery, started beside the actors (a run
waits for a live one) and fed over a socket pair. The executors stay here:
they claim in the store, stamp and sign (no signing secret leaves this
process), hand the request to a worker and record its outcome, so the bound
of `workers` runs RUNNING, the fair queue and exactly-once claims are where
they were. A worker ignores SIGTERM and SIGINT (systemd and a terminal
signal the whole group; only this process decides when a request is
abandoned) and exits when its pair closes, so a daemon killed outright
leaves no worker behind. A worker that dies has its runs recorded
FAILED/WORKER_LOST (those whose request it had; one still queued for it
goes to another) and is replaced. With 0, under a test's MockClock, or
with an injected resolver, this process performs the requests itself.

Refusing connections rather than answering 503 is deliberate: a closed port
is the signal every client and proxy understands, and no request can slip
new work in during the grace. `/healthz` therefore answers 503 only to a
request already under way as the stop begins; everyone else sees the port
closed, as they will during the restart that usually follows.

One `Observer` (metrics and the run/request log lines) is handed to the
store, the scheduler, the alert actor and the API at their seams, and one
`RequestSigner` (the key file's signing secrets, followed live) to the
executors and the alert actor; an account that signs but has no secret
stops the start (`ConfigError`). The store writes alerts with the run ends
that make them (`jobsd.store.outbox`, following the live config through
`jobsd.alert_settings`); the alert actor (`jobsd.alerts`) delivers them with
the executors' `Delivery` (one address policy), but with concurrency of its
own, so alerts never take an executor.

Start: once signals are handled, log lines below WARNING are written a batch
of tasks at a time to the end of the run (`jobsd.log_batching`); recovery first makes the
record true (runs left RUNNING by a crash become FAILED/WORKER_LOST, and
alert as failures; `jobsd.store.recovery`);
the store then syncs each account's environments with the config (one no
longer listed goes dormant and the retries held in it are canceled; every
reload does the same, `JobStore.sync_environments`); a stop asked for by
then ends the start here, exit 0, before anything serves (a stop cuts that
sync short between two batches; the next start completes it); the alert actor
puts back in line alerts a crash left being sent; the executor pool then
starts, and its dispatcher's first act is to read which
accounts have PENDING runs, so runs committed before the restart reach the
workers, oldest first per account, before anything new is fired or accepted
(`jobsd.dispatch`). systemd hears READY=1 only once `/healthz` answers 200
(the API is bound and every actor runs; `Lifecycle.mark_ready`); only then
does `PRAGMA quick_check` read the whole file, off the start's critical
path (`jobsd.store.integrity`). SIGHUP reloads accounts, plans and tokens
(`jobsd.reload`) in a task of its own, so a SIGTERM meanwhile is read and
acted on at once. Signal handling, the start's recovery and sync (`settle`)
and the stop's first step live in `jobsd.lifecycle`; notify in `jobsd.notify`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from jobsd import signing_secrets
from jobsd.address_policy import AddressPolicy
from jobsd.alert_settings import LiveAlertSettings
from jobsd.alerts import AlertSender
from jobsd.api.context import ApiContext
from jobsd.api.server import run_api
from jobsd.clock import Clock
from jobsd.clock_watch import telling, watch_clock
from jobsd.config import Config
from jobsd.crypto import KeyRing
from jobsd.delivery import Delivery, Resolver
from jobsd.dispatch import Dispatcher, lane_depth
from jobsd.executor import ExecutorPool, Performer
from jobsd.fairqueue import account_cap
from jobsd.lifecycle import (
    Lifecycle,
    check_store,
    essential,
    run_scheduler,
    run_signals,
    settle,
    store_answers,
    watch_writer,
)
from jobsd.log_batching import batch_in_this_run
from jobsd.messages import CancelRun, SchedulerNews
from jobsd.notify import Notifier, run_watchdog
from jobsd.observer import Observer
from jobsd.reload import (
    Reloader,
    file_as_started,
    runs_included_now,
    signs_requests_now,
)
from jobsd.retention import run_retention
from jobsd.scheduler import Scheduler
from jobsd.settings import Health, Settings
from jobsd.signing_secrets import RequestSigner
from jobsd.store import open_store
from jobsd.workers.count import worker_processes

log = logging.getLogger("jobsd")

CHANGES_BUFFER = 1_024


@dataclass
class DaemonOptions:
    config: Config
    config_path: Path | None = None
    announce: Callable[[list[str]], None] = lambda bound: None
    notifier: Notifier = field(default_factory=Notifier.from_environ)
    resolver: Resolver | None = None
    clock: Clock | None = None


async def run_daemon(
    options: DaemonOptions,
    stop: trio.Event | None = None,
    *,
    task_status: trio.TaskStatus[ApiContext] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = options.config
    lifecycle = Lifecycle(
        Health(),
        options.notifier,
        trio.Event() if stop is None else stop,
        config.scheduler.shutdown_grace_s,
    )
    settings = Settings(config)
    baseline = await file_as_started(config, options.config_path)
    reloader = Reloader(settings, options.config_path, options.notifier, baseline)
    async with trio.open_nursery() as signals:
        await signals.start(run_signals, lifecycle, reloader)
        # From here a SIGTERM is a stop that ends the run, which writes what is kept.
        batch_in_this_run()  # log lines below WARNING: a write per batch of tasks
        await _serve(options, settings, reloader, lifecycle, task_status)
        signals.cancel_scope.cancel()
    log.info("stopped")
    if lifecycle.failure is not None:
        raise lifecycle.failure


async def _serve(
    options: DaemonOptions,
    settings: Settings,
    reloader: Reloader,
    lifecycle: Lifecycle,
    task_status: trio.TaskStatus[ApiContext],
) -> None:
    config = options.config
    clock = options.clock or Clock()
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    signing = signing_secrets.load(config.secrets.key_file)
    signing_secrets.check_accounts(config, signing)
    observer = Observer(settings)
    signer = RequestSigner(
        signing_secrets.LiveSigningSecrets(config.secrets.key_file, signing),
        signs_requests_now(settings),
        clock,
    )
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](CHANGES_BUFFER)
    cancels_tx, cancels_rx = trio.open_memory_channel[CancelRun](CHANGES_BUFFER)
    allow = [str(n) for n in config.outbound.allow_cidrs]
    keepalive_s = config.outbound.keepalive_s
    delivery = Delivery(AddressPolicy(allow), resolver=options.resolver, keepalive_s=keepalive_s)
    alert_settings = LiveAlertSettings(settings)
    processes = worker_processes(config, resolver=options.resolver)
    performer: Performer = delivery if processes is None else processes
    async with open_store(
        config.storage.path,
        keyring,
        clock,
        changes_tx,
        observer,
        default_environments=config.default_environments(),
        alert_policies=alert_settings,
        serving=True,
    ) as store:
        if not await settle(store, clock, observer, settings, reloader, lifecycle):
            return
        workers = config.scheduler.workers
        dispatcher = Dispatcher(
            store.runs,
            depth=lane_depth(workers),
            cap=lambda: account_cap(workers, len(settings.config.accounts)),
        )
        pool = ExecutorPool(
            store.runs,
            performer,
            runs_included_now(settings),
            workers=workers,
            dispatcher=dispatcher,
            cancels=cancels_rx,
            signer=signer,
        )
        scheduler = Scheduler(
            store.runs,
            clock,
            dispatcher,
            changes_rx,
            misfire_grace_s=config.scheduler.misfire_grace_s,
            fired_late=observer.fired_late,
        )
        assert store.alerts is not None
        alerts = AlertSender(
            store.outbox,
            store.alerts,
            delivery,
            alert_settings.target_of,
            clock,
            signer=signer,
            metrics=observer,
        )
        ctx = ApiContext(store, settings, dispatcher, cancels_tx, lifecycle.health, observer)
        async with trio.open_nursery() as actors:
            # Closes kept connections as they expire, and all of them at the stop.
            actors.start_soon(delivery.idle.tidy)
            actors.start_soon(watch_writer, store, lifecycle)
            if options.clock is None:  # the system's clock: follow it (a test's is its own)
                actors.start_soon(watch_clock, clock, telling(changes_tx))
            await actors.start(essential, "alert sender", lifecycle, alerts.run)
            if processes is not None:
                await actors.start(essential, "worker processes", lifecycle, processes.run)
            await actors.start(essential, "executor pool", lifecycle, pool.run)
            retention = partial(run_retention, store.retention, config.retention, clock)
            await actors.start(essential, "retention", lifecycle, retention)
            async with trio.open_nursery() as front:
                scheduler_scope = trio.CancelScope()
                await front.start(run_scheduler, scheduler_scope, scheduler, lifecycle)
                bound: list[str] = await front.start(
                    essential,
                    "API server",
                    lifecycle,
                    run_api,
                    ctx,
                    config.server,
                    lifecycle.stop.wait,
                )
                lifecycle.mark_ready(bound)
                actors.start_soon(check_store, store, lifecycle)
                await actors.start(run_watchdog, options.notifier, partial(store_answers, store))
                options.announce(bound)
                task_status.started(ctx)
                await lifecycle.stop.wait()
                lifecycle.begin_stop("asked to stop")
                scheduler_scope.cancel()
                await pool.stop(config.scheduler.shutdown_grace_s)
            actors.cancel_scope.cancel()
