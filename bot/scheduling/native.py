"""Rackspace Scheduled Images (`/image schedule <server> ... --native`): the cloud's own
schedule (`rax-si-image-schedule`, bot/cloud/rax.py), changed through the same change requests,
approvals and audit as the bot's schedules.

- `propose` (after the ack): the policy check, the server, the cloud's schedule as it is now
  (which also finds out whether the cloud has the service at all: `NoScheduledImages`), then a
  change request row with `native = 1` and its approval message (native_messages.py), written
  by `proposals.write_request` like every request (so its approvers get DM copies). Its
  specs are `ScheduleSpec(..., native=True)`, so expiry, supersede and decide treat it like any
  request; it supersedes only native requests for the server.
- `apply` (the scheduler loop, each tick): every approved native request not yet carried out
  is set on (or deleted from) the cloud, unless the cloud's schedule is no longer the one it
  was proposed against (changed in the control panel meanwhile: `stale_reason`, nothing is
  written); the answer is recorded once with an audit row and a reply in the request's thread.
  Both calls are idempotent (a POST replaces, a DELETE of a disabled schedule is fine), so a
  crash between the call and the record only repeats it (the cloud then already holds the new
  schedule, which is not stale). An unavailable cloud is tried again next tick; a refusal is
  recorded and said.
- `listing` (after the ack of `/image schedules`): each server the channel's policy may touch,
  read from the cloud, so a schedule set in the control panel shows up too.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, time
from typing import Any, Protocol, cast

import commands
from bot.cloud.models import Server
from bot.cloud.rax import RaxSchedule
from bot.errors import (
    CloudError,
    CloudUnavailable,
    ImagebotError,
    NoScheduledImages,
    PermissionDenied,
)
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.native_messages import (
    FAILED,
    OK,
    STALE,
    NativeLine,
    applied_reply,
    brief,
    native_approval_message,
    native_listing,
)
from bot.scheduling.ports import Context
from bot.scheduling.proposals import Proposal, proposer_policy, write_request
from bot.scheduling.rows import label, spec_from_dict, spec_to_dict, to_request
from bot.store import AuditEntry, OutboxItem, RequestRow, Store
from bot.vocabulary import OutboxKind

log = logging.getLogger(__name__)

MAX_LISTED = 50  # servers read per listing (one GET each: the service has no bulk read)
READ_AT_ONCE = 4


class NativePort(Protocol):
    """The cloud calls native mode makes (`CloudClient` has them)."""

    async def find_server(self, ref: str) -> Server: ...

    async def list_servers(self, limit: int | None = None) -> list[Server]: ...

    def may_have_rax_schedules(self) -> bool: ...

    async def has_rax_schedules(self) -> bool: ...

    async def get_rax_schedule(self, server_id: str) -> RaxSchedule | None: ...

    async def set_rax_schedule(self, server_id: str, retention: int,
                               day_of_week: str | None = None) -> RaxSchedule: ...

    async def delete_rax_schedule(self, server_id: str) -> None: ...


def native_spec(frequency: str, day: str | None, keep: int) -> ScheduleSpec:
    """The spec of a native schedule (no time of day: 00:00 UTC placeholders)."""
    return ScheduleSpec(frequency, day, time(0, 0), "UTC", keep,  # type: ignore[arg-type]
                        native=True)


def spec_of_cloud(schedule: RaxSchedule | None) -> ScheduleSpec | None:
    """The cloud's schedule as a native spec (None: disabled)."""
    if schedule is None:
        return None
    frequency = "weekly" if schedule.day_of_week else "daily"
    return native_spec(frequency, schedule.day_of_week, schedule.retention)


def stale_reason(row: RequestRow, now: ScheduleSpec | None) -> str | None:
    """Why a native request must not be applied (the cloud's schedule changed since it was
    proposed, and not to what it asks), or None."""
    was = spec_from_dict(row.old_spec) if row.old_spec else None
    asked = spec_from_dict(row.new_spec) if row.new_spec else None
    if now in (was, asked):
        return None
    return (f"the schedule of {label(row)} was changed in the control panel since this "
            f"request (was: {brief(was)}, now: {brief(now)}); propose again")


