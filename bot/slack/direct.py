"""The Slack side of the DM copies of a change request (`bot.scheduling.direct`).

- `post_copy`: the notifier's handler of a `dm_copy` outbox item. The DM channel comes from
  `conversations.open` (bot scope `im:write`; docs.slack.dev/reference/methods/
  conversations.open: opening an open DM answers the same channel, so a repeat after a crash
  is harmless) and is stored on the copy's row before the post. The post itself keeps the
  notifier's crash rules: `mark_posting` before it, and an attempt that may have gone through
  is looked up by its metadata in the DM's history (`im:history`) instead of posted again.
  A request decided, expired or superseded before its copy went is not sent at all (an earlier
  attempt that went through is still found and recorded, so it is rewritten).
- `group_users`: the members of a user group (`usergroups.users.list`), the one reading that
  the approver-group check (`schedules.slack_group_resolver`) and the DM copies share.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.errors import SlackRejected
from bot.scheduling.ports import GroupMembers
from bot.store import OutboxMessage, Store
from bot.vocabulary import RequestStatus

if TYPE_CHECKING:
    from bot.slack.notifier import Notifier

log = logging.getLogger(__name__)


async def group_users(web: Any, group: str) -> frozenset[str]:
    """The members of Slack user group `group` (raises the `ImagebotError` of the call)."""
    data = await web._call("usergroups.users.list", usergroup=group)
    return frozenset(str(u) for u in data.get("users") or [])


def slack_group_members(web: Any) -> GroupMembers:
    """`group_users` as the scheduling port (`Context.group_members`)."""

    async def members(group: str) -> frozenset[str]:
        return await group_users(web, group)

    return members


async def open_dm(web: Any, user: str) -> str:
    """The id of the bot's DM with `user` (opened if need be)."""
    data = await web._call("conversations.open", users=user)
    channel = (data.get("channel") or {}).get("id")
    if not channel:
        raise SlackRejected("conversations.open named no channel")
    return str(channel)


async def post_copy(notifier: Notifier, item: OutboxMessage) -> None:
    """Deliver one approver's DM copy (a `dm_copy` item; see the module docstring)."""
    store = notifier.store
    payload: dict[str, Any] = dict(item.payload)
    request_id, user = str(payload["request_id"]), str(payload["user"])
    copy = await store.run(Store.request_copy, request_id, user)
    if copy is None or copy.ts:  # no row (cannot happen) or posted before a crash
        await store.run(Store.mark_sent, item.id, result_ts=copy.ts if copy else None)
        return
    row = await store.run(Store.get_change_request, request_id)
    if row.status != RequestStatus.PENDING:
        # Nothing to ask any more: send nothing, but account for an earlier attempt that may
        # have gone through (it is rewritten like any copy once its ts is known).
        found = await _posted_before(notifier, item, copy.dm_channel)
        if found is None:
            log.info("not sending %s's copy of %s: the request is %s", user, request_id,
                     row.status)
            await store.run(Store.mark_sent, item.id)
            return
        ts = found
    else:
        channel = copy.dm_channel
        if channel is None:
            async with notifier._paced("conversations.open", ""):
                channel = await open_dm(notifier.web, user)
            await store.run(Store.set_copy_channel, request_id, user, channel)
        _, ts = await notifier._post_item(item, channel, str(payload["text"]),
                                          payload.get("blocks"))
    # The copy showed the request pending; if it moved on meanwhile, the loop rewrites it.
    await store.run(Store.record_copy_posted, request_id, user, ts, RequestStatus.PENDING)
    await store.run(Store.mark_sent, item.id, result_ts=ts)


async def _posted_before(notifier: Notifier, item: OutboxMessage,
                         channel: str | None) -> str | None:
    """The ts of an earlier attempt of `item` that reached the DM `channel`, if any."""
    if item.posting_at is None or channel is None:
        return None  # never attempted (the DM channel is stored before any attempt)
    try:
        found = await notifier.web.find_posted(channel, item.id)
    except SlackRejected as exc:
        log.warning("cannot check whether outbox item %s was posted (%s)", item.id, exc.code)
        return None
    return found[1] if found else None
