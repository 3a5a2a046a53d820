"""The Slack side of schedule commands: `/image schedule|schedules|approvals|approve|reject` and
the Approve / Reject buttons, answered from `ScheduleService`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import commands
from bot.errors import ImagebotError
from bot.policy import GroupResolver, refuse
from bot.scheduling.messages import APPROVE_ACTION, REJECT_ACTION
from bot.scheduling.service import ScheduleService
from bot.slack.types import Invocation, Reply

log = logging.getLogger(__name__)


class ScheduleCommands:
    """Schedule commands and buttons for `Listeners.extra`."""

    def __init__(self, service: ScheduleService) -> None:
        self.service = service
        self._background: set[asyncio.Task[Any]] = set()

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Handlers for `Listeners.extra`: command class names, and `action:<id>` for buttons."""
        return {
            "Schedule": self._on_schedule,
            "ScheduleOff": self._on_schedule,
            "Schedules": self._on_schedules,
            "Approvals": self._on_approvals,
            "Approve": self._on_approve,
            "Reject": self._on_reject,
            f"action:{APPROVE_ACTION}": self.on_click,
            f"action:{REJECT_ACTION}": self.on_click,
        }

    async def _on_schedule(self, request: commands.Schedule | commands.ScheduleOff,
                           who: Invocation) -> Reply:
        pol = self.service._policy(who.channel, who.channel_name)
        refusal = await refuse(pol, who.user, request.server.text, self.service.member_groups,
                               doing="propose schedules")
        if refusal:
            return Reply(refusal)
        # Resolving the server and listing its images may take a while: answer after the ack.
        task = asyncio.ensure_future(self._propose_later(request, who))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return Reply("Preparing the change request; it will appear in the channel for approval.")

    async def _propose_later(self, request: commands.Schedule | commands.ScheduleOff,
                             who: Invocation) -> None:
        try:
            row = await self.service.propose(request, user=who.user, channel=who.channel,
                                     channel_name=who.channel_name)
            rules = self.service._policy(who.channel, who.channel_name).approval_rules()
            text = (f"Change request {row.id} is posted; it may be approved by "
                    f"{rules.who_may_approve(who.user)}.")
        except ImagebotError as exc:
            text = f":warning: {exc.user_message()}"
        except Exception:
            log.exception("proposing a schedule failed")
            text = ":warning: Something went wrong; it has been logged."
        if self.service.web is not None and who.response_url:
            try:
                await self.service.web.respond(who.response_url, text)
            except ImagebotError as exc:
                log.warning("could not answer the schedule request: %s", exc)

    async def _on_schedules(self, request: commands.Schedules, who: Invocation) -> Reply:
        return Reply(await self.service.schedules_answer(request.server.text if request.server
                                                 else None, channel=who.scope))

    async def _on_approvals(self, request: commands.Approvals, who: Invocation) -> Reply:
        return Reply(await self.service.approvals_answer(channel=who.scope))

    async def _on_approve(self, request: commands.Approve, who: Invocation) -> Reply:
        outcome = await self.service.decide(request.request_id, actor=who.user, action="approve",
                                    channel=who.channel)
        return Reply(outcome.message if outcome.accepted else f":no_entry: {outcome.message}")

    async def _on_reject(self, request: commands.Reject, who: Invocation) -> Reply:
        outcome = await self.service.decide(request.request_id, actor=who.user, action="reject",
                                    reason=request.reason, channel=who.channel)
        return Reply(outcome.message if outcome.accepted else f":no_entry: {outcome.message}")

    async def on_click(self, action_id: str, value: str, user: str, *, channel: str = "",
                       channel_name: str | None = None) -> Reply | None:
        """An Approve / Reject button clicked in `channel` (from the payload); None when
        accepted (the message itself is rewritten). The same checks as the text commands."""
        action = "approve" if action_id == APPROVE_ACTION else "reject"
        try:
            outcome = await self.service.decide(value, actor=user, action=action, channel=channel)
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
                data = await web._call("usergroups.users.list", usergroup=group)
            except ImagebotError as exc:
                log.warning("cannot read user group %s: %s", group, exc)
                continue
            if user in (data.get("users") or []):
                member.add(group)
        return frozenset(member)

    return resolve
