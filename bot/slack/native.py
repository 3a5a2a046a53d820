"""The Slack side of Rackspace Scheduled Images (`/image schedule <server> ... --native` and
the cloud-read part of `/image schedules`): the listener only checks the policy and acks; the
cloud is read after the ack (`ScheduleService.native`), and the approved change is made by the
scheduler loop."""

from __future__ import annotations

import dataclasses

import commands
from bot.policy import refuse
from bot.scheduling.service import ScheduleService
from bot.slack.routing import Router
from bot.slack.types import FollowUp, Invocation, Reply


def register(router: Router, handlers: NativeCommands) -> None:
    """Route the `--native` schedule requests (the Approve / Reject buttons and `/image
    approve` are the bot's own: bot/slack/schedules.py)."""
    router.on(commands.NativeSchedule, handlers.schedule, later=handlers.propose)
    router.on(commands.NativeScheduleOff, handlers.schedule, later=handlers.propose)


class NativeCommands:
    """`--native` schedule commands; plain methods so tests can call them directly."""

    def __init__(self, service: ScheduleService) -> None:
        self.service = service

    async def schedule(self, request: commands.NativeSchedule | commands.NativeScheduleOff,
                       who: Invocation) -> Reply:
        """Refused at once by the policy, or proposed after the ack (`propose`)."""
        pol = self.service.channel_policy(who.channel, who.channel_name)
        refusal = await refuse(pol, who.user, request.server.text, self.service.member_groups,
                               doing="propose schedules")
        if refusal:
            return Reply(refusal)
        return Reply("Reading the cloud's Rackspace Scheduled Images; the change request will "
                     "appear in the channel for approval.", follow_up=FollowUp(request, who))

    async def propose(self, request: commands.NativeSchedule | commands.NativeScheduleOff,
                      who: Invocation) -> str:
        """Write the change request (the service posts it); the requester's answer."""
        row = await self.service.native.propose(request, user=who.user, channel=who.channel,
                                                channel_name=who.channel_name)
        rules = self.service.channel_policy(who.channel, who.channel_name).approval_rules()
        return (f"Change request {row.id} is posted; it may be approved by "
                f"{rules.who_may_approve(who.user)}. Once it is, I set it on the cloud and "
                "say how it went in its thread.")

    def with_listing(self, reply: Reply, request: commands.Schedules, who: Invocation) -> Reply:
        """`/image schedules`: the bot's own in the ack; the cloud's read after it, where the
        channel's cloud may have them."""
        if not self.service.native.wanted(who.channel, who.channel_name):
            return reply
        return dataclasses.replace(reply, follow_up=FollowUp(request, who))

    async def listing(self, request: commands.Schedules, who: Invocation) -> str:
        """The follow-up of `/image schedules`: Rackspace Scheduled Images read from the
        cloud."""
        return await self.service.native.listing(
            request.server.text if request.server else None, channel=who.channel,
            channel_name=who.channel_name)
