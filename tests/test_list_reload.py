"""A list (`GET /jobs`, `GET /runs`) that waited for a snapshot slot is answered
for whoever is its caller once it has one.

An account may have two lists being sent at once; a third waits up to 10 s
(`jobsd.store.snapshots`). Its caller was found before the wait, so a token
that a reload (SIGHUP) revoked meanwhile was still sent the account's jobs,
read after the reload: the same gap run-now below Quart had with a body
(tests/api/test_fast_run_now_reload.py).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import httpx2

from jobsd.config import token_sha256
from tests.conftest import JSONAPI, TOKEN_A, config_text, job_doc
from tests.daemon_process import DaemonProcess

JOBS = 24  # of 1 MiB each: a list far past what the sockets' buffers hold


def holder(url: str) -> socket.socket:
    """Asks for every job and reads nothing: its list holds a snapshot while it is sent."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        b"GET /api/v1/jobs?page[size]=1000 HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN_A}\r\n\r\n".encode()
    )
    return sock


def test_a_token_revoked_while_its_list_waits_for_a_slot_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        client = httpx2.Client(base_url=daemon.url, trust_env=False, timeout=30)
        headers = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": JSONAPI}
        for i in range(JOBS):
            doc = job_doc(f"big-{i}", enabled=False)
            doc["data"]["attributes"]["configuration"]["body"] = "x" * (1024 * 1024)
            r = client.post("/api/v1/jobs", json=doc, headers=headers)
            assert r.status_code == 201, r.text
        holders = [holder(daemon.url) for _ in range(2)]
        time.sleep(1.0)  # both of acme's list slots are taken, their sends blocked
        answer: list[httpx2.Response] = []
        waiters = [
            threading.Thread(
                target=lambda path=path: answer.append(
                    client.get(path, params={"page[size]": 1}, headers=headers)
                )
            )
            for path in ("/api/v1/jobs", "/api/v1/runs")
        ]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.5)  # the third list waits for a slot
        cfg.write_text(config_text(tmp_path).replace(token_sha256(TOKEN_A), "0" * 64))
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reloaded accounts, plans and tokens" not in daemon.stderr():
            assert time.monotonic() < deadline, daemon.stderr()
            time.sleep(0.02)
        assert client.get("/api/v1/jobs", headers=headers).status_code == 401
        assert all(w.is_alive() for w in waiters)  # still waiting: the slots are held
        for sock in holders:
            sock.close()  # their streams fail: the slots come back
        for waiter in waiters:
            waiter.join(20)
        assert [r.status_code for r in answer] == [401, 401], [r.text[:200] for r in answer]
        client.close()
        assert daemon.stop() == 0
