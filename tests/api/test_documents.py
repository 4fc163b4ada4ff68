"""Job request documents: every validation rule with its pointer, and properties.

Tables give each rule one refused and (where there is an edge) one accepted
value. Hypothesis then checks what tables cannot: valid generated documents
round-trip through parse and render; no JSON value, whole or spliced into a
valid document, raises anything but ApiError, and an accepted one is valid
under the spec's own request schema; slugs follow a naive oracle; any schedule
text is a JobSpec or a 422 at /data/attributes/schedule.
"""

from __future__ import annotations

import copy
import json
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import jobsd
from jobsd.api.documents import is_slug
from jobsd.api.render import render_job
from jobsd.api.v2026_06_04.documents import parse_job_document
from jobsd.errors import ApiError
from jobsd.job_model import Job, JobEnvironment, JobSpec

PLAN_MAX_S = 30
CONF = "/data/attributes/configuration"
MiB = 1024 * 1024
SPEC = json.loads((Path(jobsd.__file__).parent / "openapi.json").read_text("utf-8"))


def request_schema(name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:jobsd:openapi", Resource.from_contents(SPEC, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"urn:jobsd:openapi#/components/schemas/{name}"}, registry=registry
    )


CREATE_SCHEMA = request_schema("JobCreateRequest")
REPLACE_SCHEMA = request_schema("JobRequest")


