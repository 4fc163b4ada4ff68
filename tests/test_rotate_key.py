"""Key rotation without downtime, retiring keys, and values whose key is gone."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest

from jobsd import keyfile, rotation
from jobsd.cli import main
from jobsd.crypto import KeyRing, header_aad
from jobsd.errors import ConfigError
from jobsd.store import rekey, schema
from jobsd.store.keyring import UNREADABLE, LiveKeyRing
from tests.conftest import JSONAPI, TOKEN_A, config_text, job_doc, make_harness
from tests.daemon_process import DaemonProcess
from tests.daemon_process import jobsd_command as jobsd

HEADERS = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": JSONAPI}
AAD = header_aad("acme", 1, "Authorization")


def write_config(home: Path, acme: str = "") -> Path:
    path = home / "jobsd.toml"
    path.write_text(config_text(home, acme=acme))
    return path


def doc(slug: str, values: dict[str, str]) -> dict[str, Any]:
    headers = [{"name": name, "value": value} for name, value in values.items()]
    return job_doc(
        slug, enabled=False, configuration={"url": "https://x.invalid/", "headers": headers}
    )


def sealed_key_ids(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT slug, headers FROM jobs").fetchall()
    return {slug: [h["sealed"].split(".")[1] for h in json.loads(raw)] for slug, raw in rows}


def header_values(client: httpx2.Client, slug: str) -> dict[str, str]:
    r = client.get(f"/api/v1/jobs/{slug}")
    assert r.status_code == 200, r.text
    items = r.json()["data"]["attributes"]["configuration"]["headers"]
    return {h["name"]: h["value"] for h in items}


class Rewriter(threading.Thread):
    """PUTs new header values to a few jobs until stopped (bounded); remembers the last."""

    def __init__(self, url: str, slugs: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.slugs = url, slugs
        self.stop = threading.Event()
        self.last: dict[str, dict[str, str]] = {}

    def run(self) -> None:
        with httpx2.Client(base_url=self.url, headers=HEADERS, trust_env=False) as client:
            for i in range(5_000):
                if self.stop.is_set():
                    return
                slug = self.slugs[i % len(self.slugs)]
                values = {"Authorization": f"Bearer rewritten-{slug}-{i}", "X-Key": f"v{i}"}
                r = client.put(f"/api/v1/jobs/{slug}", json=doc(slug, values))
                assert r.status_code == 200, r.text
                self.last[slug] = values


def test_rotation_while_a_daemon_serves(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    key, db = tmp_path / "secret.key", tmp_path / "jobsd.sqlite3"
    expected: dict[str, dict[str, str]] = {}
    with DaemonProcess(["serve", "--config", str(config)], tmp_path) as daemon:
        client = httpx2.Client(base_url=daemon.url, headers=HEADERS, trust_env=False)
        for i in range(20):
            expected[f"j{i}"] = {"Authorization": f"Bearer s3cr3t-{i}", "X-Key": f"k{i}"}
            assert client.post("/api/v1/jobs", json=doc(f"j{i}", expected[f"j{i}"])).is_success
        old = KeyRing.load(key).active_id
        rewriter = Rewriter(daemon.url, ["j0", "j1", "j2"])
        rewriter.start()
        try:
            out = jobsd("rotate-key", "--config", str(config), cwd=tmp_path)
        finally:
            rewriter.stop.set()
            rewriter.join(timeout=30)
        assert out.returncode == 0, out.stderr
        new = KeyRing.load(key).active_id
        assert new != old and f"added key {new}, now active" in out.stdout
        assert f"--retire {old}" in out.stdout
        expected.update(rewriter.last)  # concurrent API writes are not lost
        for slug, values in expected.items():
            assert header_values(client, slug) == values
        assert {k for ids in sealed_key_ids(db).values() for k in ids} == {new}
        # New values are sealed under the new active key: the daemon followed the file.
        for i in range(20, 25):
            expected[f"j{i}"] = {"Authorization": f"Bearer later-{i}"}
            assert client.post("/api/v1/jobs", json=doc(f"j{i}", expected[f"j{i}"])).is_success
        assert {k for ids in sealed_key_ids(db).values() for k in ids} == {new}
        out = jobsd("rotate-key", "--config", str(config), "--retire", old, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert KeyRing.load(key).key_ids == (new,)
        for slug, values in expected.items():
            assert header_values(client, slug) == values
        client.close()
        assert daemon.stop() == 0
    with DaemonProcess(["serve", "--config", str(config)], tmp_path) as daemon:
        with httpx2.Client(base_url=daemon.url, headers=HEADERS, trust_env=False) as client:
            for slug, values in expected.items():
                assert header_values(client, slug) == values
        assert daemon.stop() == 0


async def test_retire_refuses_while_values_need_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    key = tmp_path / "secret.key"
    async with make_harness(tmp_path) as h:
        await h.post("/api/v1/jobs", doc("a", {"Authorization": "Bearer a", "X-A": "a"}))
        await h.post("/api/v1/jobs", doc("b", {"Authorization": "Bearer b"}))
        # A deleted job's sealed values go with it (tests/test_deleted_jobs.py): none count.
        assert (await h.delete("/api/v1/jobs/b")).status_code == 204
    old = KeyRing.load(key)
    old.with_new_active_key().save(key)  # a rotation interrupted before re-sealing
    new = KeyRing.load(key).active_id

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["rotate-key", "--config", config, *args])
        out, err = capsys.readouterr()
        return status, out, err

    status, _, err = run("--retire", old.active_id)
    assert status == 2
    assert "2 header values in 1 jobs are still sealed under it" in err
    assert "--reseal" in err
    assert KeyRing.load(key).key_ids == (old.active_id, new)
    status, _, err = run("--retire", new)
    assert status == 2 and "is the active key" in err
    status, _, err = run("--retire", "nope")
    assert status == 2 and "holds no key 'nope'" in err
    status, out, _ = run("--reseal")
    assert status == 0 and "re-sealed 2 header values" in out
    assert KeyRing.load(key).key_ids == (old.active_id, new)  # --reseal adds no key
    status, out, _ = run("--retire", old.active_id)
    assert status == 0 and KeyRing.load(key).key_ids == (new,)


async def test_a_value_under_a_missing_key_is_reported_never_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    key = tmp_path / "secret.key"
    values = {"Authorization": "Bearer lost", "X-Other": "lost too"}
    async with make_harness(tmp_path) as h:
        assert (await h.post("/api/v1/jobs", doc("a", values))).status_code == 201
        await h.post("/api/v1/jobs", doc("fine", {}))
    lost = KeyRing.load(key).active_id
    KeyRing({"fresh": os.urandom(32)}, "fresh").save(key)  # the old key is gone

    assert main(["check-keys", "--config", config]) == 1
    out = capsys.readouterr().out
    assert f"header values per key: {lost}: 2" in out
    assert (
        f"account acme, job a, header Authorization: sealed under key '{lost}', "
        "which the key file no longer holds" in out
    )
    assert main(["rotate-key", "--config", config, "--reseal"]) == 1  # left alone, listed
    assert "2 header values cannot be opened" in capsys.readouterr().out
    async with make_harness(tmp_path) as h:
        r = await h.get("/api/v1/jobs/a")
        assert r.status_code == 200, await r.get_data()
        shown = (await r.get_json())["data"]["attributes"]["configuration"]["headers"]
        assert [x["name"] for x in shown] == ["Authorization", "X-Other"]
        for item in shown:
            assert item["value"].startswith(UNREADABLE) and lost in item["value"]
        assert (await h.get("/api/v1/jobs")).status_code == 200
        # A run fails, saying why, and sends nothing.
        run = (await (await h.post("/api/v1/jobs/a/actions/run")).get_json())["data"]
        assert await h.store.runs.claim(run["id"], lambda _: -1) is not None
        r = await h.get(f"/api/v1/runs/{run['id']}")
        failed = (await r.get_json())["data"]["attributes"]
        assert failed["status"] == "FAILED" and failed["failure_reason"] == "WORKER_LOST"
        assert "header 'Authorization' cannot be opened" in failed["error"]
        assert lost in failed["error"] and "no request was sent" in failed["error"]
        usage = (await (await h.get("/api/v1/usage")).get_json())["data"]["attributes"]
        assert usage["runs_used"] == 0
        # The marker cannot be saved back; the real value repairs the job.
        r = await h.put("/api/v1/jobs/a", doc("a", {x["name"]: x["value"] for x in shown}))
        assert r.status_code == 422
        errors = (await r.get_json())["errors"]
        assert [e["source"]["pointer"] for e in errors] == [
            "/data/attributes/configuration/headers/0/value",
            "/data/attributes/configuration/headers/1/value",
        ]
        assert {e["code"] for e in errors} == {"unreadable_value"}
        assert (await h.put("/api/v1/jobs/a", doc("a", values))).status_code == 200
        r = await h.get("/api/v1/jobs/a")
        fixed = (await r.get_json())["data"]["attributes"]["configuration"]["headers"]
        assert {x["name"]: x["value"] for x in fixed} == values
    assert main(["check-keys", "--config", config]) == 0
    assert "every stored header value opens" in capsys.readouterr().out


def test_the_live_ring_follows_the_key_file(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "secret.key"
    first = KeyRing.load_or_create(path)
    live = LiveKeyRing(path, first)
    before = live.seal("one", aad=AAD)
    assert live.key_id_of(before) == first.active_id
    # Another process rotates: the next seal uses the new key without any signal.
    second = first.with_new_active_key()
    second.save(path)
    after = live.seal("two", aad=AAD)
    assert live.key_id_of(after) == second.active_id
    # A value under a key added later still (third ring) opens: unknown id -> reload.
    third = second.with_new_active_key()
    third.save(path)
    assert live.open(third.seal("three", aad=AAD), aad=AAD) == "three"
    assert live.open(before, aad=AAD) == "one"
    # A key file broken mid-edit keeps the keys already loaded.
    fourth = third.with_new_active_key()
    fourth.save(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="jobsd.store"):
        assert live.open(live.seal("four", aad=AAD), aad=AAD) == "four"
        assert live.key_id_of(live.seal("x", aad=AAD)) == third.active_id
    assert "key file not reloaded" in caplog.text
    assert fourth.active_id not in live.ring.key_ids
    path.chmod(0o600)  # fixed: picked up at the next seal
    assert live.key_id_of(live.seal("y", aad=AAD)) == fourth.active_id


def test_the_live_ring_is_safe_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    ring = KeyRing.load_or_create(path)
    live = LiveKeyRing(path, ring)
    sealed: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                value = f"{n}-{i}"
                token = live.seal(value, aad=AAD)
                assert live.open(token, aad=AAD) == value
                sealed.append((value, token))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for _ in range(5):  # rotate under their feet
        ring = ring.with_new_active_key()
        ring.save(path)
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    final = KeyRing.load(path)
    assert all(final.open(token, aad=AAD) == value for value, token in sealed)
    assert len(sealed) == 1200


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_root_rotating_keeps_the_owner_of_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    KeyRing.load_or_create(path)
    os.chown(path, 4242, 4343)
    KeyRing.load(path).with_new_active_key().save(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (4242, 4343)


async def test_environment_overrides_are_sealed_counted_and_resealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header override in an environment is a sealed value like any other:
    never plaintext in the file, bound to its environment, and covered by
    rotation (a key cannot be retired while an override still needs it)."""
    config = str(write_config(tmp_path, 'environments = ["production", "staging"]'))
    key = tmp_path / "secret.key"
    async with make_harness(tmp_path, acme='environments = ["production", "staging"]') as h:
        doc = job_doc(
            "o",
            configuration={"url": "https://x.invalid/", "headers": {"Authorization": "Bearer b"}},
            environments={"staging": {"enabled": True, "headers.Authorization": "Bearer s3cr3t"}},
        )
        r = await h.post("/api/v1/jobs", doc, headers={"Jobsd-Version": "2026-08-07"})
        assert r.status_code == 201, await r.get_json()
    db = tmp_path / "jobsd.sqlite3"
    for path in tmp_path.glob("jobsd.sqlite3*"):
        assert b"s3cr3t" not in path.read_bytes()
    with sqlite3.connect(db) as conn:
        (sealed,) = conn.execute(
            "SELECT headers FROM job_environments WHERE environment = 'staging'"
        ).fetchone()
        # Moved to another environment, the value does not open there.
        conn.execute(
            "INSERT INTO job_environments (job_id, environment, enabled, headers) "
            "SELECT job_id, 'production', 0, headers FROM job_environments "
            "WHERE environment = 'staging'"
        )
    async with make_harness(tmp_path, acme='environments = ["production", "staging"]') as h:
        r = await h.get("/api/v1/jobs/o", headers={"Jobsd-Version": "2026-08-07"})
        envs = (await r.get_json())["data"]["attributes"]["environments"]
        assert envs["staging"]["headers.Authorization"] == "Bearer s3cr3t"
        assert envs["production"]["headers.Authorization"].startswith(UNREADABLE)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM job_environments WHERE environment = 'production'")
    old = KeyRing.load(key)
    old.with_new_active_key().save(key)
    status = main(["rotate-key", "--config", config, "--retire", old.active_id])
    assert status == 2
    assert "2 header values in 1 jobs are still sealed under it" in capsys.readouterr().err
    assert main(["rotate-key", "--config", config, "--reseal"]) == 0
    assert "re-sealed 2 header values" in capsys.readouterr().out
    assert main(["rotate-key", "--config", config, "--retire", old.active_id]) == 0
    with sqlite3.connect(db) as conn:
        (resealed,) = conn.execute(
            "SELECT headers FROM job_environments WHERE environment = 'staging'"
        ).fetchone()
    assert resealed != sealed and json.loads(resealed)[0]["name"] == "Authorization"


