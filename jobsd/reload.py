"""Config reload on SIGHUP: accounts, plans and tokens, nothing else.

A reload swaps one reference (`Settings.config`) in a single step on the
event loop, so a request reads either the old config or the new, never a
mix, and no actor restarts: runs in flight keep going. The file is read and
validated in full before anything changes; a file that does not load is
refused with its reason logged (naming the key) and the running config
stays; so is one whose environments the store cannot write (a database
another process keeps locked past the busy timeout): the config goes back.

What a change means for work already under way:
- Tokens and accounts apply to the next request: a new token works at
  once, a removed one gets 401.
- `runs_included` is read when a run is claimed (a run is metered when its
  request starts), so runs queued before the reload are metered under the
  plan in force when they start. A removed account's runs are refused as
  QUOTA_EXCEEDED: nobody may spend runs for it any longer.
- `max_timeout` and `active_jobs_limit` are checked when a job is written;
  lowering them leaves existing jobs as they are until they are next saved.
  `max_jobs` is checked when a job is created: lowered below what an
  account stores, it deletes nothing, and the account's creates are refused
  until its deletes bring it below the bound.
- `sign_requests` applies to the next run sent; turning it on is refused
  (like a bad file) while the key file holds no secret for the account.
- `api_version` applies to the next request. `environments` apply at once:
  an environment no longer listed goes dormant (its jobs keep their
  entries and overrides, but nothing fires there, and the API no longer
  shows or accepts it), and one listed again wakes, its next fires computed
  from now (slots missed meanwhile are not caught up; a one-off not yet
  fired fires late). Moving an environment to the front makes it the
  default that 2026-06-04 clients see. Scoped tokens apply to the next
  request.
- A stop (SIGTERM) during a reload cancels it (`jobsd.lifecycle`): before
  the swap the running config stays; during the store's environment sync
  the reloaded config stays for the stop (nothing fires any more) and the
  sync stops between two batches, which is logged; the next start syncs
  the store with the file before serving, completing it.
- The other sections (server, storage, secrets, scheduler, outbound,
  retention, metrics, log) are bound into running actors; a change to them
  is logged as waiting for a restart and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from jobsd.config import AccountConfig, Config, load_config
from jobsd.errors import ConfigError
from jobsd.notify import Notifier
from jobsd.plans import NO_PLAN
from jobsd.settings import Settings
from jobsd.signing_secrets import check_accounts

log = logging.getLogger("jobsd.reload")

RESTART_ONLY = (
    "server",
    "storage",
    "secrets",
    "scheduler",
    "outbound",
    "retention",
    "metrics",
    "log",
)


async def file_as_started(config: Config, path: Path | None) -> Config:
    """The config file itself, without command-line overrides: the reload baseline."""
    if path is None:
        return config
    try:
        return await trio.to_thread.run_sync(load_config, path)
    except ConfigError:
        return config


def environments_of(config: Config) -> dict[str, tuple[str, ...]]:
    """Each account's configured environments, as the store syncs them at start and reload."""
    return {account.id: account.environments for account in config.accounts}


class _Accounts:
    """The live config's accounts by id, indexed once per config in force: a
    reload swaps the whole config, so its identity says when to index again.
    Looked up for every run as it is claimed and sent; scanning the list cost
    ~210 us a run at 5,000 accounts."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._index: tuple[Config, dict[str, AccountConfig]] | None = None

    def get(self, account_id: str) -> tuple[Config, AccountConfig | None]:
        config = self._settings.config
        index = self._index  # one read: the writer thread asks too
        if index is None or index[0] is not config:
            index = self._index = (config, {a.id: a for a in config.accounts})
        return config, index[1].get(account_id)


def runs_included_now(settings: Settings) -> Callable[[str], int]:
    """The executors' view of quotas: the live config, read at claim time."""
    accounts = _Accounts(settings)

    def runs_included_of(account_id: str) -> int:
        config, account = accounts.get(account_id)
        return NO_PLAN if account is None else config.plan_of(account).runs_included

    return runs_included_of


def signs_requests_now(settings: Settings) -> Callable[[str], bool]:
    """The executors' view of `sign_requests`: the live config, read as a run is sent."""
    accounts = _Accounts(settings)

    def signs(account_id: str) -> bool:
        account = accounts.get(account_id)[1]
        return account is not None and account.sign_requests

    return signs


