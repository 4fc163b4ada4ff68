"""One daemon per database: a second `jobsd serve` on the same file is refused
before it touches it.

Two daemons on one database both recover, fire and claim. The second's start
recorded the first's runs in flight FAILED/WORKER_LOST (their real outcome,
when it came, was lost, and a retry policy sent them again), and its
executors took PENDING runs too. A mistaken second start did all that even
when it was then refused for its port: recovery runs before the API listens.
So the daemon holds an flock on `.<database name>.lock` beside the file from
before the store's first write until the store has closed. The maintenance
commands (`backup`, `rotate-key`, ...) take none: they run beside a daemon.

The lock is the kernel's and goes with the process however it ends, so a
crash leaves nothing to clean up. The file holds nothing; it is made
readable by all (its directory is private) and opened read-only, so a
daemon once started by hand as root does not lock the service's user out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from jobsd.errors import StorageError


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def serving(path: Path) -> Iterator[None]:
    """Held while a daemon serves from the database at `path`; a second holder is refused."""
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open {lock}: {exc.strerror or exc}") from None
    try:
        with contextlib.suppress(OSError):  # another user's file: as they made it
            os.fchmod(fd, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another jobsd is serving {path} (it holds {lock}): stop it first, "
                "or give this one a storage.path of its own"
            ) from None
        yield
    finally:
        os.close(fd)
