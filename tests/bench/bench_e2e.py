"""End to end: jobsd beside APScheduler and bare client loops, every figure of issue 11.

The scenarios, their figures and their options are in `tests/bench/e2e/`
(one module each) and in tests/bench/README.md. It is not a test.

    .venv/bin/python tests/bench/bench_e2e.py [burst paced runnow api cron] [options]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.e2e.main import main

if __name__ == "__main__":
    sys.exit(main())
