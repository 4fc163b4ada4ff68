"""Schemathesis against the real daemon over a real socket, in both API versions.

Three runs per version (each request of the 2026-08-07 runs sends
`Jobsd-Version: 2026-08-07`), each bounded in examples and time (schemathesis repeats fuzzing
and stateful scenarios until `--max-time` is spent, so that is what sets
their length): one against the version's shared spec
(`../shared/spec/openapi.json` or `openapi-2026-08-07.json` when present,
else our packaged copy) for schema conformance of every
documented response and no 5xx; one against the spec we serve (the shared
one plus our error responses, parameter rules and links), with every check
but `positive_data_acceptance`. That one is left out because validity of a
job (schedule syntax, URL rules, the plan's timeout) cannot be said in JSON
Schema; tests/api/test_documents.py proves acceptance of valid documents
with hypothesis instead.

The third is stateful: it follows the served spec's OpenAPI links (create ->
get / replace / delete / run now -> get / cancel / rerun run ...) so that
requests act on resources that exist rather than 404 (retry policies too:
create -> get / replace / delete). For chains to start, most job and policy
bodies must be valid, which a JSON Schema generator cannot manage
on its own (a random string is no schedule); a schemathesis hook therefore
turns three in four generated job bodies into valid ones, from the drawn
data, pointing at loopback addresses that refuse (connection refused, or
SSRF-blocked: 127.0.0.2 is outside the test's allowlist). That run is
positive-mode only: a negative body made valid would be "accepted invalid
data"; the first two runs cover negative data. The valid bodies carry both
versions' words for where a job runs (`enabled` for 2026-06-04,
`environments` for 2026-08-07; each version ignores the other's attribute),
and sometimes no schedule, which 2026-08-07 reads as a manual job.

Every path of both shared specs is served, retry policies in both versions
(the seed's served spec carries them, VERSIONS.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.conftest import TOKEN_A, config_text
from tests.daemon_process import DaemonProcess

ROOT = Path(__file__).resolve().parents[1]
SEED, NEW = "2026-06-04", "2026-08-07"
SPEC_FILES = {SEED: "openapi.json", NEW: "openapi-2026-08-07.json"}


HOOKS = """
import hashlib
import json

import schemathesis

JOB_BODIES = {("POST", "/api/v1/jobs"), ("PUT", "/api/v1/jobs/{job_id}")}
URLS = ["http://127.0.0.1:9/refused", "http://127.0.0.2:9/ssrf-blocked"]
SCHEDULES = [
    "now", "0 2 * * *", "*/5 * * * *", "2030-01-01T00:00:00Z", "2000-01-01T00:00:00Z", None
]
ENVIRONMENTS = [{}, {"production": {"enabled": True}}, {"staging": {"enabled": True}},
                {"production": {}, "staging": {"enabled": False, "timeout": 2}}]


POLICY_BODIES = {("POST", "/api/v1/retry-policies"), ("PUT", "/api/v1/retry-policies/{policy_id}")}


def policy_body(op, digest):
    data = {
        "type": "retry_policy",
        "attributes": {
            "name": "stateful",
            "max_retries": digest[1] % 11,
            "backoff": "exponential" if digest[2] % 2 else "fixed",
            "delay_seconds": 1 + digest[3] % 60,
            "retry_statuses": ["5xx", "429"][: digest[4] % 3],
        },
    }
    if op.method.upper() == "POST":
        data["id"] = "sp-" + digest.hex()[:12]
    return {"data": data}


