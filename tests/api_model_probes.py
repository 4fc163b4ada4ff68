"""The API model machine's probes: values at the edges, each either taken or refused.

Where the spec does not say whether a value is valid (a one-off at year
9999 west of UTC, a cron step of 0, a page number past any offset SQLite
holds), the only promise is the project's rule: a clear answer, never a
5xx, and a refusal changes nothing. A probe that creates and is accepted
deletes what it made at once, so the model needs no guess; either way the
machine's invariant then compares everything listed with the model.
Kept apart from tests/test_api_model.py only for size; `ApiModel` mixes
these rules in.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.api_model_docs import NEW, SEED
from tests.api_model_host import ApiHost, Reply
from tests.api_model_state import WHO, Caller, call

PROBE_SLUG = "probe"  # never one of the model's slugs
SCHEDULES = (
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "2030-01-01T00:00:00+25:00",
    "2030-02-30T00:00:00Z",
    "2030-01-01T00:00:00.123456789Z",
    "2030-01-01T24:00:00Z",
    "now",
    " NOW ",
    "*/0 * * * *",
    "0-59/1000 * * * *",
    "60/5 * * * *",
    "1-0 * * * *",
    "0 0 31 2,4 *",
    "0 0 29 2 *",
    "0 0 * * 7-7",
    "0 0 * * 0-7/8",
    "0 0 1 1 * *",
    "@yearly",
    "@ANNUALLY",
    "5 4 * * sun-mon",
    "0 0 L * *",
    "0 0 ? * *",
    "H * * * *",
    "",
    " ",
    "\u0660 * * * *",
    "0\u00a00 * * *",
)
ATTRIBUTES: tuple[tuple[str, Any], ...] = (
    ("timezone", "Etc/GMT+12"),
    ("timezone", "europe/paris"),
    ("timezone", ""),
    ("timezone", "../../etc/passwd"),
    ("timezone", "Europe/Paris\x00"),
    ("configuration.timeout", 2**63),
    ("configuration.timeout", -(2**63) - 1),
    ("configuration.timeout", 1.5),
    ("configuration.timeout", True),
    ("configuration.url", "http://[::1"),
    ("configuration.url", "http://exa mple.com/"),
    ("configuration.url", "http://example.com:99999/"),
    ("configuration.url", "https://xn--/"),
    ("configuration.url", "http://\u00e9\u00e9.example/\ud800"),
    ("configuration.method", "get"),
    ("configuration.success_status", "2XX"),
    ("configuration.success_status", 200),
    ("configuration.body", "\x00"),
    ("description", None),
    ("name", "\u202e" * 200),
    ("name", "n" * 200),
    ("enabled", None),
    ("environments", {}),
    ("environments", {"staging": None}),
    ("environments", {"staging": {"enabled": True, "schedule": "*/0 * * * *"}}),
    ("environments", {"staging": {"enabled": True, "url": "ftp://x/"}}),
    ("environments", {"staging": {"enabled": True, "headers.": "x"}}),
    ("environments", {"staging": {"enabled": True, "retry_policy": 7}}),
    ("environments", {"production": {"enabled": True, "timezone": "Mars/Base"}}),
)
POLICY_VALUES: tuple[tuple[str, Any], ...] = (
    ("max_retries", 2**63),
    ("max_retries", 10**30),
    ("delay_seconds", 2**63),
    ("delay_seconds", 0),
    ("max_delay_seconds", 1),
    ("max_delay_seconds", -1),
    ("retry_statuses", ["5XX"]),
    ("retry_statuses", ["99"]),
    ("retry_statuses", [""]),
    ("retry_statuses", ["500", "500"]),
    ("retry_statuses", [500]),
    ("retry_statuses_except", ["5xx"]),
    ("retry_statuses", ["5xx"] * 101),
    ("backoff", None),
)
QUERIES = (
    ("/api/v1/jobs", "page[number]=99999999999999999999"),
    ("/api/v1/jobs", "page[number]=9223372036854775807&page[size]=1000"),
    ("/api/v1/jobs", "page[size]=1%00"),
    ("/api/v1/jobs", "filter[name]=%25"),
    ("/api/v1/jobs", "filter[name]=_"),
    ("/api/v1/jobs", "filter[name]=%00"),
    ("/api/v1/jobs", "filter[scheduled]=true&filter[kind]=one_off"),
    ("/api/v1/jobs", "page[size]=1&page[size]=2"),
    ("/api/v1/retry-policies", "page[number]=99999999999999999999"),
    ("/api/v1/runs", "filter[created_at]=[*,*)"),
    ("/api/v1/runs", "filter[created_at]=[9999-12-31T23:59:59-12:00,*)"),
    ("/api/v1/runs", "filter[created_at]=[0001-01-01T00:00:00%2B14:00,*)"),
    ("/api/v1/runs", "filter[created_at]=(2030-01-01T00:00:00Z,2020-01-01T00:00:00Z)"),
    ("/api/v1/runs", "filter[finished_at]=[2020-01-01,2030-01-01)"),
    ("/api/v1/runs", "filter[scheduled_for]=[*,0001-01-01T00:00:00Z)"),
    ("/api/v1/runs", "page[size]=99999999999999999999"),
    ("/api/v1/runs", "page[after]="),
    ("/api/v1/runs", "page[after]=AAAA"),
    ("/api/v1/runs", "page[after]=%FF%FE"),
    ("/api/v1/runs", "last_run_only=true&filter[status]=CANCELED"),
    ("/api/v1/runs", "filter[job]=" + "j" * 5000),
    ("/api/v1/runs", "filter[trigger]=RERUN,,MANUAL"),
    ("/api/v1/runs", "filter[environment]=staging,staging"),
    ("/api/v1/run_stats", "bucket=minute"),
    (
        "/api/v1/run_stats",
        "filter[created_at]=[0001-01-01T00:00:00Z,9999-12-31T23:59:59Z)&bucket=day",
    ),
    ("/api/v1/run_stats", "bucket=year"),
    ("/api/v1/usage", "filter[period]=0000-01"),
    ("/api/v1/usage", "filter[period]=9999-12"),
    ("/api/v1/usage", "filter[period]=0001-01"),
    ("/api/v1/usage", "filter[period]=2026-1"),
)
RUN_BODIES = (
    b'{"environment": 5}',
    b'{"environment": ""}',
    b'{"environment": null}',
    b'{"environment": "staging", "other": 1}',
    b"[]",
    b'"production"',
    b"{",
    b"null",
    b'{"data": {"environment": "staging"}}',
)

REFUSED = (b'{"environment": 5}', b'{"environment": ""}', b"[]", b'"production"', b"{")


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = doc["data"]["attributes"]
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


class ProbeRules:
    """Rules that send edge values; see the module note."""

    host: ApiHost
    callers: dict[str, Caller]

    def _create_and_forget(self, caller: Caller, version: str, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        reply = call(self.host, caller, "POST", "/api/v1/jobs", version=version, body=body)
        event(f"probe {version} {doc['data']['attributes']!r:.150}: {reply.status}")
        assert reply.status in (201, 400, 403, 409, 422), reply.body
        if reply.status == 201:
            path = f"/api/v1/jobs/{PROBE_SLUG}"
            gone = call(self.host, self.callers[repr(caller).split("/")[0]], "DELETE", path)
            assert gone.status == 204, gone.body

    @rule(data=st.data(), version=st.sampled_from([SEED, NEW]))
    def probe_job(self, data: st.DataObject, version: str) -> None:
        caller = self.callers[data.draw(WHO)]
        attributes = {"name": "Probe", "configuration": {"url": "https://example.invalid/"}}
        if data.draw(st.booleans()):
            attributes["schedule"] = data.draw(st.sampled_from(SCHEDULES))
        else:
            attributes["schedule"] = "0 2 * * *"
            path, value = data.draw(st.sampled_from(ATTRIBUTES))
            _with({"data": {"attributes": attributes}}, path, value)
        doc = {"data": {"type": "job", "id": PROBE_SLUG, "attributes": attributes}}
        self._create_and_forget(caller, version, doc)

    @rule(data=st.data(), value=st.sampled_from(POLICY_VALUES))
    def probe_policy(self, data: st.DataObject, value: tuple[str, Any]) -> None:
        caller = self.callers[data.draw(WHO)]
        attributes = {"name": "Probe", "max_retries": 1, value[0]: value[1]}
        doc = {"data": {"type": "retry_policy", "id": PROBE_SLUG, "attributes": attributes}}
        path = "/api/v1/retry-policies"
        reply = call(self.host, caller, "POST", path, version=NEW, body=json.dumps(doc).encode())
        event(f"probe policy {value!r:.80}: {reply.status}")
        assert reply.status in (201, 422), reply.body
        if reply.status == 201:
            gone = call(self.host, caller, "DELETE", f"{path}/{PROBE_SLUG}", version=NEW)
            assert gone.status == 204, gone.body

    @rule(data=st.data(), query=st.sampled_from(QUERIES), version=st.sampled_from([SEED, NEW]))
    def probe_query(self, data: st.DataObject, query: tuple[str, str], version: str) -> None:
        caller = self.callers[data.draw(WHO)]
        reply = call(self.host, caller, "GET", query[0], version=version, query=query[1])
        event(f"probe {version} {query[0]}?{query[1]:.80}: {reply.status}")
        assert reply.status in (200, 400, 403, 404), reply.body

    @rule(data=st.data(), body=st.sampled_from(RUN_BODIES))
    def probe_run_now(self, data: st.DataObject, body: bytes) -> None:
        """An odd run-now body is refused; `null` is the default environment's run."""
        caller = self.callers[data.draw(WHO)]
        reply = call(
            self.host, caller, "POST", "/api/v1/jobs/a/actions/run", version=NEW, body=body
        )
        job = caller.account.jobs.get("a")
        if job is None:
            assert reply.status in (400, 404), (body, reply.body)
        elif reply.status == 200:  # a plain object (unknown members are not refused)
            assert body not in REFUSED, (body, reply.body)
            self.run_model(caller, reply, "a", job.generation)
        else:
            assert reply.status in (400, 409, 422, 429), (body, reply.body)

    def run_model(self, caller: Caller, reply: Reply, slug: str, generation: int) -> None:
        raise NotImplementedError  # ApiModel's
