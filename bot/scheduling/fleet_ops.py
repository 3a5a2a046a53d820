"""Schedule operations (pause, resume, run-now, skip-next) on a fleet schedule (`web-*`,
`meta:role=web`): the fleet half of `op_requests.schedule_target` and what the approval
message adds for a fleet, plus the servers a fleet's target matches now for `/image schedules`.

A fleet schedule is one schedule row (`server_id = fleet:<target>`), so once the target is
found an operation is proposed, decided and carried out as for one server: pause, resume and
skip-next write the same columns and the loop honours them before it resolves the target; a
run-now is one fleet run (`fleet.FleetRuns.start_runs_now`). The target never goes through
`find_server`: it is matched against one server listing, and the channel's server patterns
apply to each matched server (one it may not touch is named as skipped), as for a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.blocks import code
from bot.cloud.models import Server
from bot.errors import CloudError, ImagebotError
from bot.policy import ChannelPolicy
from bot.scheduling.digest import approval_blocks
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.fleet_plan import fleet_key, resolve
from bot.scheduling.fleet_requests import retention_previews
from bot.scheduling.ports import CloudPort, Context
from bot.store import ScheduleRow, Store
from commands.targets import FleetTarget, target_from_text

MAX_NAMED = 10  # `/image schedules` names this many matched servers, then counts the rest
# The ack's note under a fleet schedule: what it matches is read from the cloud after the ack.
FOLLOWS = ":busts_in_silhouette: the servers it matches now follow in a moment"


@dataclass(frozen=True)
class FleetNow:
    """A fleet target as an operation names it: `id` and `name` stand where a server's would
    (the schedule's key, the target as written), with the servers it matches today."""

    id: str
    name: str
    members: tuple[Server, ...] = ()
    skipped: tuple[str, ...] = ()


async def fleet_target(ctx: Context, pol: ChannelPolicy, target: FleetTarget,
                       channel: str) -> tuple[FleetNow, ScheduleRow]:
    """The active fleet schedule of `target` made in `channel`, and what it matches today.

    A schedule of another channel is answered like none, so nothing leaks; the schedule is
    looked up before the cloud is asked, so a typo is answered at once."""
    key = fleet_key(target)
    row = await ctx.store.run(Store.schedule_for_server, key)
    if row is None or row.status != "active" or row.channel != channel:
        raise ImagebotError(f"{target.text} has no schedule in this channel; "
                            f"`/image schedule {target.text} daily …` sets one.")
    found = resolve(target, await ctx.cloud(pol.cloud).list_servers(), pol.may_touch)
    return FleetNow(key, target.text, found.members, found.skipped), row


async def operation_blocks(cloud: CloudPort, fleet: FleetNow, kind: str,
                           spec: ScheduleSpec | None, schedule_id: str,
                           now: datetime) -> list[dict[str, Any]]:
    """The fleet part of an operation's approval message: the servers the target matches
    today and, for a run-now (the only operation that deletes), per server what retention
    would delete, marking the protected images it keeps."""
    names = [s.name for s in fleet.members]
    if kind == "run-now" and spec is not None:
        doomed, protected = await retention_previews(cloud, fleet.members, spec, spec.keep_days,
                                                     schedule_id, now)
        return approval_blocks(names, fleet.skipped, doomed, protected)
    return approval_blocks(names, fleet.skipped, {}, {}, retention=False)  # nothing runs


async def matches_now(ctx: Context, row: ScheduleRow) -> str:
    """The `/image schedules` note of a fleet schedule: the servers its target matches now,
    under its channel's policy as it is now (at most `MAX_NAMED` named)."""
    pol = ctx.channel_policy(row.channel, row.channel_name)
    try:
        servers = await ctx.cloud(pol.cloud).list_servers()
    except CloudError as exc:
        return f"matches now: unknown, the cloud did not answer ({exc.user_message()})"
    found = resolve(target_from_text(str(row.target)), servers, pol.may_touch)
    return matches_line([s.name for s in found.members], found.skipped)


def matches_line(names: Sequence[str], skipped: Sequence[str] = ()) -> str:
    """"matches now (12): `web-1`, … and 2 more" (pure, for `matches_now`)."""
    if not names:
        line = "matches no server now"
    else:
        shown = ", ".join(code(n) for n in names[:MAX_NAMED])
        more = len(names) - MAX_NAMED
        line = (f"matches now ({len(names)}): {shown}"
                + (f" and {more} more" if more > 0 else ""))
    if skipped:
        line += f"; the channel policy skips {len(skipped)}"
    return line
