"""Small test doubles and data shared across the suite: `from tests.helpers import Clock`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parent / "samples"


class Clock:
    """A settable UTC clock, injected wherever code asks for "now"; tests move it by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move time forward: `advance(5)` or `advance(hours=23, minutes=30)`."""
        self.now += timedelta(seconds=seconds, **delta)


class Sleeps:
    """Records requested sleeps instead of sleeping (inject as `sleep=`)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def sample(rel: str) -> Any:
    """A JSON API sample from tests/samples (`sample("nova/server.json")`)."""
    return json.loads((SAMPLES / rel).read_text())
