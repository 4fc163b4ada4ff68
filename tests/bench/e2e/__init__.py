"""The end-to-end benchmark of issue 11, one module per part.

`tests/bench/bench_e2e.py` is the command; `main` reads its arguments and
runs the scenarios: `burst` (10,000 one-off runs due at one instant, jobsd
beside APScheduler and bare client loops), `paced` (runs spread well below
capacity: lateness), `runnow` (run-now offered at a steady rate), `api`
(`GET /jobs/{id}` against a hello-world endpoint on the same server stack)
and `cron` (a million enabled cron jobs: ready time, RSS, idle CPU).
`report` prints one table of every goal with its figure and its ratio.
Every scenario sends traffic to 127.0.0.1 only, is bounded in count and
time, and stops what it starts.
"""
