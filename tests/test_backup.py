"""`jobsd backup`: an online copy of a database a real daemon process is writing."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx2
import pytest

from jobsd.cli import main
from jobsd.config import builtin_config
from jobsd.crypto import KeyRing
from jobsd.errors import StorageError
from jobsd.store.backup import backup_database
from jobsd.store.schema import LATEST, configure, migrate
from tests.conftest import JSONAPI, TOKEN_A, config_text
from tests.daemon_process import DaemonProcess
from tests.daemon_process import jobsd_command as jobsd

SECRET = "Bearer backup-secret-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": JSONAPI}


def write_config(home: Path) -> Path:
    home.mkdir(exist_ok=True)
    path = home / "jobsd.toml"
    path.write_text(config_text(home))
    return path


def create_job(url: str, slug: str) -> None:
    doc = {
        "data": {
            "type": "job",
            "id": slug,
            "attributes": {
                "name": slug,
                "schedule": "0 2 * * *",
                "enabled": False,
                # Port 9 on loopback: refused at once, so each run is quick commits.
                "configuration": {
                    "url": "http://127.0.0.1:9/",
                    "headers": [{"name": "Authorization", "value": SECRET}],
                },
            },
        }
    }
    r = httpx2.post(f"{url}/api/v1/jobs", json=doc, headers=HEADERS, trust_env=False)
    assert r.status_code == 201, r.text


def fill(db: Path, runs: int) -> None:
    """Finished runs straight into the file (beside the daemon), so the copy has many pages."""
    with sqlite3.connect(db, timeout=30) as conn:
        job_id = conn.execute("SELECT id FROM jobs WHERE slug = 'busy'").fetchone()[0]
        conn.executemany(
            "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, status, created_at_us, "
            "finished_at_us, result) VALUES (?, 'acme', ?, 'busy', 'MANUAL', 'SUCCEEDED', 1, 2, ?)",
            [(str(uuid.uuid4()), job_id, '{"body": "' + "x" * 200 + '"}') for _ in range(runs)],
        )


class RunMaker(threading.Thread):
    """Asks the daemon for runs until told to stop (bounded), so it commits all along."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.made = 0

    def run(self) -> None:
        with httpx2.Client(trust_env=False, headers=HEADERS, timeout=10) as client:
            for _ in range(20_000):
                if self.stop.is_set():
                    return
                r = client.post(f"{self.url}/api/v1/jobs/busy/actions/run")
                assert r.status_code == 200, r.text
                self.made += 1


def check_copy(copy: Path) -> int:
    assert not Path(f"{copy}-wal").exists()
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == LATEST
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_backup_while_a_daemon_writes_then_a_daemon_starts_on_the_copy(tmp_path: Path) -> None:
    live = tmp_path / "live"
    config = write_config(live)
    with DaemonProcess(["serve", "--config", str(config)], tmp_path) as daemon:
        create_job(daemon.url, "busy")
        fill(live / "jobsd.sqlite3", 8_000)
        maker = RunMaker(daemon.url)
        maker.start()
        try:
            # In-process first, in small steps, to see that commits never restart the copy.
            step_copy = tmp_path / "steps.sqlite3"
            report = backup_database(
                live / "jobsd.sqlite3", step_copy, pages_per_step=4, pause_s=0.002
            )
            assert report.schema_version == LATEST
            assert report.steps <= report.pages // 4 + 2, "the copy restarted"
            made_before = maker.made
            out = jobsd("backup", "--config", str(config), str(tmp_path / "b.sqlite3"), cwd=live)
            assert out.returncode == 0, out.stderr
            assert "quick_check ok" in out.stdout and "key file" in out.stdout
        finally:
            maker.stop.set()
            maker.join(timeout=30)
        assert maker.made > made_before, "the daemon was not writing during the backup"
        assert check_copy(step_copy) >= 8_000
        assert check_copy(tmp_path / "b.sqlite3") >= 8_000 + made_before
    # Restore: a fresh home with the copy and the key file; a daemon starts and opens it.
    restored = tmp_path / "restored"
    restored_config = write_config(restored)
    shutil.copy(tmp_path / "b.sqlite3", restored / "jobsd.sqlite3")
    shutil.copy(live / "secret.key", restored / "secret.key")
    with DaemonProcess(["serve", "--config", str(restored_config)], tmp_path) as daemon:
        r = httpx2.get(f"{daemon.url}/api/v1/jobs/busy", headers=HEADERS, trust_env=False)
        assert r.status_code == 200, r.text
        headers = r.json()["data"]["attributes"]["configuration"]["headers"]
        assert headers == [{"name": "Authorization", "value": SECRET}]
        assert daemon.stop() == 0


