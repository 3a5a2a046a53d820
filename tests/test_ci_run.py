""".ci/run: loud on any failure, and always ends with the pytest summary line.

Run for real (bash, tee, grep) with `make` and `chromium` replaced on PATH by small scripts
that play a passing or failing `make test`, so the test does not run the suite inside itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_MAKE = """#!/usr/bin/env bash
[ "$1" = test ] || exit 99
echo "ruff: All checks passed!"
echo "CI=$CI"
echo "...F..                                                   [100%]"
printf '%s\\n' "$FAKE_SUMMARY"
exit "$FAKE_STATUS"
"""


def ci_run(tmp_path: Path, summary: str, status: int) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("make", FAKE_MAKE), ("chromium", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", FAKE_SUMMARY=summary,
               FAKE_STATUS=str(status))
    return subprocess.run([str(ROOT / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_failing_test_fails_the_run_loudly_with_the_summary_last(tmp_path: Path) -> None:
    done = ci_run(tmp_path, "1 failed, 612 passed, 2 skipped in 151.20s (0:02:31)", 2)
    assert done.returncode == 2
    assert "CI FAILED" in done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == \
        "pytest: 1 failed, 612 passed, 2 skipped in 151.20s (0:02:31)"
    assert "CI=1" in done.stdout  # the Hypothesis "ci" profile is selected


def test_a_green_run_passes_and_prints_the_summary(tmp_path: Path) -> None:
    done = ci_run(tmp_path, "613 passed, 2 skipped in 150.01s (0:02:30)", 0)
    assert done.returncode == 0, done.stderr
    assert "pytest: 613 passed, 2 skipped in 150.01s (0:02:30)" in done.stdout
    assert "CI FAILED" not in done.stderr


@pytest.mark.parametrize("status", [1, 2])
def test_a_run_that_stops_before_pytest_says_so(tmp_path: Path, status: int) -> None:
    done = ci_run(tmp_path, "Found 3 errors in 2 files (checked 41 source files)", status)
    assert done.returncode == status
    assert "pytest: no summary" in done.stdout and "CI FAILED" in done.stderr
