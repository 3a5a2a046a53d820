"""`ScheduleService`: the face of scheduling that wiring and the Slack adapter use.

It puts together the parts, which share one `Context` (store, clouds, policy, clock, ports):

- `requests.ChangeRequests`: `propose` and `decide` (the shell around the pure `approvals`);
- `loop.ScheduleLoop`: `tick` / `run` (expiry, due slots, following runs, message rewrites),
  each run's step decided by the pure `runs.run_step`;
- the answers for `/image schedules` and `/image approvals`, here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import commands
from bot.blocks import code
from bot.cloud.pool import CloudPool
from bot.policy import ChannelPolicy, GroupResolver, Policy
from bot.scheduling.due import DEFAULT_WINDOW, zone
from bot.scheduling.fleet_ops import FOLLOWS, matches_now
from bot.scheduling.loop import WARN_BEFORE, ScheduleLoop
from bot.scheduling.messages import ScheduleLine, approvals_text, schedules_text
from bot.scheduling.op_messages import schedule_notes
from bot.scheduling.op_requests import OperationRequests
from bot.scheduling.operations import next_run_slot
from bot.scheduling.ports import ChannelMembers, CloudPort, Context, GroupMembers, MessagePort
from bot.scheduling.requests import ChangeRequests, Outcome
from bot.scheduling.rows import label, op_state, schedule_spec, timing, to_request
from bot.scheduling.runs import BUSY_SPACING, BUSY_TRIES
from bot.store import AsyncStore, RequestRow, Store
from bot.vocabulary import RequestStatus

__all__ = ["Outcome", "ScheduleService"]


class ScheduleService:
    """Change requests, decisions, the scheduler loop, retention and the answers."""

    def __init__(self, store: AsyncStore, cloud: CloudPort | CloudPool, policy: Policy, *,
                 clock: Callable[[], datetime], web: MessagePort | None = None,
                 on_new_work: Callable[[], None] = lambda: None,
                 member_groups: GroupResolver | None = None,
                 directory: ChannelMembers | None = None,
                 group_members: GroupMembers | None = None,
                 window: timedelta = DEFAULT_WINDOW, warn_before: timedelta = WARN_BEFORE,
                 busy_tries: int = BUSY_TRIES, busy_spacing: timedelta = BUSY_SPACING,
                 tick: float = 30.0, tick_scale: float = 1.0) -> None:
        self.ctx = Context(store=store, clouds=cloud, policy=policy, clock=clock, web=web,
                           on_new_work=on_new_work, member_groups=member_groups,
                           directory=directory, group_members=group_members)
        self.requests = ChangeRequests(self.ctx)
        self.operations = OperationRequests(self.ctx, window)
        self.loop = ScheduleLoop(self.ctx, window=window, warn_before=warn_before,
                                 busy_tries=busy_tries, busy_spacing=busy_spacing, tick=tick,
                                 tick_scale=tick_scale)
        # Rackspace Scheduled Images (`--native`): proposals, the cloud-read listing; the loop
        # applies approved ones.
        self.native = self.loop.native

    # What callers read off the service (wiring, the Slack adapter, tests).

    @property
    def store(self) -> AsyncStore:
        """The store the service works on."""
        return self.ctx.store

    @property
    def web(self) -> MessagePort | None:
        """The Slack port (None: messages are not rewritten)."""
        return self.ctx.web

    @property
    def member_groups(self) -> GroupResolver | None:
        """How user-group membership is asked (None: no groups)."""
        return self.ctx.member_groups

    @property
    def wake(self) -> asyncio.Event:
        """Set to start the next tick early."""
        return self.ctx.wake

    @property
    def ticks(self) -> int:
        """Ticks done so far."""
        return self.loop.ticks

    def channel_policy(self, channel: str, channel_name: str | None) -> ChannelPolicy:
        """The policy of a channel as it is now (the Slack side checks it before the ack)."""
        return self.ctx.channel_policy(channel, channel_name)

    _policy = channel_policy  # the name bot/slack/schedules.py calls today

    # --- requests and the loop -------------------------------------------------------------

    async def propose(self, request: commands.Schedule | commands.ScheduleOff, *, user: str,
                      channel: str, channel_name: str | None = None) -> RequestRow:
        """See `ChangeRequests.propose`."""
        return await self.requests.propose(request, user=user, channel=channel,
                                           channel_name=channel_name)

    async def propose_operation(self, request: commands.ScheduleOperation, *, user: str,
                                channel: str, channel_name: str | None = None) -> RequestRow:
        """See `OperationRequests.propose` (pause, resume, run-now, skip-next)."""
        return await self.operations.propose(request, user=user, channel=channel,
                                             channel_name=channel_name)

    async def decide(self, request_id: str, *, actor: str, action: str,
                     reason: str | None = None, channel: str | None = None,
                     direct: bool = False) -> Outcome:
        """See `ChangeRequests.decide`."""
        return await self.requests.decide(request_id, actor=actor, action=action,
                                          reason=reason, channel=channel, direct=direct)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; `wake` starts the next tick early."""
        await self.loop.run(stop)

    async def tick(self) -> float:
        """One pass of the loop; returns seconds to sleep."""
        return await self.loop.tick()

    # --- answers -------------------------------------------------------------------------

    async def schedules_answer(self, server: str | None = None,
                               channel: str | None = None) -> str:
        """`/image schedules [server]`: schedules with next run, last result, pending changes;
        only those of `channel` (an id) when given."""
        now = self.ctx.clock()
        lines: list[ScheduleLine] = []
        rows = await self.store.run(Store.list_schedules, status="active", server=server,
                                    channel=channel)
        for row in rows:
            spec = schedule_spec(row)
            # The next slot that makes an image: none while paused, past a skip-next.
            nxt = next_run_slot(spec, op_state(row), timing(row, self.loop.window), now=now)
            lines.append(ScheduleLine(
                id=row.id, server_label=label(row), spec=spec,
                next_run=(nxt.astimezone(zone(spec.tz)), nxt) if nxt else None,
                last_result=row.last_result, last_run_at=row.last_run_at,
                approved_by=row.approved_by,
                # A fleet's target is resolved when asked, after the ack (the cloud is slow):
                # `fleet_matches_answer`.
                notes=([FOLLOWS] if row.target else [])
                + schedule_notes(op_state(row), spec, now)))
        pending = await self._pending(channel)
        if server is not None:
            pending = [r for r in pending if server in (r.server_ref, r.server_name, r.server_id)]
        return schedules_text(lines, [(to_request(r), label(r)) for r in pending], now)

    async def fleet_matches_answer(self, server: str | None = None,
                                   channel: str | None = None) -> str | None:
        """The follow-up of `/image schedules`: the servers each fleet schedule (of `channel`,
        when given) matches now, read from the cloud; None when there is no fleet schedule."""
        rows = [r for r in await self.store.run(Store.list_schedules, status="active",
                                                server=server, channel=channel) if r.target]
        if not rows:
            return None
        lines = [f"*{r.id}* {code(label(r))} {await matches_now(self.ctx, r)}"
                 for r in rows]
        return "\n".join(lines)

    async def approvals_answer(self, channel: str | None = None) -> str:
        """`/image approvals`: pending change requests (of `channel`, an id, when given)."""
        pending = await self._pending(channel)
        return approvals_text([(to_request(r), label(r)) for r in pending], self.ctx.clock())

    async def _pending(self, channel: str | None) -> list[RequestRow]:
        return await self.store.run(Store.list_change_requests,
                                    statuses=[RequestStatus.PENDING], channel=channel)
