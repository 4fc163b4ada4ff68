"""The pure model the API model machine holds, and the checks every answer must pass.

The model is what the two accounts should hold after the answers so far:
jobs (their base, version, retry policy, and a generation that tells a
job from a later one under the same slug), retry policies, and runs (their
job's generation, environment and status). It never guesses what the
daemon decides on its own (a plan's limit, a scoped token's
`environment_scope`): a rule names the statuses the spec allows, and the
model follows the answer only when it is a success. So "a refused request
changes nothing" is checked by comparing, after every step, everything
each account lists with the model (`Observed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hypothesis import strategies as st

from tests.api_model_docs import NEW, SEED, JobFields, PolicyFields
from tests.api_model_host import JSONAPI, ApiHost, Reply
from tests.conftest import TOKEN_A, TOKEN_B

STAGING_TOKEN = "jobsd_model-scoped-to-staging"


@dataclass
class ModelJob:
    fields: JobFields
    retry_policy: str | None
    generation: int
    version: int = 1

    def row(self) -> tuple[Any, ...]:
        """What a listing must show of it, in either version."""
        f = self.fields
        return (f.name, f.url, f.schedule, f.kind, self.retry_policy, self.version)


@dataclass
class ModelRun:
    slug: str
    generation: int
    environment: str
    status: str = "PENDING"


@dataclass
class Account:
    key: str
    token: str
    environments: tuple[str, ...]
    jobs: dict[str, ModelJob] = field(default_factory=dict)
    policies: dict[str, PolicyFields] = field(default_factory=dict)
    runs: dict[str, ModelRun] = field(default_factory=dict)

    def live(self, slug: str, generation: int) -> bool:
        job = self.jobs.get(slug)
        return job is not None and job.generation == generation

    def policy_in_use(self, policy_id: str) -> bool:
        return any(job.retry_policy == policy_id for job in self.jobs.values())

    def jobs_listed(self, version: str, kind: str | None = None, name: str = "") -> dict[str, Any]:
        """The jobs a full token's listing shows: the seed version lists every job but
        manual ones; 2026-08-07 omits one-offs unless `filter[kind]` asks for a kind."""
        shown = {}
        for slug, job in self.jobs.items():
            if version == SEED:
                keep = job.fields.kind != "manual"
            else:
                keep = job.fields.kind == kind if kind else job.fields.kind != "one_off"
            if keep and name.lower() in job.fields.name.lower():
                shown[slug] = job.row()
        return shown


@dataclass(frozen=True, repr=False)
class Caller:
    """Who sends a request: an account's full token, or its token scoped to staging."""

    account: Account
    token: str
    scoped: bool = False

    def sees(self, run: ModelRun) -> bool:
        return not self.scoped or run.environment == "staging"

    def __repr__(self) -> str:
        return f"{self.account.key}{'/staging' if self.scoped else ''}"


def check_answer(reply: Reply) -> None:
    """Never a 5xx; every error a JSON:API error document; every success JSON:API."""
    assert reply.status < 500, (reply.status, reply.raw[:2000])
    if reply.status == 204:
        assert reply.raw == b""
        return
    assert reply.headers.get("content-type") == JSONAPI, reply.headers
    assert isinstance(reply.body, dict), reply.raw[:500]
    if reply.status >= 400:
        errors = reply.body.get("errors")
        assert isinstance(errors, list) and errors, reply.body
        for error in errors:
            assert error["status"] == str(reply.status), (reply.status, error)
            assert isinstance(error.get("title"), str) and error["title"], error
        assert "data" not in reply.body, reply.body
        if reply.status == 401:
            assert reply.headers.get("www-authenticate", "").startswith("Bearer"), reply.headers
    else:
        assert "data" in reply.body and "errors" not in reply.body, reply.body


def job_row(resource: dict[str, Any]) -> tuple[Any, ...]:
    a = resource["attributes"]
    return (
        a["name"],
        a["configuration"]["url"],
        a["schedule"],
        a.get("kind"),
        a.get("retry_policy"),
        a["version"],
    )


