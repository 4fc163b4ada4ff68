"""The key file as a file (`jobsd.keyfile`): who may reach it, what it is, where lines go.

What the file is and who may reach it is checked before a byte is read.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from jobsd import keyfile
from jobsd.errors import ConfigError

TEXT = "k1 AAAA active\n"


def written(path: Path, text: str = TEXT, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    # open(2) of a FIFO for reading waits for a writer: a key file swapped for one
    # hung the start (or the signer, following the file) instead of being refused.
    path = tmp_path / "secret.key"
    os.mkfifo(path, 0o600)
    outcome: list[BaseException | str] = []

    def read() -> None:
        try:
            outcome.append(keyfile.read_text(path))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(2)
    hung = reader.is_alive()
    if hung:  # release it: a writer that opens and closes at once
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
    assert not hung, "read_text waited on a FIFO"
    (got,) = outcome
    assert isinstance(got, ConfigError) and "not a regular file" in got.message
