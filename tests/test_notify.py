"""systemd's notify protocol against a fake systemd: a datagram socket we bind.

The end-to-end tests run the real `jobsd serve` as a child process with
NOTIFY_SOCKET (a path in tmp_path, or an abstract `@name`) and WATCHDOG_USEC
set, and read what it says, in order: READY=1 (and /healthz answers 200 the
moment it arrives), watchdog pings, RELOADING=1 + READY=1 around a SIGHUP,
STOPPING=1 on SIGTERM, exit 0. The watchdog tests run on trio's MockClock.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
import trio
import trio.testing

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.lifecycle import store_answers
from jobsd.notify import Notifier, run_watchdog
from jobsd.store import open_store
from tests.conftest import config_text
from tests.daemon_process import DaemonProcess

Message = dict[str, str]


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.seen: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def receive(self, timeout_s: float) -> Message:
        self.sock.settimeout(timeout_s)
        data = self.sock.recv(4096)
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.seen.append(message)
        return message

    def until(self, key: str, timeout_s: float = 30.0) -> Message:
        """The next message carrying `key`, skipping watchdog pings."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.receive(max(deadline - time.monotonic(), 0.01))
            if key in message:
                return message
            assert set(message) == {"WATCHDOG"}, f"unexpected {message} before {key}"

    def drain(self) -> list[Message]:
        self.sock.setblocking(False)
        got: list[Message] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return got
            got.append(dict(line.split("=", 1) for line in data.decode().splitlines()))


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(request: pytest.FixtureRequest, tmp_path: Path) -> FakeSystemd:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        assert len(address) < 100, "a unix socket path must fit sockaddr_un"
    else:
        address = f"@jobsd-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(address)
    request.addfinalizer(fake.close)
    return fake


# -- the protocol -----------------------------------------------------------


def test_environment_is_read_as_sd_notify_does() -> None:
    assert not Notifier.from_environ({}).enabled
    assert Notifier.from_environ({}).send("READY=1") is False
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000"}
    assert Notifier.from_environ(env).watchdog_s == 3.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": "41"}, pid=41).watchdog_s == 3.0
    # The watchdog was meant for another process (we were forked or exec'd).
    assert Notifier.from_environ({**env, "WATCHDOG_PID": "41"}, pid=42).watchdog_s is None
    assert Notifier.from_environ({**env, "WATCHDOG_USEC": "0"}).watchdog_s is None
    assert Notifier.from_environ({**env, "WATCHDOG_USEC": "soon"}).watchdog_s is None
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_messages(fake_systemd: FakeSystemd) -> None:
    notifier = Notifier(fake_systemd.address)
    notifier.ready("serving on http://127.0.0.1:1")
    assert fake_systemd.receive(5) == {"READY": "1", "STATUS": "serving on http://127.0.0.1:1"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000
    notifier.reloading()
    message = fake_systemd.receive(5)
    assert message["RELOADING"] == "1"
    # systemd >= 253 drops a RELOADING=1 without it, or takes it for an old one:
    # CLOCK_MONOTONIC in microseconds, read here, not through what is under test.
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    notifier.stopping("stopping", extend_s=25)
    message = fake_systemd.receive(5)
    assert message == {"STOPPING": "1", "STATUS": "stopping", "EXTEND_TIMEOUT_USEC": "25000000"}
    notifier.watchdog()
    assert fake_systemd.receive(5) == {"WATCHDOG": "1"}


def test_a_failed_send_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="jobsd.notify"):
        assert notifier.send("READY=1") is False
    assert "could not notify systemd (READY=1)" in caplog.text


# -- the watchdog proves liveness ---------------------------------------------


