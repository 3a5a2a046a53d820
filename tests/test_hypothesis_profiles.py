"""The Hypothesis profile follows the `CI` variable (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import tests.conftest; from hypothesis import settings; s = settings(); "
         "print(s.derandomize, s.database is None, s.print_blob)")


def profile_under(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    return subprocess.run([sys.executable, "-c", PROBE], env=clean | env, cwd=ROOT,
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def test_ci_is_derandomized_without_a_database() -> None:
    assert profile_under({"CI": "true"}) == "True True True"


def test_locally_hypothesis_keeps_exploring() -> None:
    assert profile_under({}) == "False False True"
