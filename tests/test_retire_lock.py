"""`jobsd rotate-key --retire` beside a serving daemon: the write lock it takes is short.

Retiring counts the values still sealed under the key while holding
SQLite's write lock, so that no value can be written between the count
and the key file's change. The daemon's writes wait for that lock up to
its busy timeout (5 s) and then fail, which stops the daemon. The count
read and parsed every job's headers in Python under the lock: about 8 s
for a million jobs with two headers each. Here a tenth of that (150,000
jobs), and a writer that waits a tenth as long (0.5 s), as the daemon
would; the retire must not make it fail.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from jobsd.crypto import KeyRing
from jobsd.rotation import retire
from jobsd.store import schema

JOBS = 150_000


def big_database(db: Path, sealed: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    schema.configure(conn)
    schema.migrate(conn)
    headers = json.dumps(
        [{"name": "Authorization", "sealed": sealed}, {"name": "X-A", "sealed": sealed}]
    )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO jobs (account_id, slug, name, name_key, kind, schedule, method, url, "
        "headers, success_status, tls_verify, timeout_s, created_at_us, updated_at_us) "
        "VALUES ('acme', ?, 'j', 'j', 'manual', NULL, 'POST', 'https://x.invalid/', ?, "
        "'2xx', 1, 5, 0, 0)",
        ((f"j{i}", headers) for i in range(JOBS)),
    )
    conn.execute("CREATE TABLE probe (n INTEGER)")
    conn.execute("INSERT INTO probe VALUES (0)")
    conn.execute("COMMIT")
    conn.close()


class Writer(threading.Thread):
    """Writes every 20 ms with a 0.5 s busy timeout until told to stop; keeps failures."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.writes = 0

    def run(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None, timeout=0.5)
        try:
            while not self.stop.is_set():
                try:
                    conn.execute("UPDATE probe SET n = n + 1")
                    self.writes += 1
                except sqlite3.OperationalError as exc:
                    self.failures.append(str(exc))
                time.sleep(0.02)
        finally:
            conn.close()


def test_retire_never_holds_the_write_lock_for_a_read_of_every_job(tmp_path: Path) -> None:
    key, db = tmp_path / "secret.key", tmp_path / "db.sqlite3"
    old = KeyRing.load_or_create(key)
    ring = old.with_new_active_key()
    ring.save(key)
    big_database(db, ring.seal("Bearer x", aad=b"-"))  # every value under the new key
    writer = Writer(db)
    writer.start()
    try:
        time.sleep(0.1)
        retire(key, db, old.active_id)
    finally:
        writer.stop.set()
        writer.join()
    assert KeyRing.load(key).key_ids == (ring.active_id,)
    assert writer.writes > 0
    assert not writer.failures, f"a writer beside the retire failed: {writer.failures[:3]}"