async def test_watchdog_pings_only_after_the_probe_answers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeSystemd(str(tmp_path / "wd.sock"))
    gate = trio.Event()
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        await gate.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_watchdog, Notifier(fake.address, watchdog_s=3.0), probe)
        await trio.sleep(30)  # ten intervals, on the mock clock
        assert fake.drain() == [] and probes == 1
        gate.set()
        await trio.sleep(2.5)  # pings at 30, 31 and 32 s: one per third of 3 s
        assert fake.drain() == [{"WATCHDOG": "1"}] * 3
        nursery.cancel_scope.cancel()
    fake.close()


async def test_no_watchdog_loop_without_a_socket_to_ping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # WATCHDOG_USEC set but no usable NOTIFY_SOCKET: nothing would hear the pings,
    # so no probe is run every third of the interval for nothing.
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1

    with trio.fail_after(60):
        await run_watchdog(Notifier(None, watchdog_s=3.0), probe)
    assert probes == 0


async def test_watchdog_stops_while_the_store_writer_is_wedged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeSystemd(str(tmp_path / "wd.sock"))
    keyring = KeyRing.load_or_create(tmp_path / "secret.key")
    clock = Clock(datetime(2026, 6, 5, tzinfo=UTC))
    answered = trio.Event()

    async def probe() -> None:
        await store_answers(store)
        answered.set()

    async with (
        open_store(tmp_path / "db.sqlite3", keyring, clock) as store,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(run_watchdog, Notifier(fake.address, watchdog_s=3.0), probe)
        await answered.wait()
        assert fake.drain() == [{"WATCHDOG": "1"}]

        entered, release = threading.Event(), threading.Event()

        def wedge(conn: object) -> None:
            entered.set()
            release.wait(60)

        nursery.start_soon(store.engine.write, wedge)
        assert await trio.to_thread.run_sync(entered.wait, 10)
        await trio.testing.wait_all_tasks_blocked()
        fake.drain()  # a ping whose probe finished before the wedge
        await trio.sleep(60)  # twenty intervals, on the mock clock
        assert fake.drain() == []

        answered = trio.Event()
        release.set()
        await answered.wait()
        assert fake.drain() == [{"WATCHDOG": "1"}]
        nursery.cancel_scope.cancel()
    fake.close()


# -- the real daemon under a fake systemd -------------------------------------


class ChildDaemon(DaemonProcess):
    def launch(self) -> None:
        """Only spawn: the test learns readiness from the notify socket, not stdout."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobsd", *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("w"),
            text=True,
        )


def test_ready_watchdog_reload_stopping_in_order(tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    config = tmp_path / "jobsd.toml"
    config.write_text(config_text(tmp_path))
    env = {"NOTIFY_SOCKET": fake_systemd.address, "WATCHDOG_USEC": "600000"}
    child = ChildDaemon(["serve", "--config", str(config)], tmp_path, env=env)
    child.launch()
    try:
        ready = fake_systemd.receive(30)
        assert ready["READY"] == "1", (ready, child.stderr())
        url = ready["STATUS"].removeprefix("serving on ")
        # Not one retry: by the time systemd hears READY=1, /healthz serves.
        assert httpx2.get(f"{url}/healthz", trust_env=False, timeout=5).status_code == 200

        pings = [fake_systemd.receive(5) for _ in range(3)]
        assert pings == [{"WATCHDOG": "1"}] * 3

        child.signal(signal.SIGHUP)
        reloading = fake_systemd.until("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        reloaded = fake_systemd.until("READY")
        assert reloaded["STATUS"] == "serving; config reloaded"

        child.signal(signal.SIGTERM)
        stopping = fake_systemd.until("STOPPING")
        assert int(stopping["EXTEND_TIMEOUT_USEC"]) >= 10_000_000  # the default grace, 10 s
        assert child.stop(timeout_s=30) == 0
        after = fake_systemd.drain()
        assert all(set(m) == {"WATCHDOG"} for m in after), after
        kinds = [next(iter(m)) for m in fake_systemd.seen if "WATCHDOG" not in m]
        assert kinds == ["READY", "RELOADING", "READY", "STOPPING"]
    finally:
        child.__exit__(None, None, None)
