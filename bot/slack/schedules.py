"""The Slack side of schedule commands: `/image schedule|schedules|approvals|approve|reject` and
the Approve / Reject buttons, answered from `ScheduleService`."""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp

import commands
from bot.errors import ImagebotError
from bot.policy import GroupResolver, refuse
from bot.scheduling.fleet_ops import FOLLOWS
from bot.scheduling.fleet_requests import refuse_fleet
from bot.scheduling.messages import APPROVE_ACTION, REJECT_ACTION
from bot.scheduling.service import ScheduleService
from bot.slack import native
from bot.slack.app import SlackDeps
from bot.slack.direct import group_users
from bot.slack.native import NativeCommands
from bot.slack.routing import button_listener
from bot.slack.types import FollowUp, Invocation, Reply
from bot.store import Store

log = logging.getLogger(__name__)

# The buttons on a change request's message (bot.scheduling.messages).
BUTTONS = re.compile(f"^(?:{re.escape(APPROVE_ACTION)}|{re.escape(REJECT_ACTION)})$")


def register(app: AsyncApp, deps: SlackDeps) -> ScheduleCommands:
    """Route the schedule commands through `deps.router` and listen for Approve / Reject."""
    if deps.schedules is None:
        raise ValueError("schedule commands need the schedule service")
    handlers = ScheduleCommands(deps.schedules)
    router = deps.router
    router.on(commands.Schedule, handlers.schedule, later=handlers.propose)
    router.on(commands.ScheduleOff, handlers.schedule, later=handlers.propose)
    router.on(commands.ScheduleOperation, handlers.operation, later=handlers.propose_operation)
    native.register(router, handlers.native)  # --native: bot/slack/native.py
    router.on(commands.Schedules, handlers.schedules, later=handlers.schedules_later)
    router.on(commands.Approvals, handlers.approvals)
    router.on(commands.Approve, handlers.approve)
    router.on(commands.Reject, handlers.reject)
    app.action(BUTTONS)(button_listener(handlers.on_click, deps.after))
    return handlers


