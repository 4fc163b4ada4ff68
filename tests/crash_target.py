"""The crash test's HTTP target: a process of its own that outlives the daemon.

`python tests/crash_target.py LOG` listens on 127.0.0.1 (port 0), prints
`crash-target listening on http://127.0.0.1:PORT`, and appends one JSON line
per request to LOG *as the request arrives*, before answering: the run id,
job and slot jobsd stamped on it (for an alert, its id, what it says and
a SHA-256 of its bytes). A request the daemon sent just before it
was killed is therefore on record even though nobody reads the answer.
Appends are single `os.write` calls on an `O_APPEND` descriptor, no fsync:
the log must survive the daemon's deaths, not the machine's.

Paths choose behaviour: `/sleep/<ms>` answers 200 after a pause (keeps runs
in flight so kills catch them RUNNING), `/hold/<name>` answers 200 once a
file `release-<name>` exists beside LOG (a run kept in flight exactly as long
as a test needs; 10 s at most, as a sleep), `/status/<code>` answers that
code, anything else 200 at once. It exits when its stdin closes, so it never
outlives the test that started it. Standard library only: it starts fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_MAX_SLEEP_MS = 10_000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    log_fd = -1
    log_dir = "."

    def handle_error(self, request: object, client_address: object) -> None:
        # A daemon killed mid-exchange leaves broken pipes: expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        entry = {
            "run_id": self.headers.get("X-Jobsd-Run-Id"),
            "job": self.headers.get("X-Jobsd-Job"),
            "scheduled_for": self.headers.get("X-Jobsd-Scheduled-For"),
            "env": self.headers.get("X-Env"),  # the crash test's jobs say where they ran
            "method": self.command,
            "path": self.path,
            "received_ns": time.time_ns(),
        }
        alert_id = self.headers.get("X-Jobsd-Alert-Id")
        if alert_id is not None:  # an alert: what it said, and a digest of its bytes
            sent = json.loads(body)
            entry["alert"] = {
                "id": alert_id,
                "sha256": hashlib.sha256(body).hexdigest(),
                "type": sent["type"],
                "job": sent["data"]["job"],
                "environment": sent["data"]["environment"],
                "run": sent["data"]["run"]["id"],
            }
        os.write(self.server.log_fd, (json.dumps(entry) + "\n").encode())
        status = 200
        if self.path.startswith("/sleep/"):
            time.sleep(min(int(self.path.rsplit("/", 1)[1]), _MAX_SLEEP_MS) / 1000)
        elif self.path.startswith("/hold/"):
            release = os.path.join(self.server.log_dir, "release-" + self.path.rsplit("/", 1)[1])
            deadline = time.monotonic() + _MAX_SLEEP_MS / 1000
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.01)
        elif self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
        answer = b'{"ok":true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


def _exit_when_orphaned() -> None:
    sys.stdin.read()
    os._exit(0)


def main(log_path: str) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    server.log_dir = os.path.dirname(os.path.abspath(log_path))
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    host, port = server.server_address[:2]
    print(f"crash-target listening on http://{host!s}:{port}", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main(sys.argv[1])
