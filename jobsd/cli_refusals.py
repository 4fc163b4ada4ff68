"""What `jobsd` says when it refuses to run: a message and exit 2, never a traceback.

A bad config or database file is not a bug: the operator gets one line that
names the key or the file and what to do (systemd restarts a daemon that
exits non-zero, and the journal shows that line). Errors raised inside the
daemon's nurseries arrive grouped; the first refusal among them is told.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobsd.errors import ConfigError, StorageError, database_locked, is_store_busy
from jobsd.store import integrity


def refused(exc: BaseException) -> bool:
    """A bad config or database file: a message and exit 2. SQLite's own word that
    the file is damaged counts (the integrity check may not have run yet), and so
    does its word that another process kept it locked past the busy timeout (the
    start's first writes: recovery, the environments)."""
    return (
        isinstance(exc, ConfigError | StorageError) or integrity.damaged(exc) or is_store_busy(exc)
    )


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def refuse(exc: BaseException, args: argparse.Namespace) -> int:
    kind = "config error" if isinstance(exc, ConfigError) else "storage error"
    if is_store_busy(exc):
        exc = database_locked(exc)
    elif integrity.damaged(exc):
        exc = StorageError(f"the database is damaged ({exc}): {integrity.GUIDANCE}")
    if getattr(args, "json_logs", False):
        logging.getLogger("jobsd").error("jobsd: %s: %s", kind, exc)
    else:
        print(f"jobsd: {kind}: {exc}", file=sys.stderr)
    return 2
