"""The key file as a file (`jobsd.keyfile`): who may reach it, what it is, where lines go.

What the file is and who may reach it is checked before a byte is read.
Most tests here were added when a hand-made mutant of `jobsd/keyfile.py`
survived the suite: a check dropped or loosened that nothing noticed.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from jobsd import keyfile
from jobsd.errors import ConfigError

TEXT = "k1 AAAA active\n"


def written(path: Path, text: str = TEXT, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o610, 0o601, 0o602, 0o620, 0o640, 0o604], ids=oct)
def test_any_bit_for_group_or_others_is_refused_execute_too(tmp_path: Path, mode: int) -> None:
    path = written(tmp_path / "secret.key", mode=mode)
    with pytest.raises(ConfigError) as info:
        keyfile.read_text(path)
    assert info.value.key == "secrets.key_file" and f"{mode:04o}" in info.value.message
    assert keyfile.read_text(written(path, mode=0o600)) == TEXT


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


def test_a_new_file_is_0600_whatever_the_umask_takes_away(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    old_umask = os.umask(0o377)  # would leave the owner no read or write
    try:
        keyfile.publish(path, TEXT, replace=False)
        keyfile.publish(path, TEXT + "# again\n", replace=True)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_rewrite_puts_the_lines_where_the_first_claimed_line_was(tmp_path: Path) -> None:
    path = written(
        tmp_path / "secret.key",
        "# keys\nk1 AAAA active\n# signing\nsigning:a x active\n"
        "signing:b y active\n# after\nk2 BBBB\n",
    )
    keyfile.rewrite(path, keyfile.is_signing_line, ["signing:a z active", "signing:c w active"])
    assert keyfile.read_text(path).splitlines() == [
        "# keys",
        "k1 AAAA active",
        "# signing",
        "signing:a z active",
        "signing:c w active",
        "# after",
        "k2 BBBB",
    ]
    # The other owner (the header keys claim every line but signing ones) never
    # claims a comment or a blank line: they stay where they were.
    with_blank = keyfile.read_text(path).replace("# after\n", "# after\n\n")
    written(path, with_blank)
    keyfile.rewrite(path, lambda line: not keyfile.is_signing_line(line), ["k3 CCCC active"])
    assert keyfile.read_text(path).splitlines() == [
        "# keys",
        "k3 CCCC active",
        "# signing",
        "signing:a z active",
        "signing:c w active",
        "# after",
        "",
    ]


def test_a_second_holder_of_the_lock_is_refused(tmp_path: Path) -> None:
    path = written(tmp_path / "secret.key")
    refused = pytest.raises(ConfigError, match="another jobsd command holds")
    with keyfile.locked(path), refused, keyfile.locked(path):
        pass
    with keyfile.locked(path):  # released: taken again
        pass


def test_the_follower_reads_once_at_its_first_look_then_only_on_a_change(tmp_path: Path) -> None:
    path = written(tmp_path / "secret.key")
    reads: list[str] = []

    def load(p: Path) -> str:
        reads.append(keyfile.read_text(p))
        return reads[-1]

    # Changed between the caller's load and the follower's making: the first look reads.
    followed = keyfile.Followed(path, load, "what the caller loaded before", "test")
    assert followed.refresh() is True and followed.value == TEXT
    assert followed.refresh() is False and len(reads) == 1  # unchanged: a stat, no read
    written(path, TEXT + "# more\n")
    assert followed.refresh() is True and followed.value == TEXT + "# more\n"
    assert followed.refresh() is False and len(reads) == 2