def call(host: ApiHost, caller: Caller, method: str, path: str, **kw: Any) -> Reply:
    reply = host.request(method, path, token=caller.token, **kw)
    check_answer(reply)
    return reply


def walk_runs(host: ApiHost, caller: Caller, query: str) -> list[dict[str, Any]]:
    """Every run the caller lists, following `links.next` to the end."""
    seen: list[dict[str, Any]] = []
    while True:
        reply = call(host, caller, "GET", "/api/v1/runs", version=NEW, query=query)
        assert reply.status == 200, reply.body
        seen.extend(reply.body["data"])
        following = reply.body["links"]["next"]
        if following is None:
            return seen
        assert reply.body["data"], "a page that is not the last is not empty"
        query = urlsplit(following).query


def walk_pages(host: ApiHost, caller: Caller, path: str, query: str, version: str) -> list[Any]:
    """Every resource a numbered listing shows, page after page until an empty one."""
    seen: list[Any] = []
    number = 1
    while True:
        page = f"{query}&page[number]={number}" if query else f"page[number]={number}"
        reply = call(host, caller, "GET", path, version=version, query=page)
        assert reply.status == 200, reply.body
        if not reply.body["data"]:
            return seen
        seen.extend(reply.body["data"])
        number += 1
        assert number < 1000


def observe_account(host: ApiHost, caller: Caller) -> None:
    """Everything the account lists equals the model (one page of 1000 holds it all)."""
    account = caller.account
    for version in (SEED, NEW):
        reply = call(host, caller, "GET", "/api/v1/jobs", version=version, query="page[size]=1000")
        listed = {r["id"]: job_row(r) for r in reply.body["data"]}
        assert listed == account.jobs_listed(version), (caller, version)
    for kind in ("one_off", "manual", "recurring"):
        query = f"page[size]=1000&filter[kind]={kind}"
        reply = call(host, caller, "GET", "/api/v1/jobs", version=NEW, query=query)
        listed = {r["id"]: job_row(r) for r in reply.body["data"]}
        assert listed == account.jobs_listed(NEW, kind), (caller, kind)
    reply = call(host, caller, "GET", "/api/v1/retry-policies", version=NEW)
    policies = {
        r["id"]: (r["attributes"]["name"], r["attributes"]["max_retries"])
        for r in reply.body["data"]
    }
    expected_policies = {k: (p.name, p.max_retries) for k, p in account.policies.items()}
    assert policies == expected_policies, caller
    reply = call(host, caller, "GET", "/api/v1/runs", version=NEW, query="page[size]=1000")
    assert reply.body["links"]["next"] is None
    runs = {r["id"]: r["attributes"]["status"] for r in reply.body["data"]}
    assert runs == {k: r.status for k, r in account.runs.items()}, caller


def observe_scoped_runs(host: ApiHost, caller: Caller) -> None:
    """A token scoped to staging lists exactly the account's staging runs."""
    reply = call(host, caller, "GET", "/api/v1/runs", version=NEW, query="page[size]=1000")
    runs = {r["id"]: r["attributes"]["status"] for r in reply.body["data"]}
    visible = {k: r.status for k, r in caller.account.runs.items() if caller.sees(r)}
    assert runs == visible, caller


WHO = st.sampled_from(["acme", "acme/staging", "other"])


def accounts() -> dict[str, Caller]:
    """acme (full and staging-scoped tokens; production and staging) and other, by `WHO`."""
    acme = Account("acme", TOKEN_A, ("production", "staging"))
    other = Account("other", TOKEN_B, ("production",))
    callers = [Caller(acme, TOKEN_A), Caller(acme, STAGING_TOKEN, scoped=True)]
    return {repr(c): c for c in [*callers, Caller(other, TOKEN_B)]}


def seed_scoped(caller: Caller, version: str | None) -> bool:
    """The seed version acts on the default environment, which a token scoped to
    staging cannot reach: every request it sends so is `403 environment_scope`."""
    return caller.scoped and version != NEW
