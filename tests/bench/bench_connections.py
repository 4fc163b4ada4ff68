"""Connection abuse from issue 7 against the real daemon on its defaults: do slots come back?

Runs `python -m jobsd serve` in a child (tests/daemon_process.py) with the
`[server]` section on its defaults (unless an option says otherwise) and
prints figures; not a test (tests/test_limits_slots.py and
tests/test_hostile_wire.py assert the bounds with small timeouts). Point
PYTHONPATH at another checkout to measure that one instead.

- `leave`: 256 clients each send 8 pipelined `GET /api/v1/openapi.json`
  and close without reading. Then `/healthz` (a fresh connection, 1 s
  timeout) is polled every 0.5 s: when it is first answered, and the
  daemon's descriptor count (/proc/PID/fd) against its count before.
- `nonread`: `max_connections = 4`; four clients pipeline 200
  `GET /api/v1/openapi.json` each into a 4 KiB receive buffer and never
  read; how long a fresh `/healthz` waits.
- `trickle`: a `POST /jobs` whose body comes one byte every 2 s: when the
  answer comes, and when the server closes the connection.
- `smuggle`: `Content-Length` with `Transfer-Encoding` on POST and GET,
  a request hidden after the body: how many answers come back.
- `h2c`: `Upgrade: h2c` on `GET /healthz`: the status line answered.

    .venv/bin/python -m tests.bench.bench_connections leave
    .venv/bin/python -m tests.bench.bench_connections nonread [--write-timeout-s 10]
    .venv/bin/python -m tests.bench.bench_connections trickle
    .venv/bin/python -m tests.bench.bench_connections smuggle
    .venv/bin/python -m tests.bench.bench_connections h2c
    PYTHONPATH=/work/main .venv/bin/python -m tests.bench.bench_connections leave
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

from tests.conftest import JSONAPI, TOKEN_A, config_text
from tests.daemon_process import DaemonProcess

OPENAPI = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def daemon_in(directory: Path, server: str = "") -> DaemonProcess:
    text = config_text(directory).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\n' + server
    )
    (directory / "jobsd.toml").write_text(text)
    return DaemonProcess(["serve", "--config", str(directory / "jobsd.toml")], directory)


def fds(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def talk(host: str, port: int, raw: bytes, timeout_s: float) -> tuple[bytes, str]:
    """Send `raw` on a fresh connection; everything received, and how it ended."""
    received = b""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(raw)
            while chunk := sock.recv(65536):
                received += chunk
        return received, "closed"
    except TimeoutError:
        return received, "timed out"
    except OSError as exc:
        return received, type(exc).__name__


def healthz_s(host: str, port: int, timeout_s: float) -> float | None:
    began = time.monotonic()
    received, _ = talk(host, port, HEALTHZ, timeout_s)
    return time.monotonic() - began if received.startswith(b"HTTP/1.1 200") else None


def leave(host: str, port: int, daemon: DaemonProcess, args: argparse.Namespace) -> None:
    before = fds(daemon)
    began = time.monotonic()
    for _ in range(256):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(OPENAPI * 8)
    print(
        f"256 x 8 pipelined, closed unread, in {time.monotonic() - began:.2f} s;"
        f" descriptors before: {before}"
    )
    while (elapsed := time.monotonic() - began) < args.watch_s:
        latency = healthz_s(host, port, 1.0)
        answer = "unanswered" if latency is None else f"answered in {latency * 1000:.0f} ms"
        print(f"  t={elapsed:5.1f} s  /healthz {answer:<22} descriptors {fds(daemon)}")
        if latency is not None and fds(daemon) <= before:
            return
        time.sleep(0.5)


def nonread(host: str, port: int, daemon: DaemonProcess, args: argparse.Namespace) -> None:
    hogs = []
    for _ in range(4):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        sock.sendall(OPENAPI * 200)
        hogs.append(sock)
    latency = healthz_s(host, port, args.watch_s)
    answer = f"after {latency:.2f} s" if latency is not None else f"not within {args.watch_s} s"
    print(f"4 non-readers at max_connections = 4: a fresh /healthz answered {answer}")
    for sock in hogs:
        sock.close()


def trickle(host: str, port: int, daemon: DaemonProcess, args: argparse.Namespace) -> None:
    head = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
        f"Content-Type: {JSONAPI}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        began, answered, received = time.monotonic(), None, b""
        while (elapsed := time.monotonic() - began) < args.watch_s:
            try:
                sock.send(b"{")
                time.sleep(2.0)
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                print(f"  t={elapsed:5.1f} s  {type(exc).__name__}: the server is gone")
                break
            if not chunk:
                print(f"  t={elapsed:5.1f} s  closed by the server")
                break
            received += chunk
            if answered is None:
                answered = elapsed
                print(f"  t={elapsed:5.1f} s  answered {received.split(b' ')[1].decode()}")
        else:
            print(f"  still open after {args.watch_s} s")


def smuggle(host: str, port: int, daemon: DaemonProcess, args: argparse.Namespace) -> None:
    hidden = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for method, path in (("POST", "/api/v1/jobs"), ("GET", "/healthz")):
        raw = (
            (
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
                f"Content-Type: {JSONAPI}\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"0\r\n\r\n"
            + hidden
        )
        received, ended = talk(host, port, raw, 3.0)
        statuses = [
            line.split(b" ")[1].decode()
            for line in received.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ")
        ]
        print(f"{method} with both: answers {statuses}, connection {ended}")


def h2c(host: str, port: int, daemon: DaemonProcess, args: argparse.Namespace) -> None:
    raw = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    received, ended = talk(host, port, raw, 2.0)
    status_line = received.partition(b"\r\n")[0].decode()
    print(f"Upgrade: h2c -> {status_line!r}, connection {ended}")


CASES = {"leave": leave, "nonread": nonread, "trickle": trickle, "smuggle": smuggle, "h2c": h2c}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--watch-s", type=float, default=60.0, help="how long to look (s)")
    parser.add_argument("--write-timeout-s", type=int, help="server.write_timeout_s (new key)")
    args = parser.parse_args()
    server = "max_connections = 4\n" if args.case == "nonread" else ""
    if args.write_timeout_s is not None:
        server += f"write_timeout_s = {args.write_timeout_s}\n"
    with tempfile.TemporaryDirectory() as tmp, daemon_in(Path(tmp), server) as daemon:
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
        CASES[args.case](host, int(port), daemon, args)
        daemon.stop(timeout_s=10)


if __name__ == "__main__":
    main()
