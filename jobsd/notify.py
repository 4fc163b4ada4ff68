"""systemd's notify protocol and the watchdog, without a dependency.

`Type=notify` units read datagrams such as `READY=1` from the unix socket
named in `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
Outside systemd the variable is unset and every call is a no-op, so the
daemon needs no special mode for running by hand or under tests.

What jobsd sends, and when (the daemon decides the moments):
- `READY=1` once `/healthz` answers 200: the API is bound and every actor runs.
- `RELOADING=1` with `MONOTONIC_USEC` as a reload starts, then `READY=1`
  when it is done, applied or refused (the old config keeps serving, so the
  service is ready either way; STATUS says which). systemd >= 253 needs the
  timestamp to tie the message to the reload job; older ones ignore it.
- `STOPPING=1` as the stop begins, with `EXTEND_TIMEOUT_USEC` covering
  `shutdown_grace_s`, so a grace longer than `TimeoutStopSec` is honoured
  rather than cut short by SIGKILL (older systemd ignores the field).
- `WATCHDOG=1` every third of `$WATCHDOG_USEC`, but only after a probe
  answers: a timer alone would prove nothing but that a timer runs.

A failed send is logged, not raised: losing a datagram must not take down a
daemon that is otherwise serving, and systemd's own timeouts then act.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

import trio

log = logging.getLogger("jobsd.notify")

SEND_TIMEOUT_S = 1.0
WATCHDOG_FRACTION = 3


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs: the timestamp systemd compares with its own."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000


class Notifier:
    def __init__(self, address: str | None = None, watchdog_s: float | None = None) -> None:
        self._address: str | None = None
        if address and address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address and address.startswith("/"):
            self._address = address
        elif address:
            log.warning("NOTIFY_SOCKET=%r is not a path or @name: systemd is not notified", address)
        self.watchdog_s = watchdog_s if watchdog_s and watchdog_s > 0 else None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as sd_notify(3) does."""
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        ours = str(os.getpid() if pid is None else pid)
        watchdog_s = None
        if usec.isdigit() and (not watchdog_pid or watchdog_pid == ours):
            watchdog_s = int(usec) / 1_000_000
        return cls(env.get("NOTIFY_SOCKET"), watchdog_s)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT_S)
                sock.connect(self._address)
                sock.sendall("\n".join(fields).encode("utf-8"))
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", fields[0], exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self, status: str = "reloading the config") -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", f"STATUS={status}")

    def stopping(self, status: str = "stopping", extend_s: float | None = None) -> None:
        fields = ["STOPPING=1", f"STATUS={status}"]
        if extend_s is not None:
            fields.append(f"EXTEND_TIMEOUT_USEC={round(extend_s * 1_000_000)}")
        self.send(*fields)

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")


async def run_watchdog(
    notifier: Notifier,
    probe: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ping after `probe` answers, then again a third of the watchdog interval later.

    The probe runs on the event loop and waits on whatever it checks, so a
    blocked loop, a wedged dependency or a probe that never returns all
    stop the pings, and systemd restarts jobsd. Without a watchdog
    interval this returns at once.
    """
    task_status.started()
    if notifier.watchdog_s is None or not notifier.enabled:
        return
    interval_s = notifier.watchdog_s / WATCHDOG_FRACTION
    while True:
        await probe()
        notifier.watchdog()
        await trio.sleep(interval_s)
