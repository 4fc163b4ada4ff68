"""What the run-now layer must do with a body besides answering as the route does.

tests/api/test_fast_run_now_body.py compares its answers with the route's;
here, what no comparison shows: the plain bodies (the official SDK's own
request among them) are answered without the app, the rest reach the app
with the very messages that came (a body over the bound, chunked, or of a
media type the route refuses not even read), and a body that does not
come in time is answered as the app does, when the app would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio
from smplkit._generated.jobs.api.jobs import run_job_now
from smplkit._generated.jobs.client import AuthenticatedClient
from smplkit._generated.jobs.models.run_now_request import RunNowRequest

from jobsd.api.fast_run_now import BODY_BOUND, FastRunNow
from jobsd.api.server import served_app
from tests.api.test_fast_paths import prepared
from tests.api.test_fast_run_now import comparable, held
from tests.api.test_fast_run_now_body import (
    SDK_TYPE,
    Wire,
    answer,
    chunked,
    run_now,
    twice_typed,
)
from tests.conftest import TOKEN_A


class Recorder:
    """An app that takes the whole body, records each message and how many the layer
    had taken before, and answers 599."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.seen: list[dict[str, Any]] = []
        self.taken_before: int | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.taken_before = self.wire.taken
        while not self.seen or self.seen[-1].get("more_body"):
            self.seen.append(await receive())
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_plain_bodies_are_answered_here_and_the_rest_reach_the_app_as_sent(
    tmp_path: Path,
) -> None:
    async with prepared(tmp_path, scheduler="max_pending_runs = 100") as h:
        for body, chunks in [
            (b'{"environment":"staging"}', [b'{"environment":"staging"}']),
            (b'{"environment": "staging"}', [b'{"envi', b"", b'ronment": "staging"}', b""]),
            (b"{}", [b"{}"]),  # the token sees two environments, the job is on in one
            (
                b'{"environment":null}'.ljust(BODY_BOUND),
                [b'{"environment":null}'.ljust(BODY_BOUND)],
            ),
        ]:
            wire = Wire(chunks)
            recorder = Recorder(wire)
            layer = FastRunNow(recorder, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
            status, _, answered, _ = await answer(layer, run_now(body), wire)
            assert (status, recorder.seen) == (200, []), answered
        for request, chunks, read_first in [
            (run_now(b'{"environment":"prod'), [b'{"environment":"prod', b'uction"}'], True),
            (run_now(b'{"environment":"nope"}'), [b'{"environ', b'ment":"nope"}', b""], True),
            (
                run_now(b'{"environment":"staging","x":1}'),
                [b'{"environment":"staging","x":1}'],
                True,
            ),
            (
                run_now(b'{"environment":"staging"}', "text/plain"),
                [b'{"environment":"staging"}'],
                False,
            ),
            (run_now(b" " * (BODY_BOUND + 1)), [b" " * (BODY_BOUND + 1)], False),
            (chunked(run_now(b"{}")), [b"{}"], False),
            (twice_typed(run_now(b"{}")), [b"{}"], False),
        ]:
            wire = Wire(chunks)
            recorder = Recorder(wire)
            layer = FastRunNow(recorder, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
            assert (await answer(layer, request, wire))[0] == 599
            assert recorder.seen == wire.messages  # the same bytes, in the same messages
            assert recorder.taken_before == (len(chunks) if read_first else 0), request
        assert len(h.orders.orders) == 4


async def test_a_body_that_does_not_come_in_time_is_answered_as_the_app_does(
    tmp_path: Path,
) -> None:
    """408 within `body_timeout_s` (not twice that), as the app words it; nothing queued.
    A body framed over 2 MiB is the app's 413 at once, not a wait."""
    async with prepared(tmp_path / "fast") as h, prepared(tmp_path / "routed") as other:
        server = h.config.server.model_copy(update={"body_timeout_s": 1, "request_timeout_s": 5})
        fast = served_app(h.ctx, server)
        routed = served_app(other.ctx, server, fast_paths=False)
        for request, chunks in [
            (run_now(b'{"environment":"staging"}'), [b'{"environment":']),
            (run_now(b'{"environment":"staging"}'), []),
            ({**run_now(b""), "headers": run_now(b"x" * 3_000_000)["headers"]}, []),
        ]:
            replies = []
            for app in (fast, routed):
                start = trio.current_time()
                with trio.fail_after(3):
                    replies.append(await answer(app, request, Wire(chunks, stalls=True)))
                assert trio.current_time() - start < 1.8
            assert replies[0] == replies[1]
            status, headers, _, _ = replies[0]
            assert status == 413 or (status == 408 and (b"connection", b"close") in headers)
        assert h.orders.orders == [] and not await held(h)


def sdk_request(path: str, body: RunNowRequest) -> tuple[dict[str, Any], list[bytes]]:
    """The request the official SDK sends for a run-now, as the ASGI app receives it."""
    client = AuthenticatedClient(
        base_url="http://127.0.0.1:8080", token=TOKEN_A, headers={"Accept": SDK_TYPE}
    )
    kwargs = run_job_now._get_kwargs(path, body=body)
    sent: httpx.Request = client.get_httpx_client().build_request(**kwargs)
    content = sent.read()
    request = {
        "method": sent.method,
        "path": sent.url.path,
        "query_string": sent.url.query,
        "headers": [(k.lower(), v) for k, v in sent.headers.raw],
    }
    return request, [content]


async def test_the_official_sdks_run_now_is_answered_without_the_app(tmp_path: Path) -> None:
    acme = 'api_version = "2026-08-07"\n'  # as tests/test_sdk.py pins it: no header needed
    async with (
        prepared(tmp_path / "fast", acme=acme) as h,
        prepared(tmp_path / "routed", acme=acme) as other,
    ):
        routed = served_app(other.ctx, other.config.server, fast_paths=False)
        for environment in ("staging", None):
            request, chunks = sdk_request("warm", RunNowRequest(environment=environment))
            assert chunks[0].startswith(b'{"environment":'), chunks
            wire = Wire(chunks)
            recorder = Recorder(wire)
            layer = FastRunNow(recorder, h.ctx, body_timeout_s=30)  # type: ignore[arg-type]
            reply = await answer(layer, request, wire)
            assert reply[0] == 200 and recorder.taken_before is None, reply
            assert comparable(reply) == comparable(await answer(routed, request, Wire(chunks)))
        assert len(h.orders.orders) == 2
