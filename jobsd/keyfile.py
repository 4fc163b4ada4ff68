"""The key file as a file: read it safely, replace it atomically, follow it.

Two kinds of secret share `secrets.key_file`, one line each: the
header-encryption keys (`jobsd.crypto`, lines `<key-id> <base64> [active]`)
and the accounts' request-signing secrets (`jobsd.signing`, lines that
start with `signing:`). Each module parses its own lines and leaves the
other's alone: `rewrite` replaces the lines one owner claims and keeps every
other line (comments included) where it was, so rotating the encryption key
never drops a signing secret, and the other way round.

Why these rules:
- A file that group or others may access, that is not a regular file, that
  is over 1 MiB or is not ASCII is refused (`ConfigError` naming
  `secrets.key_file`); messages never quote key material.
- A new file is created 0600 and published with link(2), so a crash never
  leaves a half-written file and two starting processes cannot both create
  one. A rewrite replaces the old file with rename(2) and keeps its owner
  (root rotating a key of a service user must not leave a file the service
  cannot read).
- Commands that change the file hold `locked` (an flock on a `.<name>.lock`
  beside it) so two of them cannot interleave and lose a secret.
- The daemon follows the file while it runs (`Followed`): a stat per look
  (microseconds), a reload only when the file changed, and a file that does
  not load at that moment (mid-edit, wrong mode) keeps what was loaded
  before, logged once per version of the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from jobsd.errors import ConfigError
from jobsd.private_dirs import make_private_dirs

KEY = "secrets.key_file"
# Read whole: room for thousands of signing accounts (a line each, about 80
# bytes, up to 150; two during a rotation's overlap) beside the header keys.
MAX_FILE_BYTES = 1024 * 1024
SIGNING_PREFIX = "signing:"

T = TypeVar("T")
log = logging.getLogger("jobsd.keyfile")


def is_signing_line(line: str) -> bool:
    return line.lstrip().startswith(SIGNING_PREFIX)


def is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def read_text(path: Path) -> str:
    """The file's text; FileNotFoundError passes through, anything else unsafe is refused."""
    try:
        # O_NONBLOCK: a FIFO put in its place is refused below, not waited on for a
        # writer (a hung start); it changes nothing for a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(KEY, f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(KEY, f"{path} is not a regular file")
        if mode & 0o077:
            raise ConfigError(
                KEY,
                f"{path} has mode {stat.S_IMODE(mode):04o}; group and others must have"
                f" no access (chmod 600 {path})",
            )
        with os.fdopen(fd, "rb", closefd=False) as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(KEY, f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(KEY, f"{path} is not ASCII text") from None


def publish(path: Path, text: str, *, replace: bool) -> None:
    """Write `text` as the file, atomically; `replace=False` refuses an existing file.

    A text past `MAX_FILE_BYTES` is refused, the file left as it was: jobsd
    would refuse to read it back (a reload, the next start)."""
    data = text.encode("ascii")
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            KEY,
            f"{path} would be {len(data)} bytes and jobsd reads at most {MAX_FILE_BYTES}: "
            "retire old keys (`jobsd rotate-key --retire`) or remove the signing secrets "
            "of accounts that no longer sign",
        )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        make_private_dirs(path.parent)  # each 0700: mkdir(parents=True) would not
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            if replace:
                _keep_owner(file.fileno(), path)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # refuses to overwrite: FileExistsError
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except FileExistsError:
        raise
    except OSError as exc:
        raise ConfigError(KEY, f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def rewrite(path: Path, owns: Callable[[str], bool], lines: Sequence[str]) -> None:
    """Replace the lines `owns` claims with `lines`, keeping every other line in place.

    The new lines go where the first claimed line was (at the end if none
    was). A missing file is written afresh.
    """
    try:
        current = read_text(path).splitlines()
    except FileNotFoundError:
        current = []
    kept: list[str] = []
    at: int | None = None
    for line in current:
        if not is_comment_or_blank(line) and owns(line):
            if at is None:
                at = len(kept)
            continue
        kept.append(line)
    if at is None:
        at = len(kept)
    result = [*kept[:at], *lines, *kept[at:]]
    publish(path, "".join(f"{line}\n" for line in result), replace=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive, non-blocking: a second command changing the file is refused, not queued."""
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(KEY, f"cannot open {lock_path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                KEY, f"another jobsd command holds {lock_path}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def _keep_owner(fd: int, path: Path) -> None:
    # Only root can give a file away; anyone else writes files they already own.
    if os.geteuid() != 0:
        return
    try:
        old = os.stat(path)
    except FileNotFoundError:
        return
    os.fchown(fd, old.st_uid, old.st_gid)


_Signature = tuple[int, int, int, int, int]


def _signature(path: Path) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # ctime too: a chmod that makes the file readable again is a change.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Followed(Generic[T]):
    """What `load` makes of the file, made again whenever the file changes.

    Thread-safe: the value is immutable and swapped under a lock; readers
    just take the reference.
    """

    def __init__(self, path: Path, load: Callable[[Path], T], value: T, what: str) -> None:
        self._path = path
        self._load = load
        self._value = value
        self._what = what
        self._lock = threading.Lock()
        # None: the first look re-reads the file once, so a change between
        # the caller's load and this constructor is not missed.
        self._loaded: _Signature | None = None

    @property
    def value(self) -> T:
        return self._value

    def refresh(self) -> bool:
        """Reload if the file changed since the last look; True if the value was replaced."""
        seen = _signature(self._path)
        if seen is not None and seen == self._loaded:
            return False
        with self._lock:
            seen = _signature(self._path)
            if seen is None or seen == self._loaded:
                return False
            self._loaded = seen
            try:
                fresh = self._load(self._path)
            except FileNotFoundError:
                # Removed since the look above: raised here it ended a signer's
                # caller (the alert actor, and with it the daemon).
                log.warning(
                    "key file not reloaded, keeping the %s already loaded: %s vanished "
                    "while it was read",
                    self._what,
                    self._path,
                )
                return False
            except ConfigError as exc:
                log.warning(
                    "key file not reloaded, keeping the %s already loaded: %s", self._what, exc
                )
                return False
            self._value = fresh
            return True
