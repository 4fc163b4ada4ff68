"""The daemon's API for a hypothesis state machine: one store, the served app, no scheduler.

A `RuleBasedStateMachine` calls its rules synchronously, while the store and
the app live on a trio loop. So each machine gets a loop of its own in a
thread (`ApiHost`), holding the real store (SQLite file, writer thread,
keys) and the app exactly as `jobsd serve` layers it (`served_app`: the
fast paths below Quart included, since they answer the most common
requests and must refuse what Quart refuses). A rule's request crosses to
that loop with `trio.from_thread.run` and is handed to the app as one ASGI
call: no socket, so a step costs about a millisecond.

No scheduler, executor or dispatcher runs: a run-now's run stays `PENDING`
(the intake only records the order) and no job ever fires, so what the
store holds changes only through the requests the machine sends, which is
what its model predicts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from jobsd.api.server import served_app
from tests.api.test_fast_paths import asgi_scope
from tests.conftest import make_harness

JSONAPI = "application/vnd.api+json"


@dataclass(frozen=True)
class Reply:
    """One answer: status, headers (names lower-cased), raw body, parsed JSON or None."""

    status: int
    headers: dict[str, str]
    raw: bytes
    body: Any

    def attrs(self) -> dict[str, Any]:
        attributes: dict[str, Any] = self.body["data"]["attributes"]
        return attributes


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class ApiHost:
    """A store and the served app on a trio loop in a thread of its own (see the module note)."""

    def __init__(self, **config: Any) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="jobsd-model-"))
        self._config = config
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._app: Any = None
        self._thread = threading.Thread(target=self._run, name="api-model-loop", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None or self._token is None:
            raise RuntimeError("the model's API loop did not start") from self._failure

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by the constructor or close()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        async with make_harness(self._dir, **self._config) as h:
            self._app = served_app(h.ctx, h.config.server)
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        """Stop the loop (the store closes as `jobsd` closes it) and remove the files."""
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._failure is not None:
            raise self._failure

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        version: str | None = None,
        query: str = "",
        body: bytes | None = None,
        content_type: str | None = JSONAPI,
    ) -> Reply:
        """Send one request through every layer of the served app and wait for its answer."""
        headers = [(b"host", b"127.0.0.1:8080")]
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        if version is not None:
            headers.append((b"jobsd-version", version.encode()))
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
            if content_type is not None:
                headers.append((b"content-type", content_type.encode()))
        scope = asgi_scope(method=method, path=path, query_string=query.encode(), headers=headers)
        assert self._token is not None
        return trio.from_thread.run(self._call, scope, body or b"", trio_token=self._token)

    async def _call(self, scope: dict[str, Any], body: bytes) -> Reply:
        pending = [body]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with trio.fail_after(30):  # a layer that lost the body would leave the app waiting
            await self._app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        return Reply(start["status"], headers, raw, _parsed(raw))
