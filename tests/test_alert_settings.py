"""Who alerts, where, and who auto-pauses (`jobsd.alert_settings`): the live config's answer.

The answers are cached per config object; a reload swaps the object, and the
next question is answered from the new config.
"""

from __future__ import annotations

from pathlib import Path

from jobsd.alert_settings import LiveAlertSettings
from jobsd.alerts import AlertTarget
from jobsd.settings import Settings
from jobsd.store.outbox import AlertPolicy
from tests.conftest import make_config
from tests.test_alerts import alert_config

URL = "https://alerts.example/hook"


def test_the_answers_follow_a_reload(tmp_path: Path) -> None:
    settings = Settings(make_config(tmp_path))
    live = LiveAlertSettings(settings)
    assert not live.any_active()
    assert live.of("acme") == AlertPolicy(False, 0) and live.target_of("acme") is None
    settings.config = alert_config(tmp_path, URL, signs=True, auto_pause_after=3)  # a reload
    assert live.any_active()
    assert live.of("acme") == AlertPolicy(True, 3)
    assert live.target_of("acme") == AlertTarget(URL, True)
    assert live.of("nobody") == AlertPolicy() and live.target_of("nobody") is None
    assert live.of("other") == AlertPolicy() and live.target_of("other") is None
    settings.config = make_config(tmp_path)  # and back
    assert not live.any_active() and live.target_of("acme") is None
