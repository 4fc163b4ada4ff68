"""Refusals answered in front of the app are counted and logged as refusals.

A head over `max_request_header_bytes` that arrives in one read, and a Host
that is not `host[:port]`, are refused by ASGI layers ahead of the app
(`jobsd.api.limits.HeadLimit`, `jobsd.api.edge.ValidHost`), not by the
connection: they must still show as README says a refusal before any route
does, `route="(refused)"`, counted but not timed, logged as `request
refused` with its code, like the same head refused while it trickled in.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from tests.test_limits import serving_daemon
from tests.test_metrics import total
from tests.wire import read_answer, request


async def test_refusals_ahead_of_the_app_are_counted_and_logged_with_their_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = request("GET", "/healthz", "X-Big: " + "a" * 8192)  # whole, in one write
    bad_host = request("GET", "/healthz").replace(b"Host: x", b"Host: a b")
    caplog.set_level(logging.INFO, logger="jobsd.access")
    server = "max_request_header_bytes = 4096\n"
    async with serving_daemon(tmp_path, server) as live, live.client() as c:
        for raw, status, code in ((big, 431, "header_too_large"), (bad_host, 400, "invalid_host")):
            async with await trio.open_tcp_stream(live.host, live.port) as stream:
                await stream.send_all(raw)
                answer = await read_answer(stream)
                assert (answer.status, answer.error_code()) == (status, code)
        text = (await c.get("/metrics")).text
    refused = {"route": "(refused)", "method": "GET"}
    assert total(text, "jobsd_api_requests_total", **refused, status="431") == 1
    assert total(text, "jobsd_api_requests_total", **refused, status="400") == 1
    assert total(text, "jobsd_api_requests_total", route="(unmatched)") == 0
    assert total(text, "jobsd_api_request_duration_seconds_count", **refused) == 0
    lines = [r for r in caplog.records if r.getMessage() == "request refused"]
    codes = {(r.fields["status"], r.fields["code"]) for r in lines}  # type: ignore[attr-defined]
    assert codes == {(431, "header_too_large"), (400, "invalid_host")}, codes
