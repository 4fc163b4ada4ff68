"""The `jobsd` command as a person runs it: real processes."""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import signal
import socket
import stat
from pathlib import Path

import httpx2
import pytest

from jobsd import cli, cli_refusals
from jobsd.config import builtin_config
from jobsd.errors import StorageError
from tests.conftest import example_text
from tests.daemon_process import DaemonProcess
from tests.daemon_process import jobsd_command as jobsd

ROOT = Path(__file__).resolve().parents[1]


def test_token_prints_a_token_and_its_digest(tmp_path: Path) -> None:
    out = jobsd("token", cwd=tmp_path)
    assert out.returncode == 0
    token = out.stdout.split("token: ", 1)[1].split()[0]
    assert token.startswith("jobsd_") and len(token) > 40
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert f'tokens_sha256 = ["{digest}"]' in out.stdout


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    # The example as shipped: refused until its token placeholders are replaced.
    shipped = jobsd("check-config", str(ROOT / "etc" / "jobsd.toml"), cwd=tmp_path)
    assert shipped.returncode == 2 and "accounts[0].tokens_sha256[0]" in shipped.stderr
    edited = tmp_path / "edited.toml"
    edited.write_text(example_text())
    assert jobsd("check-config", str(edited), cwd=tmp_path).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[scheduler]\nworkers = 0\n")
    out = jobsd("check-config", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert "scheduler.workers" in out.stderr
    bad.write_text("[scheduler]\nwrokers = 4\n")
    out = jobsd("check-config", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and "scheduler.wrokers" in out.stderr
    out = jobsd("serve", "--config", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and "scheduler.wrokers" in out.stderr


def test_a_bad_alert_url_is_refused_naming_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    plan = "[plans.p]\nruns_included = 1\nactive_jobs_limit = 1\nmax_timeout = 30\n"
    account = '[[accounts]]\nid = "a"\nplan = "p"\ntokens_sha256 = []\n'
    # A host that is no valid URL host, as a job URL's would be refused.
    bad.write_text(plan + account + 'alert_url = "https://exa mple.com/"\n')
    for command in (["check-config", str(bad)], ["serve", "--config", str(bad)]):
        out = jobsd(*command, cwd=tmp_path)
        assert out.returncode == 2 and "accounts[0].alert_url" in out.stderr, out.stderr


def test_config_and_data_dir_together_are_refused(tmp_path: Path) -> None:
    # With --config the config names the files, and a --data-dir beside it was
    # silently ignored: `backup --config F --data-dir D DEST` copied F's
    # database, not D's; the README gives them as alternatives.
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(
        f'[storage]\npath = "{tmp_path / "db.sqlite3"}"\n'
        f'[secrets]\nkey_file = "{tmp_path / "secret.key"}"\n[server]\nlisten = "127.0.0.1:0"\n'
    )
    other = tmp_path / "other"
    other.mkdir()
    dest = tmp_path / "copy.sqlite3"
    for verb in (["backup", str(dest)], ["check-keys"], ["signing-secret", "local"], ["serve"]):
        out = jobsd(*verb, "--config", str(cfg), "--data-dir", str(other), cwd=tmp_path)
        assert out.returncode == 2, (verb, out.stderr)
        assert "argument --data-dir: not allowed with argument --config" in out.stderr
        assert "Traceback" not in out.stderr
    assert not dest.exists() and not any(other.iterdir())


def test_builtin_defaults() -> None:
    config = builtin_config(Path("/data"), "0" * 64)
    assert config.server.listen == "127.0.0.1:8080"
    assert config.storage.path == Path("/data/jobsd.sqlite3")
    assert config.secrets.key_file == Path("/data/secret.key")
    assert [a.id for a in config.accounts] == ["local"]


def test_serve_on_builtin_defaults(tmp_path: Path) -> None:
    # Only the port differs from a bare `jobsd serve`: tests never use fixed ports.
    daemon = DaemonProcess(["serve", "--listen", "127.0.0.1:0"], tmp_path)
    with daemon:
        printed = "".join(daemon.stdout_lines) + daemon.read_line() + daemon.read_line()
        token = printed.split("API token (shown once, valid until restart): ", 1)[1].split()[0]
        key = tmp_path / "secret.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (tmp_path / "jobsd.sqlite3").exists()
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx2.get(f"{daemon.url}/api/v1/jobs", headers=headers, trust_env=False)
        assert r.status_code == 200
        r = httpx2.get(f"{daemon.url}/api/v1/usage", headers=headers, trust_env=False)
        assert r.json()["data"]["attributes"]["runs_included"] == -1
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None and daemon.proc.wait(timeout=30) == 0
        assert token not in daemon.stderr()
        # Lines kept for a batch of the loop's tasks (jobsd.log_batching) all reach
        # stderr by the end of a stop: the last request's line and the stop's own.
        lines = daemon.stderr().splitlines()
        assert any("request" in line and "/api/v1/usage" in line for line in lines), lines
        assert lines[-1].endswith("stopped"), lines[-3:]
        # Once ready, the start's objects are out of the cycle collector's sight (jobsd.cli).
        frozen = re.search(r"ready: (\d+) objects of the start set aside", daemon.stderr())
        assert frozen is not None and int(frozen[1]) > 50_000, daemon.stderr()[-2000:]


def test_a_listen_address_in_use_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = jobsd("serve", "--listen", f"127.0.0.1:{port}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"server.listen: cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
    assert "Traceback" not in out.stderr


def test_listen_overrides_a_config_with_trusted_proxies(tmp_path: Path) -> None:
    # --listen rebuilt [server] from its dump, where trusted_proxies are network
    # objects the config's grammar takes only as strings: refused as a bad --listen.
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(
        f'[storage]\npath = "{tmp_path / "db.sqlite3"}"\n'
        f'[secrets]\nkey_file = "{tmp_path / "secret.key"}"\n'
        '[server]\nlisten = "127.0.0.1:1"\ntrusted_proxies = ["10.0.0.0/8", "::1/128"]\n'
    )
    with DaemonProcess(["serve", "--config", str(cfg), "--listen", "127.0.0.1:0"], tmp_path) as d:
        assert httpx2.get(f"{d.url}/healthz", trust_env=False).status_code == 200
        assert d.stop() == 0
    out = jobsd("serve", "--config", str(cfg), "--listen", "127.0.0.1:99999", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "jobsd: config error: --listen: port 99999 is above 65535"


def test_a_database_path_jobsd_cannot_use_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    # A directory at storage.path, and a directory on its path that cannot be
    # made (under /proc), were tracebacks with exit 1.
    (tmp_path / "adir").mkdir()
    for path, why in (
        (tmp_path / "adir", "is not a regular file"),
        (Path("/proc/jobsd-no-such/db.sqlite3"), "cannot create the directory /proc/jobsd-no-such"),
    ):
        cfg = tmp_path / "jobsd.toml"
        cfg.write_text(
            f'[storage]\npath = "{path}"\n[secrets]\nkey_file = "{tmp_path / "secret.key"}"\n'
            '[server]\nlisten = "127.0.0.1:0"\n'
        )
        out = jobsd("serve", "--config", str(cfg), cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("jobsd: storage error: ") and why in out.stderr, out.stderr


def test_a_database_another_process_keeps_locked_is_a_message_not_a_traceback(
    tmp_path: Path,
) -> None:
    # Past the busy timeout, the start's first write (the migrations of a new
    # file, recovery's of a used one) was a traceback and exit 1, or told the
    # operator to restore a backup of a file that is only in use.
    import sqlite3

    cfg = tmp_path / "jobsd.toml"
    db = tmp_path / "db.sqlite3"
    cfg.write_text(
        f'[storage]\npath = "{db}"\n[secrets]\nkey_file = "{tmp_path / "secret.key"}"\n'
        '[server]\nlisten = "127.0.0.1:0"\n'
    )
    for used in (False, True):
        if used:
            db.unlink()
            with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as d:
                assert d.stop() == 0
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            out = jobsd("serve", "--config", str(cfg), cwd=tmp_path)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and "restore" not in out.stderr, out.stderr
        assert "jobsd: storage error: " in out.stderr
        assert "locked by another process" in out.stderr, out.stderr


def test_a_refusal_under_json_logs_is_a_log_record_not_a_bare_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`[log] format = "json"`: every stderr line is one JSON object, the refusal too."""
    with caplog.at_level(logging.ERROR, logger="jobsd"):
        code = cli_refusals.refuse(StorageError("x is wrong"), argparse.Namespace(json_logs=True))
    assert code == 2
    assert [r.getMessage() for r in caplog.records] == ["jobsd: storage error: x is wrong"]
    assert capsys.readouterr().err == ""


def test_of_several_refusals_in_a_group_the_first_is_told() -> None:
    first, second = StorageError("first"), StorageError("second")
    group = ExceptionGroup("daemon", [ExceptionGroup("start", [first]), second])
    assert cli_refusals.first_leaf(group) is first


@pytest.mark.parametrize("grouped", [False, True])
def test_a_bug_in_a_command_is_raised_not_told_as_a_refusal(
    monkeypatch: pytest.MonkeyPatch, grouped: bool
) -> None:
    """Only a bad config or database is a message and exit 2: any other exception
    (a bug, alone or grouped as the daemon's nurseries raise it) goes up with its
    traceback, never dressed as a "storage error"."""
    bug = RuntimeError("a bug")

    def broken(args: argparse.Namespace) -> int:
        raise BaseExceptionGroup("nursery", [bug]) if grouped else bug

    monkeypatch.setattr(cli, "_dispatch", broken)
    with pytest.raises(BaseException) as raised:
        cli.main(["token"])
    got = raised.value
    assert (got.exceptions[0] if grouped else got) is bug  # type: ignore[attr-defined]
