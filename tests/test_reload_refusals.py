"""A reload the store cannot apply is refused whole; the daemon keeps serving.

The environments a reload names are written to the store after the config
is swapped (`jobsd.reload`). A database another process keeps locked past
the busy timeout (`jobsd rotate-key`, an operator's `sqlite3` shell) made
that write raise out of the signal task and stop the daemon, with the new
tokens already in force and the environments not synced.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from tests.conftest import JSONAPI, TOKEN_A, config_text, job_doc
from tests.daemon_process import DaemonProcess
from tests.test_sync_batches import fill

BOTH = 'environments = ["production", "staging"]'


def test_a_reload_while_another_process_holds_the_database_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        client = httpx2.Client(base_url=daemon.url, trust_env=False)
        cfg.write_text(config_text(tmp_path, acme=BOTH))
        locker = sqlite3.connect(tmp_path / "jobsd.sqlite3", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            daemon.signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while "reload refused" not in daemon.stderr():
                assert daemon.proc is not None and daemon.proc.poll() is None, daemon.stderr()
                assert time.monotonic() < deadline, daemon.stderr()
                time.sleep(0.05)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        r = client.get("/healthz")
        assert r.status_code == 200, daemon.stderr()
        r = client.get(
            "/api/v1/jobs",
            headers={"Authorization": f"Bearer {TOKEN_A}", "Jobsd-Version": "2026-08-07"},
        )
        assert r.status_code == 200
        doc = job_doc("warm", environments={"staging": {"enabled": True}})
        r = client.post(
            "/api/v1/jobs",
            json=doc,
            headers={
                "Authorization": f"Bearer {TOKEN_A}",
                "Jobsd-Version": "2026-08-07",
                "Content-Type": JSONAPI,
            },
        )
        assert r.status_code == 422, r.text  # staging stays unknown: nothing half-applied
        assert "Traceback" not in daemon.stderr()
        client.close()
        assert daemon.stop() == 0


def woken(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM job_environments "
            "WHERE environment = 'staging' AND next_run_at_us IS NOT NULL"
        ).fetchone()
    return int(n)


@contextmanager
def reloading(tmp_path: Path, jobs: int) -> Iterator[tuple[DaemonProcess, Path, Path]]:
    """(daemon, database, config file): a daemon over `jobs` jobs dormant in
    staging, reloaded into listing staging, once its sync has committed a batch."""
    db = tmp_path / "jobsd.sqlite3"
    fill(db, jobs, firing=False)  # dormant in staging, off in production
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        assert woken(db) == 0
        cfg.write_text(config_text(tmp_path, acme=BOTH))
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not woken(db):  # the sync has committed a batch
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.stderr()
            assert time.monotonic() < deadline, daemon.stderr()
            time.sleep(0.002)
        yield daemon, db, cfg


def lock_between_batches(locker: sqlite3.Connection, deadline: float) -> None:
    """BEGIN IMMEDIATE in the first gap between two of the sync's batches.

    SQLite's own busy handler polls every 100 ms once it has waited a while,
    and missed those gaps for 1-6 s (up to two thirds of the sync, which
    could have ended first); `locker` has no busy timeout, so tries every ms."""
    while True:
        try:
            locker.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        assert time.monotonic() < deadline, "the sync left no gap to take the lock in"
        time.sleep(0.001)


def test_a_reload_whose_sync_fails_half_way_leaves_nothing_of_it(tmp_path: Path) -> None:
    """The store syncs a reload in batches: one that fails after others have
    committed (another process took the lock between them) must not leave jobs
    firing in an environment the config that stays does not list."""
    db = tmp_path / "jobsd.sqlite3"
    fill(db, 100_000, firing=False)  # dormant in staging, off in production
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        cfg.write_text(config_text(tmp_path, acme=BOTH))
        locker = sqlite3.connect(db, isolation_level=None, timeout=0)
        try:
            daemon.signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while not woken(db):  # a batch has committed
                assert time.monotonic() < deadline, daemon.stderr()
                time.sleep(0.002)
            lock_between_batches(locker, deadline)
            # Held past the writer's busy timeout (5 s): the sync's next batch fails.
            while "reload refused" not in daemon.stderr():
                assert daemon.proc is not None and daemon.proc.poll() is None, daemon.stderr()
                assert time.monotonic() < deadline, daemon.stderr()
                time.sleep(0.05)
        finally:
            if locker.in_transaction:
                locker.execute("ROLLBACK")
            locker.close()
        while woken(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert woken(db) == 0, daemon.stderr()
        assert "Traceback" not in daemon.stderr()
        assert daemon.stop() == 0