class ScheduleCommands:
    """Schedule commands and buttons, answered from `ScheduleService`; plain methods so tests
    can call them directly."""

    def __init__(self, service: ScheduleService) -> None:
        self.service = service
        self.native = NativeCommands(service)

    async def schedule(self, request: commands.Schedule | commands.ScheduleOff,
                       who: Invocation) -> Reply:
        """`/image schedule ...`: refused at once, or proposed after the ack (`propose`)."""
        pol = self.service._policy(who.channel, who.channel_name)
        if request.target is not None:  # a fleet: the server patterns apply per matched server
            refusal = await refuse_fleet(pol, who.user, self.service.member_groups)
        else:
            refusal = await refuse(pol, who.user, request.server.text,
                                   self.service.member_groups, doing="propose schedules")
        if refusal:
            return Reply(refusal)
        # Resolving the server and listing its images may take a while: answer after the ack.
        return Reply("Preparing the change request; it will appear in the channel for approval.",
                     follow_up=FollowUp(request, who))

    async def propose(self, request: commands.Schedule | commands.ScheduleOff,
                      who: Invocation) -> str:
        """Write the change request (the service posts it); the requester's answer."""
        row = await self.service.propose(request, user=who.user, channel=who.channel,
                                         channel_name=who.channel_name)
        rules = self.service._policy(who.channel, who.channel_name).approval_rules()
        return (f"Change request {row.id} is posted; it may be approved by "
                f"{rules.who_may_approve(who.user)}.")

    async def operation(self, request: commands.ScheduleOperation, who: Invocation) -> Reply:
        """`/image schedule <server> pause|resume|run-now|skip-next`: refused at once, or
        proposed after the ack (`propose_operation`), like a schedule change."""
        pol = self.service._policy(who.channel, who.channel_name)
        if request.target is not None:  # a fleet: the server patterns apply per matched server
            refusal = await refuse_fleet(pol, who.user, self.service.member_groups)
        else:
            refusal = await refuse(pol, who.user, request.server.text,
                                   self.service.member_groups, doing="change schedules")
        if refusal:
            return Reply(refusal)
        return Reply(f"Preparing the {request.operation} request; it will appear in the "
                     "channel for approval.", follow_up=FollowUp(request, who))

    async def propose_operation(self, request: commands.ScheduleOperation,
                                who: Invocation) -> str:
        """Write the operation's change request (the service posts it); the requester's
        answer. A refusal (already paused, ...) is an `ImagebotError`: a private answer."""
        row = await self.service.propose_operation(request, user=who.user, channel=who.channel,
                                                   channel_name=who.channel_name)
        rules = self.service._policy(who.channel, who.channel_name).approval_rules()
        return (f"Change request {row.id} ({request.operation}) is posted; it may be approved "
                f"by {rules.who_may_approve(who.user)}.")

    async def schedules(self, request: commands.Schedules, who: Invocation) -> Reply:
        """`/image schedules [server]` (what fleets match now and Rackspace Scheduled Images
        follow the ack: both are read from the cloud)."""
        text = await self.service.schedules_answer(
            request.server.text if request.server else None, channel=who.scope)
        reply = self.native.with_listing(Reply(text), request, who)
        if reply.follow_up is None and FOLLOWS in text:  # the ack promised fleets' matches
            reply = dataclasses.replace(reply, follow_up=FollowUp(request, who))
        return reply

    async def schedules_later(self, request: commands.Schedules, who: Invocation) -> str:
        """The follow-up of `/image schedules`: the servers each fleet matches now, then the
        cloud's own Scheduled Images where the channel's cloud may have them."""
        parts = [await self.service.fleet_matches_answer(
            request.server.text if request.server else None, channel=who.scope)]
        if self.service.native.wanted(who.channel, who.channel_name):
            parts.append(await self.native.listing(request, who))
        return "\n\n".join(p for p in parts if p) or "No fleet schedules."

    async def approvals(self, request: commands.Approvals, who: Invocation) -> Reply:
        """`/image approvals`."""
        return Reply(await self.service.approvals_answer(channel=who.scope))

    async def approve(self, request: commands.Approve, who: Invocation) -> Reply:
        """`/image approve R2`."""
        outcome = await self.service.decide(request.request_id, actor=who.user, action="approve",
                                            channel=who.channel)
        return Reply(outcome.message if outcome.accepted else f":no_entry: {outcome.message}")

    async def reject(self, request: commands.Reject, who: Invocation) -> Reply:
        """`/image reject R2 [reason]`."""
        outcome = await self.service.decide(request.request_id, actor=who.user, action="reject",
                                            reason=request.reason, channel=who.channel)
        return Reply(outcome.message if outcome.accepted else f":no_entry: {outcome.message}")

    async def on_click(self, action_id: str, value: str, user: str, *, channel: str = "",
                       channel_name: str | None = None,
                       response_url: str | None = None, direct: bool = False) -> Reply | None:
        """An Approve / Reject button clicked in `channel` (from the payload); None when
        accepted (the message itself is rewritten, so the click's response_url is unused).
        The same checks as the text commands. `direct`: clicked on a surface of the user's
        own (the App Home: `bot.slack.home`, or their DM copy of the request:
        `bot.slack.direct`), see `ChangeRequests.decide`."""
        action = "approve" if action_id == APPROVE_ACTION else "reject"
        try:
            direct = direct or await self.service.store.run(Store.is_copy_in, value, user,
                                                            channel)
            outcome = await self.service.decide(value, actor=user, action=action, channel=channel,
                                                direct=direct)
        except ImagebotError as exc:
            return Reply(f":warning: {exc.user_message()}")
        return None if outcome.accepted else Reply(f":no_entry: {outcome.message}")


def slack_group_resolver(web: Any) -> GroupResolver:
    """Which of `groups` a user belongs to, asked of Slack (`usergroups.users.list`).

    A group that cannot be read counts as not containing the user: refusing is the safe side.
    """

    async def resolve(user: str, groups: frozenset[str]) -> frozenset[str]:
        member: set[str] = set()
        for group in sorted(groups):
            try:
                users = await group_users(web, group)
            except ImagebotError as exc:
                log.warning("cannot read user group %s: %s", group, exc)
                continue
            if user in users:
                member.add(group)
        return frozenset(member)

    return resolve
