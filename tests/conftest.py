"""Shared test set-up: the Hypothesis profiles.

CI must not depend on luck: with `CI` set the "ci" profile is loaded (derandomized, so every
run tries the same examples; no example database, so a fresh clone behaves like any other;
a failure prints the blob that reproduces it). Locally the "dev" profile keeps exploring with
random examples and remembers failures in .hypothesis/. HYPOTHESIS_PROFILE picks one by name.
A property test that finds a bug keeps it as an `@example`.
(hypothesis.readthedocs.io, "Settings profiles".)

Shared test doubles (Clock, Sleeps, sample) live in tests/helpers.py, and what the end-to-end
tests read off a running system in tests/e2e/helpers.py: modules to import, unlike a conftest."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Both from Hypothesis's own defaults, not from whatever it loaded at import (it loads its
# built-in "ci" profile whenever a CI variable exists, even CI="").
_BASE = settings.get_profile("default")
# No timing in CI either: a shared 2-core runner must not fail a test by being slow.
settings.register_profile("ci", _BASE, derandomize=True, database=None, print_blob=True,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", _BASE, print_blob=True)


def profile_name(env: dict[str, str] | os._Environ[str]) -> str:
    """The profile for this environment: an explicit HYPOTHESIS_PROFILE, else "ci" when `CI`
    is set to anything but empty/0/false, else "dev"."""
    if env.get("HYPOTHESIS_PROFILE"):
        return env["HYPOTHESIS_PROFILE"]
    return "ci" if env.get("CI", "").strip().lower() not in ("", "0", "false", "no") else "dev"


settings.load_profile(profile_name(os.environ))
