"""Shared test configuration: Hypothesis profiles.

CI must not depend on luck: with `CI` set, the "ci" profile derandomizes (the same examples
every run), keeps no example database (a fresh clone has none anyway) and prints the blob to
reproduce any failure. Locally the "dev" profile keeps exploring new examples and remembers
failing ones in .hypothesis/. Bugs Hypothesis finds stay as `@example`s on their tests.
(hypothesis.readthedocs.io, "Settings profiles".)
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))
