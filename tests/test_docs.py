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


def test_the_service_install_puts_jobsd_where_the_unit_runs_it() -> None:
    """The install steps once began `sudo pip install .`, which Debian 12 and
    Ubuntu 24.04 refuse (PEP 668): the first step of the service install failed
    on the distributions a VM runs. The steps must install without the system's
    pip and leave jobsd at the unit's ExecStart."""
    unit = (ROOT / "systemd" / "jobsd.service").read_text()
    found = re.search(r"^ExecStart=(\S+) serve ", unit, flags=re.M)
    assert found is not None
    install = next(b for b in readme_commands() if "systemctl enable" in b)
    lines = [line.split("#")[0].strip() for line in install.splitlines()]
    assert not [line for line in lines if re.match(r"(sudo )?pip3? install", line)]
    assert any(line.endswith(f" {found[1]}") for line in lines), found[1]


@pytest.mark.parametrize("name", ["openapi.json", "openapi-2026-08-07.json"])
def test_packaged_spec_is_the_shared_contract(name: str) -> None:
    shared = ROOT.parent / "shared" / "spec" / name
    if shared.exists():
        assert (ROOT / "jobsd" / name).read_text() == shared.read_text()


# -- the README's concrete names, held to the code ----------------------------------
#
# The README is where operators read what jobsd promises; it grew over many
# sessions, and a renamed key, metric, command, file or error code left there
# sends them after something that no longer exists. Each check below reads a
# shape of name that cannot be mistaken for prose (a `jobsd_` metric, a dotted
# or bracketed config key, a `jobsd <command> --flag`, a path under jobsd/ or
# tests/, a `4xx code` pair) and asks the code about it.


def readme() -> str:
    return (ROOT / "README.md").read_text()


def code_spans(text: str) -> list[str]:
    """Inline code spans (`...`), fenced blocks left out; a span may wrap lines."""
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", outside)]