def request_message(row: RequestRow, who_may_approve: str, now: datetime) -> dict[str, Any]:
    """The message of a native request row as it is now (posted, then rewritten)."""
    return native_approval_message(to_request(row), label(row), who_may_approve, now,
                                   result=row.apply_result, applied_at=row.applied_at)


class NativeDesk:
    """Native proposals, their application on the cloud and the cloud-read listing."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.clouds_down: dict[str | None, str] = {}

    def cloud(self, name: str | None) -> NativePort:
        """The channel's cloud with the rax-si calls."""
        return cast(NativePort, self.ctx.cloud(name))

    # --- propose ---------------------------------------------------------------------------

    async def propose(self, request: commands.NativeSchedule | commands.NativeScheduleOff, *,
                      user: str, channel: str, channel_name: str | None = None) -> RequestRow:
        """A change request for the cloud's own schedule, and its approval message.

        Raises `PermissionDenied`, `NoScheduledImages` (not a Rackspace cloud), cloud errors
        (unknown server) or `ImagebotError` (nothing to change)."""
        ctx = self.ctx
        pol = await proposer_policy(ctx, user, request.server.text, channel, channel_name,
                                    "propose schedules")
        cloud = self.cloud(pol.cloud)
        if not await cloud.has_rax_schedules():  # before the server: this says more
            raise NoScheduledImages("This channel's cloud has no Rackspace Scheduled Images "
                                    "(it does not list the rax-si-image-schedule extension).")
        server = await cloud.find_server(request.server.text)
        if not pol.may_touch(server.name):
            raise PermissionDenied(f"This channel may not image {server.name!r}.")
        old = spec_of_cloud(await cloud.get_rax_schedule(server.id))
        new: ScheduleSpec | None = None
        if isinstance(request, commands.NativeScheduleOff):
            if old is None:
                raise ImagebotError(f"{server.name} has no Rackspace Scheduled Images to turn "
                                    "off.")
        else:
            new = native_spec(request.frequency, request.day, request.keep)
            if new == old:
                raise ImagebotError(f"{server.name} already has exactly those Rackspace "
                                    "Scheduled Images.")
        rules = pol.approval_rules()
        who = rules.who_may_approve(user)
        return await write_request(ctx, Proposal(
            kind="off" if new is None else "set", server_id=server.id,
            server_ref=request.server.text, server_name=server.name, old=old, new=new,
            old_spec=spec_to_dict(old) if old else None,
            new_spec=spec_to_dict(new) if new else None, user=user, channel=channel,
            channel_name=channel_name, rules=rules, native=True, audit={"native": True},
            card=lambda req, now: native_approval_message(req, server.name, who, now)))

    # --- apply (the scheduler loop) --------------------------------------------------------

    async def apply(self) -> None:
        """Carry out every approved native request not yet applied (one cloud call each)."""
        failed: set[str | None] = set()
        for row in await self.ctx.store.run(Store.native_to_apply):
            pol = self.ctx.channel_policy(row.channel, row.channel_name)
            if pol.cloud in failed:
                continue  # asked once per tick
            try:
                result = await self._call(row, pol.cloud)
            except CloudUnavailable as exc:
                failed.add(pol.cloud)
                if pol.cloud not in self.clouds_down:
                    log.warning("cloud %s unavailable; native change %s waits: %s",
                                pol.cloud or "default", row.id, exc)
                self.clouds_down[pol.cloud] = str(exc)
                continue
            self.clouds_down.pop(pol.cloud, None)
            await self._record(row, result)

    async def _call(self, row: RequestRow, cloud_name: str | None) -> str:
        """`ok: ...`, `failed: <why>` (a refusal) or `stale: <why>` (the cloud's schedule is
        no longer the one the request was proposed against: nothing is written);
        CloudUnavailable passes (retry)."""
        cloud = self.cloud(cloud_name)
        try:
            # The stale check of a native request: its `old_spec` is what the cloud said when
            # it was proposed. The resource carries only its retention and day, no version to
            # write against (docs.rackspace.com/docs/cloud-servers/v2/extensions/
            # ext-scheduled-images/), so this read is as close to the write as it gets. A schedule already equal to the new one is the
            # change made before a crash (or the same wish in the control panel): carry on.
            now_spec = spec_of_cloud(await cloud.get_rax_schedule(row.server_id))
            why = stale_reason(row, now_spec)
            if why is not None:
                return f"{STALE}: {why}"
            if row.kind == "off":
                await cloud.delete_rax_schedule(row.server_id)
                return f"{OK}: disabled"
            spec = dict(row.new_spec or {})
            got = await cloud.set_rax_schedule(row.server_id, int(spec["keep"]),
                                               spec.get("day"))
            return f"{OK}: retention {got.retention}" + (
                f", {got.day_of_week}" if got.day_of_week else "")
        except CloudUnavailable:
            raise
        except (CloudError, ImagebotError) as exc:
            return f"{FAILED}: {exc.user_message()}"

    async def _record(self, row: RequestRow, result: str) -> None:
        ctx = self.ctx
        now = ctx.clock()
        posted = await ctx.store.run(Store.posted_message, row.id)
        channel, thread = posted if posted else (row.channel, None)
        reply = applied_reply(to_request(row), label(row), result, now)
        if thread:
            reply = reply | {"thread_ts": thread}
        ok = result.startswith(OK)
        action = (("native_off" if row.kind == "off" else "native_set") if ok
                  else "native_stale" if result.startswith(STALE) else "native_failed")
        recorded = await ctx.store.run(Store.record_native_applied, row.id, result=result,
            audit=[AuditEntry(action, row.server_id, f"request:{row.id}",
                              {"request": row.id, "result": result, "spec": row.new_spec})],
            outbox=[OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=channel, payload=reply,
                               thread_key=f"{row.id}:native")])
        if recorded:
            log.info("native change %s on %s: %s", row.id, row.server_id, result)
            ctx.on_new_work()

    # --- listing ---------------------------------------------------------------------------

    def wanted(self, channel: str, channel_name: str | None) -> bool:
        """Whether `/image schedules` here should read the cloud (no call: a Rackspace login
        whose extension was not already found missing)."""
        pol = self.ctx.channel_policy(channel, channel_name)
        probe = getattr(self.ctx.cloud(pol.cloud), "may_have_rax_schedules", None)
        return bool(probe and probe())

    async def listing(self, server: str | None, *, channel: str,
                      channel_name: str | None) -> str:
        """The native part of `/image schedules`: read from the cloud for the servers the
        channel's policy may touch; a short note when the cloud cannot be read."""
        pol = self.ctx.channel_policy(channel, channel_name)
        cloud = self.cloud(pol.cloud)
        try:
            if not await cloud.has_rax_schedules():
                return "This cloud does not offer Rackspace Scheduled Images."
            servers = [s for s in await cloud.list_servers() if pol.may_touch(s.name)
                       and server in (None, s.name, s.id)]
            servers.sort(key=lambda s: s.name)
            gate = asyncio.Semaphore(READ_AT_ONCE)

            async def read(s: Server) -> NativeLine:
                async with gate:
                    return NativeLine(s.name, spec_of_cloud(await cloud.get_rax_schedule(s.id)))

            lines = await asyncio.gather(*(read(s) for s in servers[:MAX_LISTED]))
        except CloudError as exc:
            return native_listing([], unreadable=exc.user_message())
        return native_listing(lines, unchecked=max(len(servers) - MAX_LISTED, 0))
