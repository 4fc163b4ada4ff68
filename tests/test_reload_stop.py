"""A SIGTERM during a reload stops the daemon at once; the next start finishes the sync.

A reload that lists an environment again wakes its rows in batches
(`jobsd.store.env_sync`): seconds for 100,000 jobs, tens of seconds for a
million. The signal task awaited the reload, so a SIGTERM was read only
once the sync had ended and the stop could overrun `shutdown_grace_s`.
Whether the stop waited is told by the rows, not by a stopwatch: stopped
at once, the daemon leaves most of them dormant, and the next start,
which syncs from the file before serving, wakes them all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import config_text
from tests.daemon_process import DaemonProcess
from tests.test_reload_refusals import BOTH, reloading, woken
from tests.test_sync_batches import fill

JOBS = 100_000  # ~4 s of sync unloaded (50 batches): a stop between two is well before its end


def test_sigterm_during_a_reload_sync_stops_at_once_and_the_next_start_completes_it(
    tmp_path: Path,
) -> None:
    with reloading(tmp_path, JOBS) as (daemon, db, cfg):
        daemon.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert daemon.stop(timeout_s=30) == 0, daemon.stderr()
        took = time.monotonic() - signalled
        log = daemon.stderr()
        at_exit = woken(db)
        # Without the fix the stop waits for the whole sync: every row is woken.
        assert at_exit < JOBS // 2, (at_exit, took, log)
        assert took < 10, (took, log)
        assert "interrupted by the stop" in log, log
        assert "Traceback" not in log, log
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as again:
        assert woken(db) == JOBS, again.stderr()  # synced before it served
        assert again.stop() == 0, again.stderr()


def test_sigterm_during_the_start_sync_exits_at_once_and_the_next_start_completes_it(
    tmp_path: Path,
) -> None:
    """The same sync at start (a config that lists an environment again, or a
    sync a stop cut short): a SIGTERM then waited for all of it before exit 0."""
    db = tmp_path / "jobsd.sqlite3"
    fill(db, JOBS, firing=False)
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path, acme=BOTH))
    stderr = tmp_path / "start.log"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobsd", "serve", "--config", str(cfg)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 30
            while not woken(db):
                assert proc.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, stderr.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = stderr.read_text()
    assert woken(db) < JOBS // 2, log
    assert "interrupted by the stop" in log and "Traceback" not in log, log
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as again:
        assert woken(db) == JOBS, again.stderr()
        assert again.stop() == 0, again.stderr()
