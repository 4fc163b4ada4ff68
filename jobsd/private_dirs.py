"""Directories jobsd creates for its private files: each one 0700, parents too.

`Path.mkdir(mode=0o700, parents=True)` applies the mode to the last
directory only; the parents it makes get the umask's (0755 under the
common 022). jobsd's files (the key file, the database) are made 0600 in
directories that must not be more open, so every directory missing on the
path is made here, one at a time, each 0700.
"""

from __future__ import annotations

from pathlib import Path


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents, each 0700 (whatever the umask
    leaves of it: a umask only takes bits away). OSError names the one that failed."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)
