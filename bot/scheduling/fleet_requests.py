"""Proposing a fleet schedule (`/image schedule web-* daily ...`): a change request like any
other (approval, expiry, audit: `requests.ChangeRequests`), stored under the fleet's key
(`fleet:web-*`) instead of a server id. Its approval message also lists the servers the target
matches today (and which the channel policy would skip), and per server what retention would
delete at the next run, marking the protected images it keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import commands
from bot.cloud.models import Server
from bot.errors import CloudError, ImagebotError, PermissionDenied
from bot.policy import ChannelPolicy, GroupResolver, allowed_to_create
from bot.scheduling.age_retention import preview_by_count_and_age
from bot.scheduling.digest import approval_blocks
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.fleet_plan import fleet_key, resolve
from bot.scheduling.ports import CloudPort, Context
from bot.scheduling.proposals import Proposal, standard_card, write_request
from bot.scheduling.retention import RetainableImage, retainable_from_image
from bot.scheduling.rows import (
    active_spec,
    spec_of,
    spec_to_dict,
)
from bot.store import RequestRow, Store

log = logging.getLogger(__name__)


def fleet_spec_extra(request: commands.Schedule) -> dict[str, Any]:
    """What a stored spec carries besides `spec_to_dict` (absent when not asked, so older
    specs compare equal): `verify` and the fleet `target`."""
    extra: dict[str, Any] = {}
    if request.verify:
        extra["verify"] = True
    if request.target is not None:
        extra["target"] = request.target.text
    return extra


def with_actions_last(message: dict[str, Any], extra: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`message` with `extra` blocks inserted before its buttons (or at the end). The one-server
    retention line goes: the fleet blocks say retention per server."""
    blocks = [b for b in message.get("blocks") or []
              if not (extra and b.get("type") == "context"
                      and "Retention keeps the newest" in str(b))]
    at = next((i for i, b in enumerate(blocks) if b.get("type") == "actions"), len(blocks))
    return message | {"blocks": blocks[:at] + list(extra) + blocks[at:]}


async def retention_previews(cloud: CloudPort, servers: Sequence[Server], spec: ScheduleSpec,
                             keep_days: int | None, schedule_id: str | None, now: datetime
                             ) -> tuple[dict[str, list[RetainableImage]], dict[str, list[str]]]:
    """Per server: what the next run's retention would delete, and the protected images."""
    doomed: dict[str, list[RetainableImage]] = {}
    protected: dict[str, list[str]] = {}
    if schedule_id is None:
        return doomed, protected  # a new schedule has made no images yet
    for server in servers:
        try:
            images = await cloud.list_images(server_id=server.id)
        except CloudError as exc:  # the message just shows less; the decision is unaffected
            log.warning("could not list images of %s for the approval message: %s",
                        server.name, exc)
            continue
        found = [r for r in map(retainable_from_image, images) if r is not None]
        doomed[server.name] = preview_by_count_and_age(
            found, keep=spec.keep, keep_days=keep_days, schedule_id=schedule_id, now=now)
        protected[server.name] = [i.name or i.id for i in found
                                  if i.protected and i.schedule_id == schedule_id]
    return doomed, protected


async def refuse_fleet(policy: ChannelPolicy, user: str,
                       member_groups: GroupResolver | None) -> str | None:
    """Why `user` may not propose a fleet schedule here, or None. The channel's server
    patterns are applied to each matched server instead (a server it may not touch is
    skipped, and said so), since a target such as `meta:role=web` is not a server name."""
    if not await allowed_to_create(policy, user, member_groups):
        return f"You may not propose schedules in this channel ({policy.who_may_create()} may)."
    return None


async def propose_fleet(ctx: Context, request: commands.Schedule | commands.ScheduleOff, *,
                        user: str, channel: str, channel_name: str | None) -> RequestRow:
    """The change request of a fleet schedule (see the module docstring)."""
    assert request.target is not None
    target = request.target
    pol = ctx.channel_policy(channel, channel_name)
    refusal = await refuse_fleet(pol, user, ctx.member_groups)
    if refusal:
        raise PermissionDenied(refusal)
    cloud = ctx.cloud(pol.cloud)
    found = resolve(target, await cloud.list_servers(), pol.may_touch)
    key = fleet_key(target)
    existing = await ctx.store.run(Store.schedule_for_server, key)
    old = active_spec(existing)
    new: ScheduleSpec | None = None
    extra: dict[str, Any] = {}
    if isinstance(request, commands.ScheduleOff):
        if old is None:
            raise ImagebotError(f"{target.text} has no schedule to turn off.")
    else:
        new = spec_of(request)
        extra = fleet_spec_extra(request)
        if new == old and existing is not None and request.verify == existing.verify \
                and request.keep_days == existing.keep_days:
            raise ImagebotError(f"{target.text} already has exactly that schedule.")
    rules = pol.approval_rules()
    now = ctx.clock()
    extra_blocks: list[dict[str, Any]] = []
    if new is not None:
        keep_days = request.keep_days if isinstance(request, commands.Schedule) else None
        doomed, protected = await retention_previews(cloud, found.members, new, keep_days,
                                                     existing.id if existing else None, now)
        extra_blocks = approval_blocks([s.name for s in found.members], found.skipped, doomed,
                                       protected)
    return await write_request(ctx, Proposal(
        kind="off" if new is None else "set", server_id=key, server_ref=target.text,
        server_name=target.text, old=old, new=new,
        old_spec=spec_to_dict(old) if old else None,
        new_spec=(spec_to_dict(new) | extra) if new else None,
        user=user, channel=channel, channel_name=channel_name, rules=rules, noun="fleet",
        audit={"target": target.text, "matches": [s.name for s in found.members],
               "skipped": list(found.skipped)},
        card=standard_card(target.text, rules, pol.notify_channel,
                           wrap=lambda card: with_actions_last(card, extra_blocks))))
