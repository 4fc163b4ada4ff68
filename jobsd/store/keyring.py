"""The store's key ring: it follows the key file while the daemon runs.

Why: `jobsd rotate-key` runs in another process. It publishes a key file
with a new active key (an atomic rename) and re-seals stored values under
that key while the daemon keeps serving. The daemon must then (1) open
values sealed under a key it has never seen, and (2) seal new values under
the new active key, or the old key could never be retired. So:

- before every seal the holder stats the key file and reloads it when it
  changed (a stat costs microseconds; seals happen only when a job is
  written), so new values use the new active key at once, no SIGHUP needed;
- an open that meets a key id the ring does not hold reloads too (again only
  when the file changed) and tries once more.

A file that cannot be read at reload time (mid-edit, wrong mode) keeps the
ring already loaded and is logged once per version of the file: the daemon
never loses keys it had because of a bad edit (`jobsd.keyfile.Followed`,
which the signing secrets follow the same way).

A value that still does not open is shown, never dropped: `open_or_marker`
returns a readable marker (`UNREADABLE`...) in its place, and the store
refuses that marker as a new value, so it cannot be saved by mistake.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from jobsd.crypto import KeyRing
from jobsd.errors import SealError
from jobsd.keyfile import Followed

log = logging.getLogger("jobsd.store")

UNREADABLE = "!jobsd:unreadable"


class Sealer(Protocol):
    """What the store needs of a key ring: a `KeyRing` or a `LiveKeyRing`."""

    def seal(self, plaintext: str, *, aad: bytes) -> str: ...

    def open(self, sealed: str, *, aad: bytes) -> str: ...

    def key_id_of(self, sealed: str) -> str: ...


class LiveKeyRing:
    """A `KeyRing` that reloads its key file when the file changes; see the module note."""

    def __init__(self, path: Path, ring: KeyRing | None = None) -> None:
        self._followed = Followed(
            path, KeyRing.load, ring if ring is not None else KeyRing.load(path), "keys"
        )

    @property
    def ring(self) -> KeyRing:
        return self._followed.value

    def seal(self, plaintext: str, *, aad: bytes) -> str:
        self._refresh()
        return self.ring.seal(plaintext, aad=aad)

    def open(self, sealed: str, *, aad: bytes) -> str:
        ring = self.ring
        try:
            return ring.open(sealed, aad=aad)
        except SealError:
            # Only a key the ring does not hold is worth a look at the file.
            if ring.key_id_of(sealed) in ring.key_ids or not self._refresh():
                raise
        return self.ring.open(sealed, aad=aad)

    def key_id_of(self, sealed: str) -> str:
        return self.ring.key_id_of(sealed)

    def _refresh(self) -> bool:
        """Reload if the file changed since the last look; True if the ring changed."""
        before = self.ring
        if not self._followed.refresh():
            return False
        fresh = self.ring
        if (fresh.active_id, fresh.key_ids) != (before.active_id, before.key_ids):
            log.info(
                "key file reloaded: active key %s, keys %s",
                fresh.active_id,
                ", ".join(fresh.key_ids),
            )
        return True


def follow(keyring: KeyRing | Sealer) -> Sealer:
    """The ring the store uses: one loaded from a file follows that file."""
    if isinstance(keyring, KeyRing) and keyring.source is not None:
        return LiveKeyRing(keyring.source, keyring)
    return keyring


def unreadable_marker(error: SealError) -> str:
    """What a header value that does not open is shown as (printable ASCII)."""
    return f"{UNREADABLE} ({error}; set this header again with PUT)"


def is_unreadable_marker(value: str) -> bool:
    return value.startswith(UNREADABLE)
