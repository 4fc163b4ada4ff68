"""Kill jobsd with SIGKILL under load, again and again, and audit the record.

Three processes: the daemon (`python -m jobsd serve --config F`, restarted
on the same database and key file after every kill), the target
(tests/crash_target.py, which outlives every daemon and logs each request
as it arrives), and this one, whose client thread keeps a steady load
going: one-off jobs due over the next seconds (a fifth of them `now`),
run-now, cancel and delete
calls, and a few `* * * * *` jobs created up front; every other round a
second account floods run-now besides (tests/crash_flood.py: past its
lanes and up to `max_pending_runs`, some callers hanging up right after
sending). A round loads the
daemon, kills it after a random delay, audits the file as the kill left it
(read-only `sqlite3`), and restarts it; every third round also kills a
daemon that is still starting (opening the store, recovering).

What the daemon acknowledged (a 201 job, a 200 run or cancel, a 204
delete) is kept in a `Ledger`; a call cut short by the kill is "unknown"
and only the database can say whether it happened. `audit` is the issue's
promise, "nothing lost, nothing doubled", spelled out on the file and log:
- every run is in a legal state with consistent timestamps, and the usage
  meter counts exactly the runs that started (metering and claiming are
  one transaction, so no kill can split them);
- no `(job, environment, scheduled_for)` slot has two runs; every run id
  reached the target at most once, and only after its claim had committed,
  carrying its own environment's configuration (each job sends an `X-Env`
  header, overridden per environment, that the target logs);
- runs RUNNING at a kill, and only those, end FAILED/WORKER_LOST; runs
  PENDING at a kill are executed after the restart (unless canceled);
- every acknowledged job, run, cancel and delete is in the file; every
  one-off fires exactly once at its own instant, late if the daemon was
  down (a `now` one-off's instant is its creation's); every cron slot
  since a job's creation has exactly one run (no downtime here comes near
  the misfire grace), in each environment it is
  enabled in: the cron jobs are enabled in two environments, `production`
  and `staging`, and some one-offs target both; one round in four kills
  inside a burst of one-offs due at one instant (tests/crash_burst.py);
- every request the target logged is a run the database knows: SUCCEEDED,
  FAILED on the response, lost at a kill, or canceled while running; and
  every run the target answered is in its log;
- a worker process killed under load (tests/crash_workers.py) loses exactly
  the runs it held, recorded FAILED/WORKER_LOST at once by the live daemon,
  and is replaced;
- the flooding account never has more than `max_pending_runs` PENDING, and
  every run it got committed, acknowledged or not (its caller hung up),
  runs exactly once like any other: a flood strands nothing;
- every job retries a `500` under one retry policy, so chains are in flight
  at every kill: each attempt exists once, follows from the run before it,
  waits exactly its delay, is never sent early, and none is lost
  (tests/crash_retries.py);
- the account alerts on the target, so alerts wait in the outbox and are in
  flight at every kill: none is lost, none is sent under one id with two
  bodies, each says what its run did (tests/crash_alerts.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2

from jobsd.clock import from_us, iso, system_utc_now, to_us
from jobsd.config import token_sha256
from jobsd.schedule import InstantSchedule, NowSchedule, parse_schedule
from jobsd.store.count_tables import GRAINS, STATUS_COLUMNS
from jobsd.store.recovery import LOST_ERROR
from tests import conftest
from tests.crash_alerts import ALERT_PATH, alerts_in, check_alerts, owed_by
from tests.crash_burst import BURST_LEAD_S, burst_kill_delay_s, create_burst, create_one_offs
from tests.crash_flood import (
    FLOOD_ACCOUNT,
    FLOOD_TOKEN,
    MAX_PENDING_RUNS,
    FloodLoad,
    create_flood_job,
)
from tests.crash_retries import POLICY, check_retries, create_retry_policy
from tests.crash_workers import (
    allowed_lines,
    check_worker_losses,
    kill_a_worker,
    lost_to_workers,
    until_running,
)
from tests.daemon_process import DaemonProcess

TOKEN = "jobsd_crash-test-token-for-account-crash"
JSONAPI = "application/vnd.api+json"
ENVS = ("production", "staging")
NEW = {"Jobsd-Version": "2026-08-07"}
TARGET_SCRIPT = Path(__file__).with_name("crash_target.py")
CRON_PATHS = ("/ok", "/ok", "/sleep/300", "/status/500")
ONE_OFF_PATHS = ("/ok", "/sleep/1000", "/status/500")
ONE_OFF_WEIGHTS = (6.0, 2.0, 2.0)
FAILED_ON_RESPONSE = {"NON_SUCCESS_STATUS"}
MAX_LOAD_S = 30.0
MINUTE_US = 60_000_000


@dataclass
class Ledger:
    """What the daemon acknowledged, and what each kill left behind."""

    one_offs: dict[str, int] = field(default_factory=dict)  # slug -> instant (us)
    # slug -> targets, of every create asked for (acknowledged or cut short by a kill)
    one_off_envs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    crons: set[str] = field(default_factory=set)
    manual_runs: set[str] = field(default_factory=set)
    canceled_runs: set[str] = field(default_factory=set)
    deleted_jobs: set[str] = field(default_factory=set)
    delete_attempts: set[str] = field(default_factory=set)
    running_at_kill: set[str] = field(default_factory=set)
    pending_at_kill: set[str] = field(default_factory=set)
    flood_runs: set[str] = field(default_factory=set)
    flood_refused: int = 0
    flood_hung_up: int = 0
    burst_at_kill: Counter[str] = field(default_factory=Counter)  # a burst's runs, by status
    alert_bodies: dict[str, str] = field(default_factory=dict)  # taken alerts: id -> sha256
    alerts_owed: set[str] = field(default_factory=set)  # seen in the outbox, owed
    alerts_pending_at_kill: int = 0
    alerts_sending_at_kill: int = 0
    kills: int = 0
    startup_kills: int = 0
    term_kills: int = 0
    unknown_calls: int = 0
    worker_kills: int = 0
    worker_lost: set[str] = field(default_factory=set)  # runs a killed worker held


@dataclass
class Snapshot:
    runs: dict[str, dict[str, Any]]
    jobs: dict[int, dict[str, Any]]
    metered: int
    log: list[dict[str, Any]]
    envs: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    counts: set[tuple[Any, ...]] = field(default_factory=set)  # the count tables' rows
    job_counts: dict[str, int] = field(default_factory=dict)  # job_counts' rows (n > 0)
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)  # alerts not yet delivered

    def envs_of(self, pk: int) -> dict[str, dict[str, Any]]:
        return {env: row for (job, env), row in self.envs.items() if job == pk}

    def with_status(self, *statuses: str) -> set[str]:
        return {i for i, r in self.runs.items() if r["status"] in statuses}


@dataclass
class Stats:
    rounds: int = 0
    startup_kills: int = 0
    term_kills: int = 0
    runs: int = 0
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    one_offs: int = 0
    late_one_offs: int = 0
    cron_slots: int = 0
    manual_runs: int = 0
    canceled: int = 0
    deleted: int = 0
    running_at_kill: int = 0
    pending_at_kill: int = 0
    unknown_calls: int = 0
    flood_runs: int = 0
    flood_accepted: int = 0
    flood_refused: int = 0
    flood_hung_up: int = 0
    retries: int = 0
    retry_chains: int = 0
    burst_at_kill: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    alerts_resent: int = 0
    alerts_pending_at_kill: int = 0
    alerts_sending_at_kill: int = 0
    worker_kills: int = 0
    worker_lost: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> str:
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.rounds} kills under load ({self.term_kills} during a SIGTERM stop) + "
            f"{self.startup_kills} during start-up in "
            f"{self.elapsed_s:.1f} s: {self.runs} runs ({by_status}), "
            f"{self.requests} requests at the target, {self.one_offs} one-offs "
            f"({self.late_one_offs} fired >1 s late after a restart), {self.cron_slots} cron "
            f"slots; acknowledged: {self.manual_runs} run-now, {self.canceled} cancels, "
            f"{self.deleted} deletes; {self.running_at_kill} runs RUNNING and "
            f"{self.pending_at_kill} PENDING at a kill; {self.unknown_calls} calls cut short; "
            f"flood: {self.flood_runs} runs ({self.flood_accepted} acknowledged, "
            f"{self.flood_refused} run-nows refused 429, {self.flood_hung_up} callers hung up); "
            f"{self.retries} retries in {self.retry_chains} chains; bursts' runs at their "
            f"kills: {dict(sorted(self.burst_at_kill.items())) or 'no burst'}; "
            f"{self.alerts} alerts delivered ({self.alerts_resent} of them again after a "
            f"kill), {self.alerts_pending_at_kill} waiting and "
            f"{self.alerts_sending_at_kill} being sent at a kill; "
            f"{self.worker_kills} worker processes killed, losing {self.worker_lost} runs"
        )


def read_snapshot(db_path: Path, log_path: Path) -> Snapshot:
    # The target's log before the database: with the daemon still running (a
    # worker kill round), every request logged then had its claim committed
    # before the snapshot below, so a logged run is never seen PENDING.
    text = log_path.read_text() if log_path.exists() else ""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        # One read transaction: with the daemon still running (a worker kill
        # round), the runs and their counts must be one moment's.
        conn.execute("BEGIN")
        runs = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY seq")}
        jobs = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM jobs")}
        envs = {
            (r["job_id"], r["environment"]): dict(r)
            for r in conn.execute("SELECT * FROM job_environments")
        }
        metered = conn.execute("SELECT coalesce(sum(runs_used), 0) FROM usage").fetchone()[0]
        outbox = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM alert_outbox")}
        counts = {
            (table, *r)
            for table, unit, _ in GRAINS
            for r in conn.execute(
                f"SELECT account_id, {unit}, environment, {', '.join(STATUS_COLUMNS)} FROM {table}"
            )
        } | {
            (table, *r)
            for table in ("pending_counts", "held_counts")
            for r in conn.execute(f"SELECT account_id, n FROM {table} WHERE n > 0")
        }
        job_counts = {
            str(r[0]): int(r[1])
            for r in conn.execute("SELECT account_id, n FROM job_counts WHERE n > 0")
        }
    finally:
        conn.close()
    lines = text.split("\n")[:-1]  # a line still being appended has no newline yet
    log = [json.loads(line) for line in lines]
    return Snapshot(runs, jobs, int(metered), log, envs, counts, job_counts, outbox)


def recount_jobs(jobs: dict[int, dict[str, Any]]) -> dict[str, int]:
    """Each account's live jobs, as `job_counts` (the plan's `max_jobs`) should say."""
    return dict(Counter(j["account_id"] for j in jobs.values() if j["deleted_at_us"] is None))


def recount(runs: dict[str, dict[str, Any]]) -> set[tuple[Any, ...]]:
    """The count tables' rows (and each account's queued runs, `pending_counts`,
    and held retries, `held_counts`) as the runs say they should be."""
    tally: Counter[tuple[Any, ...]] = Counter()
    queued: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for r in runs.values():
        if r["status"] == "PENDING":
            (queued if r.get("held_until_us") is None else held)[r["account_id"]] += 1
        for table, _, unit_us in GRAINS:
            tally[
                (
                    table,
                    r["account_id"],
                    r["created_at_us"] // unit_us,
                    r["environment"],
                    r["status"],
                )
            ] += 1
    rows: dict[tuple[Any, ...], list[int]] = {}
    for (table, account, at, env, status), n in tally.items():
        counts = rows.setdefault((table, account, at, env), [0] * len(STATUS_COLUMNS))
        counts[STATUS_COLUMNS.index(status.lower())] = n
    return (
        {(*key, *counts) for key, counts in rows.items()}
        | {("pending_counts", account, n) for account, n in queued.items()}
        | {("held_counts", account, n) for account, n in held.items()}
    )


# -- the audit ---------------------------------------------------------------------


def check_run(run: dict[str, Any]) -> None:
    """A legal state, with timestamps that agree with it."""
    status, reason = run["status"], run["failure_reason"]
    created, started, finished = run["created_at_us"], run["started_at_us"], run["finished_at_us"]
    where = f"run {run['id']} ({status}, {reason}): {run}"
    assert status in {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED"}, where
    due = run["trigger"] in ("SCHEDULE", "RETRY")  # a slot, or a retry's due instant
    assert due == (run["scheduled_for_us"] is not None), where
    assert (status == "FAILED") == (reason is not None), where
    assert (status in ("PENDING", "RUNNING")) == (finished is None), where
    if status == "PENDING":
        assert started is None, where
    if status in ("RUNNING", "SUCCEEDED") or reason == "WORKER_LOST":
        assert started is not None, where
    if run["metered_period"] is not None:
        assert started is not None, where
    elif started is not None:
        # Claimed, then ended before its request left (a cancel withdrew its frame
        # from a worker's queue; no worker took it; no secret to sign with): the
        # meter is given back, as a run is metered once its request starts.
        assert status == "CANCELED" or reason == "WORKER_LOST", where
    if started is not None:
        assert created <= started, where
    if finished is not None:
        assert created <= finished, where
        assert started is None or started <= finished, where


def audit(snap: Snapshot, ledger: Ledger, *, final: bool) -> None:
    for run in snap.runs.values():
        check_run(run)
        assert run["job_id"] in snap.jobs, f"run {run['id']} of an unknown job"

    slots = Counter(
        (r["job_id"], r["environment"], r["scheduled_for_us"])
        for r in snap.runs.values()
        if r["trigger"] == "SCHEDULE"
    )
    doubled = [slot for slot, n in slots.items() if n > 1]
    assert not doubled, f"slots with more than one run: {doubled}"

    flood_pending = snap.with_status("PENDING") & {
        i for i, r in snap.runs.items() if r.get("account_id") == FLOOD_ACCOUNT
    }
    assert len(flood_pending) <= MAX_PENDING_RUNS, f"{len(flood_pending)} flood runs PENDING"

    assert snap.counts == recount(snap.runs), "the kept counts disagree with the runs"
    assert snap.job_counts == recount_jobs(snap.jobs), "the kept job counts disagree with the jobs"

    started = sum(1 for r in snap.runs.values() if r["started_at_us"] is not None)
    assert snap.metered == started, f"usage says {snap.metered} runs, {started} started"

    slugs = {j["slug"] for j in snap.jobs.values()}
    assert not set(ledger.one_offs) - slugs, "an acknowledged job is missing"
    assert not ledger.crons - slugs, "an acknowledged cron job is missing"
    missing = ledger.manual_runs - snap.runs.keys()
    assert not missing, f"acknowledged run-now runs missing: {missing}"
    for run_id in ledger.manual_runs:
        assert snap.runs[run_id]["trigger"] == "MANUAL"
    for run_id in ledger.canceled_runs:
        assert snap.runs[run_id]["status"] == "CANCELED", f"acknowledged cancel lost: {run_id}"
    deleted = {j["slug"] for j in snap.jobs.values() if j["deleted_at_us"] is not None}
    assert ledger.deleted_jobs <= deleted, "an acknowledged delete was lost"
    assert deleted <= ledger.delete_attempts, "a job deleted that nobody deleted"
    for run in snap.runs.values():
        if run["status"] == "CANCELED" and run["started_at_us"] is None:
            # Canceled before it started: by a user, because its job was deleted, or
            # a slot skipped while its job's previous slot still waited to start.
            by_delete = run["error"] == "the job was deleted before this run started"
            skipped = run["trigger"] == "SCHEDULE" and str(run["error"]).startswith("skipped: run ")
            assert by_delete or skipped or run["id"] in ledger.manual_runs, run

    check_log(snap, ledger, final=final)
    check_retries(snap.runs, snap.jobs, snap.log, final=final)
    check_alerts(
        snap.outbox,
        snap.runs,
        snap.jobs,
        snap.log,
        ledger.alert_bodies,
        ledger.alerts_owed,
        final=final,
    )
    if final:
        check_final(snap, ledger)


def check_log(snap: Snapshot, ledger: Ledger, *, final: bool) -> None:
    requests = [entry for entry in snap.log if entry.get("alert") is None]  # alerts apart
    ids = [entry["run_id"] for entry in requests]
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"run ids the target received more than once: {twice}"
    for entry in requests:
        run = snap.runs.get(entry["run_id"])
        assert run is not None, f"a request no run accounts for: {entry}"
        # The claim commits before the request is sent: never PENDING once sent.
        assert run["status"] != "PENDING", f"request sent for a PENDING run: {entry}"
        assert run["started_at_us"] is not None, f"request sent for a run never started: {run}"
        assert entry["job"] == run["job_slug"], entry
        assert entry["env"] == run["environment"], (entry, run)
        scheduled = run["scheduled_for_us"]
        assert entry["scheduled_for"] == (None if scheduled is None else iso(from_us(scheduled)))
        if final:
            outcome = (run["status"], run["failure_reason"])
            accounted = (
                outcome == ("SUCCEEDED", None)
                or (run["status"] == "FAILED" and run["failure_reason"] in FAILED_ON_RESPONSE)
                or (
                    outcome == ("FAILED", "WORKER_LOST")
                    and run["id"] in ledger.running_at_kill | ledger.worker_lost
                )
                or (run["status"] == "CANCELED" and run["started_at_us"] is not None)
            )
            assert accounted, f"request not accounted for by its run {run}: {entry}"
    if final:
        answered = {
            i
            for i, r in snap.runs.items()
            if r["status"] == "SUCCEEDED" or r["failure_reason"] in FAILED_ON_RESPONSE
        }
        unlogged = answered - set(ids)
        assert not unlogged, f"runs answered by the target that it never logged: {unlogged}"


def check_final(snap: Snapshot, ledger: Ledger) -> None:
    live = snap.with_status("PENDING", "RUNNING")
    assert not live, f"runs never finished: {[snap.runs[i] for i in live]}"
    lost = {i for i, r in snap.runs.items() if r["failure_reason"] == "WORKER_LOST"}
    expected = ledger.running_at_kill | ledger.worker_lost
    assert lost == expected, (
        f"WORKER_LOST {len(lost)} vs RUNNING at a kill {len(ledger.running_at_kill)} + "
        f"held by a killed worker {len(ledger.worker_lost)}: {sorted(lost ^ expected)}"
    )
    assert lost_to_workers(snap.runs) == ledger.worker_lost
    for run_id in lost - ledger.worker_lost:
        assert snap.runs[run_id]["error"] == LOST_ERROR
    # Left PENDING by a kill: executed after a restart (lost only if a later kill
    # caught it), unless canceled first.
    never_started = {
        i
        for i in ledger.pending_at_kill
        if snap.runs[i]["started_at_us"] is None and snap.runs[i]["status"] != "CANCELED"
    }
    assert not never_started, f"runs PENDING at a kill never ran: {never_started}"
    outcomes = Counter((r["status"], r["failure_reason"]) for r in snap.runs.values())
    allowed = {
        ("SUCCEEDED", None),
        ("FAILED", "WORKER_LOST"),
        ("FAILED", "NON_SUCCESS_STATUS"),
        ("CANCELED", None),
    }
    assert set(outcomes) <= allowed, f"unexpected outcomes: {outcomes}"

    runs_of: dict[tuple[int, str], list[int]] = {}
    for run in snap.runs.values():
        assert run["environment"] in ENVS, run
        if run["trigger"] == "SCHEDULE":
            key = (run["job_id"], run["environment"])
            runs_of.setdefault(key, []).append(run["scheduled_for_us"])
    for pk, job in snap.jobs.items():
        schedule = parse_schedule(job["schedule"])
        envs = snap.envs_of(pk)
        fired = {env: sorted(runs_of.get((pk, env), [])) for env in ENVS}
        if isinstance(schedule, InstantSchedule | NowSchedule):
            # A one-off fires exactly once in each environment it targets, at its
            # own instant (a `now` job's: its creation's), however late; deleted
            # first, it may not have fired.
            targets = ledger.one_off_envs.get(job["slug"], ENVS[:1])
            instant = (
                to_us(schedule.at)
                if isinstance(schedule, InstantSchedule)
                else job["created_at_us"]
            )
            for env in ENVS:
                expected = [instant] if env in targets else []
                if job["deleted_at_us"] is None or fired[env]:
                    assert fired[env] == expected, f"one-off {job['slug']} in {env}: {fired[env]}"
            if job["deleted_at_us"] is None:
                assert set(envs) == set(targets), (job["slug"], envs)
                for row in envs.values():
                    assert row["enabled"] == 0 and row["next_run_at_us"] is None, row
            if job["slug"] in ledger.one_offs and isinstance(schedule, InstantSchedule):
                assert ledger.one_offs[job["slug"]] == to_us(schedule.at)
            elif job["slug"] in ledger.one_offs:  # `now`: created after the ledger's instant
                assert ledger.one_offs[job["slug"]] <= instant
        elif job["deleted_at_us"] is None and not any(r["enabled"] for r in envs.values()):
            # Paused everywhere (the flood's job, run-now only): it never fires.
            assert not any(fired.values()), f"paused job {job['slug']} fired: {fired}"
        else:
            assert set(envs) == set(ENVS), f"cron job {job['slug']}: {envs}"
            for env, row in envs.items():
                expected = cron_slots(job["created_at_us"], row["next_run_at_us"])
                assert fired[env] == expected, f"cron job {job['slug']} in {env}: {fired[env]}"


def check_daemon_log(stderr: str, worker_kills: int = 0) -> None:
    """A kill is the only thing that may go wrong: nothing logged above INFO, but
    one line for each worker process this daemon had killed."""
    allowed = set(allowed_lines(stderr, worker_kills))
    bad = [
        line
        for line in stderr.splitlines()
        if line not in allowed
        and (
            "Traceback" in line
            or any(f" {lvl} " in line for lvl in ("WARNING", "ERROR", "CRITICAL"))
        )
    ]
    assert not bad, "the daemon logged trouble:\n" + stderr


def cron_slots(created_us: int, next_run_at_us: int) -> list[int]:
    """Every `* * * * *` slot after creation and before the next one due."""
    first = (created_us // MINUTE_US + 1) * MINUTE_US
    return list(range(first, next_run_at_us, MINUTE_US))


# -- load --------------------------------------------------------------------------


class Load:
    """A client thread: one-offs due in the coming seconds, run-now, cancel, delete."""

    def __init__(self, url: str, target_url: str, rng: random.Random, known: list[str]) -> None:
        self._url = url
        self._target_url = target_url
        self._rng = rng
        self._known = list(known)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crash-load", daemon=True)
        self.one_offs: dict[str, int] = {}
        self.one_off_envs: dict[str, tuple[str, ...]] = {}
        self.manual_runs: set[str] = set()
        self.canceled_runs: set[str] = set()
        self.deleted_jobs: set[str] = set()
        self.delete_attempts: set[str] = set()
        self.unknown = 0
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=MAX_LOAD_S)
        assert not self._thread.is_alive(), "the load thread did not stop"
        assert not self.errors, self.errors

    def _loop(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_S
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx2.Client(base_url=self._url, headers=headers, timeout=5, trust_env=False) as c:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    self._step(c)
                except httpx2.TransportError:
                    self.unknown += 1  # cut short by the kill: only the database knows
                except Exception as exc:  # reported by stop(), on the test's thread
                    self.errors.append(repr(exc))
                    return
                self._stop.wait(self._rng.uniform(0.01, 0.04))

    def _step(self, client: httpx2.Client) -> None:
        rng = self._rng
        action = rng.random()
        if self._known and action < 0.35:
            slug = rng.choice(self._known)
            if slug.startswith("cron-") and rng.random() < 0.5:  # in staging, through 2026-08-07
                r = client.post(
                    f"/api/v1/jobs/{slug}/actions/run",
                    json={"environment": "staging"},
                    headers={**NEW, "Content-Type": JSONAPI},
                )
            else:  # through 2026-06-04: in the default environment
                r = client.post(f"/api/v1/jobs/{slug}/actions/run")
            if r.status_code == 429 and r.headers.get("Retry-After"):
                return  # its backlog is full (the flood takes workers): nothing committed
            if r.status_code != 200:
                raise AssertionError(f"run now {slug}: {r.status_code} {r.text}")
            self.manual_runs.add(r.json()["data"]["id"])
            return
        if self.manual_runs and action < 0.42:
            run_id = rng.choice(sorted(self.manual_runs))
            r = client.post(f"/api/v1/runs/{run_id}/actions/cancel")
            if r.status_code == 200:
                self.canceled_runs.add(run_id)
            elif r.status_code != 409:  # 409: already finished
                raise AssertionError(f"cancel {run_id}: {r.status_code} {r.text}")
            return
        one_offs = [slug for slug in self._known if slug.startswith("once-")]
        if one_offs and action < 0.47:
            slug = rng.choice(one_offs)
            self._known.remove(slug)  # never touched again: its fate may be unknown
            self.delete_attempts.add(slug)
            r = client.delete(f"/api/v1/jobs/{slug}")
            if r.status_code != 204:
                raise AssertionError(f"delete {slug}: {r.status_code} {r.text}")
            self.deleted_jobs.add(slug)
            return
        slug = f"once-{time.monotonic_ns()}-{rng.randrange(1 << 30)}"
        at = system_utc_now() + timedelta(seconds=rng.uniform(0.05, 2.5))
        # One in five is `now`: its instant is its creation's, whatever a kill does.
        schedule = "now" if rng.random() < 0.2 else iso(at) or ""
        if schedule == "now":
            at = system_utc_now()  # before its creation, so before its instant
        path = rng.choices(ONE_OFF_PATHS, ONE_OFF_WEIGHTS)[0]
        url = f"{self._target_url}{path}"
        if rng.random() < 0.3:  # through 2026-08-07, in both environments
            targets = ENVS
            doc = job_doc_new(slug, schedule, url, targets)
            headers = {**NEW, "Content-Type": JSONAPI}
        else:
            targets = ENVS[:1]
            doc, headers = job_doc(slug, schedule, url), {"Content-Type": JSONAPI}
        # Where it runs if it exists, known before the answer: a create cut short
        # by the kill may still have committed (targeting both environments).
        self.one_off_envs[slug] = targets
        r = client.post("/api/v1/jobs", json=doc, headers=headers)
        if r.status_code != 201:
            raise AssertionError(f"create {slug}: {r.status_code} {r.text}")
        self.one_offs[slug] = to_us(at)
        self._known.append(slug)


def job_doc(slug: str, schedule: str, url: str) -> dict[str, Any]:
    """2026-06-04: runs in the default environment, production; retries a 500."""
    headers = [{"name": "X-Env", "value": "production"}]
    return conftest.job_doc(
        slug,
        name=slug,
        schedule=schedule,
        configuration={"url": url, "timeout": 10, "headers": headers},
        retry_policy=POLICY,
    )


def job_doc_new(slug: str, schedule: str, url: str, envs: tuple[str, ...]) -> dict[str, Any]:
    """2026-08-07: enabled in `envs`, each saying where it runs in its X-Env header;
    retries a 500."""
    return conftest.job_doc(
        slug,
        name=slug,
        schedule=schedule,
        retry_policy=POLICY,
        configuration={"url": url, "timeout": 10, "headers": {"X-Env": "production"}},
        environments={
            env: {"enabled": True, **({} if env == "production" else {"headers.X-Env": env})}
            for env in envs
        },
    )


def _keepalive_line() -> str:
    """The shipped default unless `JOBSD_CRASH_KEEPALIVE_S` says otherwise."""
    value = os.environ.get("JOBSD_CRASH_KEEPALIVE_S")
    return "" if value is None else f"keepalive_s = {float(value)}"


# -- the harness -------------------------------------------------------------------


class CrashHarness:
    """Owns the target and daemon processes; kills both on exit, whatever happened."""

    def __init__(self, tmp_path: Path, *, seed: int, workers: int = 4) -> None:
        self.dir = tmp_path
        self.seed = seed
        self.rng = random.Random(seed)
        self.db_path = tmp_path / "jobsd.sqlite3"
        self.log_path = tmp_path / "target.log"
        self.config_path = tmp_path / "jobsd.toml"
        self.workers = workers
        self.ledger = Ledger()
        self.stats = Stats()
        self.target: subprocess.Popen[str] | None = None
        self.target_url = ""
        self.daemon: DaemonProcess | None = None
        self.daemon_worker_kills = 0  # workers killed under the daemon running now
        self._started = time.monotonic()

    def __enter__(self) -> CrashHarness:
        self.target = subprocess.Popen(
            [sys.executable, str(TARGET_SCRIPT), str(self.log_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert self.target.stdout is not None
            line = self.target.stdout.readline()
            assert line.startswith("crash-target listening on "), line
        except BaseException:
            self.target.kill()
            self.target.wait(timeout=10)
            raise
        self.target_url = line.split()[-1]
        self.config_path.write_text(_config(self.dir, self.workers, self.target_url + ALERT_PATH))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.daemon is not None and self.daemon.proc is not None:
                if self.daemon.proc.poll() is None:
                    self.daemon.proc.kill()
                self.daemon.proc.wait(timeout=10)
        finally:
            if self.target is not None:
                self.target.kill()
                self.target.wait(timeout=10)

    def where(self) -> str:
        stderr = "" if self.daemon is None else str(self.daemon.stderr_path)
        return f"seed {self.seed}, kill {self.ledger.kills}, daemon stderr {stderr}"

    def tasks(self) -> str:
        """The trio task trees of the daemon and its workers (SIGUSR1 logs them)."""
        if self.daemon is None or self.daemon.proc.poll() is not None:
            return "(no daemon running)"
        pid = self.daemon.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for each in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGUSR1)
        time.sleep(1.0)
        stderr = self.daemon.stderr()
        at = stderr.find("received SIGUSR1")
        return stderr[max(at - 2000, 0) :] if at >= 0 else stderr[-5000:]

    def start_daemon(self) -> str:
        self.daemon = DaemonProcess(["serve", "--config", str(self.config_path)], self.dir)
        self.daemon_worker_kills = 0
        self.daemon.start()
        return self.daemon.url

    def create_crons(self, url: str) -> None:
        """`* * * * *` jobs enabled in both environments: each fires every minute in each."""
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": JSONAPI, **NEW}
        for n, path in enumerate(CRON_PATHS):
            slug = f"cron-{n}"
            doc = job_doc_new(slug, "* * * * *", f"{self.target_url}{path}", ENVS)
            r = httpx2.post(f"{url}/api/v1/jobs", json=doc, headers=headers, trust_env=False)
            assert r.status_code == 201, r.text
            self.ledger.crons.add(slug)

    def kill_round(
        self,
        url: str,
        max_delay_s: float,
        *,
        term_first: bool = False,
        flood: bool = False,
        burst: bool = False,
        alert_in_flight: bool = False,
    ) -> None:
        """Load the daemon at `url`, SIGKILL it at a random moment, audit the file.

        `term_first`: SIGTERM it first and SIGKILL it during the stop sequence,
        as systemd does when `TimeoutStopSec` runs out. `flood`: the flood
        account floods run-now meanwhile. `burst`: one-offs due at one instant
        first, and the kill inside their burst (tests/crash_burst.py).
        `alert_in_flight`: the moment is when an alert is being sent (the
        file says so), soon after the delay.
        """
        delay_s = self.rng.uniform(0.05, max_delay_s)
        made: dict[str, int] = {}
        if burst:
            at = system_utc_now() + timedelta(seconds=BURST_LEAD_S)
            made = create_burst(url, self.target_url, TOKEN, at, job_doc, self.ledger.kills)
            self.ledger.one_offs.update(made)
            self.ledger.one_off_envs.update({slug: ENVS[:1] for slug in made})
            delay_s = burst_kill_delay_s(at, self.rng)
        known = sorted(
            (self.ledger.crons | set(self.ledger.one_offs)) - self.ledger.delete_attempts
        )
        if alert_in_flight:
            # One job of its own failing for good (a 500 past its retries) within
            # seconds: the Load's own failing one-offs come at its pace, which a
            # loaded machine slowed until none alerted within the wait below.
            at = system_utc_now() + timedelta(seconds=0.1)
            failing = {f"once-alert-{self.ledger.kills}": "/status/500"}
            seeded = create_one_offs(url, self.target_url, TOKEN, at, job_doc, failing)
            self.ledger.one_offs.update(seeded)
            self.ledger.one_off_envs.update({slug: ENVS[:1] for slug in seeded})
        load = Load(url, self.target_url, random.Random(self.rng.random()), known)
        load.start()
        flooding = FloodLoad(url, MAX_LOAD_S)
        if flood:
            flooding.start()
        daemon = self.daemon
        assert daemon is not None and daemon.proc is not None
        try:
            time.sleep(delay_s)
            if alert_in_flight:
                self._wait_for_an_alert_in_flight()
            assert daemon.proc.poll() is None, f"the daemon died by itself:\n{daemon.stderr()}"
            if term_first:
                daemon.signal(signal.SIGTERM)
                time.sleep(self.rng.uniform(0.0, 1.0))
            daemon.kill9()
        finally:
            load.stop()
            if flood:
                flooding.stop()
        assert daemon.proc.returncode in (-signal.SIGKILL, 0), daemon.stderr()
        self.ledger.term_kills += term_first
        check_daemon_log(daemon.stderr(), self.daemon_worker_kills)
        self._take(load)
        self.ledger.unknown_calls += flooding.unknown
        self.ledger.manual_runs |= flooding.accepted
        self.ledger.flood_runs |= flooding.accepted
        self.ledger.flood_refused += flooding.refused
        self.ledger.flood_hung_up += flooding.hung_up
        snap = self._audit_after_kill()
        if burst:  # where the kill landed: runs ended, in flight, waiting
            slugs = {pk: job["slug"] for pk, job in snap.jobs.items()}
            self.ledger.burst_at_kill.update(
                run["status"] for run in snap.runs.values() if slugs.get(run["job_id"]) in made
            )

    def _wait_for_an_alert_in_flight(self, timeout_s: float = 60.0) -> None:
        """Returns as soon as the file says an alert is being sent: one small
        query, not a whole snapshot (which, on a loaded machine, took longer
        than the alert's 100 ms at the target, and the kill then found none).
        Within a minute: the failing job's four runs (it retries three times,
        as every job here does) each wait in its account's queue behind the
        Load's runs, 4-8 s each with ~350 PENDING (seed 1806216148 waited 25 s
        in all, on the code before and after the eleventh session alike)."""
        deadline = time.monotonic() + timeout_s
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            while not conn.execute("SELECT 1 FROM alert_outbox WHERE sending LIMIT 1").fetchone():
                assert time.monotonic() < deadline, f"no alert was sent ({self.where()})"
                time.sleep(0.005)
        finally:
            conn.close()

    def _take(self, load: Load) -> None:
        """What the load's calls were acknowledged, into the ledger."""
        self.ledger.one_offs.update(load.one_offs)
        self.ledger.one_off_envs.update(load.one_off_envs)
        self.ledger.manual_runs |= load.manual_runs
        self.ledger.canceled_runs |= load.canceled_runs
        self.ledger.deleted_jobs |= load.deleted_jobs
        self.ledger.delete_attempts |= load.delete_attempts
        self.ledger.unknown_calls += load.unknown

    def worker_kill_round(self, url: str, max_delay_s: float) -> None:
        """Load the daemon, SIGKILL one of its worker processes at a random moment, audit."""
        known = sorted(
            (self.ledger.crons | set(self.ledger.one_offs)) - self.ledger.delete_attempts
        )
        load = Load(url, self.target_url, random.Random(self.rng.random()), known)
        load.start()
        daemon = self.daemon
        assert daemon is not None and daemon.proc is not None
        try:
            time.sleep(self.rng.uniform(0.05, max_delay_s))
            until_running(self.db_path, 2, timeout_s=5)  # so that the victim holds some
            pick = self.rng.randrange(1 << 16)
            _, replaced_us = kill_a_worker(daemon.proc.pid, pick, daemon.stderr)
            time.sleep(0.3)  # the load goes on through the replacement
        finally:
            load.stop()
        assert daemon.proc.poll() is None, f"the daemon died with its worker:\n{daemon.stderr()}"
        self.ledger.worker_kills += 1
        self.daemon_worker_kills += 1
        check_daemon_log(daemon.stderr(), self.daemon_worker_kills)
        self._take(load)
        snap = read_snapshot(self.db_path, self.log_path)
        try:
            self.ledger.worker_lost |= check_worker_losses(
                snap.runs, self.ledger.worker_lost, replaced_us
            )
            audit(snap, self.ledger, final=False)
        except AssertionError as exc:
            raise AssertionError(f"after a worker kill ({self.where()}): {exc}") from exc

    def startup_kill(self) -> None:
        """SIGKILL a daemon still starting: opening the store, recovering, feeding runs."""
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        stderr_path = self.dir / f"jobsd-startup-{self.ledger.kills}.log"
        with stderr_path.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobsd", "serve", "--config", str(self.config_path)],
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                time.sleep(self.rng.uniform(0.3, 3.0))
                alive = proc.poll() is None
            finally:
                proc.kill()
                proc.wait(timeout=10)
        assert alive, f"the daemon died by itself:\n{stderr_path.read_text()}"
        check_daemon_log(stderr_path.read_text())
        self.ledger.startup_kills += 1
        self._audit_after_kill()

    def _audit_after_kill(self) -> Snapshot:
        self.ledger.kills += 1
        # What a SIGKILL leaves behind (the -wal and -shm too) is owner-only.
        for suffix in ("", "-wal", "-shm"):
            left = Path(f"{self.db_path}{suffix}")
            if left.exists():
                assert left.stat().st_mode & 0o077 == 0, f"after {self.where()}: {left} is open"
        snap = read_snapshot(self.db_path, self.log_path)
        try:
            audit(snap, self.ledger, final=False)
        except AssertionError as exc:
            raise AssertionError(f"after {self.where()}: {exc}") from exc
        self.ledger.running_at_kill |= snap.with_status("RUNNING")
        self.ledger.alerts_pending_at_kill += len(snap.outbox)
        self.ledger.alerts_sending_at_kill += sum(a["sending"] for a in snap.outbox.values())
        self.ledger.pending_at_kill |= snap.with_status("PENDING")
        return snap

    def check_recovered(self) -> None:
        """Right after a restart: what the last kill left RUNNING is now lost, said so,
        and the file the kill left passes the integrity check the daemon runs once
        it serves (`jobsd.store.integrity`)."""
        assert self.daemon is not None
        deadline = time.monotonic() + 30
        while "(PRAGMA quick_check): ok" not in self.daemon.stderr():
            assert self.daemon.proc is not None and self.daemon.proc.poll() is None, self.where()
            assert time.monotonic() < deadline, f"no integrity check ({self.where()})"
            time.sleep(0.02)
        snap = read_snapshot(self.db_path, self.log_path)
        for run_id in self.ledger.running_at_kill:
            run = snap.runs[run_id]
            assert (run["status"], run["failure_reason"], run["error"]) == (
                "FAILED",
                "WORKER_LOST",
                LOST_ERROR,
            ), f"after {self.where()}: {run}"

    def drain_and_stop(self, stall_s: float = 30.0, limit_s: float = 180.0) -> None:
        """Let every due one-off fire and every run finish, then SIGTERM (exit 0).

        A drain fails when nothing reaches the target for `stall_s`, or at
        `limit_s` in all. Progress is judged, not a fixed time: a seed whose
        rounds leave hundreds of alerts owed to a receiver that takes 100 ms
        each (two at a time per account, `jobsd.alerts.PER_ACCOUNT`) needs
        more than 30 s to deliver them while never stalling (seed 3000759135:
        ~19 alerts/s to the end)."""
        started = time.monotonic()
        stalled_at, received = started + stall_s, -1
        last_instant_us = max(self.ledger.one_offs.values(), default=0)
        while True:
            now = time.monotonic()
            if now >= stalled_at or now >= started + limit_s:
                why = "nothing reached the target" if now >= stalled_at else "still busy"
                raise AssertionError(
                    f"the daemon never drained: {why} ({self.where()})\n{self.tasks()}"
                )
            now_us = to_us(system_utc_now())
            # Stop clear of a minute boundary so no cron slot fires during the stop.
            near_boundary = not 2_000_000 < now_us % MINUTE_US < MINUTE_US - 2_000_000
            snap = read_snapshot(self.db_path, self.log_path)
            waiting = (
                snap.with_status("PENDING", "RUNNING")
                or any(owed_by(alert, now_us) for alert in snap.outbox.values())
                or any(
                    row["enabled"] and snap.jobs[pk]["slug"].startswith("once-")
                    for (pk, _env), row in snap.envs.items()
                )
            )
            if now_us > last_instant_us and not waiting and not near_boundary:
                break
            if len(snap.log) != received:
                stalled_at, received = now + stall_s, len(snap.log)
            time.sleep(0.1)
        assert self.daemon is not None
        assert self.daemon.stop() == 0, self.daemon.stderr()
        check_daemon_log(self.daemon.stderr(), self.daemon_worker_kills)

    def final_audit(self) -> Stats:
        snap = read_snapshot(self.db_path, self.log_path)
        try:
            audit(snap, self.ledger, final=True)
        except AssertionError as exc:
            raise AssertionError(f"final audit ({self.where()}): {exc}") from exc
        stats = self.stats
        stats.rounds = self.ledger.kills - self.ledger.startup_kills
        stats.startup_kills = self.ledger.startup_kills
        stats.term_kills = self.ledger.term_kills
        stats.runs = len(snap.runs)
        stats.requests = len(snap.log)
        stats.statuses = Counter(
            r["status"] if r["failure_reason"] is None else f"{r['status']}/{r['failure_reason']}"
            for r in snap.runs.values()
        )
        one_off_runs = [
            r
            for r in snap.runs.values()
            if r["trigger"] == "SCHEDULE" and r["job_slug"][:5] == "once-"
        ]
        stats.one_offs = len(one_off_runs)
        stats.late_one_offs = sum(
            1
            for r in one_off_runs
            if r["started_at_us"] is not None
            and r["started_at_us"] - r["scheduled_for_us"] > 1_000_000
        )
        stats.cron_slots = sum(
            1
            for r in snap.runs.values()
            if r["trigger"] == "SCHEDULE" and r["job_slug"][:5] == "cron-"
        )
        stats.manual_runs = len(self.ledger.manual_runs)
        stats.canceled = len(self.ledger.canceled_runs)
        stats.deleted = len(self.ledger.deleted_jobs)
        stats.running_at_kill = len(self.ledger.running_at_kill)
        stats.pending_at_kill = len(self.ledger.pending_at_kill)
        stats.unknown_calls = self.ledger.unknown_calls
        stats.flood_runs = sum(1 for r in snap.runs.values() if r["account_id"] == FLOOD_ACCOUNT)
        stats.flood_accepted = len(self.ledger.flood_runs)
        stats.flood_refused = self.ledger.flood_refused
        stats.flood_hung_up = self.ledger.flood_hung_up
        stats.retries = check_retries(snap.runs, snap.jobs, snap.log, final=True)
        stats.retry_chains = len({r["retry_of"] for r in snap.runs.values() if r["retry_of"]})
        stats.burst_at_kill = self.ledger.burst_at_kill
        received = alerts_in(snap.log)
        stats.alerts = len({a["id"] for a in received})
        stats.alerts_resent = len(received) - stats.alerts
        stats.alerts_pending_at_kill = self.ledger.alerts_pending_at_kill
        stats.alerts_sending_at_kill = self.ledger.alerts_sending_at_kill
        stats.worker_kills = self.ledger.worker_kills
        stats.worker_lost = len(self.ledger.worker_lost)
        stats.elapsed_s = time.monotonic() - self._started
        return stats


