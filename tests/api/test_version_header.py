"""`Jobsd-Version` on every answer the app gives: the version used, which the
request's header names, else the caller's account; the daemon's default only
where none could be chosen (VERSIONS.md: a 401, or the 400 for an unknown or
repeated value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conformance import NEW, SEED
from tests.conftest import TOKEN_A, auth, make_harness

_V = "Jobsd-Version"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("PATCH", "/api/v1/jobs/x", {}),  # 405: no such method on the route
        ("GET", "/api/v1/nope", {}),  # 404: no such route
        ("GET", "/api/v1/jobs", {"Accept": "application/vnd.api+json; ext=x"}),  # 406
    ],
)
async def test_errors_before_the_route_name_the_version_chosen(
    tmp_path: Path, method: str, path: str, headers: dict[str, str]
) -> None:
    async with make_harness(tmp_path) as h:
        # The header names the version...
        r = await h.client.open(path, method=method, headers={**auth(TOKEN_A), _V: NEW, **headers})
        assert r.status_code >= 400 and r.headers[_V] == NEW
    async with make_harness(tmp_path / "pinned", acme=f'api_version = "{NEW}"') as h:
        # ...else the account of a valid token does.
        r = await h.client.open(path, method=method, headers={**auth(TOKEN_A), **headers})
        assert r.status_code >= 400 and r.headers[_V] == NEW
        # No valid token, no header: none could be chosen.
        r = await h.client.open(path, method=method, headers=headers)
        assert r.headers[_V] == SEED


async def test_where_none_could_be_chosen_the_default_is_named(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=f'api_version = "{NEW}"') as h:
        r = await h.client.get("/api/v1/jobs", headers={_V: NEW})  # 401
        assert r.status_code == 401 and r.headers[_V] == SEED
        r = await h.client.get("/api/v1/jobs", headers={**auth("nope"), _V: NEW})
        assert r.status_code == 401 and r.headers[_V] == SEED
        r = await h.client.get("/api/v1/nope", headers={**auth(TOKEN_A), _V: "2026-07-01"})
        assert r.status_code in (400, 404) and r.headers[_V] == SEED
