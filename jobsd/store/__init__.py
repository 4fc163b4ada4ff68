"""The store: the one owner of SQLite.

`open_store` makes the files private (`jobsd.store.files`), applies numbered
migrations, starts the writer thread, and yields a `Store` whose `jobs`,
`runs`, `policies` and `retention` parts expose typed awaitables. It closes last, after
every actor that might still write has stopped. The file's integrity check
runs once the daemon serves, not here (`jobsd.store.integrity`).

An observer, when given, hears of every committed batch and of every run
that ended (`jobsd.store.ends`): metrics and the run log line. With
`alert_policies`, run ends write their alerts in the same transaction
(`jobsd.store.outbox`), and `outbox` is the alert actor's side of them.

A key ring read from a key file is followed (`jobsd.store.keyring`): the
store picks up a key added by `jobsd rotate-key` without a restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.messages import SchedulerNews
from jobsd.store import exclusive
from jobsd.store.claims import Claim
from jobsd.store.ends import RunObserver
from jobsd.store.engine import Engine
from jobsd.store.files import make_private
from jobsd.store.jobs import JobStore
from jobsd.store.keyring import Sealer, follow
from jobsd.store.outbox import AlertCounter, AlertPolicies, AlertRecorder
from jobsd.store.outbox_queue import OutboxStore
from jobsd.store.ownership import check_not_foreign
from jobsd.store.policies import RetryPolicyStore
from jobsd.store.retention import RetentionStore
from jobsd.store.run_stats import StatsStore
from jobsd.store.runs import RunStore
from jobsd.store.schema import migrate
from jobsd.store.slots import DueJob


class StoreObserver(RunObserver, AlertCounter, Protocol):
    """Told of every committed batch (from the writer thread), of runs that
    ended, and of alerts dropped as they were written."""

    def store_batch(self, size: int, seconds: float) -> None: ...


@dataclass(frozen=True)
class Store:
    jobs: JobStore
    runs: RunStore
    engine: Engine
    retention: RetentionStore
    stats: StatsStore
    policies: RetryPolicyStore
    outbox: OutboxStore
    alerts: AlertRecorder | None = None


@asynccontextmanager
async def open_store(
    path: Path,
    keyring: KeyRing | Sealer,
    clock: Clock,
    changes: trio.MemorySendChannel[SchedulerNews] | None = None,
    observer: StoreObserver | None = None,
    *,
    default_environments: Mapping[str, str] | None = None,
    alert_policies: AlertPolicies | None = None,
    serving: bool = False,
) -> AsyncIterator[Store]:
    """`default_environments`: account id -> default environment, for migration 3.
    `alert_policies`: which accounts' run ends make alerts (None: none do).
    `serving`: a daemon's store, the only one on this file (`jobsd.store.exclusive`)."""
    check_not_foreign(path)  # before its mode or journal mode is changed
    make_private(path)
    with exclusive.serving(path) if serving else nullcontext():
        async with _opened(
            path, keyring, clock, changes, observer, default_environments, alert_policies
        ) as store:
            yield store


@asynccontextmanager
async def _opened(
    path: Path,
    keyring: KeyRing | Sealer,
    clock: Clock,
    changes: trio.MemorySendChannel[SchedulerNews] | None,
    observer: StoreObserver | None,
    default_environments: Mapping[str, str] | None,
    alert_policies: AlertPolicies | None,
) -> AsyncIterator[Store]:
    engine = Engine(path, on_batch=None if observer is None else observer.store_batch)

    def prepare(conn: sqlite3.Connection) -> None:
        migrate(conn, default_environments)

    await trio.to_thread.run_sync(engine.start, prepare)
    sealer = follow(keyring)
    alerts = None
    if alert_policies is not None:
        alerts = AlertRecorder(alert_policies, news=changes, counter=observer)
    try:
        yield Store(
            jobs=JobStore(engine, sealer, clock, changes, observer),
            runs=RunStore(engine, sealer, clock, observer, changes, alerts),
            engine=engine,
            retention=RetentionStore(engine),
            stats=StatsStore(engine),
            policies=RetryPolicyStore(engine, clock),
            outbox=OutboxStore(engine),
            alerts=alerts,
        )
    finally:
        with trio.CancelScope(shield=True):
            await engine.aclose()


__all__ = ["Claim", "DueJob", "RetentionStore", "Store", "open_store"]
