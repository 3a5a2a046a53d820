"""Rackspace scheduled images (rax-si): the schedule type, its validation, and the three
calls of the cloud client (`GET`/`POST`/`DELETE /servers/{id}/rax-si-image-schedule`).

`RaxSchedule` belongs with the other typed results; it lives here until bot/cloud/models.py
takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bot.cloud.edge import CloudEdge, error_for, fault_message, reads_cloud
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


class RaxSchedules(CloudEdge):
    """The Rackspace scheduled-images part of `CloudClient`."""

    def _schedule_path(self, server_id: str) -> str:
        return f"/servers/{quote(server_id, safe='')}/rax-si-image-schedule"

    @reads_cloud
    async def get_rax_schedule(self, server_id: str) -> RaxSchedule | None:
        """The server's schedule, or None when scheduled images are disabled (404)."""
        resp = await self._call("compute", "GET", self._schedule_path(server_id))
        if resp.status_code == 404:
            if "schedule" in fault_message(resp).lower():
                return None
            raise error_for(resp, "server", server_id)
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        return parse_schedule(resp.json())

    @reads_cloud
    async def set_rax_schedule(self, server_id: str, retention: int,
                               day_of_week: str | None = None) -> RaxSchedule:
        """Enable (or switch) daily, or weekly when `day_of_week` is given, images."""
        wanted = RaxSchedule(retention, day_of_week.upper() if day_of_week else None)
        resp = await self._call("compute", "POST", self._schedule_path(server_id),
                                json=wanted.to_body())
        if resp.status_code not in (200, 201, 202):
            raise error_for(resp, "server", server_id)
        try:
            return parse_schedule(resp.json())
        except (ValueError, KeyError):
            return wanted

    @reads_cloud
    async def delete_rax_schedule(self, server_id: str) -> None:
        """Disable scheduled images; already disabled is fine."""
        resp = await self._call("compute", "DELETE", self._schedule_path(server_id))
        if resp.status_code == 404 and "schedule" in fault_message(resp).lower():
            return
        if resp.status_code not in (200, 202, 204):
            raise error_for(resp, "server", server_id)
