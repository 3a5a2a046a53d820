"""`python -m bench.reliability`: the reliability suite at full size; one summary line per case.

`--quick` runs the sizes `make test` uses. `reader` keeps another process reading and backing up
the database (sqlite3 backup API) while the bot works, then SIGKILLs it. Two crash cases: `kill9` runs `imagebot run --http` as
its own process (cloud and Slack emulator in processes of their own) and kills it with SIGKILL;
`crash` restarts the bot in-process (loops cancelled mid-flight, a new runtime on the same DB),
which reaches more moments per second."""

from __future__ import annotations

import asyncio
import sys
import time

from bench import reliability_cases as cases
from bench.hostile import hostile
from bench.kill9 import kill9
from bench.outside_reader import outside_reader

FULL = (
    ("kill9", lambda: kill9(n_jobs=50, kills=20, speed=50.0)),
    ("reader", lambda: outside_reader(n_jobs=50, batches=5, speed=50.0)),
    ("crash", lambda: cases.crash_restart(n_jobs=50, kills=20, speed=100.0)),
    ("cloud", lambda: cases.cloud_faults(speed=200.0, rounds=2)),
    ("slack", lambda: cases.slack_side(outage=60.0, storm=100, jobs_each=5)),
    ("flaky", lambda: cases.flaky(jobs_each=5)),
    ("fuzz", lambda: cases.fuzz(n=10_000, loopback=True, batch=20)),
    ("secrets", lambda: cases.secrets()),
    ("hostile", lambda: hostile(big=20, big_mb=100, slow=200, flood=600, forged=200,
                                genuine=10, max_connections=256)),
)
QUICK = (
    ("kill9", lambda: kill9(n_jobs=6, kills=3, speed=50.0, max_gap=0.5)),
    ("reader", lambda: outside_reader(n_jobs=6, batches=3, speed=50.0)),
    ("crash", lambda: cases.crash_restart(n_jobs=8, kills=5, speed=200.0, max_gap=0.3)),
    ("cloud", lambda: cases.cloud_faults(speed=200.0)),
    ("slack", lambda: cases.slack_side(outage=2.0, storm=6, jobs_each=2)),
    ("flaky", lambda: cases.flaky(jobs_each=2)),
    ("fuzz", lambda: cases.fuzz(n=300)),
    ("secrets", lambda: cases.secrets()),
    ("hostile", lambda: hostile()),
)


async def run(quick: bool) -> int:
    """Run every case; print its line and any problems; 1 if anything was lost or failed."""
    failed = 0
    for name, case in QUICK if quick else FULL:
        started = time.monotonic()
        result = await case()
        print(f"{result.line()}  ({time.monotonic() - started:.0f}s)", flush=True)
        for problem in result.problems[:10]:
            print(f"    - {problem}")
        failed += 0 if result.ok else 1
        del name
    return 1 if failed else 0


def main() -> int:
    """Entry point."""
    return asyncio.run(run("--quick" in sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
