"""Rackspace scheduled images (rax-si): the schedule type, its validation, and the calls of the
cloud client (`GET`/`POST`/`DELETE /servers/{id}/rax-si-image-schedule`, and the discovery
`GET /extensions/rax-si-image-schedule`).

Sources (rackerlabs/docs-cloud-servers api-docs/api-operations/methods/):
- post-enable-scheduled-images-servers-server-id-rax-si-scheduled-image.rst: body
  `{"image_schedule": {"retention": Int, "day_of_week"?: SUNDAY..SATURDAY}}`, retention 1..65535,
  200 with the schedule echoed;
- get-show-scheduled-images-...rst: 200/203 with the schedule, 404 `itemNotFound` "Image
  schedule does not exist for server ..." when disabled;
- delete-disable-scheduled-images-...rst: 202, no body;
- get-retrieve-details-for-the-specified-extension-extensions-alias.rst: "An unavailable
  extension issues an itemNotFound (404)" (how a cloud without the service is told apart).

`RaxSchedule` belongs with the other typed results; it lives here until bot/cloud/models.py
takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bot.cloud.config import RACKSPACE_AUTH_TYPES
from bot.cloud.edge import CloudEdge, error_for, fault_message, reads_cloud
from bot.errors import NoScheduledImages
from commands.ids import MAX_KEEP as MAX_RETENTION
from commands.ids import WEEKDAYS as DAYS

EXTENSION = "rax-si-image-schedule"


@dataclass(frozen=True)
class RaxSchedule:
    """A server's Rackspace image schedule: daily when `day_of_week` is None, else weekly."""

    retention: int
    day_of_week: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retention, bool) or not isinstance(self.retention, int) \
                or not 1 <= self.retention <= MAX_RETENTION:
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
    """A RaxSchedule from `{"image_schedule": {"retention": N, "day_of_week"?: DAY}}`, read as
    strictly as the docs write it: an Int retention, an upper-case day (ValueError else)."""
    inner = body.get("image_schedule") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        raise ValueError("not an image_schedule document")
    day = inner.get("day_of_week")
    if day is not None and not isinstance(day, str):
        raise ValueError("day_of_week is not a string")
    return RaxSchedule(retention=inner["retention"], day_of_week=day)


class RaxSchedules(CloudEdge):
    """The Rackspace scheduled-images part of `CloudClient`."""

    _rax_si: bool | None = None  # learnt once per client by `has_rax_schedules`

    def _schedule_path(self, server_id: str) -> str:
        return f"/servers/{quote(server_id, safe='')}/{EXTENSION}"

    @reads_cloud
    async def has_rax_schedules(self) -> bool:
        """Whether this cloud runs Rackspace Scheduled Images: its extension is listed
        (`GET /extensions/rax-si-image-schedule` 200; 404 = unavailable). Asked once."""
        if self._rax_si is None:
            resp = await self._call("compute", "GET", f"/extensions/{EXTENSION}")
            if resp.status_code == 404:
                self._rax_si = False
            elif resp.status_code == 200:
                ext = resp.json()["extension"]
                self._rax_si = ext["alias"] == EXTENSION
            else:
                raise error_for(resp, "extension", EXTENSION)
        return self._rax_si

    def may_have_rax_schedules(self) -> bool:
        """Without a call: whether asking is worth it (a Rackspace login, and the extension
        not already found missing). `has_rax_schedules` is the answer."""
        return self.config.auth_type in RACKSPACE_AUTH_TYPES and self._rax_si is not False

    async def _require_extension(self) -> None:
        if not await self.has_rax_schedules():
            raise NoScheduledImages(f"The cloud {self.config.name!r} has no Rackspace "
                                    "Scheduled Images (its compute API does not list the "
                                    f"{EXTENSION} extension).")

    @reads_cloud
    async def get_rax_schedule(self, server_id: str) -> RaxSchedule | None:
        """The server's schedule, or None when scheduled images are disabled (the documented
        404 "Image schedule does not exist for server ..."). `NoScheduledImages` on a cloud
        without the extension."""
        await self._require_extension()
        resp = await self._call("compute", "GET", self._schedule_path(server_id))
        if resp.status_code == 404:
            if "image schedule does not exist" in fault_message(resp).lower():
                return None
            raise error_for(resp, "server", server_id)
        if resp.status_code not in (200, 203):
            raise error_for(resp, "server", server_id)
        return parse_schedule(resp.json())

    @reads_cloud
    async def set_rax_schedule(self, server_id: str, retention: int,
                               day_of_week: str | None = None) -> RaxSchedule:
        """Enable (or switch) daily, or weekly when `day_of_week` is given, images; the
        schedule the cloud echoes (documented: 200)."""
        # Our own input is normalised (`sat` -> SATURDAY is the grammar's job, case here);
        # what the cloud sends back is read strictly.
        wanted = RaxSchedule(retention, day_of_week.upper() if day_of_week else None)
        await self._require_extension()
        resp = await self._call("compute", "POST", self._schedule_path(server_id),
                                json=wanted.to_body())
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        got = parse_schedule(resp.json())
        if got != wanted:
            raise ValueError(f"the cloud echoed {got} for {wanted}")
        return got

    @reads_cloud
    async def delete_rax_schedule(self, server_id: str) -> None:
        """Disable scheduled images (documented: 202); already disabled is fine."""
        await self._require_extension()
        resp = await self._call("compute", "DELETE", self._schedule_path(server_id))
        if resp.status_code == 404 and \
                "image schedule does not exist" in fault_message(resp).lower():
            return
        if resp.status_code != 202:
            raise error_for(resp, "server", server_id)