@cache
def pem(common_name: str) -> str:
    """A self-signed certificate in the canonical PEM that parsing re-encodes to."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@cache
def private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def doc(**attrs: Any) -> dict[str, Any]:
    """A valid POST document; keyword `config` merges into the configuration."""
    config = {"url": "https://api.example.com/hook", **attrs.pop("config", {})}
    base = {"name": "Nightly", "schedule": "0 2 * * *", "configuration": config, **attrs}
    return {"data": {"id": "nightly", "type": "job", "attributes": base}}


@dataclass(frozen=True)
class Parsed:
    """A parsed seed document: the base spec (its fields read through) and `enabled`."""

    spec: JobSpec
    enabled: bool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spec, name)


def parse(document: object, path_slug: str | None = None, max_s: int = PLAN_MAX_S) -> Parsed:
    return Parsed(*parse_job_document(document, path_slug=path_slug, max_timeout_s=max_s))


def refusal(document: object, path_slug: str | None = None, max_s: int = PLAN_MAX_S) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse(document, path_slug, max_s)
    err = info.value
    body = json.dumps({"errors": [i.to_json() for i in err.items]}, ensure_ascii=False)
    body.encode("utf-8")  # every error can be sent, whatever the input held
    assert err.items and all(i.status == err.status for i in err.items)
    assert all(i.detail and i.title for i in err.items)
    return err


def errors_of(document: object, path_slug: str | None = None) -> set[tuple[str | None, str]]:
    err = refusal(document, path_slug)
    assert err.status == 422
    return {(i.pointer, i.code) for i in err.items}


def without(d: dict[str, Any], *path: str) -> dict[str, Any]:
    d = copy.deepcopy(d)
    target = d
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return d


# -- defaults and the envelope -----------------------------------------------------


def test_a_minimal_document_gets_every_default() -> None:
    spec = parse(doc())
    assert spec.slug == "nightly" and spec.name == "Nightly" and spec.schedule == "0 2 * * *"
    assert spec.description is None and spec.enabled is True
    c = spec.config
    assert (c.url, c.method, c.headers, c.success_status) == (
        "https://api.example.com/hook",
        "POST",
        (),
        "2xx",
    )
    assert (c.tls_verify, c.ca_cert, c.body, c.timeout_s) == (True, None, None, 30)


@pytest.mark.parametrize(("plan_max", "default"), [(10, 10), (30, 30), (300, 30), (1, 1)])
def test_the_default_timeout_is_30_or_the_plan_maximum(plan_max: int, default: int) -> None:
    assert parse(doc(), max_s=plan_max).config.timeout_s == default


def test_put_uses_the_same_parser_so_omitted_fields_return_to_their_defaults() -> None:
    put = without(doc(), "data", "id")
    assert parse(put, path_slug="nightly") == parse(doc())
    full = doc(description="d", enabled=False, config={"method": "GET", "timeout": 5})
    assert parse(full, path_slug="nightly") != parse(put, path_slug="nightly")


@pytest.mark.parametrize(
    ("document", "pointer", "code"),
    [
        ([], "", "invalid_type"),
        ("job", "", "invalid_type"),
        (None, "", "invalid_type"),
        ({}, "/data", "required"),
        ({"data": None}, "/data", "invalid_type"),
        ({"data": [doc()["data"]]}, "/data", "invalid_type"),
        ({"data": {"id": "x"}}, "/data/attributes", "required"),
        ({"data": {"id": "x", "attributes": []}}, "/data/attributes", "invalid_type"),
        (without(doc(), "data", "attributes", "configuration"), CONF, "required"),
        (doc(configuration="https://x.test/"), CONF, "invalid_type"),
        (without(doc(), "data", "attributes", "name"), "/data/attributes/name", "required"),
        (without(doc(), "data", "attributes", "schedule"), "/data/attributes/schedule", "required"),
        (without(doc(), "data", "attributes", "configuration", "url"), f"{CONF}/url", "required"),
    ],
)
def test_envelope_and_required_members(document: object, pointer: str, code: str) -> None:
    assert (pointer, code) in errors_of(document)


def test_ignored_members_read_only_attributes_and_unknown_attributes() -> None:
    d = doc(
        next_run_at="2030-01-01T00:00:00Z",
        created_at=5,
        updated_at=None,
        deleted_at=[],
        version="seven",
        color="blue",
        type="http",
        concurrency_policy="ALLOW",
    )
    d["meta"] = {"anything": True}
    d["data"]["relationships"] = {"x": 1}
    d["data"]["attributes"]["configuration"]["headers"] = [{"name": "A", "value": "b", "x": 1}]
    assert parse(d) == parse(doc(config={"headers": [{"name": "A", "value": "b"}]}))


# -- id, type and the 409s ----------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "ok"),
    [
        ("a", True),
        ("0", True),
        ("a_b-c9", True),
        ("9-", True),
        ("a" * 100, True),
        ("a" * 101, False),
        ("", False),
        ("-a", False),
        ("_a", False),
        ("Nightly", False),
        ("a b", False),
        ("a.b", False),
        ("a\n", False),
        ("é", False),
        ("a/b", False),
    ],
)
def test_slug_rule(slug: str, ok: bool) -> None:
    d = doc()
    d["data"]["id"] = slug
    if ok:
        assert parse(d).slug == slug
    else:
        assert errors_of(d) == {("/data/id", "invalid_slug")}


@pytest.mark.parametrize(("value", "code"), [(5, "invalid_type"), (None, "invalid_type")])
def test_post_id_must_be_a_string(value: object, code: str) -> None:
    d = doc()
    d["data"]["id"] = value
    assert errors_of(d) == {("/data/id", code)}


def test_post_id_is_required() -> None:
    assert errors_of(without(doc(), "data", "id")) == {("/data/id", "required")}


@pytest.mark.parametrize("kind", ["jobs", "run", "", "JOB"])
def test_a_type_other_than_job_is_409(kind: str) -> None:
    d = doc(name="")  # the 409 wins over field errors: the request is misdirected
    d["data"]["type"] = kind
    err = refusal(d)
    assert err.status == 409
    assert [(i.pointer, i.code) for i in err.items] == [("/data/type", "type_mismatch")]


def test_a_type_that_is_not_a_string_is_422_and_an_omitted_type_is_fine() -> None:
    d = doc()
    d["data"]["type"] = 1
    assert errors_of(d) == {("/data/type", "invalid_type")}
    assert parse(without(doc(), "data", "type")).slug == "nightly"


def test_put_takes_the_slug_from_the_path() -> None:
    d = without(doc(), "data", "id")
    assert parse(d, path_slug="other").slug == "other"
    d["data"]["id"] = None
    assert parse(d, path_slug="other").slug == "other"
    d["data"]["id"] = "other"
    assert parse(d, path_slug="other").slug == "other"


def test_put_with_a_different_id_is_409() -> None:
    err = refusal(doc(name=""), path_slug="other")
    assert err.status == 409
    assert [(i.pointer, i.code) for i in err.items] == [("/data/id", "id_mismatch")]


def test_put_with_a_non_string_id_is_422() -> None:
    d = doc()
    d["data"]["id"] = ["nightly"]
    assert errors_of(d, path_slug="nightly") == {("/data/id", "invalid_type")}


def test_put_to_a_path_that_no_slug_can_match_is_404() -> None:
    err = refusal(doc(), path_slug="Not A Slug")
    assert err.status == 404


# -- job attributes -------------------------------------------------------------------

A = "/data/attributes"


@pytest.mark.parametrize(
    ("attrs", "pointer", "code"),
    [
        ({"name": ""}, f"{A}/name", "too_short"),
        ({"name": "n" * 201}, f"{A}/name", "too_long"),
        ({"name": 5}, f"{A}/name", "invalid_type"),
        ({"name": None}, f"{A}/name", "invalid_type"),
        ({"name": "a\x00b"}, f"{A}/name", "invalid_characters"),
        ({"name": "a\ud800b"}, f"{A}/name", "invalid_characters"),
        ({"description": "d" * 2001}, f"{A}/description", "too_long"),
        ({"description": 5}, f"{A}/description", "invalid_type"),
        ({"description": "\x00"}, f"{A}/description", "invalid_characters"),
        ({"description": "\udfff"}, f"{A}/description", "invalid_characters"),
        ({"enabled": "true"}, f"{A}/enabled", "invalid_type"),
        ({"enabled": 1}, f"{A}/enabled", "invalid_type"),
        ({"enabled": None}, f"{A}/enabled", "invalid_type"),
        ({"type": "ftp"}, f"{A}/type", "invalid_value"),
        ({"type": "HTTP"}, f"{A}/type", "invalid_value"),
        ({"type": None}, f"{A}/type", "invalid_type"),
        ({"concurrency_policy": "FORBID"}, f"{A}/concurrency_policy", "invalid_value"),
        ({"concurrency_policy": 0}, f"{A}/concurrency_policy", "invalid_type"),
        ({"schedule": 5}, f"{A}/schedule", "invalid_type"),
        ({"schedule": None}, f"{A}/schedule", "invalid_type"),
        ({"schedule": ""}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "* * * * * *"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "@reboot"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "0 0 30 2 *"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "2030-01-01T00:00:00"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "every day"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "0 2 * * *\ud800"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "now\x00"}, f"{A}/schedule", "invalid_schedule"),
        ({"schedule": "* " * 1000}, f"{A}/schedule", "invalid_schedule"),
    ],
)
def test_attribute_rules(attrs: dict[str, Any], pointer: str, code: str) -> None:
    assert errors_of(doc(**attrs)) == {(pointer, code)}


@pytest.mark.parametrize(
    "attrs",
    [
        {"name": "n" * 200},
        {"name": "Ünïcode ✓ name"},
        {"description": None},
        {"description": "d" * 2000},
        {"description": "line\nbreaks\tand tabs"},
        {"enabled": False},
        {"schedule": "now"},
        {"schedule": "@daily"},
        {"schedule": "2030-01-01T09:00:00+02:00"},
        {"schedule": "2001-01-01T00:00:00Z"},  # past instants fire as soon as possible
        {"schedule": "*/5 * * * mon-fri"},
    ],
)
def test_attribute_edges_that_are_accepted(attrs: dict[str, Any]) -> None:
    spec = parse(doc(**attrs))
    for key, value in attrs.items():
        assert getattr(spec, key) == value


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "pointer", "code"),
    [
        ({"url": ""}, f"{CONF}/url", "too_short"),
        ({"url": "https://x.test/" + "a" * 2034}, f"{CONF}/url", "too_long"),
        ({"url": 5}, f"{CONF}/url", "invalid_type"),
        ({"url": None}, f"{CONF}/url", "invalid_type"),
        ({"url": "ftp://x.test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "javascript:alert(1)"}, f"{CONF}/url", "invalid_url"),
        ({"url": "/relative/path"}, f"{CONF}/url", "invalid_url"),
        ({"url": "//x.test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https:x.test"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https:///path"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://user:pw@x.test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://user@x.test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test\\@evil.test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/a b"}, f"{CONF}/url", "invalid_url"),
        ({"url": " https://x.test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\t"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\r\nX: y"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\x00"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\x7f"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\u200b"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\u202e"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\u00a0"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test/\ud800"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:0/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:65536/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:http/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:80:81/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:-1/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x.test:\u0663/"}, f"{CONF}/url", "invalid_url"),  # Arabic 3
        ({"url": "https://[::1/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://[not-ip]/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://[fe80::1%25eth0]/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://[::1]x/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://1.2.3.4]/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x..test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://x%2etest/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://" + "a" * 64 + ".test/"}, f"{CONF}/url", "invalid_url"),
        ({"url": "https://" + "a." * 127 + "test/"}, f"{CONF}/url", "invalid_url"),
        ({"method": "get"}, f"{CONF}/method", "invalid_method"),
        ({"method": "CONNECT"}, f"{CONF}/method", "invalid_method"),
        ({"method": 1}, f"{CONF}/method", "invalid_type"),
        ({"method": None}, f"{CONF}/method", "invalid_type"),
        ({"success_status": "600"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "099"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "6xx"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "0xx"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "2XX"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "20"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "2000"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": ""}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": "2\u0663\u0663"}, f"{CONF}/success_status", "invalid_success_status"),
        ({"success_status": 200}, f"{CONF}/success_status", "invalid_type"),
        ({"success_status": None}, f"{CONF}/success_status", "invalid_type"),
        ({"tls_verify": "false"}, f"{CONF}/tls_verify", "invalid_type"),
        ({"tls_verify": 0}, f"{CONF}/tls_verify", "invalid_type"),
        ({"tls_verify": None}, f"{CONF}/tls_verify", "invalid_type"),
        ({"body": "x" * (MiB + 1)}, f"{CONF}/body", "too_long"),
        ({"body": "é" * (MiB // 2 + 1)}, f"{CONF}/body", "too_long"),  # < 1 Mi chars
        ({"body": "\ud800"}, f"{CONF}/body", "invalid_characters"),
        ({"body": 5}, f"{CONF}/body", "invalid_type"),
        ({"body": {"scope": "all"}}, f"{CONF}/body", "invalid_type"),
        ({"timeout": 0}, f"{CONF}/timeout", "invalid_timeout"),
        ({"timeout": -5}, f"{CONF}/timeout", "invalid_timeout"),
        ({"timeout": PLAN_MAX_S + 1}, f"{CONF}/timeout", "timeout_above_plan"),
        ({"timeout": 10**30}, f"{CONF}/timeout", "timeout_above_plan"),
        ({"timeout": 1e300}, f"{CONF}/timeout", "timeout_above_plan"),
        ({"timeout": "30"}, f"{CONF}/timeout", "invalid_type"),
        ({"timeout": True}, f"{CONF}/timeout", "invalid_type"),
        ({"timeout": 30.5}, f"{CONF}/timeout", "invalid_type"),
        ({"timeout": float("inf")}, f"{CONF}/timeout", "invalid_type"),
        ({"timeout": None}, f"{CONF}/timeout", "invalid_type"),
        ({"retries": 3}, f"{CONF}/retries", "unknown_field"),
        ({"Timeout": 3}, f"{CONF}/Timeout", "unknown_field"),
        ({"a/b~c": 1}, f"{CONF}/a~1b~0c", "unknown_field"),
        ({"\ud800": 1}, f"{CONF}/\\ud800", "unknown_field"),
    ],
)
def test_configuration_rules(config: dict[str, Any], pointer: str, code: str) -> None:
    assert errors_of(doc(config=config)) == {(pointer, code)}


@pytest.mark.parametrize(
    "config",
    [
        {"url": "https://x.test/" + "a" * 2033},  # 2048 characters
        {"url": "http://x.test"},
        {"url": "HTTPS://X.TEST/Path?q=1&r=%20#frag"},
        {"url": "https://x.test:1/"},
        {"url": "https://x.test:65535/"},
        {"url": "https://[2001:db8::1]:8443/in"},
        {"url": "https://[::ffff:1.2.3.4]/"},
        {"url": "http://127.0.0.1:8080/"},  # SSRF is judged at delivery, on the resolved address
        {"url": "https://bücher.example/straße?ü=1"},
        {"url": "https://under_score.example.com./"},
        {"url": "https://" + "a" * 63 + ".test/"},
        {"method": "GET"},
        {"method": "DELETE"},
        {"success_status": "100"},
        {"success_status": "599"},
        {"success_status": "204"},
        {"success_status": "1xx"},
        {"success_status": "5xx"},
        {"tls_verify": False},
        {"body": None},
        {"body": ""},
        {"body": "x" * MiB},
        {"body": "é" * (MiB // 2)},
        {"body": "binary\x00ok"},
        {"timeout": 1},
        {"timeout": PLAN_MAX_S},
        {"ca_cert": None},
    ],
)
def test_configuration_edges_that_are_accepted(config: dict[str, Any]) -> None:
    c = parse(doc(config=config)).config
    for key, value in config.items():
        assert getattr(c, "timeout_s" if key == "timeout" else key) == value


def test_an_integral_float_timeout_is_an_integer() -> None:
    t = parse(doc(config={"timeout": 30.0})).config.timeout_s
    assert t == 30 and type(t) is int


# -- headers ----------------------------------------------------------------------------

H = f"{CONF}/headers"


@pytest.mark.parametrize(
    ("headers", "pointer", "code"),
    [
        ({"Authorization": "x"}, H, "invalid_type"),
        (None, H, "invalid_type"),
        (["Authorization: x"], f"{H}/0", "invalid_type"),
        ([None], f"{H}/0", "invalid_type"),
        ([{"value": "x"}], f"{H}/0/name", "required"),
        ([{"name": "X-A"}], f"{H}/0/value", "required"),
        ([{"name": "", "value": "x"}], f"{H}/0/name", "too_short"),
        ([{"name": "X" * 201, "value": "x"}], f"{H}/0/name", "too_long"),
        ([{"name": 5, "value": "x"}], f"{H}/0/name", "invalid_type"),
        ([{"name": "X A", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "X:A", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "X-A\r\n", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "Ünï", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "(x)", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "X\ud800", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "Host", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "HOST", "value": "x"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "content-length", "value": "1"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "Transfer-Encoding", "value": "chunked"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "cOnNeCtIoN", "value": "close"}], f"{H}/0/name", "invalid_header"),
        ([{"name": "X-A", "value": 5}], f"{H}/0/value", "invalid_type"),
        ([{"name": "X-A", "value": None}], f"{H}/0/value", "invalid_type"),
        ([{"name": "X-A", "value": "v" * 8193}], f"{H}/0/value", "too_long"),
        ([{"name": "X-A", "value": "a\rb"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\nb"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\x00b"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\x0bb"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\ud800b"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": " leading"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "trailing\t"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": " "}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\x01b"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\x7fb"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "caf\u00e9"}], f"{H}/0/value", "invalid_header"),
        ([{"name": "X-A", "value": "a\u2028b"}], f"{H}/0/value", "invalid_header"),
        (
            [{"name": "X-A", "value": "ok"}, {"name": "X-B", "value": "ok"}, {"name": "X-C"}],
            f"{H}/2/value",
            "required",
        ),
    ],
)
def test_header_rules(headers: object, pointer: str, code: str) -> None:
    assert errors_of(doc(config={"headers": headers})) == {(pointer, code)}


def test_headers_that_are_accepted() -> None:
    headers = [
        {"name": "Authorization", "value": "Bearer s3cr3t"},
        {"name": "X-Empty", "value": ""},
        {"name": "X-Long", "value": "v" * 8192},
        {"name": "x" * 200, "value": "inner  spaces\tand tabs"},
        {"name": "!#$%&'*+-.^_`|~09azAZ", "value": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"},
        {"name": "X-One", "value": "x"},
        {"name": "X-Dup", "value": "1"},
        {"name": "X-Dup", "value": "2"},
        {"name": "Content-Type", "value": "application/json"},
    ]
    parsed = parse(doc(config={"headers": headers})).config.headers
    assert [{"name": h.name, "value": h.value} for h in parsed] == headers


# -- ca_cert -------------------------------------------------------------------------------

CA = f"{CONF}/ca_cert"


def test_ca_cert_is_stored_re_encoded() -> None:
    one, two = pem("one"), pem("two")
    assert parse(doc(config={"ca_cert": one})).config.ca_cert == one
    assert parse(doc(config={"ca_cert": one + two})).config.ca_cert == one + two
    messy = "\r\n  " + one.replace("\n", "\r\n") + "\n\n\t" + two.rstrip("\n") + "  \n"
    assert parse(doc(config={"ca_cert": messy})).config.ca_cert == one + two


def _corrupt(block: str) -> str:
    lines = block.splitlines()
    lines[2] = "A" * len(lines[2])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "make",
    [
        lambda: "",
        lambda: "   \n",
        lambda: "not a certificate",
        lambda: private_key_pem(),
        lambda: pem("one") + private_key_pem(),
        lambda: private_key_pem() + pem("one"),
        lambda: pem("one") + "trailing words",
        lambda: "# comment\n" + pem("one"),
        lambda: pem("one").replace("-----END CERTIFICATE-----\n", ""),
        lambda: pem("one").replace("CERTIFICATE", "TRUSTED CERTIFICATE"),
        lambda: pem("one") + _corrupt(pem("two")),
        lambda: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        lambda: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        lambda: pem("one").replace("M", "é", 1),
        lambda: pem("one").replace("M", "\x00", 1),
        lambda: pem("one").replace("M", "\ud800", 1),
        lambda: pem("one").replace("\n", "\n-----BEGIN PRIVATE KEY-----\n", 1),
        lambda: "-----BEGIN CERTIFICATE-----" * 2400,
    ],
)
def test_ca_cert_refusals(make: Any) -> None:
    assert errors_of(doc(config={"ca_cert": make()})) == {(CA, "invalid_ca_cert")}


@pytest.mark.parametrize(("value", "code"), [(5, "invalid_type"), ("x" * 65537, "too_long")])
def test_ca_cert_type_and_length(value: object, code: str) -> None:
    assert errors_of(doc(config={"ca_cert": value})) == {(CA, code)}


# -- everything at once ---------------------------------------------------------------------


def test_a_document_with_many_bad_fields_reports_every_one() -> None:
    d = doc(
        name="",
        description=7,
        enabled="yes",
        type="ftp",
        concurrency_policy="FORBID",
        schedule="@reboot",
        config={
            "url": "ftp://user@x.test",
            "method": "get",
            "headers": [
                {"name": "Host", "value": "x"},
                {"name": "X-Ok", "value": "ok"},
                {"name": "X-Bad", "value": "a\nb"},
                7,
            ],
            "success_status": "2XX",
            "tls_verify": "no",
            "ca_cert": "junk",
            "body": "\ud800",
            "timeout": 31,
            "retries": 3,
        },
    )
    d["data"]["id"] = "Bad Slug"
    assert errors_of(d) == {
        ("/data/id", "invalid_slug"),
        (f"{A}/name", "too_short"),
        (f"{A}/description", "invalid_type"),
        (f"{A}/enabled", "invalid_type"),
        (f"{A}/type", "invalid_value"),
        (f"{A}/concurrency_policy", "invalid_value"),
        (f"{A}/schedule", "invalid_schedule"),
        (f"{CONF}/url", "invalid_url"),
        (f"{CONF}/method", "invalid_method"),
        (f"{H}/0/name", "invalid_header"),
        (f"{H}/2/value", "invalid_header"),
        (f"{H}/3", "invalid_type"),
        (f"{CONF}/success_status", "invalid_success_status"),
        (f"{CONF}/tls_verify", "invalid_type"),
        (f"{CONF}/ca_cert", "invalid_ca_cert"),
        (f"{CONF}/body", "invalid_characters"),
        (f"{CONF}/timeout", "timeout_above_plan"),
        (f"{CONF}/retries", "unknown_field"),
    }


def test_errors_for_both_id_and_missing_attributes_come_together() -> None:
    assert errors_of({"data": {"id": 5, "type": 5}}) == {
        ("/data/id", "invalid_type"),
        ("/data/type", "invalid_type"),
        ("/data/attributes", "required"),
    }


# -- properties -------------------------------------------------------------------------------

SCHEDULES = [
    "now",
    "NOW",
    "0 2 * * *",
    "*/5 * * * *",
    "@daily",
    "0 0 * * 1-5",
    "2030-01-01T09:00:00Z",
]
READ_ONLY = ("next_run_at", "created_at", "updated_at", "deleted_at", "version")
REFUSED = {"host", "content-length", "transfer-encoding", "connection"}
# A host whose last label is a number (decimal, or hex after 0x) reads as an
# IPv4 address, refused unless a dotted quad (tests/api/test_job_bounds.py).
hosts = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True
).filter(lambda host: re.fullmatch(r"[0-9]+|0x[0-9a-f]*", host) is None)
urls = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https"]),
    hosts,
    st.sampled_from(["", ":8080", ":1", ":65535"]),
    st.from_regex(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){0,3}(\?[a-z=&]{0,10})?", fullmatch=True),
)
token = st.from_regex(r"[-!#$%&'*+.^_`|~0-9A-Za-z]{1,30}", fullmatch=True)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=40
).map(lambda v: v.strip(" \t"))
headers = st.lists(
    st.fixed_dictionaries(
        {"name": token.filter(lambda n: n.lower() not in REFUSED), "value": header_values}
    ),
    max_size=4,
)
clean_chars = st.characters(codec="utf-8", exclude_characters="\x00")  # no lone surrogates
OPTIONAL_ATTRS: dict[str, st.SearchStrategy[Any]] = {
    "description": st.none() | st.text(clean_chars, max_size=2000),
    "enabled": st.booleans(),
    "type": st.just("http"),
    "concurrency_policy": st.just("ALLOW"),
}
OPTIONAL_CONFIG: dict[str, st.SearchStrategy[Any]] = {
    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    "headers": headers,
    "success_status": st.from_regex(r"[1-5]([0-9]{2}|xx)", fullmatch=True),
    "tls_verify": st.booleans(),
    "ca_cert": st.sampled_from([None, "one", "one+two"]),
    "body": st.none() | st.text(st.characters(codec="utf-8"), max_size=100),
    "timeout": st.integers(1, PLAN_MAX_S),
}
DEFAULT_CONFIG = {
    "method": "POST",
    "headers": [],
    "success_status": "2xx",
    "tls_verify": True,
    "ca_cert": None,
    "body": None,
    "timeout": PLAN_MAX_S,
}


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "name": draw(st.text(clean_chars, min_size=1, max_size=200)),
        "schedule": draw(st.sampled_from(SCHEDULES)),
    }
    for key, strategy in OPTIONAL_ATTRS.items():
        if draw(st.booleans()):
            attrs[key] = draw(strategy)
    config: dict[str, Any] = {"url": draw(urls)}
    for key, strategy in OPTIONAL_CONFIG.items():
        if draw(st.booleans()):
            config[key] = draw(strategy)
    if config.get("ca_cert") is not None:
        config["ca_cert"] = "".join(pem(cn) for cn in config["ca_cert"].split("+"))
    attrs["configuration"] = config
    if draw(st.booleans()):  # read-only and unknown attributes are ignored
        attrs.update(version=99, next_run_at=None, created_at="x", whatever=[1])
    slug = draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,99}", fullmatch=True))
    return {"data": {"id": slug, "type": "job", "attributes": attrs}}


def as_job(parsed: Parsed) -> Job:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    envs = {"production": JobEnvironment(parsed.enabled, None)}
    return Job(1, "acme", parsed.spec, at, at, None, 1, MappingProxyType(envs))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_valid_documents_parse_and_round_trip(document: dict[str, Any]) -> None:
    assert CREATE_SCHEMA.is_valid(document)  # the generator agrees with the spec
    spec = parse(document)
    resource = render_job(as_job(spec), "production")
    attrs = document["data"]["attributes"]
    expected = {
        "name": attrs["name"],
        "description": attrs.get("description"),
        "enabled": attrs.get("enabled", True),
        "type": "http",
        "schedule": attrs["schedule"],
        "configuration": {**DEFAULT_CONFIG, **attrs["configuration"]},
        "concurrency_policy": "ALLOW",
    }
    rendered: Any = resource["attributes"]
    assert resource["id"] == document["data"]["id"]
    assert {k: rendered[k] for k in expected} == expected
    # PUT of the rendered resource (a GET -> PUT round trip) changes nothing.
    put = {"data": {"id": resource["id"], "type": "job", "attributes": rendered}}
    assert REPLACE_SCHEMA.is_valid(put)
    assert parse(put, path_slug=spec.slug) == spec


odd_text = st.text(st.sampled_from(["a", "0", "-", " ", "\x00", "\r", "\n", "\ud800", "é", "/"]))
keys = st.sampled_from(
    [
        *("data", "id", "type", "attributes", "name", "schedule", "configuration", "url"),
        *("headers", "value", "method", "timeout", "body", "ca_cert", "enabled", "description"),
    ]
) | st.text(max_size=5)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def check_outcome(document: object) -> None:
    """Accepted documents are schema-valid; refused ones are a clean ApiError."""
    try:
        spec = parse(document)
    except ApiError as err:
        assert err.status in (409, 422)
        json.dumps([i.to_json() for i in err.items], ensure_ascii=False).encode("utf-8")
        assert all(i.pointer == "" or i.pointer.startswith("/data") for i in err.items)  # type: ignore[union-attr]
        return
    # Read-only attributes are ignored on input (SEMANTICS.md), whatever they hold.
    checked: Any = copy.deepcopy(document)
    for key in READ_ONLY:
        checked["data"]["attributes"].pop(key, None)
    assert CREATE_SCHEMA.is_valid(checked)
    for text in (spec.slug, spec.name, spec.schedule, spec.config.url, spec.config.body or ""):
        text.encode("utf-8")


@settings(max_examples=120, deadline=None)
@given(json_values)
def test_arbitrary_json_raises_nothing_but_api_error(document: object) -> None:
    check_outcome(document)
    check_outcome({"data": document})


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents(), st.data())
def test_a_valid_document_with_one_part_replaced_raises_nothing_but_api_error(
    document: dict[str, Any], data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(paths(document)[1:]))
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(json_values)
    check_outcome(document)


slug_chars = string.ascii_lowercase + string.digits + "-_"


def naive_is_slug(text: str) -> bool:
    return (
        1 <= len(text) <= 100
        and all(c in slug_chars for c in text)
        and text[0] in string.ascii_lowercase + string.digits
    )


@settings(max_examples=120, deadline=None)
@given(
    st.text(st.sampled_from([*"az09-_", "A", " ", "é", "\n", "\x00", "."]), max_size=110)
    | st.text(max_size=5)
    | st.from_regex(r"[a-z0-9][a-z0-9_-]{95,104}", fullmatch=True)
)
def test_slugs_are_accepted_iff_they_match_the_rule(slug: str) -> None:
    assert is_slug(slug) == naive_is_slug(slug)
    d = doc()
    d["data"]["id"] = slug
    if naive_is_slug(slug):
        assert parse(d).slug == slug
    else:
        assert errors_of(d) == {("/data/id", "invalid_slug")}


cron_parts = st.sampled_from(
    ["*", "0", "5", "59", "60", "*/5", "1-5", "5-1", "mon", "JAN", "L", "?", "1,2", "", "7"]
)
schedule_texts = (
    st.text(max_size=40)
    | st.lists(
        st.sampled_from([*"0123456789 */-,:TZ+@", "now", "\ud800", "\x00"]), max_size=30
    ).map("".join)
    | st.lists(cron_parts, min_size=1, max_size=7).map(" ".join)
    | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(["@hourly", "@reboot", "@weekly ", " now", "2030-02-30T00:00:00Z"])
)


@settings(max_examples=120, deadline=None)
@given(schedule_texts)
def test_any_schedule_text_is_a_job_spec_or_a_422_at_the_schedule(text: str) -> None:
    try:
        spec = parse(doc(schedule=text))
    except ApiError as err:
        assert err.status == 422
        assert {i.pointer for i in err.items} == {f"{A}/schedule"}
    else:
        assert spec.schedule == text


def naive_header_value_ok(value: str) -> bool:
    visible = [c for c in value if c not in " \t"]
    return (
        all(c in " \t" or 33 <= ord(c) <= 126 for c in value)
        and (not value or (value[0] not in " \t" and value[-1] not in " \t"))
        and (bool(visible) or not value)
    )


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        st.sampled_from([*"aZ~!", " ", "\t", "\r", "\n", "\x00", "\x01", "\x7f", "é", "\ud800"])
    )
)
def test_header_values_are_accepted_iff_they_follow_the_field_value_grammar(value: str) -> None:
    d = doc(config={"headers": [{"name": "X-A", "value": value}]})
    if naive_header_value_ok(value):
        assert parse(d).config.headers[0].value == value
    else:
        assert errors_of(d) == {(f"{H}/0/value", "invalid_header")}
