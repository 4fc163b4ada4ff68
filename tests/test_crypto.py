"""Sealed header values and the key file."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.crypto import KeyRing, header_aad
from jobsd.errors import ConfigError, SealError

AAD = header_aad("acme", 7, "Authorization")
SECRET = "Bearer super-secret-token-value"


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path / "secret.key")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def key_material(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines() if line and line[0] != "#"]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_round_trip(plaintext: str) -> None:
    ring = KeyRing({"k1": os.urandom(32)}, "k1")
    sealed = ring.seal(plaintext, aad=AAD)
    assert sealed.startswith(f"v1.{ring.active_id}.")
    assert ring.key_id_of(sealed) == ring.active_id
    assert ring.open(sealed, aad=AAD) == plaintext


@pytest.mark.parametrize(
    "other",
    [
        header_aad("other", 7, "Authorization"),
        header_aad("acme", 8, "Authorization"),
        header_aad("acme", 7, "X-Api-Key"),
        b"",
    ],
)
def test_a_value_opens_only_where_it_was_sealed(ring: KeyRing, other: bytes) -> None:
    sealed = ring.seal(SECRET, aad=AAD)
    with pytest.raises(SealError):
        ring.open(sealed, aad=other)


def test_header_names_bind_case_insensitively(ring: KeyRing) -> None:
    sealed = ring.seal(SECRET, aad=AAD)
    assert ring.open(sealed, aad=header_aad("acme", 7, "authorization")) == SECRET


def test_header_aad_is_unambiguous() -> None:
    parts = [("a", 12, "x"), ("a1", 2, "x"), ("a", 1, "2x"), ("a\x00", 1, "x"), ("a", 1, "\x00x")]
    assert len({header_aad(*p) for p in parts}) == len(parts)
    with pytest.raises(ValueError):
        header_aad("", 1, "x")
    with pytest.raises(TypeError):
        header_aad("a", True, "x")


def test_tampering_fails(ring: KeyRing) -> None:
    sealed = ring.seal(SECRET, aad=AAD)
    prefix, encoded = sealed.rsplit(".", 1)
    blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    for i in range(len(blob)):  # nonce, ciphertext and tag: every byte counts
        flipped = bytearray(blob)
        flipped[i] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(SealError):
            ring.open(f"{prefix}.{forged}", aad=AAD)
    for bad in [sealed[:-4], sealed.replace("v1.", "v2.", 1), "v1.nope", "", "v1..", sealed + "."]:
        with pytest.raises(SealError):
            ring.open(bad, aad=AAD)


def test_the_sealed_value_holds_no_plaintext(ring: KeyRing) -> None:
    sealed = ring.seal(SECRET, aad=AAD)
    for form in (SECRET, "super-secret", base64.b64encode(SECRET.encode()).decode()[:12]):
        assert form not in sealed
    assert base64.urlsafe_b64encode(SECRET.encode()).decode()[:12] not in sealed
    assert ring.seal(SECRET, aad=AAD) != sealed  # a fresh nonce every time


def test_the_key_file_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "secret.key"
    old_umask = os.umask(0)  # even a permissive umask must not loosen it
    try:
        ring = KeyRing.load_or_create(path)
    finally:
        os.umask(old_umask)
    assert mode_of(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp file left
    sealed = ring.seal(SECRET, aad=AAD)
    again = KeyRing.load_or_create(path)
    assert again.active_id == ring.active_id
    assert again.open(sealed, aad=AAD) == SECRET
    (material,) = key_material(path)
    assert len(base64.b64decode(material)) == 32
    assert material not in repr(ring)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o700 | 0o004])
def test_a_key_file_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret.key"
    KeyRing.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        KeyRing.load_or_create(path)
    assert info.value.key == "secrets.key_file"
    assert f"{mode:04o}" in info.value.message
    assert mode_of(path) == mode  # refused, not silently "fixed"


VALID = base64.b64encode(bytes(32)).decode()
MALFORMED = [
    "",
    "# only a comment\n",
    f"k1 {VALID}\n",  # nobody active
    f"k1 {VALID} active\nk2 {VALID} active\n",
    f"k1 {VALID} active\nk1 {VALID}\n",
    f"k1 {base64.b64encode(bytes(16)).decode()} active\n",
    "k1 not*base64 active\n",
    f"k1 {VALID[:8]}*{VALID[8:]} active\n",  # 32 bytes once the stray * is skipped
    f"k1 {VALID} current\n",
    f"k.1 {VALID} active\n",
    f"k1 {VALID} active extra\n",
    "k1\n",
    "k1 \xe9 active\n",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_key_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(text.encode("utf-8"))
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        KeyRing.load_or_create(path)
    assert info.value.key == "secrets.key_file"
    assert VALID not in info.value.message


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "secret.key").mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        KeyRing.load_or_create(tmp_path / "secret.key")


def test_rotation_keeps_old_values_readable(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    first = KeyRing.load_or_create(path)
    old = first.seal(SECRET, aad=AAD)
    first.with_new_active_key().save(path)
    assert mode_of(path) == 0o600
    rotated = KeyRing.load_or_create(path)
    assert len(rotated.key_ids) == 2 and rotated.active_id != first.active_id
    new = rotated.seal("new value", aad=AAD)
    assert rotated.key_id_of(new) == rotated.active_id
    assert rotated.key_id_of(old) == first.active_id
    assert rotated.open(old, aad=AAD) == SECRET
    assert rotated.open(new, aad=AAD) == "new value"
    with pytest.raises(SealError):
        first.open(new, aad=AAD)  # the old ring never heard of the new key
    retired = rotated.without_key(first.active_id)
    with pytest.raises(SealError):
        retired.open(old, aad=AAD)
    with pytest.raises(ValueError):
        rotated.without_key(rotated.active_id)


def test_a_moved_key_id_does_not_open(ring: KeyRing) -> None:
    two = ring.with_new_active_key()
    sealed = two.seal(SECRET, aad=AAD)
    relabelled = sealed.replace(two.active_id, ring.active_id, 1)
    with pytest.raises(SealError):
        two.open(relabelled, aad=AAD)


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    barrier = threading.Barrier(8, timeout=10)
    ids: list[str] = []

    def create() -> None:
        barrier.wait()
        ids.append(KeyRing.load_or_create(path).active_id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(key_material(path)) == 1


def test_the_key_id_is_bound_even_to_the_same_key(tmp_path: Path) -> None:
    """The key id is authenticated: a value relabelled with another id opens
    nowhere, even where that id holds the same key (a line copied by hand)."""
    key = os.urandom(32)
    ring = KeyRing({"k1": key, "k2": key}, "k1")
    sealed = ring.seal(SECRET, aad=AAD)
    with pytest.raises(SealError):
        ring.open(sealed.replace("v1.k1.", "v1.k2.", 1), aad=AAD)


def test_a_ring_takes_only_256_bit_keys_and_an_active_one_it_holds() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing({"k1": bytes(16)}, "k1")  # AES-128 would do, and must not
    with pytest.raises(ValueError, match="not in the ring"):
        KeyRing({"k1": bytes(32)}, "k2")


def test_malformed_sealed_values_are_refused_as_such(ring: KeyRing) -> None:
    short = base64.urlsafe_b64encode(bytes(5)).rstrip(b"=").decode()  # not even a nonce
    with pytest.raises(SealError, match="too short"):
        ring.open(f"v1.{ring.active_id}.{short}", aad=AAD)
    with pytest.raises(SealError, match="malformed"):
        ring.open("v1.no key!." + "A" * 40, aad=AAD)


def test_an_empty_environment_binds_nothing() -> None:
    with pytest.raises(ValueError, match="environment"):
        header_aad("acme", 7, "Authorization", "")


def test_saving_a_ring_keeps_the_signing_secrets(tmp_path: Path) -> None:
    """`jobsd rotate-key` saves the ring into the file the accounts' signing
    secrets share: they stay, every line of them."""
    path = tmp_path / "secret.key"
    ring = KeyRing.load_or_create(path)
    signing = "signing:acme whsec_" + base64.b64encode(bytes(32)).decode() + " active"
    path.write_text(path.read_text() + signing + "\n")
    ring.with_new_active_key().save(path)
    assert signing in path.read_text().splitlines()
    assert len(KeyRing.load(path).key_ids) == 2
