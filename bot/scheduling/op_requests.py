"""Proposing schedule operations (pause, resume, run-now, skip-next) as change requests.

The shell around the pure `operations`: resolve the schedule the command names (one function,
`schedule_target`), refuse privately what cannot apply (pausing a paused schedule, ...), and
write a pending change request whose approval message says what it will do. The request is
decided by `ChangeRequests.decide` like a schedule change (same rules, same audit); kind "set"
with the current spec as both old and new, so a schedule changed meanwhile makes it stale.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import commands
from bot.cloud.models import Server
from bot.errors import CloudError, ImagebotError, PermissionDenied
from bot.policy import ChannelPolicy
from bot.scheduling.age_retention import preview_by_count_and_age
from bot.scheduling.approvals import ChangeRequest
from bot.scheduling.fleet_ops import FleetNow, fleet_target, operation_blocks
from bot.scheduling.fleet_requests import refuse_fleet, with_actions_last
from bot.scheduling.operations import OpState, ScheduleOp, approved_fields, next_slot, refusal
from bot.scheduling.ports import CloudPort, Context
from bot.scheduling.proposals import Proposal, proposer_policy, standard_card, write_request
from bot.scheduling.retention import (
    RetainableImage,
    kept_because_protected,
    retainable_from_image,
    would_delete_at_next_success,
)
from bot.scheduling.rows import (
    active_spec,
    op_state,
    schedule_spec,
    spec_to_dict,
    timing,
)
from bot.store import RequestRow, ScheduleRow, Store
from commands.targets import FleetTarget

log = logging.getLogger(__name__)


async def retention_preview(cloud: CloudPort, server_id: str, keep: int, schedule_id: str, *,
                            keep_days: int | None = None, now: datetime | None = None
                            ) -> tuple[list[RetainableImage], list[RetainableImage]]:
    """(what the next successful run would delete, the schedule's protected images it keeps)
    for the approval message; both empty when the cloud cannot list (the message shows less,
    the decision is unaffected). With `keep_days` (and `now`) age counts too."""
    try:
        images = await cloud.list_images(server_id=server_id)
    except CloudError as exc:
        log.warning("could not list images for the approval message: %s", exc)
        return [], []
    found = [r for r in map(retainable_from_image, images) if r is not None]
    if keep_days is not None and now is not None:  # `--keep-days`: see age_retention
        doomed = preview_by_count_and_age(found, keep=keep, keep_days=keep_days,
                                          schedule_id=schedule_id, now=now)
    else:
        doomed = would_delete_at_next_success(found, keep, schedule_id)
    return doomed, kept_because_protected(found, schedule_id)


async def schedule_target(ctx: Context, pol: ChannelPolicy, ref: str, channel: str,
                          target: FleetTarget | None = None
                          ) -> tuple[Server | FleetNow, ScheduleRow]:
    """The server a schedule command names (or the fleet, `target`) and its active schedule
    made in `channel`.

    The one lookup of an operation's target: a server name or UUID, as `schedule` takes it, or
    a fleet target (`web-*`, `meta:role=web`: `fleet_ops.fleet_target`, never `find_server`;
    the channel's server patterns apply to each server it matches). A schedule of another
    channel is answered like none, so nothing leaks."""
    if target is not None:
        return await fleet_target(ctx, pol, target, channel)
    server = await ctx.cloud(pol.cloud).find_server(ref)
    if not pol.may_touch(server.name):
        raise PermissionDenied(f"This channel may not image {server.name!r}.")
    row = await ctx.store.run(Store.schedule_for_server, server.id)
    if row is None or row.status != "active" or row.channel != channel:
        raise ImagebotError(f"{server.name} has no schedule in this channel; "
                            f"`/image schedule {server.name} daily …` sets one.")
    return server, row


def operation_check(op_kind: str, row: ScheduleRow, now: datetime,
                    window: timedelta | None = None,
                    asked_slot: datetime | None = None) -> tuple[str | None, datetime | None]:
    """(why the operation cannot apply now or None, the schedule's next slot)."""
    state: OpState = op_state(row)
    spec = schedule_spec(row)
    when = timing(row) if window is None else timing(row, window)
    upcoming = next_slot(spec, state, when, now=now)
    why = refusal(op_kind, state, schedule_id=row.id,  # type: ignore[arg-type]
                  server=row.server_name or row.server_ref, upcoming=upcoming,
                  asked_slot=asked_slot)
    return why, upcoming


class OperationRequests:
    """Proposals of schedule operations, from committed SQLite state."""

    def __init__(self, ctx: Context, window: timedelta | None = None) -> None:
        self.ctx = ctx
        self.window = window  # the loop's catch-up window (which slot is next)

    async def propose(self, request: commands.ScheduleOperation, *, user: str, channel: str,
                      channel_name: str | None = None) -> RequestRow:
        """Write a pending change request for the operation and queue its approval message.

        Raises `PermissionDenied` (policy), cloud errors (unknown server) or `ImagebotError`
        with the private answer (no schedule here, already paused, nothing to resume, ...)."""
        ctx = self.ctx
        if request.target is not None:  # a fleet: the patterns apply per matched server
            pol = ctx.channel_policy(channel, channel_name)
            refusal_text = await refuse_fleet(pol, user, ctx.member_groups)
            if refusal_text:
                raise PermissionDenied(refusal_text)
        else:
            pol = await proposer_policy(ctx, user, request.server.text, channel, channel_name,
                                        "change schedules")
        server, schedule = await schedule_target(ctx, pol, request.server.text, channel,
                                                 request.target)
        why, upcoming = operation_check(request.operation, schedule, ctx.clock(), self.window)
        if why:
            raise ImagebotError(why)
        op = ScheduleOp(request.operation, schedule.id,
                        upcoming if request.operation == "skip-next" else None)
        spec = active_spec(schedule)
        doomed: list[RetainableImage] = []
        kept: list[RetainableImage] = []
        fleet_blocks = (await operation_blocks(ctx.cloud(pol.cloud), server, op.kind, spec,
                                               schedule.id, ctx.clock())
                        if isinstance(server, FleetNow) else [])
        if op.kind == "run-now" and spec is not None and not isinstance(server, FleetNow):
            doomed, kept = await retention_preview(ctx.cloud(pol.cloud), server.id, spec.keep,
                                                   schedule.id, keep_days=spec.keep_days,
                                                   now=ctx.clock())
        rules = pol.approval_rules()
        stored_spec = (spec_to_dict(spec) | ({"verify": True} if schedule.verify else {})
                       if spec else None)
        return await write_request(ctx, Proposal(
            kind="set", server_id=server.id, server_ref=request.server.text,
            server_name=server.name, old=spec, new=spec, old_spec=stored_spec,
            new_spec=stored_spec, user=user, channel=channel, channel_name=channel_name,
            rules=rules, operation=op, audit={"operation": op.kind, **op.detail()},
            card=standard_card(server.name, rules, pol.notify_channel, doomed, kept,
                               wrap=lambda card: with_actions_last(card, fleet_blocks))))


def operation_refused_at_approval(request: ChangeRequest, schedule: ScheduleRow | None,
                                  now: datetime) -> str | None:
    """Why an operation request can no longer be approved (the schedule's state moved: it was
    paused meanwhile, the slot to skip passed, ...), or None. A changed or removed schedule is
    refused before, as stale, like any change request."""
    op = request.operation
    if op is None or schedule is None:
        return None
    why, _ = operation_check(op.kind, schedule, now, asked_slot=op.slot)
    return f"{request.id} is out of date: {why}" if why else None


def operation_values(row: RequestRow, done: ChangeRequest, now: datetime) -> dict[str, object]:
    """The schedule columns an approved operation writes (upserted by server id)."""
    assert done.operation is not None
    return {"server_id": row.server_id,
            **approved_fields(done.operation, row.id, done.decided_at or now)}
