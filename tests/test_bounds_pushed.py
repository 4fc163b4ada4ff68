"""Bounds that nothing pushed on: each at its limit and one past it.

The project's rule is that every bound has a test that exceeds it; an audit
of the module constants found these without one. Each is small and pure
(or nearly), so each is checked where it is enforced, at the limit (taken)
and one past it (refused, cut or evicted), so that an off-by-one or a bound
lost in a refactor shows here.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobsd import http_url, keyfile, signing
from jobsd.address_policy import AddressPolicy
from jobsd.alert_body import MAX_ERROR_CHARS, alert_body
from jobsd.alert_rules import AlertType
from jobsd.api import doc_reader
from jobsd.api.extensions import (
    MAX_POLICY_ID,
    MAX_ZONE_NAME,
    policy_attribute,
    timezone_attribute,
)
from jobsd.api.v2026_08_07 import environments
from jobsd.cli_signing import MAX_OVERLAP_H, _hours
from jobsd.delivery import CA_BYTES_KEPT, CA_CONTEXTS_KEPT, Delivery
from jobsd.errors import ConfigError
from jobsd.http_url import PARSED_URLS_KEPT
from jobsd.job_model import HttpConfig, JobKind
from jobsd.messages import Run
from jobsd.run_filters import STATUS_CHOICES, parse_choices
from jobsd.runs import FailureReason, RunStatus, Trigger
from tests.tls_ca import make_ca

NOW = datetime(2026, 6, 5, 1, 0, tzinfo=UTC)


def _codes(errs: doc_reader.Errors) -> set[str]:
    return {item.code for item in errs.items}


@pytest.mark.parametrize(("limit", "read"), [(MAX_POLICY_ID, "policy"), (MAX_ZONE_NAME, "zone")])
def test_a_job_extension_reference_is_bounded(limit: int, read: str) -> None:
    """`retry_policy` and `timezone` on a job are 1-100 characters: too_long past it."""
    for length, too_long in ((limit, False), (limit + 1, True)):
        errs = doc_reader.Errors()
        if read == "policy":
            policy_attribute(errs, "p" * length, "/p")
        else:
            timezone_attribute(errs, "Z" * length, "/p", JobKind.RECURRING)
        assert ("too_long" in _codes(errs)) is too_long, (length, errs.items)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("N" * 200, "v" * 8192, None),
        ("N" * 201, "v", "invalid_header"),
        ("X-A", "v" * 8193, "too_long"),
    ],
)
def test_a_header_in_the_2026_08_07_map_form_is_bounded(
    name: str, value: str, code: str | None
) -> None:
    """The map form (`headers` as an object, `headers.X` in an environment's
    overrides) has its own reader: names 1-200 characters, values at most 8,192."""
    errs = doc_reader.Errors()
    found = environments.header(errs, name, value, "/h", {})
    assert _codes(errs) == ({code} if code else set())
    assert (found is None) is (code is not None)


def test_the_key_file_is_read_to_its_bound_at_most(tmp_path: Path) -> None:
    """A key file past `MAX_FILE_BYTES` is refused, not read whole into memory."""
    path = tmp_path / "secret.key"
    for size, refused in ((keyfile.MAX_FILE_BYTES, False), (keyfile.MAX_FILE_BYTES + 1, True)):
        path.write_bytes(b"#" * size)
        os.chmod(path, 0o600)
        if refused:
            with pytest.raises(ConfigError, match="larger than"):
                keyfile.read_text(path)
        else:
            assert len(keyfile.read_text(path)) == size


def _failed_run(error: str) -> Run:
    return Run(
        id="run_1",
        account_id="acme",
        job_pk=1,
        job_slug="nightly",
        job_version=1,
        environment="production",
        trigger=Trigger.SCHEDULE,
        rerun_of=None,
        scheduled_for=NOW,
        status=RunStatus.FAILED,
        created_at=NOW,
        started_at=NOW,
        finished_at=NOW,
        failure_reason=FailureReason.NON_SUCCESS_STATUS,
        error=error,
        request={"body": "x" * 100_000},
        result={"body": "y" * 100_000},
    )


def test_an_alert_body_cuts_the_run_error_and_leaves_out_its_bodies() -> None:
    """The alert a run's end makes stays small whatever the run held."""
    whole = json.loads(alert_body(AlertType.FAILED, NOW, _failed_run("e" * MAX_ERROR_CHARS)))
    assert whole["data"]["run"]["error"] == "e" * MAX_ERROR_CHARS
    one_more = alert_body(AlertType.FAILED, NOW, _failed_run("e" * (MAX_ERROR_CHARS + 1)))
    assert json.loads(one_more)["data"]["run"]["error"] == "e" * (MAX_ERROR_CHARS - 1) + "…"
    body = alert_body(AlertType.FAILED, NOW, _failed_run("e" * (10 * MAX_ERROR_CHARS)))
    error = json.loads(body)["data"]["run"]["error"]
    assert len(error) == MAX_ERROR_CHARS and error.endswith("…")
    assert len(body) < MAX_ERROR_CHARS + 2000  # no request or result came along


def test_a_run_filter_lists_at_most_50_values() -> None:
    """`filter[status]=A,B,...`: a long list is refused before it is looked at."""
    assert parse_choices(",".join(["FAILED"] * 50), STATUS_CHOICES) == {"FAILED"}
    with pytest.raises(ValueError, match="at most 50"):
        parse_choices(",".join(["FAILED"] * 51), STATUS_CHOICES)


