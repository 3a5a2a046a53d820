"""What Slack knows about a channel that the policy needs: its name and its members.

Policies may be keyed by channel name (`[channels."#dev"]`), and "any member of the channel"
approves unless approvers are listed. Slash commands carry the channel's name; clicks and the
engine only have the id, so the name is asked of Slack (`conversations.info`) once per channel.
Members come from `conversations.members` (paginated: `limit`, `response_metadata.next_cursor`;
https://docs.slack.dev/reference/methods/conversations.members), cached briefly with an injected
clock so a burst of clicks makes one call, while someone who left is not a member for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.errors import ImagebotError, MembershipUnknown, SlackUnavailable

log = logging.getLogger(__name__)

MEMBERS_TTL = timedelta(seconds=60)
PAGE = 200  # Slack recommends no more than 200 a page
MAX_PAGES = 100


class ApiCaller(Protocol):
    """One Web API call (`SlackWeb._call` has this shape)."""

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]: ...


@dataclass
class ChannelDirectory:
    """Channel names (kept for the life of the process) and members (kept `ttl`)."""

    web: ApiCaller
    clock: Callable[[], datetime]
    ttl: timedelta = MEMBERS_TTL
    _names: dict[str, str | None] = field(default_factory=dict)
    _members: dict[str, tuple[datetime, frozenset[str]]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def remember(self, channel: str, name: str | None) -> None:
        """A name learnt for free (a slash command's `channel_name`)."""
        if channel and name:
            self._names[channel] = name.lstrip("#")

    async def name(self, channel: str, known: str | None = None) -> str | None:
        """The channel's name without '#', or None when Slack will not say (then only an
        id-keyed policy or [default] applies, which is what the command saw too)."""
        if known:
            self.remember(channel, known)
            return known.lstrip("#")
        if channel in self._names:
            return self._names[channel]
        try:
            data = await self.web._call("conversations.info", channel=channel)
        except SlackUnavailable as exc:
            log.warning("cannot read the name of channel %s yet: %s", channel, exc)
            return None  # not cached: ask again next time
        except ImagebotError as exc:
            log.warning("cannot read the name of channel %s: %s", channel, exc)
            self._names[channel] = None
            return None
        name = (data.get("channel") or {}).get("name") or None
        self._names[channel] = name
        return name

    async def members(self, channel: str) -> frozenset[str]:
        """User ids in the channel; `MembershipUnknown` when Slack cannot say."""
        now = self.clock()
        cached = self._members.get(channel)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            cached = self._members.get(channel)
            if cached and self.clock() - cached[0] < self.ttl:
                return cached[1]
            found: set[str] = set()
            cursor = ""
            try:
                for _ in range(MAX_PAGES):
                    params: dict[str, Any] = {"channel": channel, "limit": PAGE}
                    if cursor:
                        params["cursor"] = cursor
                    data = await self.web._call("conversations.members", **params)
                    found.update(data.get("members") or [])
                    cursor = (data.get("response_metadata") or {}).get("next_cursor") or ""
                    if not cursor:
                        break
            except ImagebotError as exc:
                raise MembershipUnknown(
                    "I could not check who is in this channel (Slack said: "
                    f"{exc.user_message()}); try again in a moment.") from exc
            members = frozenset(found)
            self._members[channel] = (self.clock(), members)
            return members
