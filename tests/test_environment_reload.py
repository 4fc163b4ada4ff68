"""An environment removed from the config by a reload (SIGHUP) goes dormant.

Its entries and overrides stay in the database, nothing fires there and the
API neither shows nor accepts it; a PUT keeps it. Listed again, it wakes:
its next fire is computed from the reload on (README, "Environments").
"""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.daemon import CHANGES_BUFFER
from jobsd.job_model import HttpConfig
from jobsd.store import open_store
from tests.conftest import JSONAPI, TOKEN_A, config_text, make_config
from tests.daemon_process import DaemonProcess
from tests.inprocess import daemon_at
from tests.model import create_job, seed_job

NEW = {"Jobsd-Version": "2026-08-07", "Authorization": f"Bearer {TOKEN_A}"}
BOTH = 'environments = ["production", "staging"]'
T0 = datetime(2026, 6, 5, 0, 0, 30, tzinfo=UTC)


def staging_row(db: Path) -> tuple[int, int | None, str | None]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT enabled, next_run_at_us, overlay FROM job_environments "
            "WHERE environment = 'staging'"
        ).fetchone()
    finally:
        conn.close()
    return row  # type: ignore[no-any-return]


def reload(daemon: DaemonProcess, count: int) -> None:
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daemon.stderr().count("reloaded accounts, plans and tokens") < count:
        assert time.monotonic() < deadline, daemon.stderr()
        time.sleep(0.02)


def job(client: httpx2.Client) -> dict[str, Any]:
    r = client.get("/api/v1/jobs/warm", headers=NEW)
    assert r.status_code == 200, r.text
    return r.json()["data"]["attributes"]  # type: ignore[no-any-return]


def test_a_removed_environment_sleeps_and_wakes(tmp_path: Path) -> None:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path, acme=BOTH))
    db = tmp_path / "jobsd.sqlite3"
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        client = httpx2.Client(base_url=daemon.url, trust_env=False)
        doc = {
            "data": {
                "id": "warm",
                "attributes": {
                    "name": "warm",
                    "schedule": "0 2 * * *",
                    "configuration": {"url": "https://example.invalid/"},
                    "environments": {
                        "production": {"enabled": True},
                        "staging": {"enabled": True, "url": "https://staging.invalid/"},
                    },
                },
            }
        }
        r = client.post("/api/v1/jobs", json=doc, headers={**NEW, "Content-Type": JSONAPI})
        assert r.status_code == 201, r.text
        awake = staging_row(db)
        assert awake[0] == 1 and awake[1] is not None

        cfg.write_text(config_text(tmp_path))  # production only
        reload(daemon, 1)
        assert staging_row(db) == (1, None, awake[2])  # dormant: kept, nothing to fire
        assert list(job(client)["environments"]) == ["production"]
        r = client.put("/api/v1/jobs/warm", json=doc, headers={**NEW, "Content-Type": JSONAPI})
        assert r.status_code == 422  # staging is unknown now
        put = {"data": {"attributes": {**job(client), "name": "renamed"}}}
        r = client.put("/api/v1/jobs/warm", json=put, headers={**NEW, "Content-Type": JSONAPI})
        assert r.status_code == 200, r.text
        assert staging_row(db) == (1, None, awake[2])  # a PUT keeps what it cannot see

        cfg.write_text(config_text(tmp_path, acme=BOTH))
        reload(daemon, 2)
        woken = staging_row(db)
        assert woken[0] == 1 and woken[1] == awake[1]  # next 02:00 again, from now
        staging = job(client)["environments"]["staging"]
        assert staging["url"] == "https://staging.invalid/" and staging["next_run_at"] is not None
        assert "environments production, staging -> production" in daemon.stderr()
        client.close()
        assert daemon.stop() == 0


async def test_a_start_that_puts_many_environments_to_sleep_does_not_wait(tmp_path: Path) -> None:
    """More changes at start than the scheduler's change channel holds: the
    start must not wait on a scheduler that is not running yet."""
    config = make_config(tmp_path, acme=BOTH)
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    config_url = "https://example.invalid/"
    count = CHANGES_BUFFER + 50
    async with open_store(config.storage.path, keyring, Clock(T0)) as store:
        for i in range(count):
            write = seed_job(
                f"j{i}", "j", None, True, "0 2 * * *", HttpConfig(config_url), "staging"
            )
            await create_job(store, "acme", write, configured=("production", "staging"))
    alone = make_config(tmp_path)  # staging gone
    with trio.fail_after(30):
        async with daemon_at(alone, T0) as d:
            r = await d.client.get("/healthz")
            assert r.status_code == 200
            d.crash()
    conn = sqlite3.connect(f"file:{config.storage.path}?mode=ro", uri=True)
    try:
        dormant = conn.execute(
            "SELECT count(*) FROM job_environments WHERE environment = 'staging' "
            "AND enabled = 1 AND next_run_at_us IS NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    assert dormant == count