@schemathesis.hook
def map_body(ctx, body):
    op = ctx.operation
    if op is None:
        return body
    key = (op.method.upper(), op.path)
    if key not in JOB_BODIES and key not in POLICY_BODIES:
        return body
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=repr).encode()).digest()
    if digest[0] % 4 == 0:
        return body  # as generated: refusals are part of the story too
    if key in POLICY_BODIES:
        return policy_body(op, digest)
    data = {
        "type": "job",
        "attributes": {
            "name": "stateful",
            "enabled": digest[1] % 2 == 0,
            "schedule": SCHEDULES[digest[2] % len(SCHEDULES)],
            "configuration": {"url": URLS[digest[3] % 2], "timeout": 1 + digest[4] % 5},
            "environments": ENVIRONMENTS[digest[5] % len(ENVIRONMENTS)],
        },
    }
    if op.method.upper() == "POST":
        data["id"] = "st-" + digest.hex()[:12]
    return {"data": data}
"""


def schemathesis(
    location: str,
    url: str,
    tmp_path: Path,
    *extra: str,
    version: str = SEED,
    max_time_s: int = 18,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        location,
        "--url",
        url,
        "-H",
        f"Authorization: Bearer {TOKEN_A}",
        "-H",
        f"Jobsd-Version: {version}",
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--max-time",
        str(max_time_s),
        "--request-timeout",
        "20",
        "--seed",
        "1",
        *extra,
    ]
    return subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "jobsd.toml"
    acme = 'environments = ["production", "staging"]'
    cfg.write_text(config_text(tmp_path, active_jobs_limit=-1, runs_included=-1, acme=acme))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as process:
        yield process


# Fuzzing time per run (the default suite's budget): the seed's runs a
# little longer, as its chains are longer.
MAX_TIME_S = {SEED: 12, NEW: 8}


def served_spec_file(daemon: DaemonProcess, tmp_path: Path, version: str) -> str:
    """The spec the daemon serves for `version`, saved for schemathesis to load."""
    r = httpx2.get(
        f"{daemon.url}/api/v1/openapi.json", headers={"Jobsd-Version": version}, trust_env=False
    )
    assert r.status_code == 200 and r.headers["Jobsd-Version"] == version
    path = tmp_path / f"served-{version}.json"
    path.write_bytes(r.content)
    return str(path)


@pytest.mark.parametrize("version", [SEED, NEW])
def test_shared_spec_conformance(daemon: DaemonProcess, tmp_path: Path, version: str) -> None:
    shared = ROOT.parent / "shared" / "spec" / SPEC_FILES[version]
    spec = shared if shared.exists() else ROOT / "jobsd" / SPEC_FILES[version]
    result = schemathesis(
        str(spec),
        daemon.url,
        tmp_path,
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        version=version,
        max_time_s=MAX_TIME_S[version],
    )
    assert result.returncode == 0, result.stdout[-6000:] + daemon.stderr()[-3000:]


@pytest.mark.parametrize("version", [SEED, NEW])
def test_served_spec_all_checks(daemon: DaemonProcess, tmp_path: Path, version: str) -> None:
    result = schemathesis(
        served_spec_file(daemon, tmp_path, version),
        daemon.url,
        tmp_path,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        "examples,coverage,fuzzing",
        version=version,
        max_time_s=MAX_TIME_S[version],
    )
    assert result.returncode == 0, result.stdout[-6000:] + daemon.stderr()[-3000:]


@pytest.mark.parametrize("version", [SEED, NEW])
def test_stateful_links(daemon: DaemonProcess, tmp_path: Path, version: str) -> None:
    hooks = tmp_path / "st_hooks.py"
    hooks.write_text(HOOKS)
    result = schemathesis(
        served_spec_file(daemon, tmp_path, version),
        daemon.url,
        tmp_path,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        "stateful",
        "--mode",
        "positive",
        version=version,
        max_time_s=12 if version == SEED else 8,
        env={"SCHEMATHESIS_HOOKS": str(hooks)},
    )
    assert result.returncode == 0, result.stdout[-6000:] + daemon.stderr()[-3000:]
    # The links were followed, not merely declared. How many depends on how
    # many scenarios fit in the time (about 20 of 31 on an idle machine); a
    # handful proves that chains start from real creates and runs.
    covered = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", result.stdout)
    assert covered is not None, result.stdout[-3000:]
    assert int(covered[1]) >= 5, result.stdout[-3000:]
