"""The real `jobsd` command in a child process, for tests that need one.

Used by the schemathesis run, the CLI tests and the crash tests: the child
prints the URL it bound (port 0), which is read from its stdout, and its
stderr is kept in a file for post-mortems.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx2


def jobsd_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One `jobsd` verb (check-config, token, backup, rotate-key...) to its end."""
    return subprocess.run(
        [sys.executable, "-m", "jobsd", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


_LISTENING = re.compile(r"jobsd listening on (http://[^\s\",]+)")  # text or a JSON line


class DaemonProcess:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.cwd = cwd
        base = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.env = {**base, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stdout_lines: list[str] = []
        self.stderr_path = cwd / f"jobsd-stderr-{time.monotonic_ns()}.log"

    def start(self, timeout_s: float = 30.0) -> DaemonProcess:
        stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobsd", *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"jobsd exited early:\n{self.stderr()}")
            self.stdout_lines.append(line)
            match = _LISTENING.search(line)
            if match:
                self.url = match.group(1)
                break
        else:
            raise RuntimeError(f"jobsd did not start:\n{self.stderr()}")
        self.wait_healthy(deadline - time.monotonic())
        return self

    def read_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.stdout_lines.append(line)
        return line

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + max(timeout_s, 1.0)
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"jobsd never became healthy:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
