"""An HTTP/1.0 request without `Host` gets links on the address it reached.

HTTP/1.0 has no `Host` to require (h11 serves it without one), and Quart
then sets the request's host to `""`: `links.next` of `GET /api/v1/runs`
came out as `http:/api/v1/runs?...`, no URL at all. The links are built on
the address the client connected to, as a WSGI server names it
(`SERVER_NAME:SERVER_PORT`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TOKEN_A
from tests.test_limits import job, serving_daemon
from tests.wire import exchange, split_answers

AUTH = f"Authorization: Bearer {TOKEN_A}"


async def test_links_of_an_http_1_0_request_without_host_are_urls(tmp_path: Path) -> None:
    async with serving_daemon(tmp_path) as live, live.client() as client:
        r = await client.post("/api/v1/jobs", json=job("warm", "0 0 1 1 *", "http://127.0.0.1:9/"))
        assert r.status_code == 201, r.text
        for _ in range(2):
            assert (await client.post("/api/v1/jobs/warm/actions/run")).status_code == 200
        raw = f"GET /api/v1/runs?page[size]=1 HTTP/1.0\r\n{AUTH}\r\n\r\n".encode()
        (answer,) = split_answers(await exchange(live.host, live.port, raw))
        assert answer.status == 200, answer
        link = json.loads(answer.body)["links"]["next"]
        assert link.startswith(f"http://{live.host}:{live.port}/api/v1/runs?"), link
