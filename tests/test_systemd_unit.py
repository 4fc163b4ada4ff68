"""The shipped systemd unit: directives present, paths agreeing with the config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from jobsd.config import Config, parse_config
from tests.conftest import example_text

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "jobsd.service"
EXAMPLE = ROOT / "etc" / "jobsd.toml"
CONFIG_PATH = "/etc/jobsd/jobsd.toml"


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections to (key, value) lists: systemd keys may repeat, so no dict per section."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), f"continuation lines are not expected: {line}"
        if stripped.startswith("["):
            current = sections.setdefault(stripped.strip("[]"), [])
            continue
        assert current is not None and "=" in stripped, f"unparsable line: {line}"
        key, value = stripped.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


UNIT_SECTIONS = parse_unit(UNIT.read_text())
SERVICE = UNIT_SECTIONS["Service"]


def values(key: str) -> list[str]:
    return [value for name, value in SERVICE if name == key]


def single(key: str) -> str:
    (value,) = values(key)
    return value


REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "ExecStart": f"/usr/local/bin/jobsd serve --config {CONFIG_PATH}",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "DynamicUser": "yes",
    "StateDirectory": "jobsd",
    "ConfigurationDirectory": "jobsd",
    "UMask": "0077",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "LimitCORE": "0",  # a core dump would hold keys and decrypted header values
}


@pytest.mark.parametrize(("key", "expected"), REQUIRED.items())
def test_required_directive(key: str, expected: str) -> None:
    assert single(key) == expected


def test_it_starts_after_the_network_and_the_clock() -> None:
    """jobsd reads the system time once at start (jobsd/clock.py): a clock set
    after it (NTP at boot) would shift every cron instant until a restart."""
    unit = dict(UNIT_SECTIONS["Unit"])
    for key in ("Wants", "After"):
        assert {"network-online.target", "time-sync.target"} <= set(unit[key].split())


def test_sections() -> None:
    assert set(UNIT_SECTIONS) == {"Unit", "Service", "Install"}
    assert ("WantedBy", "multi-user.target") in UNIT_SECTIONS["Install"]


def test_paths_match_the_config_defaults_and_the_example() -> None:
    state_dir = PurePosixPath("/var/lib") / single("StateDirectory")
    config_dir = PurePosixPath("/etc") / single("ConfigurationDirectory")
    assert PurePosixPath(CONFIG_PATH).parent == config_dir
    assert f"--config {CONFIG_PATH}" in single("ExecStart")
    for config in (Config(), parse_config(example_text())):
        assert PurePosixPath(config.storage.path).parent == state_dir
        assert PurePosixPath(config.secrets.key_file).parent == state_dir
    assert CONFIG_PATH in EXAMPLE.read_text()


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|min)?", value)
    assert match, f"unexpected time span {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_the_stop_timeout_outlasts_the_shutdown_grace() -> None:
    stop_s = seconds(single("TimeoutStopSec"))
    assert stop_s > parse_config(example_text()).scheduler.shutdown_grace_s
    assert stop_s > Config().scheduler.shutdown_grace_s


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not on PATH (apt-get install systemd)"
)


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart on a binary that exists here: verify checks it is executable."""
    text = UNIT.read_text().replace(
        "ExecStart=/usr/local/bin/jobsd ", f"ExecStart={sys.executable} "
    )
    if not Path("/bin/kill").exists() and (kill := shutil.which("kill")):
        text = text.replace("/bin/kill ", f"{kill} ")
    copy = tmp_path / "jobsd.service"  # the unit name comes from the file name
    copy.write_text(text)
    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    copy = runnable_copy(tmp_path)
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown or unparsable directives and only warns: any
    # line about our unit is a failure. Lines about the host's other units are not.
    ours = [line for line in done.stderr.splitlines() if "jobsd.service" in line]
    assert done.returncode == 0 and not ours, done.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_exposure_stays_low(tmp_path: Path) -> None:
    copy = runnable_copy(tmp_path)
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for jobsd\.service: (\d+\.\d+)", done.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score unit files offline: {done.stderr[:200]}")
    assert float(match[1]) <= 2.0, done.stdout


def test_the_installed_config_is_readable_by_the_dynamic_user() -> None:
    # DynamicUser runs jobsd as a user of its own; ConfigurationDirectory stays
    # root's. A config installed 0640 root:root (as README once said) is then
    # unreadable: the unit fails at every start with "Permission denied".
    assert single("DynamicUser") == "yes"
    installs = [
        line
        for text in (ROOT.joinpath("README.md").read_text(), UNIT.read_text())
        for line in text.splitlines()
        if re.search(r"\binstall\b.*etc/jobsd\.toml", line)
    ]
    assert installs
    for line in installs:
        mode = re.search(r"-m\s+(0?[0-7]{3})", line)
        assert mode is not None, line
        assert int(mode[1], 8) & 0o004, f"others (the dynamic user) cannot read it: {line}"
