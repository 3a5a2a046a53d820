"""Small test doubles shared across the suite (import them: `from tests.helpers import Clock`)."""

from __future__ import annotations

from datetime import datetime, timedelta


class Clock:
    """A settable UTC clock, injected wherever code asks for "now"; tests move it by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move time forward: `advance(5)` or `advance(hours=23, minutes=30)`."""
        self.now += timedelta(seconds=seconds, **delta)