def describe_change(old: Config, new: Config) -> list[str]:
    """What a reload changes, for the log: ids and counts, never digests."""
    notes: list[str] = []
    old_accounts = {a.id: a for a in old.accounts}
    new_accounts = {a.id: a for a in new.accounts}
    for account_id in sorted(new_accounts.keys() - old_accounts.keys()):
        notes.append(f"account {account_id!r} added")
    for account_id in sorted(old_accounts.keys() - new_accounts.keys()):
        notes.append(
            f"account {account_id!r} removed: its tokens are refused and its runs fail"
            " QUOTA_EXCEEDED until it is restored"
        )
    for account_id in sorted(old_accounts.keys() & new_accounts.keys()):
        before, after = old_accounts[account_id], new_accounts[account_id]
        if before.plan != after.plan:
            notes.append(
                f"account {account_id!r} moved from plan {before.plan!r} to {after.plan!r}"
            )
        if before.sign_requests != after.sign_requests:
            state = "on" if after.sign_requests else "off"
            notes.append(f"account {account_id!r}: sign_requests {state}")
        if before.alert_url != after.alert_url:  # never the URL: its query may hold a token
            change = "set" if not before.alert_url else "changed" if after.alert_url else None
            notes.append(
                f"account {account_id!r}: alert_url "
                + (change or "removed (alerts not yet delivered are dropped)")
            )
        if before.api_version != after.api_version:
            notes.append(
                f"account {account_id!r}: api_version {before.api_version} -> {after.api_version}"
            )
        if before.environments != after.environments:
            gone = [e for e in before.environments if e not in after.environments]
            notes.append(
                f"account {account_id!r}: environments {', '.join(before.environments)} -> "
                f"{', '.join(after.environments)}"
                + (f" ({', '.join(gone)} dormant: nothing fires there)" if gone else "")
            )
        if before.scoped_tokens != after.scoped_tokens:
            notes.append(
                f"account {account_id!r}: {len(after.scoped_tokens)} scoped token(s), "
                f"{len(before.scoped_tokens)} before"
            )
        added = len(set(after.tokens_sha256) - set(before.tokens_sha256))
        removed = len(set(before.tokens_sha256) - set(after.tokens_sha256))
        if added or removed:
            notes.append(f"account {account_id!r}: {added} token(s) added, {removed} removed")
    for name in sorted(old.plans.keys() & new.plans.keys()):
        before_plan, after_plan = old.plans[name].model_dump(), new.plans[name].model_dump()
        for key in sorted(before_plan):
            if before_plan[key] != after_plan[key]:
                notes.append(f"plan {name!r}: {key} {before_plan[key]} -> {after_plan[key]}")
    for name in sorted(new.plans.keys() ^ old.plans.keys()):
        notes.append(f"plan {name!r} {'added' if name in new.plans else 'removed'}")
    return notes


class Reloader:
    def __init__(
        self, settings: Settings, path: Path | None, notifier: Notifier, started_with: Config
    ) -> None:
        """`started_with`: the file as it was at start, for spotting restart-only edits.

        Comparing with the running config instead would report command-line
        overrides (`--listen`) as edits on every reload.
        """
        self._settings = settings
        self._path = path
        self._notifier = notifier
        self._started_with = started_with
        self._after: list[Callable[[Config], Awaitable[Any]]] = []

    def after_reload(self, hook: Callable[[Config], Awaitable[Any]]) -> None:
        """Run `hook(new config)` after each reload that applied (the store's environments)."""
        self._after.append(hook)

    async def _sync_back(self, config: Config) -> None:
        """The hooks again with the config that stays; should the store still
        fail, the next reload or start (which syncs before serving) completes it."""
        try:
            for hook in self._after:
                await hook(config)
        except trio.Cancelled:
            log.warning(
                "reload: putting the store back was interrupted by the stop;"
                " the next start syncs it with the config file"
            )
            raise
        except Exception as exc:
            log.error(
                "reload: the store could not be put back in line with the running config"
                " (%s); the next reload or restart completes it",
                exc,
            )

    async def reload(self) -> bool:
        """Apply the file's accounts, plans and tokens; True if applied."""
        if self._path is None:
            log.warning("SIGHUP ignored: jobsd runs on built-in defaults, no file to reload")
            return False
        self._notifier.reloading(f"reloading {self._path}")
        try:
            fresh = await trio.to_thread.run_sync(load_config, self._path)
            # Against the key file the daemon signs from: [secrets] takes a restart.
            in_use = fresh.model_copy(update={"secrets": self._settings.config.secrets})
            await trio.to_thread.run_sync(check_accounts, in_use)
        except trio.Cancelled:
            log.info("reload interrupted by the stop before it applied: the running config stays")
            raise
        except ConfigError as exc:
            log.error("reload refused, the running config stays: %s", exc)
            self._notifier.ready(f"reload refused ({exc}); running on the previous config")
            return False
        current = self._settings.config
        pending = [k for k in RESTART_ONLY if getattr(fresh, k) != getattr(self._started_with, k)]
        if pending:
            log.warning("reload: [%s] changed; that takes a restart", "], [".join(pending))
        for note in describe_change(current, fresh):
            log.info("reload: %s", note)
        self._settings.config = current.model_copy(
            update={"plans": fresh.plans, "accounts": fresh.accounts}
        )
        try:
            for hook in self._after:
                await hook(self._settings.config)
        except trio.Cancelled:
            # Only a stop cancels a reload (`jobsd.lifecycle`). Syncing back would
            # take as long as the sync did and overrun the grace; the config
            # reloaded stays for the stop, which fires nothing more, and is the
            # file the next start syncs from before serving.
            log.warning(
                "reload: the environment sync was interrupted by the stop; the reloaded"
                " config stays for the stop, and the next start completes the sync"
            )
            raise
        except Exception as exc:
            # The store's environments could not follow, e.g. a database another
            # process keeps locked: the config goes back as it was rather than
            # half-applied, and the daemon stays. The store syncs in batches
            # (`jobsd.store.env_sync`), so those committed before the failure
            # are undone by syncing again with the config that stays.
            self._settings.config = current
            log.error("reload refused, the running config stays: the database: %s", exc)
            await self._sync_back(current)
            self._notifier.ready(f"reload refused ({exc}); running on the previous config")
            return False
        log.info("reloaded accounts, plans and tokens from %s", self._path)
        self._notifier.ready("serving; config reloaded")
        return True
