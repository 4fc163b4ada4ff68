"""Schemathesis against the real daemon over a real socket.

Two runs, bounded in examples and time: one against the shared spec
(`../shared/spec/openapi.json` when present, else our packaged copy) for
schema conformance of every documented response and no 5xx; one against
the spec we serve (the shared one plus our error responses and parameter
rules), with every check but `positive_data_acceptance`. That one is left
out because validity of a job (schedule syntax, URL rules, the plan's
timeout) cannot be said in JSON Schema; tests/api/test_documents.py proves
acceptance of valid documents with hypothesis instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOKEN_A, config_text
from tests.daemon_process import DaemonProcess

ROOT = Path(__file__).resolve().parents[1]
SHARED_SPEC = ROOT.parent / "shared" / "spec" / "openapi.json"


def schemathesis(
    location: str, url: str, tmp_path: Path, *extra: str
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
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--max-time",
        "60",
        "--request-timeout",
        "20",
        "--seed",
        "1",
        *extra,
    ]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)


@pytest.fixture
def daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path, active_jobs_limit=-1, runs_included=-1))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as process:
        yield process


def test_shared_spec_conformance(daemon: DaemonProcess, tmp_path: Path) -> None:
    spec = SHARED_SPEC if SHARED_SPEC.exists() else ROOT / "jobsd" / "openapi.json"
    result = schemathesis(
        str(spec),
        daemon.url,
        tmp_path,
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--phases",
        "examples,coverage,fuzzing",
    )
    assert result.returncode == 0, result.stdout[-6000:] + daemon.stderr()[-3000:]


def test_served_spec_all_checks(daemon: DaemonProcess, tmp_path: Path) -> None:
    result = schemathesis(
        f"{daemon.url}/api/v1/openapi.json",
        daemon.url,
        tmp_path,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        "examples,coverage,fuzzing",
    )
    assert result.returncode == 0, result.stdout[-6000:] + daemon.stderr()[-3000:]
