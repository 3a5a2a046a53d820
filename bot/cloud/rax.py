"""Rackspace scheduled images (rax-si): the schedule type and its validation.

`RaxSchedule` belongs with the other typed results; it lives here until bot/cloud/models.py
takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.ids import MAX_KEEP as MAX_RETENTION
from commands.ids import WEEKDAYS as DAYS


@dataclass(frozen=True)
class RaxSchedule:
    """A server's Rackspace image schedule: daily when `day_of_week` is None, else weekly."""

    retention: int
    day_of_week: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retention, bool) or not 1 <= self.retention <= MAX_RETENTION:
            raise ValueError(f"retention must be between 1 and {MAX_RETENTION}")
        if self.day_of_week is not None and self.day_of_week not in DAYS:
            raise ValueError("day_of_week must be one of " + ", ".join(DAYS))

    def to_body(self) -> dict[str, Any]:
        """The `{"image_schedule": ...}` request body."""
        inner: dict[str, Any] = {"retention": self.retention}
        if self.day_of_week is not None:
            inner["day_of_week"] = self.day_of_week
        return {"image_schedule": inner}


def parse_schedule(body: Any) -> RaxSchedule:
    """A RaxSchedule from `{"image_schedule": {"retention": N, "day_of_week"?: DAY}}`."""
    inner = body.get("image_schedule") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        raise ValueError("not an image_schedule document")
    day = inner.get("day_of_week")
    return RaxSchedule(retention=int(inner["retention"]),
                       day_of_week=str(day).upper() if day else None)
