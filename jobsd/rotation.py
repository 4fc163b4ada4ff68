"""Key rotation without downtime: `jobsd rotate-key` and `jobsd check-keys`.

Rotation, step by step, while the daemon keeps serving:

1. Under an exclusive lock (`jobsd.keyfile.locked`, so two commands
   changing the key file cannot interleave and lose a key), a new key is added to
   the key file and made active; the file is replaced atomically.
2. The running daemon follows the file (`jobsd.store.keyring`): its next
   seal uses the new key, and it opens values under the new key at once.
3. Every stored value sealed under another key is re-sealed under the new
   one (`jobsd.store.rekey`: small batches, conditional updates).
4. Later, `--retire OLD_ID` removes the old key from the file, but only when
   no row still holds a value under it; otherwise it refuses and says how
   many. The count and the file change happen while holding SQLite's write
   lock, so no commit can slip in between them.

A value that cannot be opened (its key is gone) is listed by every command
here and left in place; the API shows it as a marker and its runs fail with
an error naming the header (see `jobsd.store.keyring`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobsd.crypto import KeyRing
from jobsd.errors import ConfigError
from jobsd.keyfile import locked
from jobsd.store import rekey

_KEY = "secrets.key_file"


@dataclass(frozen=True, slots=True)
class Rotation:
    previous_id: str
    active_id: str
    key_ids: tuple[str, ...]
    reseal: rekey.ResealReport | None
    survey: rekey.Survey | None


def rotate(
    key_path: Path,
    db_path: Path,
    *,
    new_key: bool = True,
    batch_jobs: int = 100,
    pause_s: float = 0.01,
) -> Rotation:
    """Add a new active key (unless `new_key` is False) and re-seal under the active key."""
    with locked(key_path):
        ring = KeyRing.load(key_path)
        previous = ring.active_id
        # Opened first: a database it refuses (another program's, a newer
        # schema) leaves the key file as it was.
        conn = rekey.connect(db_path) if db_path.is_file() else None
        try:
            if new_key:
                ring = ring.with_new_active_key()
                ring.save(key_path)
            if conn is None:
                return Rotation(previous, ring.active_id, ring.key_ids, None, None)
            report = rekey.reseal(conn, ring, batch_jobs=batch_jobs, pause_s=pause_s)
            found = rekey.survey(conn, ring)
        finally:
            if conn is not None:
                conn.close()
        return Rotation(previous, ring.active_id, ring.key_ids, report, found)


def retire(key_path: Path, db_path: Path, key_id: str) -> KeyRing:
    """Remove `key_id` from the key file if nothing is sealed under it; else refuse."""
    with locked(key_path):
        ring = KeyRing.load(key_path)
        if key_id not in ring.key_ids:
            raise ConfigError(_KEY, f"{key_path} holds no key {key_id!r}")
        if key_id == ring.active_id:
            raise ConfigError(
                _KEY, f"{key_id!r} is the active key; run `jobsd rotate-key` first, then retire it"
            )
        remaining = ring.without_key(key_id)
        if not db_path.is_file():
            remaining.save(key_path)
            return remaining
        conn = rekey.connect(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                values, jobs = rekey.count_under(conn, ring, key_id)
                if values:
                    raise ConfigError(
                        _KEY,
                        f"refusing to retire key {key_id!r}: {values} header values in {jobs} "
                        "jobs are still sealed under it; run `jobsd rotate-key --reseal` to "
                        "re-seal them under the active key, then retire it",
                    )
                remaining.save(key_path)
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()
        return remaining


def check(key_path: Path, db_path: Path) -> rekey.Survey:
    """Every stored value and whether the key file opens it."""
    ring = KeyRing.load(key_path)
    conn = rekey.connect(db_path)
    try:
        return rekey.survey(conn, ring)
    finally:
        conn.close()
