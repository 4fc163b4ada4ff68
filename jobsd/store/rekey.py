"""Sealed header values across the whole database: survey and re-seal.

Used by `jobsd rotate-key` and `jobsd check-keys`, from a process of their
own while the daemon may be serving the same file. So the work is shaped for
sharing SQLite with a live writer:

- rows are read in small keyset batches outside any write transaction, the
  new values are computed, and only then is the write lock taken, for one
  short transaction per batch with a pause after it;
- each update is conditional on the row's `headers` being exactly what was
  read: an API write that landed in between wins, and the row is picked up
  again by the next pass (its value is then under the new key anyway);
- passes repeat until one finds nothing left to re-seal (bounded).

Every job row is covered, deleted jobs too, and every environment's header
overrides: a key may be retired only when no row at all still needs it. A
value that does not open is left exactly as it is and reported: re-sealing
it is impossible and dropping it would lose the only trace that the header
existed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobsd.crypto import KeyRing, header_aad
from jobsd.errors import SchemaTooNewError, SealError, StorageError
from jobsd.store.ownership import refuse_foreign
from jobsd.store.schema import LATEST, current_version


@dataclass(frozen=True, slots=True)
class Unopenable:
    account_id: str
    job_slug: str
    deleted: bool
    header: str
    key_id: str
    why: str


@dataclass(frozen=True, slots=True)
class Survey:
    values_by_key: dict[str, int]
    unopenable: tuple[Unopenable, ...]


@dataclass(frozen=True, slots=True)
class ResealReport:
    resealed: int
    raced: int
    passes: int


def connect(path: Path) -> sqlite3.Connection:
    """A connection beside the daemon's: waits for its writer, refuses a newer schema."""
    if not path.is_file():
        raise StorageError(f"there is no database at {path}")
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    try:
        refuse_foreign(conn)  # another program's database: its tables are not ours to read
    except BaseException:
        conn.close()
        raise
    version = current_version(conn)
    if version > LATEST:
        conn.close()
        raise SchemaTooNewError(
            f"{path} is at schema version {version}; this jobsd knows up to {LATEST}"
        )
    return conn


def _batches(
    conn: sqlite3.Connection, batch_jobs: int, key_id: str | None = None
) -> Iterator[list[sqlite3.Row]]:
    """Rows holding sealed values: (id, environment, account_id, slug, deleted_at_us, headers).

    `environment` is NULL for a job's base headers, else the environment
    whose overrides the row holds. With `key_id`, only rows whose text
    holds a value sealed under it (and a few more, such as a header named
    like one), found by SQLite without parsing a row: `retire` counts under
    the write lock, and must not hold it while Python parses every job.
    """
    if current_version(conn) < 1:
        return  # an empty file: the daemon has not made its tables yet
    needle = "" if key_id is None else f'"v1.{key_id}.'
    after = 0
    while True:
        rows = conn.execute(
            "SELECT id, NULL AS environment, account_id, slug, deleted_at_us, headers FROM jobs "
            "WHERE id > ? AND headers != '[]' AND instr(headers, ?) ORDER BY id LIMIT ?",
            (after, needle, batch_jobs),
        ).fetchall()
        if not rows:
            break
        yield rows
        after = int(rows[-1]["id"])
    if current_version(conn) < 3:
        return  # before environments
    key: tuple[int, str] = (0, "")
    while True:
        rows = conn.execute(
            "SELECT e.job_id AS id, e.environment, j.account_id, j.slug, j.deleted_at_us, "
            "e.headers FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id "
            "WHERE (e.job_id, e.environment) > (?, ?) AND e.headers != '[]' "
            "AND instr(e.headers, ?) ORDER BY e.job_id, e.environment LIMIT ?",
            (*key, needle, batch_jobs),
        ).fetchall()
        if not rows:
            return
        yield rows
        key = (int(rows[-1]["id"]), str(rows[-1]["environment"]))