def test_rotate_and_retire_refuse_while_another_command_holds_the_key_file(
    tmp_path: Path,
) -> None:
    # Two commands interleaving their read and rewrite of the key file lose a key.
    key, db = tmp_path / "secret.key", tmp_path / "none.db"
    ring = KeyRing.load_or_create(key).with_new_active_key()
    ring.save(key)
    old = ring.key_ids[0]
    with keyfile.locked(key):
        with pytest.raises(ConfigError, match="another jobsd command holds"):
            rotation.rotate(key, db)
        with pytest.raises(ConfigError, match="another jobsd command holds"):
            rotation.retire(key, db, old)
    assert KeyRing.load(key).key_ids == ring.key_ids  # nothing changed meanwhile
    assert rotation.retire(key, db, old).key_ids == (ring.active_id,)  # no database: retired
    assert KeyRing.load(key).key_ids == (ring.active_id,)


def test_retire_counts_and_changes_the_file_under_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a deferred BEGIN the count read a snapshot without the write lock, and a
    # value sealed under the key could commit between the count and the file change.
    key, db = tmp_path / "secret.key", tmp_path / "jobsd.db"
    ring = KeyRing.load_or_create(key).with_new_active_key()
    ring.save(key)
    conn = sqlite3.connect(db, isolation_level=None)
    schema.configure(conn)
    schema.migrate(conn)
    conn.close()
    counted = rekey.count_under
    writable: list[bool] = []

    def count_under(c: sqlite3.Connection, r: KeyRing, key_id: str) -> tuple[int, int]:
        other = sqlite3.connect(db, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            writable.append(True)
        except sqlite3.OperationalError:
            writable.append(False)
        finally:
            other.close()
        return counted(c, r, key_id)

    monkeypatch.setattr(rekey, "count_under", count_under)
    assert rotation.retire(key, db, ring.key_ids[0]).key_ids == (ring.active_id,)
    assert writable == [False]  # nobody else could write while it counted
