"""Who alerts, where, and who auto-pauses: the live config's answer.

Read at the moment it matters, so a reload (SIGHUP) applies to the next run
that ends (`alert_url`, a plan's `auto_pause_after`) and to the next
delivery (`alert_url`, `sign_requests`). An alert written while an account
had an `alert_url` goes to the URL it has when the alert is sent, and is
dropped (logged, counted) if it has none then. The answers are cached per
config object: a reload swaps the object, so the cache follows it.
"""

from __future__ import annotations

from jobsd.alerts import AlertTarget
from jobsd.config import Config
from jobsd.settings import Settings
from jobsd.store.outbox import AlertPolicy


class LiveAlertSettings:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._config: Config | None = None
        self._policies: dict[str, AlertPolicy] = {}
        self._any_active = False
        self._targets: dict[str, AlertTarget] = {}

    def _current(self) -> None:
        config = self._settings.config
        if config is self._config:
            return
        self._policies = {
            a.id: AlertPolicy(bool(a.alert_url), config.plan_of(a).auto_pause_after)
            for a in config.accounts
        }
        # Asked at every run's end (`AlertRecorder.record`): one scan per config, not per end.
        self._any_active = any(p.active for p in self._policies.values())
        self._targets = {
            a.id: AlertTarget(a.alert_url, a.sign_requests) for a in config.accounts if a.alert_url
        }
        self._config = config

    # -- the store (`jobsd.store.outbox.AlertPolicies`) ---------------------------

    def any_active(self) -> bool:
        self._current()
        return self._any_active

    def of(self, account_id: str) -> AlertPolicy:
        self._current()
        return self._policies.get(account_id, AlertPolicy())

    # -- the alert actor ------------------------------------------------------------

    def target_of(self, account_id: str) -> AlertTarget | None:
        self._current()
        return self._targets.get(account_id)