def test_a_rotated_signing_secret_overlaps_at_most_30_days() -> None:
    assert _hours(str(MAX_OVERLAP_H)) == MAX_OVERLAP_H
    with pytest.raises(argparse.ArgumentTypeError, match=f"between 0 and {MAX_OVERLAP_H}"):
        _hours(str(MAX_OVERLAP_H + 1))


def test_a_signing_secret_encodes_at_most_64_bytes() -> None:
    def secret(n: int) -> str:
        return signing.SECRET_PREFIX + base64.b64encode(b"k" * n).decode("ascii")

    assert len(signing.secret_bytes(secret(64))) == 64
    assert len(signing.secret_bytes(secret(24))) == 24
    for n in (23, 65):
        with pytest.raises(ValueError, match="24-64 bytes"):
            signing.secret_bytes(secret(n))


def test_tls_contexts_for_ca_certs_are_kept_64_at_most() -> None:
    """Each job's `ca_cert` builds a context; the process keeps the 64 used last (and
    their connectors), so jobs naming ever new CAs cannot grow its memory."""
    delivery = Delivery(AddressPolicy([]))
    pems = [make_ca(f"ca {i}").cert_pem for i in range(CA_CONTEXTS_KEPT + 8)]
    contexts = []
    for pem in pems:
        context = delivery.ssl_context_for(HttpConfig(url="https://x.test/", ca_cert=pem))
        delivery._connector_for(context)
        contexts.append(context)
    assert len(delivery._with_ca) == CA_CONTEXTS_KEPT
    assert len(delivery._transports) <= CA_CONTEXTS_KEPT + 2
    # The most recent are the ones kept: asked again, the same context.
    last = HttpConfig(url="https://x.test/", ca_cert=pems[-1])
    assert delivery.ssl_context_for(last) is contexts[-1]
    first = HttpConfig(url="https://x.test/", ca_cert=pems[0])
    assert delivery.ssl_context_for(first) is not contexts[0]  # evicted, built again


def test_tls_contexts_for_ca_certs_are_kept_for_8_mib_of_them_at_most() -> None:
    """A `ca_cert` may be 1.25 MiB (the configuration's bound): 64 such contexts kept
    would hold 80 MiB of one account's certificates in every process. What is
    kept is bounded in bytes too (the newest context is always kept), and keyed by
    a digest, so the cache holds no job's text once its runs are done."""
    delivery = Delivery(AddressPolicy([]))
    bundle = make_ca("filler").cert_pem * ((1024 * 1024) // len(make_ca("x").cert_pem))
    pems = [make_ca(f"ca {i}").cert_pem + bundle for i in range(12)]
    contexts = [
        delivery.ssl_context_for(HttpConfig(url="https://x.test/", ca_cert=pem)) for pem in pems
    ]
    assert delivery.ca_bytes_kept() <= CA_BYTES_KEPT
    assert len(delivery._with_ca) == CA_BYTES_KEPT // len(pems[0].encode())
    assert all(isinstance(key, bytes) and len(key) == 32 for key in delivery._with_ca)
    last = HttpConfig(url="https://x.test/", ca_cert=pems[-1])
    assert delivery.ssl_context_for(last) is contexts[-1]
    first = HttpConfig(url="https://x.test/", ca_cert=pems[0])
    assert delivery.ssl_context_for(first) is not contexts[0]  # evicted, built again
    huge = make_ca("huge").cert_pem + bundle * 9  # one past the bound alone: still kept
    context = delivery.ssl_context_for(HttpConfig(url="https://x.test/", ca_cert=huge))
    assert len(delivery._with_ca) == 1
    assert delivery.ssl_context_for(HttpConfig(url="https://x.test/", ca_cert=huge)) is context


def test_a_ca_context_dropped_for_its_bytes_is_not_kept_by_its_connector() -> None:
    """Every run's context gets a connector (`Delivery._connector_for`), which holds
    the context: kept there 66 at most, by count, the contexts dropped for the
    8 MiB bound stayed alive (their certificates parsed) all the same."""
    delivery = Delivery(AddressPolicy([]))
    bundle = make_ca("filler").cert_pem * ((1024 * 1024) // len(make_ca("x").cert_pem))
    pems = [make_ca(f"ca {i}").cert_pem + bundle for i in range(12)]
    for pem in pems:
        context = delivery.ssl_context_for(HttpConfig(url="https://x.test/", ca_cert=pem))
        delivery._connector_for(context)
    kept = {id(context) for context, _ in delivery._with_ca.values()}
    assert set(delivery._transports) <= kept


def test_parsed_urls_are_kept_4096_at_most() -> None:
    """Every run's URL is parsed through a cache (a burst to one URL parses it
    once); the URLs are the jobs', so the cache must not grow with them."""
    http_url.parse.cache_clear()
    try:
        for n in range(PARSED_URLS_KEPT + 1):
            http_url.parse(f"http://127.0.0.1:8080/job-{n}")
        info = http_url.parse.cache_info()
        assert info.currsize == PARSED_URLS_KEPT, info
        assert info.misses == PARSED_URLS_KEPT + 1
    finally:
        http_url.parse.cache_clear()
