"""One daemon per database: a second `jobsd serve` on it is refused before it
touches it (`jobsd.store.exclusive`). Real processes, a real target on 127.0.0.1."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from jobsd.errors import StorageError
from jobsd.store import exclusive
from tests.conftest import auth, config_text
from tests.daemon_process import DaemonProcess
from tests.daemon_process import jobsd_command as jobsd

ROOT = Path(__file__).resolve().parents[1]
JSONAPI = {"Content-Type": "application/vnd.api+json"}


def _run_status(api: str, run_id: str) -> str:
    r = httpx2.get(f"{api}/runs/{run_id}", headers=auth(), trust_env=False)
    assert r.status_code == 200, r.text
    attributes = r.json()["data"]["attributes"]
    return f"{attributes['status']}/{attributes['failure_reason']}"


def _until(api: str, run_id: str, wanted: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (status := _run_status(api, run_id)) != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is {status}, not {wanted}"
        time.sleep(0.05)


def test_a_second_serve_on_a_database_in_use_is_refused_before_it_touches_it(
    tmp_path: Path,
) -> None:
    # A second `jobsd serve` on the same config was refused for its port only
    # after its start's recovery had run: the live daemon's run in flight was
    # recorded FAILED/WORKER_LOST and its real outcome, when it came, lost.
    target = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "crash_target.py"), str(tmp_path / "hits.log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None
        target_url = target.stdout.readline().split("listening on ", 1)[1].strip()
        cfg = tmp_path / "jobsd.toml"
        cfg.write_text(config_text(tmp_path))
        with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
            api = f"{daemon.url}/api/v1"
            job = {"name": "slow", "schedule": "0 2 * * *"}
            # In flight until released below: RUNNING through both refused serves.
            job["configuration"] = {"url": f"{target_url}/hold/slow"}  # type: ignore[assignment]
            body = {"data": {"type": "job", "id": "slow", "attributes": job}}
            headers = {**auth(), **JSONAPI}
            r = httpx2.post(f"{api}/jobs", json=body, headers=headers, trust_env=False)
            assert r.status_code == 201, r.text
            r = httpx2.post(f"{api}/jobs/slow/actions/run", headers=auth(), trust_env=False)
            run_id = r.json()["data"]["id"]
            _until(api, run_id, "RUNNING/None")
            port = daemon.url.rsplit(":", 1)[1]
            for listen in (f"127.0.0.1:{port}", "127.0.0.1:0"):
                out = jobsd("serve", "--config", str(cfg), "--listen", listen, cwd=tmp_path)
                assert out.returncode == 2, out.stderr
                assert out.stderr.startswith("jobsd: storage error: another jobsd is serving")
                assert "recovery" not in out.stderr and "Traceback" not in out.stderr
                # Not FAILED/WORKER_LOST: in flight still, or ended as the target answered.
                assert _run_status(api, run_id) in ("RUNNING/None", "SUCCEEDED/None")
            (tmp_path / "release-slow").touch()  # the target answers now
            _until(api, run_id, "SUCCEEDED/None")
            assert daemon.stop() == 0
        # Once it has stopped, the database is free again.
        with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as again:
            assert again.stop() == 0
    finally:
        assert target.stdin is not None
        target.stdin.close()
        target.wait(timeout=10)


def test_the_lock_has_one_holder_is_readable_by_all_and_goes_with_its_holder(
    tmp_path: Path,
) -> None:
    """In-process: a second holder is refused; the lock file is 0644 whatever the
    umask (a daemon once started as root does not lock the service's user out); the
    lock is released when its holder ends, so the next start is not refused."""
    db = tmp_path / "jobsd.sqlite3"
    lock = exclusive.lock_path(db)
    old = os.umask(0o077)
    try:
        with exclusive.serving(db):
            assert stat.S_IMODE(lock.stat().st_mode) == 0o644
            with (
                pytest.raises(StorageError, match="another jobsd is serving"),
                exclusive.serving(db),
            ):
                pass
    finally:
        os.umask(old)
    with exclusive.serving(db):  # the first holder's lock went with it
        pass
