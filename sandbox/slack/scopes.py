"""Which bot scope each emulated Web API method needs, as Slack checks it: a call without it
answers `missing_scope` with `needed` and `provided` (docs.slack.dev/reference/methods/<method>,
"Required scopes"; docs.slack.dev/reference/scopes/<scope>, "Compatible API methods").

Conversation methods need the scope of the conversation's kind: `channels:*` for a public
channel, `groups:*` for a private one, `im:*` for a DM.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.slack.model import DEFAULT_BOT_SCOPES, Channel

__all__ = ["DEFAULT_BOT_SCOPES", "METHOD_SCOPES", "kind_of", "needed_scope"]

_HISTORY = {"public": "channels:history", "private": "groups:history", "im": "im:history"}
_READ = {"public": "channels:read", "private": "groups:read", "im": "im:read"}

METHOD_SCOPES: Mapping[str, str | Mapping[str, str] | None] = {
    "auth.test": None,
    "bots.info": "users:read",
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.history": _HISTORY,
    "conversations.replies": _HISTORY,
    "conversations.info": _READ,
    "conversations.members": _READ,
    "conversations.open": "im:write",
    "users.info": "users:read",
    "users.list": "users:read",
    "usergroups.list": "usergroups:read",
    "usergroups.users.list": "usergroups:read",
    "views.open": None,
    "views.publish": None,
}


def kind_of(channel: Channel) -> str:
    """`public`, `private` or `im`: which family of scopes a conversation method needs."""
    if channel.is_im:
        return "im"
    return "private" if channel.is_private else "public"


def needed_scope(method: str, channel: Channel | None) -> str | None:
    """The scope `method` needs on `channel` (None: none, or the channel is unknown and the
    method answers channel_not_found itself)."""
    rule = METHOD_SCOPES.get(method)
    if rule is None or isinstance(rule, str):
        return rule
    return rule[kind_of(channel)] if channel is not None else None
