"""A daemon killed (`kill -9`) in the middle of a reload's environment sync.

The sync commits in batches (`jobsd.store.env_sync`), so a kill between two
leaves part of an account's rows woken and part not. The crash promise here:
the next start, which syncs from the config file before it serves, brings
every row in line with that file, whichever of the two configs it holds:
the reload's (the rest woken) or the one before (the woken ones put back to
sleep). Never half of each, and no row firing in an environment the running
config does not list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import config_text
from tests.daemon_process import DaemonProcess
from tests.test_reload_refusals import reloading, woken

JOBS = 60_000


@pytest.mark.parametrize("restart_with_reload", [True, False], ids=["reload's", "previous"])
def test_a_sync_killed_half_way_is_completed_by_the_next_start(
    tmp_path: Path, restart_with_reload: bool
) -> None:
    with reloading(tmp_path, JOBS) as (daemon, db, cfg):
        daemon.kill9()
    mid = woken(db)
    assert 0 < mid < JOBS, f"the kill did not land mid-sync ({mid} of {JOBS} woken)"
    if not restart_with_reload:
        cfg.write_text(config_text(tmp_path))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        assert woken(db) == (JOBS if restart_with_reload else 0), daemon.stderr()
        assert "Traceback" not in daemon.stderr()
        assert daemon.stop() == 0
