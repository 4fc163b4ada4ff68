"""A job's request as an environment sends it (`jobsd.job_model`): pure."""

from __future__ import annotations

from jobsd.job_model import Header, HttpConfig, Overlay

URL = "https://x.invalid/"


def test_an_override_replaces_every_base_header_of_its_name_once_in_the_first_place() -> None:
    base = HttpConfig(url=URL, headers=(Header("A", "1"), Header("a", "2"), Header("B", "3")))
    sent = Overlay(headers=(Header("A", "x"), Header("C", "4"))).apply(base)
    assert sent.headers == (Header("A", "x"), Header("B", "3"), Header("C", "4"))


def test_an_override_of_false_turns_tls_verification_off_and_none_keeps_the_base() -> None:
    assert Overlay(tls_verify=False).apply(HttpConfig(url=URL, tls_verify=True)).tls_verify is False
    assert Overlay().apply(HttpConfig(url=URL, tls_verify=False)).tls_verify is False


def test_jobsd_s_own_header_names_are_never_sent_in_any_case() -> None:
    config = HttpConfig(url=URL, headers=(Header("x-jobsd-run-id", "forged"), Header("A", "1")))
    assert config.job_headers() == (Header("A", "1"),)
