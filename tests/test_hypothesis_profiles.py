"""The Hypothesis profile each environment gets (tests/conftest.py). Checked in a fresh
interpreter, as pytest starts one, since the profile is chosen at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOW = ("import tests.conftest; from hypothesis import settings as s; d = s.default; "
        "print(s._current_profile, d.derandomize, d.database is None, d.print_blob)")


def loaded(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    return subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env={**clean, **env},
                          check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_ci_set_selects_the_derandomized_profile_without_a_database(value: str) -> None:
    assert loaded(CI=value) == "ci True True True"


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_locally_the_dev_profile_keeps_exploring(value: str) -> None:
    assert loaded(CI=value) == "dev False False True"
    assert loaded() == "dev False False True"


def test_an_explicit_profile_wins() -> None:
    assert loaded(CI="1", HYPOTHESIS_PROFILE="dev").startswith("dev ")
