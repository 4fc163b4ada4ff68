"""An environment entry's own bounds (`jobsd.api.v2026_08_07.environments`), at their edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.conformance import NEW, Versioned
from tests.conftest import job_doc, make_harness

ACME = 'environments = ["production", "staging"]\n'
ENTRY = "/data/attributes/environments/production"


def errors_of(r: Any) -> list[tuple[str, str]]:
    return [(e["code"], e["source"]["pointer"]) for e in r.body["errors"]]


async def test_a_header_name_of_200_characters_is_taken_and_201_refused(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ACME) as h:
        v = Versioned(h, NEW)
        for slug, length, status in [("ok", 200, 201), ("long", 201, 422)]:
            envs = {"production": {"enabled": True, f"headers.{'X' * length}": "1"}}
            r = await v.post_job(job_doc(slug, environments=envs))
            assert r.status == status, r.body
        assert errors_of(r) == [("invalid_header", f"{ENTRY}/headers.{'X' * 201}")]


async def test_an_entry_whose_request_is_over_the_bound_is_refused_at_its_entry(
    tmp_path: Path,
) -> None:
    # The base within the bound; production's headers take its request past it.
    base = {"url": "https://example.invalid/", "body": "b" * 1_000_000}
    headers = {f"headers.X-{n}": "v" * 8000 for n in range(40)}
    async with make_harness(tmp_path, acme=ACME) as h:
        v = Versioned(h, NEW)
        envs = {"production": {"enabled": True, **headers}}
        r = await v.post_job(job_doc("big", configuration=base, environments=envs))
        assert r.status == 422, r.body
        assert errors_of(r) == [("configuration_too_large", ENTRY)]


async def test_an_override_header_value_is_checked_as_a_base_one(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ACME) as h:
        v = Versioned(h, NEW)
        for value, code in [("a\r\nX-Injected: 1", "invalid_header"), ("v" * 8193, "too_long")]:
            envs = {"production": {"enabled": True, "headers.X-A": value}}
            r = await v.post_job(job_doc("j", environments=envs))
            assert r.status == 422, (value[:20], r.body)
            assert errors_of(r) == [(code, f"{ENTRY}/headers.X-A")]
        envs = {"production": {"enabled": True, "headers.X-A": "v" * 8192}}
        assert (await v.post_job(job_doc("j", environments=envs))).status == 201


async def test_a_one_off_naming_only_an_unknown_environment_has_that_one_error(
    tmp_path: Path,
) -> None:
    async with make_harness(tmp_path, acme=ACME) as h:
        doc = job_doc("once", schedule="2030-01-01T00:00:00Z", environments={"nowhere": {}})
        r = await Versioned(h, NEW).post_job(doc)
        assert r.status == 422, r.body
        assert errors_of(r) == [("unknown_environment", "/data/attributes/environments/nowhere")]


async def test_a_null_leaf_is_no_override(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ACME) as h:
        envs = {"production": {"enabled": True, "url": None, "timeout": None}}
        r = await Versioned(h, NEW).post_job(job_doc("j", environments=envs))
        assert r.status == 201, r.body