def _aad(row: sqlite3.Row, name: str) -> bytes:
    return header_aad(row["account_id"], row["id"], name, row["environment"])


def _key_id(ring: KeyRing, sealed: str) -> str | None:
    try:
        return ring.key_id_of(sealed)
    except SealError:
        return None


def survey(conn: sqlite3.Connection, ring: KeyRing, *, batch_jobs: int = 500) -> Survey:
    """How many values each key seals, and every value `ring` cannot open."""
    by_key: Counter[str] = Counter()
    bad: list[Unopenable] = []
    for rows in _batches(conn, batch_jobs):
        for row in rows:
            for item in json.loads(row["headers"]):
                key_id = _key_id(ring, item["sealed"]) or "?"
                by_key[key_id] += 1
                try:
                    ring.open(item["sealed"], aad=_aad(row, item["name"]))
                except SealError as exc:
                    deleted = row["deleted_at_us"] is not None
                    header = item["name"]
                    if row["environment"] is not None:
                        header = f"{header} (environment {row['environment']})"
                    bad.append(
                        Unopenable(
                            row["account_id"], row["slug"], deleted, header, key_id, str(exc)
                        )
                    )
    return Survey(dict(by_key), tuple(bad))


def count_under(conn: sqlite3.Connection, ring: KeyRing, key_id: str) -> tuple[int, int]:
    """(values, jobs) still sealed under `key_id`; no decryption needed."""
    values = 0
    jobs: set[int] = set()
    for rows in _batches(conn, 1000, key_id):
        for row in rows:
            found = sum(
                _key_id(ring, item["sealed"]) == key_id for item in json.loads(row["headers"])
            )
            values += found
            if found:
                jobs.add(int(row["id"]))
    return values, len(jobs)


def _resealed(row: sqlite3.Row, ring: KeyRing) -> tuple[str, int]:
    items = json.loads(row["headers"])
    changed = 0
    for item in items:
        key_id = _key_id(ring, item["sealed"])
        if key_id is None or key_id == ring.active_id:
            continue
        aad = _aad(row, item["name"])
        try:
            plain = ring.open(item["sealed"], aad=aad)
        except SealError:
            continue  # reported by survey(); never dropped
        item["sealed"] = ring.seal(plain, aad=aad)
        changed += 1
    return json.dumps(items), changed


def _pass(
    conn: sqlite3.Connection, ring: KeyRing, batch_jobs: int, pause_s: float
) -> tuple[int, int]:
    resealed = raced = 0
    for rows in _batches(conn, batch_jobs):
        updates = []
        for row in rows:
            fresh, changed = _resealed(row, ring)
            if changed:
                updates.append((fresh, row, changed))
        if not updates:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fresh, row, changed in updates:
                if row["environment"] is None:
                    cur = conn.execute(
                        "UPDATE jobs SET headers = ? WHERE id = ? AND headers = ?",
                        (fresh, row["id"], row["headers"]),
                    )
                else:
                    cur = conn.execute(
                        "UPDATE job_environments SET headers = ? "
                        "WHERE job_id = ? AND environment = ? AND headers = ?",
                        (fresh, row["id"], row["environment"], row["headers"]),
                    )
                if cur.rowcount == 1:
                    resealed += changed
                else:
                    raced += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        time.sleep(pause_s)
    return resealed, raced


def reseal(
    conn: sqlite3.Connection,
    ring: KeyRing,
    *,
    batch_jobs: int = 100,
    pause_s: float = 0.01,
    max_passes: int = 5,
) -> ResealReport:
    """Re-seal every value that opens but is not under `ring.active_id`."""
    resealed = raced = passes = 0
    while passes < max_passes:
        passes += 1
        done, lost = _pass(conn, ring, batch_jobs, pause_s)
        resealed += done
        raced += lost
        if not done and not lost:
            break
    return ResealReport(resealed, raced, passes)
