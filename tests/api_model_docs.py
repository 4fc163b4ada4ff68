"""The documents the API model machine sends: valid ones, and each kind of bad one.

A valid job or policy is drawn with what the model must remember of it
(`JobFields`, `PolicyFields`). A bad one is a valid document with one
mutation (`Mutation`): a wrong type, an unknown enum value, a bad cron or
URL, a field past its bound, a wrong `type` or `id`, an unknown field; or
bytes that are no document at all (malformed or deeply nested JSON, a
body of the wrong media type, over the 2 MiB bound). Each mutation names
the statuses the spec allows for it, so the machine asserts the refusal
and that nothing changed (SEMANTICS.md "Wire format", "Jobs",
"Configuration validation").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

SEED, NEW = "2026-06-04", "2026-08-07"
SLUGS = ("a", "b", "c-1", "d_2")
POLICIES = ("p", "q")
NAMES = st.text(alphabet="abcXYZ -é", min_size=1, max_size=10).filter(lambda s: s.strip())
CRONS = ("0 2 * * *", "*/5 * * * *", "@daily", "15 3 * * mon-fri")
ONE_OFFS = ("2030-01-01T00:00:00Z", "2031-06-01T12:30:00+02:00")
URLS = ("https://example.invalid/hook", "http://127.0.0.1:9/x?y=1", "https://h.example/é")


@dataclass(frozen=True)
class JobFields:
    """What the model keeps of a job: its base, as any version renders it."""

    name: str
    url: str
    schedule: str | None
    retry_policy: str | None  # None: none named (see `sends_policy`)
    sends_policy: bool  # the document has a `retry_policy` key at all

    @property
    def kind(self) -> str:
        if self.schedule is None:
            return "manual"
        return "one_off" if self.schedule in ONE_OFFS or self.schedule == "now" else "recurring"


@dataclass(frozen=True)
class PolicyFields:
    name: str
    max_retries: int


def job_document(
    slug: str, fields: JobFields, version: str, enabled: bool, environment: str = "production"
) -> dict[str, Any]:
    """The document that asks for `fields` in `version`, enabled or not in `environment`."""
    attributes: dict[str, Any] = {
        "name": fields.name,
        "schedule": fields.schedule,
        "enabled": enabled,
        "configuration": {"url": fields.url, "timeout": 5},
    }
    if version == NEW:
        del attributes["enabled"]
        attributes["environments"] = {environment: {"enabled": enabled}}
    if fields.sends_policy:
        attributes["retry_policy"] = fields.retry_policy
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


@st.composite
def job_fields(draw: st.DrawFn, version: str) -> JobFields:
    schedules: list[str | None] = [*CRONS, *ONE_OFFS]
    if version == NEW:
        schedules.append(None)  # a manual job; the seed version has no form for it
    sends = draw(st.booleans())
    policy = draw(st.sampled_from([None, *POLICIES])) if sends else None
    return JobFields(
        draw(NAMES), draw(st.sampled_from(URLS)), draw(st.sampled_from(schedules)), policy, sends
    )


@st.composite
def policy_fields(draw: st.DrawFn) -> PolicyFields:
    return PolicyFields(draw(NAMES), draw(st.integers(0, 10)))


def policy_document(policy_id: str, fields: PolicyFields) -> dict[str, Any]:
    attributes = {
        "name": fields.name,
        "max_retries": fields.max_retries,
        "backoff": "exponential",
        "delay_seconds": 5,
        "retry_statuses": ["5xx"],
    }
    return {"data": {"type": "retry_policy", "id": policy_id, "attributes": attributes}}


@dataclass(frozen=True)
class Mutation:
    """One way to spoil a valid document, and the statuses the spec allows for it."""

    label: str
    change: Callable[[dict[str, Any]], Any]  # the document -> what is sent (a doc or bytes)
    statuses: frozenset[int]
    content_type: str | None = "application/vnd.api+json"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    """A mutation that sets one member, by a dotted path under `data`."""

    def change(doc: dict[str, Any]) -> Any:
        spoilt = copy.deepcopy(doc)
        *parents, last = path.split(".")
        node = spoilt["data"]
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
        return spoilt

    return change


def _bytes(raw: bytes) -> Callable[[dict[str, Any]], Any]:
    return lambda doc: raw


def _raw(path: str, value: bytes) -> Callable[[dict[str, Any]], Any]:
    """A mutation that puts JSON text no Python value encodes (`1e400`) at `path`."""

    def change(doc: dict[str, Any]) -> Any:
        return json.dumps(_set(path, "@RAW@")(doc)).encode().replace(b'"@RAW@"', value)

    return change


U = frozenset({422})
B = frozenset({400, 422})
COMMON = [
    Mutation("type", _set("type", "run"), frozenset({409})),
    Mutation("data-list", lambda d: {"data": []}, frozenset({400, 409, 422})),
    Mutation("not-an-object", lambda d: [d], frozenset({400, 422})),
    Mutation("malformed", _bytes(b'{"data": {"type": "job",'), frozenset({400})),
    Mutation("nested", _bytes(b"[" * 100_000 + b"]" * 100_000), frozenset({400, 413})),
    Mutation("text-plain", lambda d: json.dumps(d).encode(), frozenset({415}), "text/plain"),
    Mutation("no-type", lambda d: json.dumps(d).encode(), frozenset({415}), None),
    Mutation("huge", _bytes(b" " * (2 * 1024 * 1024 + 1)), frozenset({413})),
]
JOB_MUTATIONS = [
    *COMMON,
    Mutation("name-int", _set("attributes.name", 5), U),
    Mutation("name-empty", _set("attributes.name", ""), U),
    Mutation("name-long", _set("attributes.name", "n" * 201), U),
    Mutation("description-long", _set("attributes.description", "d" * 2001), U),
    Mutation("cron-61", _set("attributes.schedule", "61 * * * *"), U),
    Mutation("cron-4", _set("attributes.schedule", "* * * *"), U),
    Mutation("cron-never", _set("attributes.schedule", "0 0 30 2 *"), U),
    Mutation("cron-reboot", _set("attributes.schedule", "@reboot"), U),
    Mutation("cron-nbsp", _set("attributes.schedule", "0\u00a00 * * *"), U),
    Mutation("naive", _set("attributes.schedule", "2030-01-01T00:00:00"), U),
    Mutation("schedule-int", _set("attributes.schedule", 7), U),
    Mutation("url-ftp", _set("attributes.configuration.url", "ftp://x.example/"), U),
    Mutation("url-user", _set("attributes.configuration.url", "http://u:p@x.example/"), U),
    Mutation("url-relative", _set("attributes.configuration.url", "nope"), U),
    Mutation("url-long", _set("attributes.configuration.url", "http://x.example/" + "a" * 2100), U),
    Mutation("url-int", _set("attributes.configuration.url", 7), U),
    Mutation("method", _set("attributes.configuration.method", "FETCH"), U),
    Mutation("timeout-0", _set("attributes.configuration.timeout", 0), U),
    Mutation("timeout-str", _set("attributes.configuration.timeout", "30"), U),
    Mutation("timeout-plan", _set("attributes.configuration.timeout", 10**9), U),
    Mutation("timeout-inf", _raw("attributes.configuration.timeout", b"1e400"), B),
    Mutation("name-surrogate", _set("attributes.name", "\ud800"), B),
    Mutation("config-unknown", _set("attributes.configuration.extra", 1), U),
    Mutation("config-list", _set("attributes.configuration", []), U),
    Mutation("status", _set("attributes.configuration.success_status", "600"), U),
    Mutation("body-big", _set("attributes.configuration.body", "b" * (1024 * 1024 + 1)), U),
    Mutation("ca-cert", _set("attributes.configuration.ca_cert", "-----BEGIN CERTIFICATE-----"), U),
    Mutation("timezone", _set("attributes.timezone", "Mars/Olympus"), U),
    Mutation("policy-int", _set("attributes.retry_policy", 5), U),
    Mutation("policy-missing", _set("attributes.retry_policy", "no-such-policy"), U),
    Mutation("concurrency", _set("attributes.concurrency_policy", "SOMETIMES"), U),
]
SEED_JOB_MUTATIONS = [
    *JOB_MUTATIONS,
    # 2026-08-07 has no top-level `enabled` (per environment instead): there it is
    # an unknown attribute, ignored like any other (README), so a PUT stands.
    Mutation("enabled-str", _set("attributes.enabled", "yes"), U),
    Mutation(
        "host-header", _set("attributes.configuration.headers", [{"name": "Host", "value": "x"}]), U
    ),
    Mutation(
        "header-crlf", _set("attributes.configuration.headers", [{"name": "X", "value": "a\nb"}]), U
    ),
    Mutation("headers-obj", _set("attributes.configuration.headers", {"X": "y"}), U),
    Mutation("schedule-null", _set("attributes.schedule", None), U),
]
NEW_JOB_MUTATIONS = [
    *JOB_MUTATIONS,
    Mutation("host-header", _set("attributes.configuration.headers", {"Host": "x"}), U),
    Mutation("header-crlf", _set("attributes.configuration.headers", {"X": "a\r\nb"}), U),
    Mutation("header-int", _set("attributes.configuration.headers", {"X": 5}), U),
    Mutation("environment", _set("attributes.environments", {"nowhere": {"enabled": True}}), U),
    Mutation("environment-list", _set("attributes.environments", ["production"]), U),
]
POLICY_MUTATIONS = [
    *COMMON,
    Mutation("backoff", _set("attributes.backoff", "sometimes"), U),
    Mutation("retries-neg", _set("attributes.max_retries", -1), U),
    Mutation("retries-str", _set("attributes.max_retries", "3"), U),
    Mutation("delay-long", _set("attributes.delay_seconds", 10**12), U),
    Mutation("statuses", _set("attributes.retry_statuses", ["6xx"]), U),
    Mutation("statuses-str", _set("attributes.retry_statuses", "5xx"), U),
    Mutation("unknown", _set("attributes.retry_on_timout", True), U),
    Mutation("name-long", _set("attributes.name", "n" * 201), U),
]
CREATE_IDS = [
    Mutation("id-upper", _set("id", "Bad"), U),
    Mutation("id-dash", _set("id", "-x"), U),
    Mutation("id-long", _set("id", "i" * 101), U),
    Mutation("id-int", _set("id", 5), U),
]


def encoded(sent: Any) -> bytes:
    return sent if isinstance(sent, bytes) else json.dumps(sent).encode()
