"""What a listener sees of a command (`Invocation`) and answers (`Reply`): plain data, so
features can be called without Bolt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    """An ephemeral answer to the person who typed the command.

    `follow_up`: the command continues after this ack (`LazyWork.spawn` runs the route's
    `later` step and sends its answer through the response_url)."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    follow_up: FollowUp | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """Arguments for Bolt's ack()/respond()."""
        kwargs: dict[str, Any] = {"text": self.text}
        if self.blocks:
            kwargs["blocks"] = self.blocks
        return kwargs


@dataclass
class Invocation:
    """Who typed what, where."""

    user: str
    channel: str
    channel_name: str | None
    trigger_id: str | None
    response_url: str | None
    # Set by the listener once `--all` was asked for by an admin: answer for every channel.
    everywhere: bool = False

    @property
    def scope(self) -> str | None:
        """The channel an answer is limited to; None for an admin's `--all`."""
        return None if self.everywhere else self.channel


@dataclass(frozen=True)
class FollowUp:
    """What a command's later step works on: plain data (the request and who asked), handed
    from the ack to the task that runs after it."""

    request: Any  # a `commands` request dataclass
    who: Invocation
