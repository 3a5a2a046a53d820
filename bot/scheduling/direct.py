"""Approvers are asked directly: who gets a DM copy of a change request, and what it says.
Pure: no I/O (the shells are `requests.ChangeRequests.propose`, the notifier's
`bot.slack.direct.post_copy` and the loop's rewrite pass).

- `recipients`: the approvers the channel policy names, then the members of its approver user
  groups, never the requester, at most `DM_CAP` people. A group that would take the copies
  past the cap gets none (the channel message is the way, and the log says so): a cut list
  would ask some members and not others for no reason they could see.
- `copy_message`: the channel card, exactly (so a copy never shows more than the channel does),
  headed by the channel it is for. Its buttons are the channel card's, so a click goes through
  the same listener and permission check (`decide(..., direct=True)`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.blocks import BLOCK_LIMIT, context, payload
from bot.scheduling.approvals import ApprovalRules

DM_CAP = 20  # DM copies per request at most; beyond it the channel message is the way


@dataclass(frozen=True)
class Recipients:
    """Who gets a DM copy, and what the log should say about who does not."""

    users: tuple[str, ...]
    notes: tuple[str, ...] = ()


def recipients(rules: ApprovalRules, requester: str,
               groups: Mapping[str, Collection[str] | None], cap: int = DM_CAP) -> Recipients:
    """The DM recipients of a request by `requester` under `rules`. `groups` holds each
    approver group's members as read from Slack (None: the group could not be read).

    No approvers named (any member of the channel decides): nobody is asked directly, the
    channel message already asks everyone who may decide."""
    if not rules.restricted:
        return Recipients(())
    chosen: list[str] = []
    notes: list[str] = []
    named = sorted(rules.approvers - {requester})
    if len(named) > cap:
        notes.append(f"{len(named)} named approvers, more than {cap}: "
                     f"the first {cap} get a DM, the channel message asks the others")
    chosen += named[:cap]
    for group in sorted(rules.approver_groups):
        members = groups.get(group)
        if members is None:
            notes.append(f"user group {group} could not be read: the channel message asks "
                         "its members")
            continue
        fresh = sorted(set(members) - set(chosen) - {requester})
        if len(chosen) + len(fresh) > cap:
            notes.append(f"user group {group} has {len(fresh)} members to ask, more than "
                         f"the {cap} DMs a request sends: the channel message asks them")
            continue
        chosen += fresh
    return Recipients(tuple(chosen), tuple(notes))


def copy_key(request_id: str, user: str) -> str:
    """The outbox thread_key of one copy: each copy is its own queue (one approver's DM that
    fails to go holds back no one else's)."""
    return f"{request_id}:dm:{user}"


def copy_message(card: Mapping[str, Any], channel: str) -> dict[str, Any]:
    """A DM copy of the channel card `card` (as `messages.approval_message` made it):
    the same blocks and buttons, headed by the channel the request is for. The channel is
    given as `<#id>`, which Slack shows by name only to those who may see that channel."""
    blocks = list(card.get("blocks") or [])
    head = context(f"A change request in <#{channel}>: you are one of its approvers.")
    text = f"{card.get('text', '')} (in <#{channel}>)"
    return payload(text, [head, *blocks][:BLOCK_LIMIT])


def shown_state(status: str, applied: bool) -> str:
    """What a copy shows, as `request_copies.shown_status` records it: the request's status,
    and for an approved native request whether the cloud's answer is in (the card changes
    then too, with the status the same)."""
    return f"{status}:applied" if applied else status