@pytest.fixture
def live_db(tmp_path: Path) -> Path:
    """A migrated jobsd database where `jobsd serve` on built-in defaults keeps it."""
    path = builtin_config(tmp_path, "0" * 64).storage.path
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn)
    migrate(conn)
    conn.close()
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_refusals_force_and_the_default_data_dir(
    tmp_path: Path,
    live_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dest = tmp_path / "out" / "copy.sqlite3"
    dest.parent.mkdir()
    # No --config: the current directory, like `jobsd serve`.
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "backup", str(dest))[0] == 0
    assert check_copy(dest) == 0
    first = dest.stat().st_ino
    status, _, err = run_cli(capsys, "backup", str(dest))
    assert status == 2 and "exists; pass --force" in err
    assert dest.stat().st_ino == first
    monkeypatch.chdir(dest.parent)
    assert run_cli(capsys, "backup", "--data-dir", str(tmp_path), "--force", str(dest))[0] == 0
    assert dest.stat().st_ino != first and check_copy(dest) == 0
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, "backup", "--force", str(live_db))
    assert status == 2 and "is the live database itself" in err
    status, _, err = run_cli(capsys, "backup", str(dest.parent))
    assert status == 2 and "is a directory" in err
    status, _, err = run_cli(capsys, "backup", "--data-dir", str(dest.parent), str(tmp_path / "x"))
    assert status == 2 and "there is no database" in err
    Path(f"{dest}-wal").touch()
    status, _, err = run_cli(capsys, "backup", "--force", str(dest))
    assert status == 2 and "looks like a database in use" in err
    Path(f"{dest}-wal").unlink()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.sqlite3"]  # no leftovers


def test_force_replaces_only_a_database(
    tmp_path: Path, live_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--force` replaces an earlier backup; a mistyped DEST that is the key file (all
    sealed header values lost with it), the config or any other file is refused,
    left as it was. An empty file (`mktemp`) may be written."""
    key = live_db.parent / "secret.key"
    KeyRing.load_or_create(key)
    config = live_db.parent / "jobsd.toml"
    config.write_text(config_text(live_db.parent))
    for precious in (key, config):
        before = precious.read_bytes()
        status, _, err = run_cli(
            capsys, "backup", "--data-dir", str(live_db.parent), "--force", str(precious)
        )
        assert status == 2 and "is not a SQLite database" in err, err
        assert precious.read_bytes() == before
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    assert (
        run_cli(capsys, "backup", "--data-dir", str(live_db.parent), "--force", str(empty))[0] == 0
    )
    assert check_copy(empty) == 0


def test_force_never_opens_or_replaces_what_is_not_a_regular_file(
    tmp_path: Path, live_db: Path
) -> None:
    """A DEST that exists but is no file (a FIFO; /dev/null, a device, as root) is
    refused: opening a FIFO to read SQLite's header waited for a writer forever,
    and an "empty" device node was replaced by the copy."""
    fifo = tmp_path / "fifo"  # beside the database of the default --data-dir (cwd)
    os.mkfifo(fifo)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "jobsd", "backup", "--force", str(fifo)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("jobsd backup --force onto a FIFO hung")
    assert out.returncode == 2, out.stderr
    assert "is not a regular file" in out.stderr, out.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_filesystem_without_hard_links_still_takes_a_new_backup(
    tmp_path: Path,
    live_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FAT and exFAT drives, SMB shares and object-store mounts (s3fs, gcsfuse) have
    no hard links; the copy was published by one, so a backup there failed unless
    `--force` ("Operation not permitted"). It still never overwrites."""

    def no_hard_links(src: object, dst: object, **_: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    dest = tmp_path / "usb" / "copy.sqlite3"
    dest.parent.mkdir()
    status, _, err = run_cli(capsys, "backup", "--data-dir", str(live_db.parent), str(dest))
    assert status == 0, err
    assert check_copy(dest) == 0
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    before = dest.read_bytes()
    status, _, err = run_cli(capsys, "backup", "--data-dir", str(live_db.parent), str(dest))
    assert status == 2 and "exists; pass --force" in err
    assert dest.read_bytes() == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.sqlite3"]  # no leftovers


def _plain_database(path: Path, *, versioned: bool, damaged: bool = False) -> Path:
    """A SQLite file that is not a jobsd database, or one whose index page is damaged."""
    conn = sqlite3.connect(path, isolation_level=None)
    if versioned:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    with conn:  # one transaction, not 2,000 fsyncs
        conn.execute("BEGIN")
        rows = [(i, f"value-{i:06d}") for i in range(2000)]
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 't_v'").fetchone()[0]
    conn.close()
    if damaged:  # the index's cell pointers: SQLite opens the file, quick_check finds it
        with path.open("r+b") as file:
            file.seek((root - 1) * page_size + 8)
            file.write(b"\xff" * 64)
    return path


def test_a_copy_that_fails_its_quick_check_is_not_published(tmp_path: Path) -> None:
    source = _plain_database(tmp_path / "live.sqlite3", versioned=True, damaged=True)
    dest = tmp_path / "copy.sqlite3"
    with pytest.raises(StorageError, match="quick_check"):
        backup_database(source, dest, pause_s=0)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.sqlite3"]  # no copy left


def test_a_database_without_a_schema_version_is_not_backed_up(tmp_path: Path) -> None:
    source = _plain_database(tmp_path / "other.sqlite3", versioned=False)
    dest = tmp_path / "copy.sqlite3"
    with pytest.raises(StorageError, match="no schema_version"):
        backup_database(source, dest, pause_s=0)
    assert not dest.exists()


def test_a_publish_that_fails_without_hard_links_leaves_no_empty_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without hard links DEST is claimed empty, then replaced by the copy: if
    that replace fails, the empty DEST it claimed goes too (else every later
    backup there is refused, "exists")."""
    source = _plain_database(tmp_path / "live.sqlite3", versioned=True)

    def no_hard_links(src: object, dst: object, **_: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def replace_fails(src: object, dst: object, **_: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "link", no_hard_links)
    monkeypatch.setattr(os, "replace", replace_fails)
    dest = tmp_path / "copy.sqlite3"
    with pytest.raises(StorageError, match="Input/output error"):
        backup_database(source, dest, pause_s=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.sqlite3"]
