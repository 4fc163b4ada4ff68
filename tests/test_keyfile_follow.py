"""The daemon follows the key file while it runs (`jobsd.keyfile.Followed`).

It looks at the file (a stat) before each signature and reads it again when
it changed. Whatever the file is at that moment, a read that fails keeps
what was loaded: it never raises out of the signer, whose callers include
the alert actor, which has no per-alert boundary (the daemon would stop).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from jobsd import keyfile, signing_secrets
from jobsd.clock import system_utc_now
from jobsd.config import parse_config
from jobsd.crypto import KeyRing
from tests.conftest import config_text


def test_a_key_file_gone_between_its_look_and_its_read_keeps_what_was_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon looks at the file (a stat) before each signature and reads it when
    it changed; one removed in between (an operator's `mv`, a restore) raised
    FileNotFoundError out of the signer, and the alert actor, which has no
    per-alert boundary, stopped the daemon. Now it is a file that does not load
    at that moment: what was loaded stays, and a file put back is read."""
    config = parse_config(config_text(tmp_path))
    path = config.secrets.key_file
    KeyRing.load_or_create(path)
    first = signing_secrets.active_secret(config, "acme")
    kept = path.read_bytes()

    def vanishing(p: Path) -> signing_secrets.AllSecrets:
        if p.read_bytes() != kept:
            p.unlink()  # gone after the look that saw it change, before the read
        return signing_secrets.load(p)

    followed = keyfile.Followed(path, vanishing, signing_secrets.load(path), "signing secrets")
    followed.refresh()
    signing_secrets.rotate(config, "acme", system_utc_now(), timedelta(0))
    assert followed.refresh() is False
    assert followed.value["acme"][0].secret == first
    assert "key file not reloaded" in caplog.text
    path.write_bytes(kept)
    path.chmod(0o600)
    assert followed.refresh() is True
    assert followed.value["acme"][0].secret == first
