"""Query values are taken whole or refused, through the real app and store.

A value is judged as the client sent it, every character: `page[size]=5`
followed by a newline (`%0A`) is no integer, though a regex anchored with
`$` (which also matches before a final newline) and `int()` (which strips
whitespace) both let it through as 5. The same held for the usage month
(`2026-01\\n` was answered as a period of its own, with none of January's
runs). Each refusal is a 400 naming the parameter
(SEMANTICS: `source.parameter`), and a refused request changes nothing.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Harness, job_doc, make_harness
from tests.test_hostile import snapshot

NEW = "2026-08-07"
_counter = itertools.count()
PROFILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# (path, parameter, highest accepted)
INTEGERS = [
    ("/api/v1/jobs", "page[size]", 1000),
    ("/api/v1/jobs", "page[number]", 10**18 - 1),
    ("/api/v1/runs", "page[size]", 1000),
    ("/api/v1/retry-policies", "page[size]", 1000),
    ("/api/v1/retry-policies", "page[number]", 10**18 - 1),
]
ODD_TEXT = st.sampled_from(["\n", "\r", "\t", " ", "\x0b", "\x0c", "\x00", "+", "_", "\u0663"])


def whole_integer(text: str, high: int) -> bool:
    return text != "" and all("0" <= c <= "9" for c in text) and 1 <= int(text) <= high


async def refused(h: Harness, path: str, parameter: str, value: str, version: str | None) -> None:
    headers = {"Jobsd-Version": version} if version else {}
    before = snapshot(h.config.storage.path)
    r = await h.get(path, query_string={parameter: value}, headers=headers)
    body = await r.get_json()
    assert r.status_code == 400, (path, parameter, value, body)
    [error] = body["errors"]
    assert error["source"] == {"parameter": parameter} and error["code"] == "invalid_parameter"
    assert snapshot(h.config.storage.path) == before


@PROFILE
@given(
    where=st.sampled_from(INTEGERS),
    digits=st.integers(1, 1000).map(str),
    odd=ODD_TEXT,
    before=st.booleans(),
    version=st.sampled_from([None, NEW]),
)
async def test_an_integer_parameter_is_its_digits_and_nothing_more(
    tmp_path: Path,
    where: tuple[str, str, int],
    digits: str,
    odd: str,
    before: bool,
    version: str | None,
) -> None:
    path, parameter, high = where
    value = odd + digits if before else digits + odd
    assert not whole_integer(value, high)
    async with make_harness(tmp_path / f"ex{next(_counter)}") as h:
        assert (await h.post("/api/v1/jobs", job_doc("j"))).status_code == 201
        await refused(h, path, parameter, value, version)
        ok = await h.get(path, query_string={parameter: digits})
        assert ok.status_code == 200, await ok.get_json()


@pytest.mark.parametrize("version", [None, NEW])
@pytest.mark.parametrize("odd", ["\n", "\r\n", " ", "\t", "x"])
async def test_a_usage_period_is_a_month_and_nothing_more(
    tmp_path: Path, version: str | None, odd: str
) -> None:
    async with make_harness(tmp_path) as h:
        # the harness's clock stands at 2026-06-05
        await refused(h, "/api/v1/usage", "filter[period]", "2026-01" + odd, version)
        r = await h.get("/api/v1/usage", query_string={"filter[period]": "2026-01"})
        assert (await r.get_json())["data"]["attributes"]["period"] == "2026-01"


LISTS = {
    "/api/v1/jobs": [
        "filter[enabled]",
        "filter[kind]",
        "filter[scheduled]",
        "filter[name]",
        "sort",
        "page[number]",
        "page[size]",
        "meta[total]",
    ],
    "/api/v1/runs": [
        "filter[job]",
        "filter[status]",
        "filter[trigger]",
        "filter[environment]",
        "filter[created_at]",
        "filter[started_at]",
        "filter[finished_at]",
        "filter[scheduled_for]",
        "last_run_only",
        "sort",
        "page[size]",
        "page[after]",
    ],
    "/api/v1/run_stats": ["filter[created_at]", "filter[environment]", "bucket"],
    "/api/v1/retry-policies": ["filter[name]", "sort", "page[number]", "page[size]", "meta[total]"],
    "/api/v1/usage": ["filter[period]"],
}
VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "true",
            "1",
            "0",
            "-1",
            "1e3",
            "999999999999999999",
            "9" * 40,
            "*",
            "[*,*)",
            "[2026-06-01T00:00:00Z,*)",
            "[*,0001-01-01T00:00:00Z)",
            "-created_at",
            "job",
            "FAILED,SUCCEEDED",
            "production",
            "current",
            "2026-05",
            "1h",
            "AgEAAAAGU3gErx51AAAAAAAAAAY",
            "\x00",
            "\ud800",
            "a" * 5000,
        ]
    ),
    st.text(max_size=30),
)


@PROFILE
@given(
    where=st.sampled_from(sorted(LISTS)),
    data=st.data(),
    version=st.sampled_from([None, NEW]),
)
async def test_any_query_of_a_list_is_answered_or_refused_naming_a_parameter(
    tmp_path: Path, where: str, data: st.DataObject, version: str | None
) -> None:
    names = data.draw(st.lists(st.sampled_from(LISTS[where]), min_size=1, max_size=4))
    pairs = [(name, data.draw(VALUES)) for name in names]
    async with make_harness(tmp_path / f"ex{next(_counter)}") as h:
        assert (await h.post("/api/v1/jobs", job_doc("j"))).status_code == 201
        assert (await h.post("/api/v1/jobs/j/actions/run")).status_code == 200
        before = snapshot(h.config.storage.path)
        headers = {"Jobsd-Version": version} if version else {}
        query = "&".join(
            f"{quote(n, safe='[]')}={quote(v, safe='', errors='surrogatepass')}" for n, v in pairs
        )
        r = await h.get(f"{where}?{query}", headers=headers)
        assert r.status_code in (200, 400), (pairs, r.status_code, await r.get_data())
        assert r.headers["Content-Type"] == "application/vnd.api+json"
        body = await r.get_json()
        if r.status_code == 400:
            [error] = body["errors"]
            assert error["source"]["parameter"] in names, (pairs, error)
        assert snapshot(h.config.storage.path) == before
