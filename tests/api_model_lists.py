"""The API model machine's reading rules: lists page by page, bad parameters, odd requests.

Kept apart from the writing rules (tests/test_api_model.py) only for size;
`ApiModel` mixes them in. A walk through every page must show each object
the model holds exactly once (numbered pages for jobs and policies, in any
sort; `page[after]` cursors for runs, with filters); a bad query parameter
is a `400` that names it; a request without a valid token, with an unknown
`Jobsd-Version`, or with a method its route lacks is refused as such.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.api_model_docs import NEW, SEED, SLUGS
from tests.api_model_host import ApiHost
from tests.api_model_state import (
    WHO,
    Caller,
    call,
    check_answer,
    job_row,
    seed_scoped,
    walk_pages,
    walk_runs,
)

JOB_SORTS = ("", "name", "-name", "created_at", "-created_at", "updated_at", "-updated_at")
RUN_SORTS = ("", "created_at", "-created_at", "job", "-job", "scheduled_for", "-scheduled_for")
BAD_QUERIES = (
    ("/api/v1/jobs", "page[size]=0", "page[size]"),
    ("/api/v1/jobs", "page[size]=1001", "page[size]"),
    ("/api/v1/jobs", "page[size]=x", "page[size]"),
    ("/api/v1/jobs", "page[number]=0", "page[number]"),
    ("/api/v1/jobs", "page[number]=1e3", "page[number]"),
    ("/api/v1/jobs", "meta[total]=yes", "meta[total]"),
    ("/api/v1/jobs", "filter[enabled]=maybe", "filter[enabled]"),
    ("/api/v1/jobs", "sort=version", "sort"),
    ("/api/v1/jobs", "filter[kind]=sometimes", "filter[kind]"),
    ("/api/v1/retry-policies", "page[size]=-1", "page[size]"),
    ("/api/v1/retry-policies", "sort=max_retries", "sort"),
    ("/api/v1/runs", "page[size]=0", "page[size]"),
    ("/api/v1/runs", "page[after]=not-a-cursor", "page[after]"),
    ("/api/v1/runs", "filter[status]=DONE", "filter[status]"),
    ("/api/v1/runs", "filter[environment]=nowhere", "filter[environment]"),
    ("/api/v1/runs", "filter[created_at]=[2026,", "filter[created_at]"),
    ("/api/v1/runs", "sort=status", "sort"),
    ("/api/v1/usage", "filter[period]=2026-13", "filter[period]"),
)


class ListRules:
    """Rules that read; see the module note."""

    host: ApiHost
    callers: dict[str, Caller]

    @rule(
        data=st.data(),
        version=st.sampled_from([SEED, NEW]),
        size=st.integers(1, 3),
        kind=st.sampled_from([None, "recurring", "manual", "one_off"]),
        name=st.sampled_from(["", "a", "A", "x y", "é", "%", "_", "a%"]),
        sort=st.sampled_from(JOB_SORTS),
        total=st.booleans(),
    )
    def page_jobs(
        self,
        data: st.DataObject,
        version: str,
        size: int,
        kind: str | None,
        name: str,
        sort: str,
        total: bool,
    ) -> None:
        caller = self.callers[data.draw(WHO)]
        query = [f"page[size]={size}"] + (["meta[total]=true"] if total else [])
        if version == NEW:
            query += [f"filter[kind]={kind}"] if kind else []
            query += [f"filter[name]={name}"] if name else []
            query += [f"sort={sort}"] if sort else []
        if seed_scoped(caller, version):
            reply = call(self.host, caller, "GET", "/api/v1/jobs", version=version)
            assert reply.status == 403, reply.body
            return
        seen = walk_pages(self.host, caller, "/api/v1/jobs", "&".join(query), version)
        ids = Counter(r["id"] for r in seen)
        assert all(n == 1 for n in ids.values()), ids
        if version == SEED:
            kind, name = None, ""
        assert set(ids) == set(caller.account.jobs_listed(version, kind, name)), (caller, query)
        if total:
            first = call(
                self.host, caller, "GET", "/api/v1/jobs", version=version, query="&".join(query)
            )
            assert first.body["meta"]["pagination"]["total"] == len(ids), first.body["meta"]

    @rule(data=st.data(), version=st.sampled_from([None, SEED, NEW]))
    def read_one(self, data: st.DataObject, version: str | None) -> None:
        """A job or run by id (answered below Quart when plain): the caller's own or 404."""
        caller = self.callers[data.draw(WHO)]
        account = caller.account
        # in creation order: ids are random, so a sorted list would differ between replays
        runs = [
            run for c in (self.callers["acme"], self.callers["other"]) for run in c.account.runs
        ]
        target = data.draw(st.sampled_from([*SLUGS, *runs]))
        if target in SLUGS:
            reply = call(self.host, caller, "GET", f"/api/v1/jobs/{target}", version=version)
            job = account.jobs.get(target)
            shown = job is not None and not (version != NEW and job.fields.kind == "manual")
            if seed_scoped(caller, version):
                assert reply.status == 403, reply.body
            elif shown:
                assert job is not None and reply.status == 200, reply.body
                assert job_row(reply.body["data"]) == job.row()
            else:
                assert reply.status == 404, reply.body
        else:
            reply = call(self.host, caller, "GET", f"/api/v1/runs/{target}", version=version)
            run = account.runs.get(target)
            if run is not None and caller.sees(run):
                assert reply.status == 200, reply.body
                assert reply.body["data"]["attributes"]["status"] == run.status
            else:
                assert reply.status == 404, reply.body

    @rule(data=st.data(), size=st.integers(1, 2), sort=st.sampled_from(JOB_SORTS))
    def page_policies(self, data: st.DataObject, size: int, sort: str) -> None:
        caller = self.callers[data.draw(WHO)]
        query = f"page[size]={size}" + (f"&sort={sort}" if sort else "")
        seen = walk_pages(self.host, caller, "/api/v1/retry-policies", query, NEW)
        ids = Counter(r["id"] for r in seen)
        assert all(n == 1 for n in ids.values()) and set(ids) == set(caller.account.policies)

    @rule(
        data=st.data(),
        size=st.integers(1, 3),
        job=st.sampled_from([None, *SLUGS]),
        status=st.sampled_from([None, "PENDING", "CANCELED", "PENDING,CANCELED", "FAILED"]),
        sort=st.sampled_from(RUN_SORTS),
    )
    def page_runs(
        self, data: st.DataObject, size: int, job: str | None, status: str | None, sort: str
    ) -> None:
        caller = self.callers[data.draw(WHO)]
        query = f"page[size]={size}"
        query += f"&filter[job]={job}" if job else ""
        query += f"&filter[status]={status}" if status else ""
        query += f"&sort={sort}" if sort else ""
        seen = walk_runs(self.host, caller, query)
        ids = Counter(r["id"] for r in seen)
        assert all(n == 1 for n in ids.values()), ids
        expected = {
            run_id
            for run_id, run in caller.account.runs.items()
            if caller.sees(run)
            and (job is None or run.slug == job)
            and (status is None or run.status in status.split(","))
        }
        assert set(ids) == expected, (caller, query)

    @rule(data=st.data(), bad=st.sampled_from(BAD_QUERIES), version=st.sampled_from([SEED, NEW]))
    def bad_query(self, data: st.DataObject, bad: tuple[str, str, str], version: str) -> None:
        caller = self.callers[data.draw(WHO)]
        path, query, parameter = bad
        reply = call(self.host, caller, "GET", path, version=version, query=query)
        if reply.status == 200 or (reply.status == 403 and seed_scoped(caller, version)):
            return  # a parameter this version does not define is ignored
        assert reply.status == 400, (path, query, reply.body)
        pointed = [e.get("source", {}).get("parameter") for e in reply.body["errors"]]
        assert parameter in pointed, (query, reply.body)

    @rule(
        data=st.data(),
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
        path=st.sampled_from(
            [
                "/api/v1/jobs",
                "/api/v1/jobs/a",
                "/api/v1/runs",
                "/api/v1/jobs/a/actions/run",
                "/api/v1/retry-policies/p",
                "/api/v1/usage",
                "/api/v1/nothing",
            ]
        ),
        oddity=st.sampled_from(["no-token", "bad-token", "bad-version", "patch"]),
    )
    def odd_request(self, data: st.DataObject, method: str, path: str, oddity: str) -> None:
        """Refused before anything is read or written: 401, 400, 404 or 405."""
        token = self.callers["acme"].token
        headers: dict[str, Any] = {"token": token, "version": None}
        if oddity == "no-token":
            headers["token"] = None
        elif oddity == "bad-token":
            headers["token"] = "jobsd_nobody"
        elif oddity == "bad-version":
            headers["version"] = "2025-01-01"
        else:
            method = "PATCH"
        reply = self.host.request(method, path, body=b"{}", **headers)
        check_answer(reply)
        allowed = {
            "no-token": {401, 404, 405},
            "bad-token": {401, 404, 405},
            "bad-version": {400, 404, 405},
            "patch": {404, 405},
        }[oddity]
        assert reply.status in allowed, (oddity, method, path, reply.status, reply.body)
