"""The bounds on one job hold for the job as stored, every environment merged.

Each write is checked as it is sent; but a write merges with overrides
other tokens set. Writes of many environments, each within the bounds,
must not add up to a job one `GET` serves at tens of MiB, and a larger base
must not push another environment's request past the per-request bound.
Both are refused 422 and change nothing (`jobsd.job_bounds`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobsd.config import token_sha256
from jobsd.job_bounds import (
    MAX_CONFIGURATION_BYTES,
    MAX_STORED_JOB_BYTES,
    configuration_bytes,
    stored_job_problem,
)
from jobsd.job_model import Header, HttpConfig, Overlay
from tests.api.conformance import Versioned, codes
from tests.conftest import Harness, job_doc, make_harness

ENVS = [f"e{i}" for i in range(1, 8)]
BODY = 1_000_000


def token_of(env: str) -> str:
    return f"jobsd_only-{env}"


ACME = f"environments = {ENVS!r}\n".replace("'", '"') + "".join(
    f'[[accounts.scoped_tokens]]\nsha256 = "{token_sha256(token_of(e))}"\nenvironments = ["{e}"]\n'
    for e in ENVS
)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, acme=ACME) as harness:
        yield harness


def doc(env: str, entry: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    return job_doc("big", environments={env: {"enabled": False, **entry}}, **attrs)


async def test_overrides_of_many_environments_cannot_add_up_past_the_job_bound(
    h: Harness,
) -> None:
    fits = MAX_STORED_JOB_BYTES // BODY  # whole 1 MB bodies the job can hold
    assert fits < len(ENVS)
    for env in ENVS[:fits]:
        scoped = Versioned(h, token=token_of(env))
        make = scoped.post_job if env == ENVS[0] else None
        sent = doc(env, {"body": "b" * BODY})
        r = await (make(sent) if make else scoped.put_job("big", sent))
        assert r.status in (200, 201), r.body
    full = Versioned(h)
    before = (await full.get_job("big")).body
    over = ENVS[fits]
    r = await Versioned(h, token=token_of(over)).put_job("big", doc(over, {"body": "b" * BODY}))
    assert r.status == 422, r.body
    assert codes(r.body) == {("/data/attributes/configuration", "job_too_large")}
    assert str(MAX_STORED_JOB_BYTES) in r.body["errors"][0]["detail"]
    assert (await full.get_job("big")).body == before  # nothing changed


async def test_a_larger_base_cannot_push_another_environments_request_past_the_bound(
    h: Harness,
) -> None:
    e1, e2 = Versioned(h, token=token_of("e1")), Versioned(h, token=token_of("e2"))
    assert (await e1.post_job(doc("e1", {"body": "b" * BODY}))).status == 201
    full = Versioned(h)
    before = (await full.get_job("big")).body
    headers = {f"H{i}": "v" * 8000 for i in range(40)}  # 320 KB: e1's request would be 1.32 MB
    config = {"url": "https://x.invalid/", "headers": headers}
    r = await e2.put_job("big", doc("e2", {}, configuration=config))
    assert r.status == 422, r.body
    assert codes(r.body) == {("/data/attributes/configuration", "configuration_too_large")}
    assert (await full.get_job("big")).body == before
    # Without e1's body the same base fits: e1 may send it alone.
    assert (await e1.put_job("big", doc("e1", {}, configuration=config))).status == 200


def test_the_bound_counts_each_environment_on_its_base() -> None:
    base = HttpConfig(url="https://x.invalid/", headers=(Header("A", "a" * 1000),))
    small = Overlay(body="b" * 1000)
    assert stored_job_problem(base, {"e1": small, "e2": small}) is None
    big = Overlay(body="b" * (MAX_CONFIGURATION_BYTES - 1000))
    found = stored_job_problem(base, {"e1": small, "e2": big})
    assert found is not None and found[0] == "e2"
    many = {f"e{i}": Overlay(headers=(Header(f"X{i}", "v"),)) for i in range(64)}
    found = stored_job_problem(base, many)
    assert found is None  # each environment's request has two headers
    crowded = Overlay(headers=tuple(Header(f"X{i}", "v") for i in range(64)))
    found = stored_job_problem(base, {"e1": crowded})
    assert found is not None and found[0] == "e1" and "65 headers" in found[1]


def test_the_stored_bound_counts_the_base_and_every_overridden_part_to_the_byte() -> None:
    c = MAX_CONFIGURATION_BYTES
    base = HttpConfig(url="https://x.invalid/", body="b" * (c // 2))
    overlays = {
        "e1": Overlay(body="b" * (c - 100)),
        "e2": Overlay(ca_cert="c" * (c // 2 - 100)),
        "e3": Overlay(headers=(Header("H", "v" * (c // 2 - 100)),)),
        "e4": Overlay(url="https://x.invalid/" + "u" * (c // 2 - 200)),
        "e5": Overlay(body="b" * (c - 100)),
    }
    used = len(base.url) + c // 2 + (c - 100) + (c // 2 - 100) + (1 + c // 2 - 100)
    used += len("https://x.invalid/") + c // 2 - 200 + (c - 100)
    room = MAX_STORED_JOB_BYTES - used
    assert 0 < room < c - 100
    assert stored_job_problem(base, overlays | {"e6": Overlay(body="b" * room)}) is None
    found = stored_job_problem(base, overlays | {"e6": Overlay(body="b" * (room + 1))})
    assert found is not None and found[0] == "" and f"{MAX_STORED_JOB_BYTES + 1} bytes" in found[1]


def test_a_lone_surrogate_counts_three_bytes_as_utf8_with_surrogatepass() -> None:
    assert configuration_bytes(HttpConfig(url="https://x.invalid/", body="\ud800"))["body"] == 3
