"""A `204 No Content` as it goes on the wire, from the real daemon over a real socket.

RFC 9110 §8.6: a server MUST NOT send `Content-Length` in a 204 (nor in a
1xx); §6.4.1: a 204 has no content and ends at its head. The answers are read
by hand (tests/wire.py), since a client library would forgive the header.
A request placed after the DELETE on the same connection is still answered,
so the connection stays usable.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import JSONAPI, TOKEN_A
from tests.test_limits import job, serving_daemon
from tests.wire import exchange, request, split_answers

AUTH = f"Authorization: Bearer {TOKEN_A}"
POLICY = {
    "data": {
        "type": "retry_policy",
        "id": "gone-soon",
        "attributes": {
            "name": "gone soon",
            "max_retries": 1,
            "backoff": "fixed",
            "delay_seconds": 5,
            "retry_statuses": ["5xx"],
        },
    }
}


def _post(path: str, doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return request(
        "POST", path, AUTH, f"Content-Type: {JSONAPI}", f"Content-Length: {len(body)}", body=body
    )


async def test_a_204_carries_no_content_length_and_the_connection_goes_on(
    tmp_path: Path,
) -> None:
    async with serving_daemon(tmp_path) as live:
        raw = await exchange(
            live.host,
            live.port,
            _post("/api/v1/jobs", job("brief", "0 3 * * *", "http://127.0.0.1:9/x"))
            + _post("/api/v1/retry-policies", POLICY)
            + request("DELETE", "/api/v1/jobs/brief", AUTH)
            + request("DELETE", "/api/v1/retry-policies/gone-soon", AUTH)
            + request("GET", "/api/v1/jobs/brief", AUTH, "Connection: close"),
        )
    created, policy, deleted, policy_deleted, after = split_answers(raw)
    assert (created.status, policy.status) == (201, 201), (created, policy)
    for gone in (deleted, policy_deleted):
        assert gone.status == 204, gone
        assert "content-length" not in gone.headers, gone.headers
        assert "transfer-encoding" not in gone.headers, gone.headers
        assert "content-type" not in gone.headers, gone.headers
        assert gone.body == b""
    assert after.status == 404, after
