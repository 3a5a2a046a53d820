"""What the scheduling shells need from outside, as ports, and the context they share.

Scheduling imports nothing from `bot.slack`: the Slack calls it makes (`MessagePort`) and the
channel membership it asks for (`ChannelMembers`) are Protocols that the Slack adapter's
`SlackWeb` and `ChannelDirectory` satisfy; `bot.wiring` plugs them in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.cloud.models import Image, Server
from bot.cloud.pool import CloudPool
from bot.policy import ChannelPolicy, GroupResolver, Policy
from bot.scheduling.approvals import ApprovalRules
from bot.store import AsyncStore


class CloudPort(Protocol):
    """The cloud calls the service makes (`CloudClient` has them)."""

    async def find_server(self, ref: str) -> Server: ...

    async def list_servers(self, limit: int | None = None) -> list[Server]: ...

    async def list_images(self, server_id: str | None = None,
                          properties: Mapping[str, str] | None = None) -> list[Image]: ...

    async def delete_image(self, image_id: str) -> None: ...


class MessagePort(Protocol):
    """The Slack calls the service makes directly (`SlackWeb` has them)."""

    async def update_message(self, channel: str, ts: str, text: str,
                             blocks: list[dict[str, Any]] | None = None) -> None: ...

    async def respond(self, response_url: str, text: str,
                      blocks: list[dict[str, Any]] | None = None, *,
                      in_channel: bool = False, replace_original: bool = False) -> None: ...


class ChannelMembers(Protocol):
    """Who is in a channel (`ChannelDirectory` has it); raises `MembershipUnknown` when the
    answer cannot be had, so a decision that needs it is refused."""

    async def members(self, channel: str) -> frozenset[str]: ...


# The members of one Slack user group (`usergroups.users.list`), for the DM copies of a
# change request; raises an `ImagebotError` when the group cannot be read.
GroupMembers = Callable[[str], Awaitable[frozenset[str]]]


@dataclass
class Context:
    """What the request desk and the loop share: the store, the clouds, the policy, the clock,
    the Slack ports and the wake-ups."""

    store: AsyncStore
    clouds: CloudPort | CloudPool
    policy: Policy
    clock: Callable[[], datetime]
    web: MessagePort | None = None
    on_new_work: Callable[[], None] = lambda: None
    member_groups: GroupResolver | None = None
    # Who is in a request's channel ("any member" approves); None = not checked.
    directory: ChannelMembers | None = None
    # Who is in an approver user group (DM copies; None: groups get none).
    group_members: GroupMembers | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def channel_policy(self, channel: str, channel_name: str | None) -> ChannelPolicy:
        """The policy of a channel as it is now."""
        return self.policy.for_channel(channel, channel_name)

    def cloud(self, name: str | None) -> CloudPort:
        """The cloud a channel policy names (None: the default)."""
        if isinstance(self.clouds, CloudPool):
            return self.clouds.get(name)
        return self.clouds

    def notify(self, channel: str, channel_name: str | None) -> tuple[str, str | None]:
        """(channel for run announcements and alerts, the policy's mention)."""
        pol = self.channel_policy(channel, channel_name)
        return pol.notify_channel or channel, pol.mention

    async def groups(self, user: str, rules: ApprovalRules) -> frozenset[str]:
        """Which of the rules' approver groups `user` is in (none asked when none listed)."""
        if not rules.approver_groups or self.member_groups is None:
            return frozenset()
        return await self.member_groups(user, rules.approver_groups)
