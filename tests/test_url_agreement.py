"""A URL the API accepts is one the request can be sent to.

The API judged a non-ASCII host with Python's `idna` codec (IDNA 2003,
with nameprep), the sender encodes it with the `idna` package (IDNA 2008,
as httpx did: `jobsd.http_url`). The first maps `Ⅻ.com` to `xii.com` and
full-width `example.com` (U+FF45...) to `example.com`, or lets `_é` pass; the
second refuses all three. Such a job was stored (201) and every run of it
failed without a request ("Invalid IDNA hostname"), where the contract asks
for a 422 at the URL that changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd import http_url
from jobsd.urls import url_problem
from tests.conftest import JSONAPI, job_doc, make_harness
from tests.test_hostile import check_answer

FULL_WIDTH = "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
FULL_WIDTH_IP = "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11"
PIECES = st.sampled_from(
    [
        *("http://", "https://", "HTTP://", "https://[::1]", "a.b", "x.", "-a", "a-", "_"),
        *(".", "..", ":", ":80", ":65536", "/", "?", "#", "%2F", "@", "a" * 63),
        *("é", "ß", "münchen.de", "Ⅻ.com", FULL_WIDTH, FULL_WIDTH_IP, "xn--"),
        *("\u00ad", "\u200d", "ﬁ", "Å", "İ", "ς", "ǅ", "\u0301", "ア", "한"),
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=7).map("".join))
def test_a_url_the_api_accepts_can_be_sent(url: str) -> None:
    if url_problem(url) is None:
        http_url.parse(url)  # raises InvalidURL for a URL no request can go to


@pytest.mark.parametrize("version", [None, "2026-08-07"])
@pytest.mark.parametrize(
    "url",
    ["https://Ⅻ.com/hook", f"https://{FULL_WIDTH}/", "https://_é/", f"http://{FULL_WIDTH_IP}/"],
)
async def test_a_host_that_cannot_be_sent_is_422_and_changes_nothing(
    tmp_path: Path, version: str | None, url: str
) -> None:
    async with make_harness(tmp_path) as h:
        doc = job_doc("fresh", configuration={"url": url})
        if version is not None:
            del doc["data"]["attributes"]["schedule"]  # a manual job: nothing fires meanwhile
        body = json.dumps(doc).encode()
        assert await check_answer(h, "POST", "/api/v1/jobs", body, JSONAPI, version) == 422
        headers = {"Content-Type": JSONAPI, **({"Jobsd-Version": version} if version else {})}
        r = await h.post("/api/v1/jobs", doc, headers=headers)
        [error] = (await r.get_json())["errors"]
        assert error["code"] == "invalid_url"
        assert error["source"]["pointer"] == "/data/attributes/configuration/url"
