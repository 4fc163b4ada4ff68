"""`jobsd backup`: a consistent copy of the live database, taken while it serves.

SQLite's online backup API copies the pages; two details make it safe next
to a running daemon:

- The source connection holds one read transaction for the whole copy. The
  backup then reads one snapshot (WAL gives readers their own), so the copy
  is consistent, and it never restarts: without that transaction, every
  commit by another process would restart the backup from page one, and a
  busy daemon could keep a large backup from ever finishing. In WAL mode a
  reader does not block the writer; the daemon's commits go on meanwhile.
- Pages are copied `pages_per_step` at a time with a short pause between
  steps, so the copy does not monopolise the disk the writer commits to.

The copy is written to a temporary file beside DEST, switched to a single
self-contained file (journal mode DELETE; jobsd switches it back to WAL when
it opens it), checked with `PRAGMA quick_check` and for a `schema_version`,
fsynced, and only then published under DEST: a failed or interrupted backup
never leaves a half-copied DEST (where the filesystem has no hard links, an
interruption at the very end may leave it empty, which `--force` replaces).
An existing DEST is replaced only when asked (`force`), only when it is a
SQLite database or an empty regular file (never the key file, a config or
/dev/null by a slip of the hand), and never when it is the live database
itself or looks like one in use (a `-wal`/`-shm` beside it).

Header values stay sealed in the copy: restoring it needs the key file too.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from jobsd.errors import StorageError
from jobsd.store.schema import current_version


@dataclass(frozen=True, slots=True)
class BackupReport:
    dest: Path
    pages: int
    size_bytes: int
    schema_version: int
    steps: int


def _check_paths(source: Path, dest: Path, *, force: bool) -> None:
    if not source.is_file():
        raise StorageError(f"there is no database at {source}")
    if dest.is_dir():
        raise StorageError(f"{dest} is a directory; name the file to write")
    if dest.exists():
        if not dest.is_file():  # a FIFO would block the read of its header; a device, replaced
            raise StorageError(f"{dest} is not a regular file; name the file to write")
        if os.path.samefile(source, dest):
            raise StorageError(f"{dest} is the live database itself")
        if not force:
            raise StorageError(f"{dest} exists; pass --force to overwrite it")
        if not _database_or_empty(dest):
            raise StorageError(
                f"{dest} is not a SQLite database: --force replaces only an earlier backup"
                " (the key file, a config or any other file is kept); choose another destination"
            )
    for suffix in ("-wal", "-shm"):
        if Path(f"{dest}{suffix}").exists():
            raise StorageError(
                f"{dest}{suffix} exists: {dest} looks like a database in use; "
                "choose another destination"
            )


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _database_or_empty(path: Path) -> bool:
    """Whether `path` may be replaced: an earlier copy (SQLite's header), or an
    empty file. A mistyped DEST such as the key file would lose every sealed
    header value for good."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return head in (b"", _SQLITE_MAGIC)


def backup_database(
    source: Path,
    dest: Path,
    *,
    force: bool = False,
    pages_per_step: int = 1024,
    pause_s: float = 0.01,
) -> BackupReport:
    """Copy `source` to `dest` online; see the module note."""
    dest = dest.absolute()
    _check_paths(source, dest, force=force)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        try:
            steps = _copy(source, tmp, pages_per_step, pause_s)
            pages, version = _verify(tmp)
            with tmp.open("rb+") as file:
                os.fsync(file.fileno())
            _publish(tmp, dest, force=force)
        finally:
            tmp.unlink(missing_ok=True)
        size_bytes = dest.stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return BackupReport(dest, pages, size_bytes, version, steps)


def _copy(source: Path, tmp: Path, pages_per_step: int, pause_s: float) -> int:
    steps = 0

    def paced(status: int, remaining: int, total: int) -> None:
        nonlocal steps
        steps += 1
        if remaining:
            time.sleep(pause_s)

    src = sqlite3.connect(source, isolation_level=None, timeout=30.0)
    try:
        src.execute("PRAGMA query_only = ON")
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pins the snapshot
            src.backup(dst, pages=pages_per_step, progress=paced)
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StorageError(f"backup of {source} failed: {exc}") from None
    finally:
        src.close()
    return steps


def _verify(tmp: Path) -> tuple[int, int]:
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        found = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if found != ["ok"]:
            raise StorageError(
                f"the copy failed PRAGMA quick_check ({'; '.join(found[:5])}); "
                "check the live database the same way"
            )
        version = current_version(conn)
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    except sqlite3.Error as exc:
        raise StorageError(f"the copy does not open as a database: {exc}") from None
    finally:
        conn.close()
    if version < 1:
        raise StorageError("the copy has no schema_version: the source is not a jobsd database")
    return pages, version


def _publish(tmp: Path, dest: Path, *, force: bool) -> None:
    if force:
        os.replace(tmp, dest)
    else:
        _publish_new(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _publish_new(tmp: Path, dest: Path) -> None:
    """Never over a DEST, even one created meanwhile. A hard link refuses to
    overwrite; where the filesystem has none (FAT and exFAT drives, SMB shares,
    object-store mounts such as s3fs), DEST is claimed empty with O_EXCL and
    then replaced by the copy."""
    exists = f"{dest} exists; pass --force to overwrite it"
    try:
        os.link(tmp, dest)
        return
    except FileExistsError:
        raise StorageError(exists) from None
    except OSError:
        pass  # no hard links here
    try:
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        raise StorageError(exists) from None
    try:
        os.replace(tmp, dest)
    except BaseException:
        dest.unlink(missing_ok=True)  # the empty file this call made
        raise
