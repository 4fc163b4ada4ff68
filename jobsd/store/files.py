"""The database's files are private to the user jobsd runs as, like the key file.

Run results hold request bodies and the responses targets sent back; they
are no less private than the header values the key file protects. SQLite
creates a database file with mode 0644 (less the umask), and its `-wal` and
`-shm` with the database file's mode. So before SQLite opens the path:

- a missing database file is created here, empty, with mode 0600 (its
  `-wal` and `-shm` then follow it); directories missing on its path are
  created 0700;
- an existing database file, `-wal` or `-shm` that group or others may
  access is tightened to owner-only (a warning names the old mode): every
  deployment started before this rule has 0644 files, and refusing them, as
  the key file's loader does, would stop each one at its upgrade. A file
  jobsd cannot chmod (another user's) is refused with a message instead.

Backups are written 0600 by `jobsd.store.backup`.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from jobsd.errors import StorageError
from jobsd.private_dirs import make_private_dirs

log = logging.getLogger("jobsd.store")

SUFFIXES = ("", "-wal", "-shm")


def make_private(path: Path) -> None:
    """Create `path` 0600 when missing; take group and other access off it and its WAL files."""
    try:
        make_private_dirs(path.parent)
    except OSError as exc:  # a message naming it, not a traceback at start
        where = exc.filename or path.parent
        raise StorageError(
            f"cannot create the directory {where} for the database {path}: {exc.strerror or exc}"
        ) from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        if not path.is_file():  # SQLite's own word for a directory is a traceback
            raise StorageError(f"{path} is not a regular file: fix storage.path") from None
    except OSError as exc:
        raise StorageError(f"cannot create the database {path}: {exc.strerror or exc}") from None
    for suffix in SUFFIXES:
        _tighten(Path(f"{path}{suffix}"))


def _tighten(file: Path) -> None:
    try:
        st = file.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode) or not mode & 0o077:
        return  # what is not a file is SQLite's to refuse
    try:
        os.chmod(file, mode & 0o700)
    except OSError as exc:
        raise StorageError(
            f"{file} has mode {mode:04o} and cannot be made private ({exc.strerror or exc}):"
            f" run `chmod 600 {file}` as its owner, or give it to the user jobsd runs as"
        ) from None
    log.warning(
        "%s had mode %04o; jobsd made it %04o (group and others have no access to its data)",
        file,
        mode,
        mode & 0o700,
    )
