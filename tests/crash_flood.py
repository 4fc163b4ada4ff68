"""The crash harness's flood: a second account asking run-now faster than it drains.

`FloodLoad` runs `FLOOD_THREADS` client threads for the `flood` account, each
asking `POST /api/v1/jobs/flood/actions/run` in a loop against a paused job
whose target sleeps a little, so the account's backlog grows past the
daemon's lanes (runs are read back from the store) and up to
`max_pending_runs` (run-nows answered 429 with Retry-After). Every fifth
request is sent on a raw socket that is closed right after the request is
written, as a caller who gives up does: if the daemon committed that run, the
audit must find it executed like any other. Answered runs go in the ledger
as acknowledged run-nows; the kill and the audit are the harness's.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx2

from tests.conftest import job_doc

FLOOD_TOKEN = "jobsd_crash-test-token-for-account-flood"
FLOOD_ACCOUNT = "flood"
FLOOD_PATH = "/sleep/100"
FLOOD_THREADS = 6
MAX_PENDING_RUNS = 60
JSONAPI = "application/vnd.api+json"
RUN_NOW = "/api/v1/jobs/flood/actions/run"


def create_flood_job(url: str, target_url: str) -> None:
    """The paused job the flood runs: run-now works on it, and it never fires by itself."""
    doc = job_doc(
        "flood",
        name="flood",
        enabled=False,
        schedule="0 0 1 1 *",
        configuration={
            "url": f"{target_url}{FLOOD_PATH}",
            "timeout": 10,
            "headers": [{"name": "X-Env", "value": "production"}],  # the audit's rule
        },
    )
    headers = {"Authorization": f"Bearer {FLOOD_TOKEN}", "Content-Type": JSONAPI}
    r = httpx2.post(f"{url}/api/v1/jobs", json=doc, headers=headers, trust_env=False)
    assert r.status_code == 201, r.text


def hang_up_after_sending(url: str) -> None:
    parts = urlsplit(url)
    head = (
        f"POST {RUN_NOW} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {FLOOD_TOKEN}\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head.encode())


class FloodLoad:
    def __init__(self, url: str, max_s: float) -> None:
        self._url = url
        self._max_s = max_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, name=f"crash-flood-{n}", daemon=True)
            for n in range(FLOOD_THREADS)
        ]
        self.accepted: set[str] = set()
        self.refused = 0
        self.hung_up = 0
        self.unknown = 0
        self.errors: list[str] = []

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._max_s)
            assert not thread.is_alive(), "a flood thread did not stop"
        assert not self.errors, self.errors

    def _loop(self) -> None:
        deadline = time.monotonic() + self._max_s
        headers = {"Authorization": f"Bearer {FLOOD_TOKEN}"}
        with httpx2.Client(base_url=self._url, headers=headers, timeout=5, trust_env=False) as c:
            n = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                n += 1
                try:
                    if n % 5 == 0:
                        hang_up_after_sending(self._url)
                        with self._lock:
                            self.hung_up += 1
                    else:
                        self._ask(c)
                except (httpx2.TransportError, OSError):
                    with self._lock:
                        self.unknown += 1  # cut short by the kill: only the database knows
                    self._stop.wait(0.05)
                except Exception as exc:  # reported by stop(), on the test's thread
                    self.errors.append(repr(exc))
                    return

    def _ask(self, client: httpx2.Client) -> None:
        r = client.post(RUN_NOW)
        if r.status_code == 429:
            if r.headers.get("Retry-After") != "5":
                raise AssertionError(f"429 without Retry-After: {r.headers}")
            with self._lock:
                self.refused += 1
            self._stop.wait(0.01)
            return
        if r.status_code != 200:
            raise AssertionError(f"flood run-now: {r.status_code} {r.text}")
        with self._lock:
            self.accepted.add(r.json()["data"]["id"])