def test_every_metric_the_readme_names_is_registered_with_those_labels() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from jobsd.metrics import Metrics

    metrics = Metrics()
    families = {
        m._name: m  # the family name prometheus_client registers (no _total)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    named = re.findall(r"\b(jobsd_[a-z_]+)(\{[^}]*\})?", readme())
    assert len(named) > 10
    for name, labels in named:
        family = name.removesuffix("_total") if name.endswith("_total") else name
        assert family in families, f"README names {name}, which jobsd does not export"
        metric = families[family]
        if name.endswith("_total"):
            assert metric._type == "counter", f"{name}: only counters end in _total"
        if labels and "=" not in labels:  # a label list, not a selector
            wanted = [label.strip() for label in labels.strip("{}").split(",")]
            try:
                metric.labels(**dict.fromkeys(wanted, "x"))  # refused unless exactly its labels
            except ValueError:
                pytest.fail(f"README gives {name} the labels {labels}, which are not its own")


def test_every_config_key_the_readme_names_exists() -> None:
    from pydantic import BaseModel

    from jobsd.config import AccountConfig, Config, PlanConfig

    sections: dict[str, type[BaseModel]] = {
        name: field.annotation
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    sections["plans"] = PlanConfig
    sections["accounts"] = AccountConfig
    text = readme()
    keys = re.findall(r"`\[([a-z]+)(?:\.[a-z*]+)?\] ([a-z_]+)", text)
    keys += re.findall(r"\b([a-z]+)(?:\[(?:\d+|N)\])?\.([a-z_]+)\b", " ".join(code_spans(text)))
    checked = 0
    for section, key in keys:
        if section not in sections:
            continue  # a module or an attribute path, not a config key
        assert key in sections[section].model_fields, f"README names {section}.{key}"
        checked += 1
    for section in re.findall(r"`\[([a-z]+)(?:\.[a-z*]+)?\]`", text):
        assert section in sections, f"README names a [{section}] table"
    assert checked > 10


def test_every_jobsd_command_and_flag_the_readme_names_exists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobsd.cli import main

    text = readme()
    uses = [s for s in code_spans(text) if s.startswith("jobsd ")]
    for block in readme_commands():
        lines = [line.split("#")[0] for line in block.splitlines()]
        uses += [line for line in lines if re.search(r"(?:^|\s)jobsd ", line)]
    helps: dict[str, str] = {}
    checked = 0
    for use in uses:
        found = re.search(r"(?:^|\s)jobsd ([a-z][a-z-]*)", use)
        assert found is not None, use
        command = found[1]
        if command not in helps:
            with pytest.raises(SystemExit) as exit_:
                main([command, "--help"])
            assert exit_.value.code == 0, f"README names `jobsd {command}`, which is no command"
            helps[command] = capsys.readouterr().out
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", use[found.end() :]):
            assert flag in helps[command].split(), f"README: `jobsd {command}` has no {flag}"
            checked += 1
    assert len(helps) == 8 and checked > 10


def test_each_command_synopsis_in_the_readme_is_its_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`jobsd serve [--config FILE | --data-dir DIR] [--listen HOST:PORT]`: the
    README's placeholders are what `--help` shows (it showed CONFIG, DATA_DIR,
    LISTEN and a lowercase `file`), and options it gives as alternatives are."""
    from jobsd.cli import main

    synopses = [s for s in code_spans(readme()) if re.match(r"jobsd [a-z-]+ .*[A-Z]", s)]
    assert len(synopses) >= 6
    for synopsis in synopses:
        command = synopsis.split()[1]
        with pytest.raises(SystemExit):
            main([command, "--help"])
        usage = " ".join(capsys.readouterr().out.split("options:")[0].split())
        for option in re.findall(r"--[a-z-]+ [A-Z][A-Z_:]*", synopsis):
            assert option in usage, f"README: `{synopsis}`; --help: {usage}"
        bare = re.sub(r"\[[^]]*\]", "", synopsis.split(None, 2)[2])
        for positional in re.findall(r"(?<![\w-])[A-Z][A-Z_]*", bare):
            assert f" {positional}" in usage, f"README: `{synopsis}`; --help: {usage}"
        for pair in re.findall(
            r"\[(--[a-z-]+(?: [A-Z_:]+)? \| --[a-z-]+(?: [A-Z_:]+)?)\]", synopsis
        ):
            assert f"[{pair}]" in usage, f"README: `{synopsis}`; --help: {usage}"


def test_every_file_the_readme_cites_exists() -> None:
    spans = " ".join(code_spans(readme())) + " " + readme()
    top = r"(?:jobsd|tests|etc|systemd)/[A-Za-z_][\w/.*-]*\w"  # not jobsd/0.1, the User-Agent
    cited = set(re.findall(rf"(?<![\w/.])({top})", spans))
    assert len(cited) > 30
    missing = sorted(path for path in cited if not any(ROOT.glob(path)))
    assert not missing, f"README cites files that do not exist: {missing}"
    bare = set(re.findall(r"(?<![\w/])(test_\w+\.py)", spans))
    present = {path.name for path in (ROOT / "tests").rglob("test_*.py")}
    assert not sorted(bare - present), "README cites test files that do not exist"


def test_every_error_code_the_readme_pairs_with_a_status_is_jobsds() -> None:
    text = readme()
    pairs = re.findall(r"`([45]\d\d)`?\s+`?([a-z]+(?:_[a-z]+)+)`", text)
    assert len(pairs) > 15
    source = "\n".join(p.read_text() for p in (ROOT / "jobsd").rglob("*.py"))
    for status, code in pairs:
        assert f'"{code}"' in source, f"README names `{status} {code}`: no such code in jobsd/"


def test_the_readme_curl_commands_do_not_glob_brackets() -> None:
    """curl reads `[...]` in a URL as a glob range: `page[size]=10` fails with
    exit 3 (hidden by -s) unless globbing is off, so the README's list calls
    did nothing for whoever pasted them."""
    text = "\n".join(readme_commands())
    globbing_off = re.search(r"^H=\(.*(?:-g|--globoff)\b", text, flags=re.M) is not None
    for line in text.splitlines():
        if re.search(r"\bcurl\b", line) and re.search(r"\?[^ ]*\[", line):
            assert globbing_off or re.search(r"\s(?:-g|--globoff)\b", line), line


# A module the README names only to say it was measured on a branch and not merged.
UNMERGED_MODULES = {"jobsd.store.writer_child"}
# Files the README names that read like dotted module names.
FILE_NAMES = {"jobsd.toml", "jobsd.service", "jobsd.sqlite3.lock"}


def test_every_jobsd_module_or_logger_the_readme_names_exists() -> None:
    source = {p: p.read_text() for p in (ROOT / "jobsd").rglob("*.py")}
    loggers = {
        name for text in source.values() for name in re.findall(r'getLogger\("([\w.]+)"\)', text)
    }
    named = {
        match.rstrip(".")
        for span in code_spans(readme())
        for match in re.findall(r"(?<![\w/])jobsd(?:\.[a-z_][a-z0-9_]*)+", span)
    }
    assert len(named) > 3
    for name in sorted(named - UNMERGED_MODULES - FILE_NAMES):
        path = ROOT.joinpath(*name.split("."))
        exists = path.with_suffix(".py").exists() or (path / "__init__.py").exists()
        assert exists or name in loggers, f"README names {name}: no such module or logger"
