"""Request targets with no path to route on are refused on the wire, not failed in the app.

h11 takes a target that starts with `?` (`GET ?a HTTP/1.1`), hypercorn
makes its path `""`, and Quart indexes the path's first character before
any of the app's error handlers can answer: a 500 with no body and a
traceback in the log for one request line. So does an absolute-form target
(`http://host/path`, which a server must accept) that `urllib.parse`, as
Quart calls it for the path, cannot read (`http://[::1/`). RFC 9112 §3.2
has no such request-target; like every request line jobsd cannot read, it
is a JSON:API 400 and the connection closes. Absolute-form targets that
can be read are served.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import TOKEN_A
from tests.test_limits import serving_daemon
from tests.wire import exchange, request, split_answers


@pytest.mark.parametrize(
    "target", ["?a", "?", "?page[size]=1", "http://[::1/", "http://%5B::1/x", "http://x]/"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_a_target_without_a_path_is_400_and_logs_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, target: str, method: str
) -> None:
    async with serving_daemon(tmp_path) as live:
        auth = f"Authorization: Bearer {TOKEN_A}"
        raw = request(method, target, auth) + request("GET", "/healthz", "Connection: close")
        with caplog.at_level(logging.WARNING):
            answers = split_answers(await exchange(live.host, live.port, raw))
        assert [a.status for a in answers] == [400], answers  # and nothing after it is served
        assert answers[0].headers["connection"] == "close"
        if method != "HEAD":
            assert answers[0].error_code() == "bad_request"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_an_absolute_form_target_is_served(tmp_path: Path) -> None:
    async with serving_daemon(tmp_path) as live:
        auth = f"Authorization: Bearer {TOKEN_A}"
        raw = request("GET", "http://x/api/v1/jobs", auth, "Connection: close")
        answers = split_answers(await exchange(live.host, live.port, raw))
        assert [a.status for a in answers] == [200], answers
