"""Hostile bodies on the retry-policy writes and the 2026-08-07 overrides, by hypothesis.

`tests/test_hostile.py` pushes its fragments (wrong types, 1e400, nesting
thousands deep, invalid UTF-8, lone surrogates, NUL, megabyte strings,
broken JSON) into every member of a job document; this pushes the same into
every member of a retry policy (POST and PUT, in both versions: the
resource is the same in each) and into each leaf an environment may
override. Whatever comes in: an answer below 500 in JSON:API, and a refused
request leaves every row of every table as it was.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import JSONAPI, make_harness
from tests.test_hostile import (
    ENVIRONMENTS,
    NEW,
    PROFILE,
    SENTINEL,
    _walk,
    check_answer,
    content_types,
    fragments,
    new_document,
)

_counter = itertools.count()


def policy_document(policy_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "retry_policy",
        "attributes": {
            "name": "hostile",
            "max_retries": 3,
            "backoff": "exponential",
            "delay_seconds": 2,
            "max_delay_seconds": 60,
            "retry_on_timeout": True,
            "retry_on_connection_error": False,
            "retry_statuses": ["5xx", "429"],
            "retry_statuses_except": ["501"],
        },
    }
    if policy_id is not None:
        data["id"] = policy_id
    return {"data": data}


POLICY_PLACES: list[Any] = [
    "",
    "data",
    "data/id",
    "data/type",
    "data/attributes",
    *(f"data/attributes/{name}" for name in policy_document(None)["data"]["attributes"]),
    "data/attributes/retry_statuses/0",
    "data/attributes/retry_statuses_except/0",
    ("key", "data"),
    ("key", "data/attributes"),
]

OVERRIDE_LEAVES = [
    "url",
    "method",
    "timeout",
    "body",
    "success_status",
    "tls_verify",
    "ca_cert",
    "schedule",
    "timezone",
    "retry_policy",
    "enabled",
]


def with_fragment(doc: dict[str, Any], place: Any, fragment: bytes) -> bytes:
    if place == "":
        return fragment
    if isinstance(place, tuple):
        _walk(doc, place[1])[SENTINEL] = 1
    else:
        *parents, last = place.split("/")
        holder = _walk(doc, "/".join(parents))
        holder[int(last) if isinstance(holder, list) else last] = SENTINEL
    return json.dumps(doc).encode().replace(json.dumps(SENTINEL).encode(), fragment, 1)


@settings(PROFILE, max_examples=60)
@given(
    place=st.sampled_from(POLICY_PLACES),
    fragment=fragments,
    ctype=content_types,
    put=st.booleans(),
    version=st.sampled_from([None, NEW]),
)
async def test_hostile_policy_writes_never_fail_the_server(
    tmp_path: Path, place: Any, fragment: bytes, ctype: str, put: bool, version: str | None
) -> None:
    async with make_harness(tmp_path / f"ex{next(_counter)}") as h:
        r = await h.post("/api/v1/retry-policies", policy_document("target"))
        assert r.status_code == 201, await r.get_json()
        if put:
            body = with_fragment(policy_document(None), place, fragment)
            path, method = "/api/v1/retry-policies/target", "PUT"
        else:
            body = with_fragment(policy_document("fresh"), place, fragment)
            path, method = "/api/v1/retry-policies", "POST"
        status = await check_answer(h, method, path, body, ctype, version)
        if ctype in ("text/plain", ""):
            assert status == 415


@settings(PROFILE, max_examples=40)
@given(
    leaf=st.sampled_from(OVERRIDE_LEAVES),
    environment=st.sampled_from(["production", "staging"]),
    fragment=fragments,
    put=st.booleans(),
)
async def test_hostile_overrides_never_fail_the_server(
    tmp_path: Path, leaf: str, environment: str, fragment: bytes, put: bool
) -> None:
    async with make_harness(tmp_path / f"ex{next(_counter)}", acme=ENVIRONMENTS) as h:
        r = await h.post("/api/v1/jobs", new_document("target"), headers={"Jobsd-Version": NEW})
        assert r.status_code == 201, await r.get_json()
        doc = new_document(None if put else "fresh")
        place = f"data/attributes/environments/{environment}/{leaf}"
        body = with_fragment(doc, place, fragment)
        path, method = ("/api/v1/jobs/target", "PUT") if put else ("/api/v1/jobs", "POST")
        await check_answer(h, method, path, body, JSONAPI, NEW)
