"""Every response against the served spec of the version that answered it.

`Versioned` wraps the test harness: each request names its API version (or
not, to get the account's), and each response is checked against the served
OpenAPI document of the version it says it used (its `Jobsd-Version`
header): the schema of that operation and status, with `$ref`s resolved
in the whole document and formats checked, and, for a job or run, exactly
the schema's attributes (every one present, none extra).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from jobsd.api.versions import dialect
from tests.conftest import JSONAPI, TOKEN_A, Harness, auth

SEED, NEW = "2026-06-04", "2026-08-07"
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
FORMATS = FormatChecker()


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return _RFC3339.fullmatch(value) is not None and bool(
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    )


@cache
def spec(version: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(dialect(version).served_spec())
    return loaded


@cache
def _validator(version: str, method: str, template: str, status: int) -> Draft202012Validator:
    uri = f"urn:jobsd:{version}"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(spec(version), default_specification=DRAFT202012)
    )
    responses = spec(version)["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} {status} is not documented"
    content = responses[str(status)].get("content", {})
    if JSONAPI not in content:
        return Draft202012Validator({"type": "null"})  # no body (204)
    ref = (
        f"{uri}#/paths/{_escape(template)}/{method.lower()}/responses/{status}"
        f"/content/{_escape(JSONAPI)}/schema"
    )
    return Draft202012Validator({"$ref": ref}, registry=registry, format_checker=FORMATS)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def schema_properties(version: str, name: str) -> set[str]:
    return set(spec(version)["components"]["schemas"][name]["properties"])


def check(version: str, method: str, template: str, status: int, body: Any) -> None:
    _validator(version, method, template, status).validate(body)
    if status >= 300 or not isinstance(body, dict):
        return
    data = body.get("data")
    for resource in data if isinstance(data, list) else [data]:
        if not isinstance(resource, dict) or "type" not in resource:
            continue
        kind = {"job": "Job", "run": "Run"}.get(resource["type"])
        if kind is not None:
            assert set(resource["attributes"]) == schema_properties(version, kind), resource
        if kind == "Job":
            conf = resource["attributes"]["configuration"]
            assert set(conf) == schema_properties(version, "JobHttpConfiguration")


@dataclass
class Reply:
    status: int
    body: Any
    version: str
    headers: Any


@dataclass
class Versioned:
    """Requests in one version (None: the account's), each response checked."""

    h: Harness
    version: str | None = NEW
    token: str = TOKEN_A

    async def call(
        self, method: str, path: str, template: str, doc: Any = None, **kw: Any
    ) -> Reply:
        headers = {**auth(kw.pop("token", self.token)), **kw.pop("headers", {})}
        if self.version is not None:
            headers["Jobsd-Version"] = self.version
        if doc is not None:
            kw["json"] = doc
            headers.setdefault("Content-Type", JSONAPI)
        response = await self.h.client.open(path, method=method, headers=headers, **kw)
        raw = await response.get_data()
        body = json.loads(raw) if raw else None
        used = response.headers["Jobsd-Version"]
        if self.version is not None and response.status_code != 400:
            assert used == self.version
        check(used, method, template, response.status_code, body)
        return Reply(response.status_code, body, used, response.headers)

    async def post_job(self, doc: Any, **kw: Any) -> Reply:
        return await self.call("POST", "/api/v1/jobs", "/api/v1/jobs", doc, **kw)

    async def put_job(self, slug: str, doc: Any, **kw: Any) -> Reply:
        return await self.call("PUT", f"/api/v1/jobs/{slug}", "/api/v1/jobs/{job_id}", doc, **kw)

    async def get_job(self, slug: str, **kw: Any) -> Reply:
        return await self.call("GET", f"/api/v1/jobs/{slug}", "/api/v1/jobs/{job_id}", **kw)

    async def delete_job(self, slug: str, **kw: Any) -> Reply:
        return await self.call("DELETE", f"/api/v1/jobs/{slug}", "/api/v1/jobs/{job_id}", **kw)

    async def list_jobs(self, query: str = "", **kw: Any) -> Reply:
        return await self.call("GET", f"/api/v1/jobs{query}", "/api/v1/jobs", **kw)

    async def run_now(self, slug: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call(
            "POST",
            f"/api/v1/jobs/{slug}/actions/run",
            "/api/v1/jobs/{job_id}/actions/run",
            body,
            **kw,
        )

    async def list_runs(self, query: str = "", **kw: Any) -> Reply:
        return await self.call("GET", f"/api/v1/runs{query}", "/api/v1/runs", **kw)

    async def get_run(self, run_id: str, **kw: Any) -> Reply:
        return await self.call("GET", f"/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}", **kw)

    async def cancel(self, run_id: str, **kw: Any) -> Reply:
        return await self.call(
            "POST",
            f"/api/v1/runs/{run_id}/actions/cancel",
            "/api/v1/runs/{run_id}/actions/cancel",
            **kw,
        )

    async def rerun(self, run_id: str, **kw: Any) -> Reply:
        return await self.call(
            "POST",
            f"/api/v1/runs/{run_id}/actions/rerun",
            "/api/v1/runs/{run_id}/actions/rerun",
            **kw,
        )

    async def usage(self, query: str = "", **kw: Any) -> Reply:
        return await self.call("GET", f"/api/v1/usage{query}", "/api/v1/usage", **kw)


def pointers(body: Any) -> set[str]:
    return {e["source"]["pointer"] for e in body["errors"] if "pointer" in e.get("source", {})}


def codes(body: Any) -> set[tuple[str, str]]:
    return {(e.get("source", {}).get("pointer", ""), e["code"]) for e in body["errors"]}
