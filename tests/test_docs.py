"""Docs are tested: the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    first, second = readme_commands()[:2]
    assert "pip install ." in first and first.rstrip().endswith("jobsd serve")
    assert "pytest" in second and "pip install" in second


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = readme_commands()[1].strip()
    assert test_command in [line.strip() for line in ci]


@pytest.mark.parametrize("name", ["openapi.json", "openapi-2026-08-07.json"])
def test_packaged_spec_is_the_shared_contract(name: str) -> None:
    shared = ROOT.parent / "shared" / "spec" / name
    if shared.exists():
        assert (ROOT / "jobsd" / name).read_text() == shared.read_text()
