"""Signed requests: what a receiver running the `standardwebhooks` library accepts.

The signatures are checked by that library, never by our own code: on
headers built here, and end to end on what a real local target received
from a running daemon, before, during and after a rotation's overlap. The
secrets live in the key file beside the header keys; each module's
rewrites must keep the other's lines.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from jobsd import cli_signing, keyfile, rotation, signing, signing_secrets
from jobsd.clock import system_utc_now
from jobsd.config import Config, load_config, parse_config
from jobsd.crypto import KeyRing
from jobsd.errors import ConfigError
from jobsd.notify import Notifier
from jobsd.reload import Reloader
from jobsd.settings import Settings
from tests.conftest import JSONAPI, config_text
from tests.inprocess import daemon_at
from tests.target import Received, open_target
from tests.test_cli import jobsd

BODY = b'{"hello": "w\xc3\xb6rld"}'


def verify(secret: str, body: bytes, headers: dict[str, str]) -> None:
    Webhook(secret).verify(body, headers, json_parse=False)


def now_s() -> int:
    return int(system_utc_now().timestamp())


# -- the signature itself -----------------------------------------------------------


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    secrets = {signing.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_the_library_verifies_our_headers_with_one_and_with_two_secrets() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    one = dict(signing.signature_headers("run-1", now_s(), BODY, [new]))
    assert set(one) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert one["webhook-signature"].startswith("v1,") and " " not in one["webhook-signature"]
    verify(new, BODY, one)
    with pytest.raises(WebhookVerificationError):
        verify(old, BODY, one)
    two = dict(signing.signature_headers("run-1", now_s(), BODY, [new, old]))
    assert len(two["webhook-signature"].split(" ")) == 2
    verify(new, BODY, two)
    verify(old, BODY, two)
    with pytest.raises(WebhookVerificationError):
        verify(new, BODY + b" ", two)
    with pytest.raises(WebhookVerificationError):
        verify(signing.new_secret(), BODY, two)
    with pytest.raises(WebhookVerificationError):
        verify(new, BODY, {**two, "webhook-id": "run-2"})


def test_the_signed_content_is_id_dot_timestamp_dot_body() -> None:
    secret = signing.new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    import hashlib
    import hmac

    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert signing.signature(secret, "msg_1", 1700000000, BODY) == "v1," + base64.b64encode(
        expected
    ).decode("ascii")


def test_a_secret_never_shows_in_a_repr() -> None:
    entry = signing.SigningSecret("acme", signing.new_secret())
    assert entry.secret not in repr(entry) and entry.secret not in str(entry)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("signing:acme whsec_YWJj active", "24-64 bytes"),
        ("signing:acme whsec_a$c= active", "followed by base64"),
        ("signing:acme nope active", "starts with whsec_"),
        ("signing:Acme {s} active", "account id"),
        ("signing:acme {s}", "expected"),
        ("signing:acme {s} until=tomorrow", "until=YYYY"),
        ("signing:acme {s} until=2026-13-01T00:00:00Z", "not a valid instant"),
    ],
)
def test_a_bad_signing_line_is_refused_naming_the_key_file(line: str, why: str) -> None:
    secret = signing.new_secret()
    with pytest.raises(ConfigError) as info:
        signing.parse(line.format(s=secret), Path("/k"))
    assert info.value.key == "secrets.key_file" and why in info.value.message
    assert secret.removeprefix("whsec_") not in str(info.value)  # never quoted


def test_two_active_or_none_active_is_refused() -> None:
    a, b = signing.new_secret(), signing.new_secret()
    with pytest.raises(ConfigError, match="two active"):
        signing.parse(f"signing:acme {a} active\nsigning:acme {b} active\n", Path("/k"))
    with pytest.raises(ConfigError, match="no active"):
        signing.parse(f"signing:acme {a} until=2026-06-05T00:00:00Z\n", Path("/k"))


def test_the_overlap_signs_with_both_until_it_ends_then_only_the_new() -> None:
    t0 = datetime(2026, 6, 5, 12, 0, tzinfo=UTC)
    first = signing.rotated((), "acme", t0, timedelta(hours=24))
    assert len(first) == 1  # nothing to overlap with
    second = signing.rotated(first, "acme", t0, timedelta(hours=24))
    assert second[1].secret == first[0].secret and second[1].until == t0 + timedelta(hours=24)
    assert signing.signing_with(second, t0) == (second[0].secret, first[0].secret)
    later = t0 + timedelta(hours=24)
    assert signing.signing_with(second, later) == (second[0].secret,)
    # Rotating again during the overlap: at most two secrets, the oldest dropped.
    third = signing.rotated(second, "acme", t0 + timedelta(hours=1), timedelta(hours=24))
    assert [e.secret for e in third] == [third[0].secret, second[0].secret]
    (alone,) = signing.rotated(second, "acme", t0, timedelta(0))  # no overlap: no old secret
    assert alone.until is None and alone.secret not in {second[0].secret, first[0].secret}


# -- the key file, shared with the header keys ------------------------------------------


def make_config(tmp_path: Path, *, signs: bool = False, extra: str = "") -> Config:
    text = config_text(tmp_path, extra=extra)
    if signs:
        text = text.replace(
            'id = "acme"\nplan = "free"\n', 'id = "acme"\nplan = "free"\nsign_requests = true\n'
        )
    return parse_config(text)


def test_header_keys_and_signing_secrets_keep_each_other(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    key = config.secrets.key_file
    with pytest.raises(ConfigError, match="start jobsd once"):
        signing_secrets.active_secret(config, "acme")
    ring = KeyRing.load_or_create(key)
    secret = signing_secrets.active_secret(config, "acme")
    assert signing_secrets.active_secret(config, "acme") == secret  # made once, then shown
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert KeyRing.load(key).key_ids == ring.key_ids  # the header keys ignore signing lines
    done = rotation.rotate(key, config.storage.path)  # rotate-key rewrites the key lines
    assert KeyRing.load(key).active_id == done.active_id != ring.active_id
    assert signing_secrets.load(key)["acme"][0].secret == secret
    entries = signing_secrets.rotate(config, "other", system_utc_now(), timedelta(hours=1))
    assert len(entries) == 1
    assert KeyRing.load(key).key_ids == done.key_ids  # signing rewrites keep the keys
    assert set(signing_secrets.load(key)) == {"acme", "other"}
    with pytest.raises(ConfigError) as info:
        signing_secrets.active_secret(config, "nobody")
    assert info.value.key == "ACCOUNT"


def test_a_rewrite_keeps_comments_and_order(tmp_path: Path) -> None:
    path = tmp_path / "k"
    KeyRing.load_or_create(path)
    before = keyfile.read_text(path).splitlines()
    keyfile.rewrite(path, keyfile.is_signing_line, ["signing:acme x active"])
    after = keyfile.read_text(path).splitlines()
    assert after == [*before, "signing:acme x active"]
    keyfile.rewrite(path, keyfile.is_signing_line, [])
    assert keyfile.read_text(path).splitlines() == before


def test_check_accounts_names_the_account_that_cannot_sign(tmp_path: Path) -> None:
    config = make_config(tmp_path, signs=True)
    with pytest.raises(ConfigError) as info:
        signing_secrets.check_accounts(config)
    assert info.value.key == "accounts[0].sign_requests"
    assert "jobsd signing-secret acme" in info.value.message
    KeyRing.load_or_create(config.secrets.key_file)
    signing_secrets.active_secret(config, "acme")
    signing_secrets.check_accounts(config)
    signing_secrets.check_accounts(make_config(tmp_path / "none"))  # nobody signs: no file read


def test_the_live_secrets_follow_a_rotation(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    KeyRing.load_or_create(config.secrets.key_file)
    first = signing_secrets.active_secret(config, "acme")
    live = signing_secrets.LiveSigningSecrets(config.secrets.key_file)
    now = system_utc_now()
    assert live.signing_with("acme", now) == (first,)
    assert live.signing_with("other", now) == ()
    entries = signing_secrets.rotate(config, "acme", now, timedelta(hours=2))
    assert live.signing_with("acme", now) == (entries[0].secret, first)
    assert live.signing_with("acme", now + timedelta(hours=3)) == (entries[0].secret,)


# -- the commands -------------------------------------------------------------------------


def test_the_signing_commands(tmp_path: Path) -> None:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    out = jobsd("signing-secret", "acme", "--config", str(cfg), cwd=tmp_path)
    assert (
        out.returncode == 2
        and "secrets.key_file" in out.stderr
        and "start jobsd once" in out.stderr
    )
    KeyRing.load_or_create(tmp_path / "secret.key")
    out = jobsd("signing-secret", "acme", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    first = out.stdout.strip()
    assert first.startswith("whsec_") and out.stdout == first + "\n"
    again = jobsd("signing-secret", "acme", "--config", str(cfg), cwd=tmp_path)
    assert again.stdout.strip() == first
    rotated = jobsd(
        "rotate-signing-secret", "acme", "--config", str(cfg), "--overlap-h", "2", cwd=tmp_path
    )
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip()
    assert second.startswith("whsec_") and second != first
    assert "the previous secret also signs until" in rotated.stderr and first not in rotated.stderr
    shown = jobsd("signing-secret", "acme", "--config", str(cfg), cwd=tmp_path)
    assert shown.stdout.strip() == second
    assert [e.secret for e in signing_secrets.load(tmp_path / "secret.key")["acme"]] == [
        second,
        first,
    ]
    bad = jobsd(
        "rotate-signing-secret", "acme", "--config", str(cfg), "--overlap-h", "-1", cwd=tmp_path
    )
    assert bad.returncode == 2 and "--overlap-h" in bad.stderr
    unknown = jobsd("signing-secret", "nobody", "--config", str(cfg), cwd=tmp_path)
    assert unknown.returncode == 2 and "ACCOUNT" in unknown.stderr


def test_check_config_and_serve_refuse_signing_without_a_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(
        config_text(tmp_path).replace(
            'id = "acme"\nplan = "free"\n', 'id = "acme"\nplan = "free"\nsign_requests = true\n'
        )
    )
    out = jobsd("check-config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2 and "accounts[0].sign_requests" in out.stderr
    out = jobsd("serve", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2 and "accounts[0].sign_requests" in out.stderr
    assert (tmp_path / "secret.key").exists()  # the daemon made the key file; now make a secret
    assert jobsd("signing-secret", "acme", "--config", str(cfg), cwd=tmp_path).returncode == 0
    assert jobsd("check-config", str(cfg), cwd=tmp_path).returncode == 0


def reloading(tmp_path: Path) -> tuple[Path, Config, Settings, Reloader]:
    """A config file, a key file, and the reloader of a daemon started on them."""
    path = tmp_path / "jobsd.toml"
    path.write_text(config_text(tmp_path))
    KeyRing.load_or_create(tmp_path / "secret.key")
    started = load_config(path)
    settings = Settings(started)
    return path, started, settings, Reloader(settings, path, Notifier(None), started)


async def test_a_reload_that_turns_signing_on_without_a_secret_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, started, settings, reloader = reloading(tmp_path)
    path.write_text(
        config_text(tmp_path).replace(
            'id = "acme"\nplan = "free"\n', 'id = "acme"\nplan = "free"\nsign_requests = true\n'
        )
    )
    with caplog.at_level(logging.INFO, logger="jobsd.reload"):
        assert not await reloader.reload()
        assert "accounts[0].sign_requests" in caplog.text
        signing_secrets.active_secret(started, "acme")
        assert await reloader.reload()
    assert "account 'acme': sign_requests on" in caplog.text
    assert settings.config.accounts[0].sign_requests


async def test_a_reload_checks_signing_against_the_key_file_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # [secrets] key_file takes a restart, so the running daemon signs from the
    # file it started with. A reload that also pointed key_file at another file
    # holding acme's secret was checked against that one and applied: signing
    # went on with no secret the daemon could read (acme's runs failed unsent).
    path, _, settings, reloader = reloading(tmp_path)
    elsewhere = tmp_path / "other" / "secret.key"
    moved = config_text(tmp_path).replace(str(tmp_path / "secret.key"), str(elsewhere))
    KeyRing.load_or_create(elsewhere)
    signing_secrets.active_secret(parse_config(moved), "acme")  # only the other file has one
    path.write_text(
        moved.replace(
            'id = "acme"\nplan = "free"\n', 'id = "acme"\nplan = "free"\nsign_requests = true\n'
        )
    )
    with caplog.at_level(logging.INFO, logger="jobsd.reload"):
        assert not await reloader.reload()
    assert "accounts[0].sign_requests" in caplog.text
    assert not settings.config.accounts[0].sign_requests


# -- end to end: a real daemon, a real target ----------------------------------------------


def job(slug: str, url: str, **more: Any) -> dict[str, Any]:
    configuration = {"url": url, "method": "POST", "body": BODY.decode(), **more}
    attributes = {"name": slug, "schedule": "0 0 1 1 *", "configuration": configuration}
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


async def run_now(client: Any, slug: str, arrived: list[Received], count: int) -> Received:
    r = await client.post(f"/api/v1/jobs/{slug}/actions/run")
    assert r.status_code == 200, r.text
    with trio.fail_after(20):
        while len(arrived) < count:
            await trio.sleep(0.02)
    return arrived[count - 1]


async def test_a_receiver_verifies_every_request_through_a_rotation(tmp_path: Path) -> None:
    config = make_config(tmp_path, signs=True)
    KeyRing.load_or_create(config.secrets.key_file)
    first = signing_secrets.active_secret(config, "acme")
    async with open_target() as target, daemon_at(config, system_utc_now()) as daemon:
        c = daemon.client
        r = await c.post(
            "/api/v1/jobs",
            json=job("hook", target.url + "/hook"),
            headers={"Content-Type": JSONAPI},
        )
        assert r.status_code == 201, r.text

        got = await run_now(c, "hook", target.received, 1)
        assert got.body == BODY
        verify(first, got.body, got.headers)
        runs = (await c.get("/api/v1/runs")).json()["data"]
        assert got.headers["webhook-id"] == runs[0]["id"]  # the run id
        assert abs(int(got.headers["webhook-timestamp"]) - now_s()) < 60
        assert "webhook-signature" not in str(runs[0]["attributes"]["request"])  # not recorded

        # A job's own header of the same name is not sent beside ours.
        forged = [{"name": "Webhook-Signature", "value": "v1,forged"}]
        r = await c.post(
            "/api/v1/jobs",
            json=job("forged", target.url + "/f", headers=forged),
            headers={"Content-Type": JSONAPI},
        )
        assert r.status_code == 201, r.text
        got = await run_now(c, "forged", target.received, 2)
        assert [v for k, v in got.raw_headers if k == "webhook-signature"] == [
            got.headers["webhook-signature"]
        ]
        verify(first, got.body, got.headers)
        del target.received[1]

        # Rotated while the daemon runs: both secrets sign, either verifies.
        entries = signing_secrets.rotate(config, "acme", system_utc_now(), timedelta(hours=1))
        second = entries[0].secret
        got = await run_now(c, "hook", target.received, 2)
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        verify(first, got.body, got.headers)
        verify(second, got.body, got.headers)

        # Rotated with no overlap: the first secret no longer verifies.
        third = signing_secrets.rotate(config, "acme", system_utc_now(), timedelta(0))[0].secret
        got = await run_now(c, "hook", target.received, 3)
        verify(third, got.body, got.headers)
        for old in (first, second):
            with pytest.raises(WebhookVerificationError):
                verify(old, got.body, got.headers)

        # The secret removed by hand: the run fails, nothing is sent unsigned.
        keyfile.rewrite(config.secrets.key_file, keyfile.is_signing_line, [])
        r = await c.post("/api/v1/jobs/hook/actions/run")
        run_id = r.json()["data"]["id"]
        with trio.fail_after(20):
            while (run := (await c.get(f"/api/v1/runs/{run_id}")).json()["data"]["attributes"])[
                "status"
            ] in ("PENDING", "RUNNING"):
                await trio.sleep(0.02)
        assert (run["status"], run["failure_reason"]) == ("FAILED", "WORKER_LOST")
        assert "jobsd signing-secret acme" in run["error"]
        assert len(target.received) == 3
        daemon.crash()


async def test_an_account_that_does_not_sign_sends_no_signature(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with open_target() as target, daemon_at(config, system_utc_now()) as daemon:
        c = daemon.client
        r = await c.post(
            "/api/v1/jobs", json=job("plain", target.url + "/p"), headers={"Content-Type": JSONAPI}
        )
        assert r.status_code == 201
        got = await run_now(c, "plain", target.received, 1)
        assert not any(name.startswith("webhook-") for name in got.headers)


# -- what the parser and the signer refuse (mutation round) ---------------------------------


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("signing:acme {s} active extra", "expected"),
        ("signing:acme! {s} active", "account id"),
        (f"signing:{'a' * 65} {{s}} active", "account id"),
        ("signing:acme {s} until=2026-06-05T00:00:00Z0", "until=YYYY"),
        ("signing:acme {s} xuntil=2026-06-05T00:00:00Z", "until=YYYY"),
        # base64 with a stray character inside: refused, never read past it
        ("signing:acme whsec_AAEC!AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= active", "base64"),
    ],
)
def test_a_signing_line_with_anything_more_or_else_is_refused(line: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        signing.parse(line.format(s=signing.new_secret()), Path("/k"))
    assert info.value.key == "secrets.key_file" and why in info.value.message


def test_nothing_to_sign_with_is_refused_not_an_empty_signature() -> None:
    with pytest.raises(ValueError, match="nothing to sign with"):
        signing.signature_headers("run-1", now_s(), BODY, [])


def test_the_active_secret_comes_first_whatever_the_order_of_the_lines() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    text = f"signing:acme {old} until=2026-06-05T00:00:00Z\nsigning:acme {new} active\n"
    entries = signing.parse(text, Path("/k"))["acme"]
    assert [(e.secret, e.until is None) for e in entries] == [(new, True), (old, False)]


def test_the_signing_commands_refuse_while_another_holds_the_key_file(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    KeyRing.load_or_create(config.secrets.key_file)
    before = keyfile.read_text(config.secrets.key_file)
    with keyfile.locked(config.secrets.key_file):
        with pytest.raises(ConfigError, match="another jobsd command"):
            signing_secrets.active_secret(config, "acme")
        with pytest.raises(ConfigError, match="another jobsd command"):
            signing_secrets.rotate(config, "acme", system_utc_now(), timedelta(hours=1))
    assert keyfile.read_text(config.secrets.key_file) == before  # nothing written meanwhile


def test_the_overlap_is_a_whole_number_of_hours_from_0_to_30_days() -> None:
    top = 24 * 30  # 30 days, as `--help` says
    assert [cli_signing._hours(h) for h in ("0", "1", str(top))] == [0, 1, top]
    for bad in ("-1", str(top + 1), "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_signing._hours(bad)


def test_rotate_signing_secret_prints_the_new_secret_alone_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    KeyRing.load_or_create(config.secrets.key_file)
    old = signing_secrets.active_secret(config, "acme")
    assert cli_signing.rotate_signing_secret(config, "acme", 24) == 0
    out, err = capsys.readouterr()
    new = signing_secrets.active_secret(config, "acme")
    assert new != old and out == f"{new}\n" and "the previous secret also signs until" in err
    assert cli_signing.rotate_signing_secret(config, "acme", 0) == 0
    out, err = capsys.readouterr()
    assert out == f"{signing_secrets.active_secret(config, 'acme')}\n"
    assert "no previous secret signs any more" in err