def run_crash_test(tmp_path: Path, *, rounds: int, max_delay_s: float, seed: int) -> Stats:
    """Create the cron jobs; `rounds` times load, kill, audit, restart; drain; audit.

    Every fourth round kills the daemon during its SIGTERM stop sequence,
    another in every four inside a burst of one-offs due at one instant
    (claims and finishes written in batches), every third also kills a
    daemon while it is still starting up, every other round runs the flood
    beside the load, and the third of every four first kills one of the
    daemon's worker processes under load; the third (the last but one of
    fewer) waits for an alert being sent, and kills then.
    """
    with CrashHarness(tmp_path, seed=seed) as harness:
        url = harness.start_daemon()
        create_retry_policy(url, TOKEN)
        harness.create_crons(url)
        create_flood_job(url, harness.target_url)
        for n in range(rounds):
            if n % 4 == 2:
                harness.worker_kill_round(url, max_delay_s)
            harness.kill_round(
                url,
                max_delay_s,
                term_first=n % 4 == 3,
                flood=n % 2 == 0,
                burst=n % 4 == 1,
                # The round whose kill catches an alert: early, because a job alerts
                # `job.failed` at most once per 10 minutes, so late in a long run
                # none may be due (the 40-round run once waited 20 s for one in vain).
                alert_in_flight=n == min(2, rounds - 2),
            )
            if n % 3 == 1:
                harness.startup_kill()
            url = harness.start_daemon()
            harness.check_recovered()
        harness.drain_and_stop()
        return harness.final_audit()


def _config(tmp_path: Path, workers: int, alert_url: str) -> str:
    return f"""
[server]
listen = "127.0.0.1:0"
[storage]
path = "{tmp_path / "jobsd.sqlite3"}"
[secrets]
key_file = "{tmp_path / "secret.key"}"
[scheduler]
workers = {workers}
max_pending_runs = {MAX_PENDING_RUNS}
misfire_grace_s = 60
shutdown_grace_s = 5
worker_processes = 2
[outbound]
allow_cidrs = ["127.0.0.1/32"]
{_keepalive_line()}
[plans.unlimited]
runs_included = -1
active_jobs_limit = -1
max_timeout = 30
[[accounts]]
id = "crash"
plan = "unlimited"
tokens_sha256 = ["{token_sha256(TOKEN)}"]
environments = ["production", "staging"]
alert_url = "{alert_url}"
[[accounts]]
id = "{FLOOD_ACCOUNT}"
plan = "unlimited"
tokens_sha256 = ["{token_sha256(FLOOD_TOKEN)}"]
"""
