"""Slack payloads for Rackspace Scheduled Images (`schedule ... --native`): pure, no I/O.

The change request message says what the cloud's own service will do (and what it cannot:
no time of day, retention by count of its own images), then, once approved, how the cloud
call went; the `/image schedules` lines read from the cloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.blocks import (
    button,
    code,
    context,
    escape,
    human_duration,
    payload,
    section,
    user,
    user_text,
)
from bot.scheduling.approvals import ChangeRequest, when
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.messages import APPROVE_ACTION, REJECT_ACTION, spec_text
from bot.vocabulary import RequestStatus

SERVICE = "Rackspace Scheduled Images"
LIMITS = (f"{SERVICE} image the server once a day, or once a week on the day given, at an "
          "hour the cloud picks; they keep the newest N images *they* made (images you or I "
          "made are never culled). Set on the cloud, so the control panel shows it too.")
OK = "ok"
FAILED = "failed"
STALE = "stale"  # the cloud's schedule changed after the proposal: nothing was written


def brief(spec: ScheduleSpec | None) -> str:
    """A native schedule in a few words (`daily keep 7`, `weekly on Saturday keep 3`,
    `none`), for the stale note."""
    if spec is None:
        return "none"
    every = f"weekly on {spec.day.title()}" if spec.day else spec.frequency
    return f"{every} keep {spec.keep}"


def _change(request: ChangeRequest) -> str:
    if request.kind == "off":
        return f"*Turn off* {SERVICE}: {escape(spec_text(request.old))} → *no schedule*"
    verb = "Replace" if request.old is not None else "Set"
    return f"*{verb}* {SERVICE}: {escape(spec_text(request.old))} → *{escape(spec_text(request.new))}*"


def _applied(request: ChangeRequest, result: str | None, at: datetime | None,
             now: datetime) -> str:
    """How the approved change went on the cloud (or that it is on its way)."""
    if result is None:
        return ":hourglass_flowing_sand: Setting it on the cloud; the result follows here."
    word, _, detail = result.partition(":")
    stamp = f" at {when(at, now)}" if at else ""
    if word == OK:
        done = "turned off" if request.kind == "off" else "set"
        return f":white_check_mark: {SERVICE} {done} on the cloud{stamp}."
    if word == STALE:  # the words of a stale bot request (approvals.decide), with the why
        return (f":warning: Not applied{stamp}: {request.id} is out of date: "
                f"{user_text(detail.strip())}. Nothing was changed on the cloud.")
    return (f":x: The cloud did not take the change{stamp}: {user_text(detail.strip())}. "
            "Nothing else changed; propose it again once the cause is fixed.")


def _outcome(request: ChangeRequest, now: datetime) -> str:
    at = when(request.decided_at, now) if request.decided_at else "an unknown time"
    reason = f" — “{user_text(request.reason)}”" if request.reason else ""
    if request.status == RequestStatus.APPROVED:
        return f":white_check_mark: *Approved* by {user(request.decided_by)} at {at}{reason}."
    if request.status == RequestStatus.REJECTED:
        verb = "Withdrawn" if request.decided_by == request.requested_by else "Rejected"
        return (f":x: *{verb}* by {user(request.decided_by)} at {at}{reason}. The cloud's "
                "schedule stays as it was.")
    if request.status == RequestStatus.EXPIRED:
        return (f":hourglass: *Expired* at {when(request.expires_at, now)}: nobody decided in "
                "time. The cloud's schedule stays as it was.")
    return (f":leftwards_arrow_with_hook: *Superseded* at {at}{reason}: a newer request for "
            "this server replaced it.")


def native_approval_message(request: ChangeRequest, server_label: str, who_may_approve: str,
                            now: datetime, *, result: str | None = None,
                            applied_at: datetime | None = None) -> dict[str, Any]:
    """The change request message of a native request: the change, the service's limits, who
    may approve, the expiry and the buttons while pending; the outcome and the cloud's answer
    once decided. Found by `Schedule change R<n> ` like the bot's own."""
    r = request
    head = (f"*Schedule change {r.id} for {code(server_label)}*\n{_change(r)}\n"
            f"Requested by {user(r.requested_by)}")
    title = f"Schedule change {r.id} for {user_text(server_label)} ({SERVICE})"
    if not r.pending:
        blocks = [section(head), section(_outcome(r, now))]
        if r.status == RequestStatus.APPROVED:
            blocks.append(section(_applied(r, result, applied_at, now)))
        blocks.append(context("Every decision is recorded in the audit log."))
        return payload(f"{title}: {r.status}", blocks)
    left = max((r.expires_at - now).total_seconds(), 0)
    blocks = [section(f"{head} · may be approved by {who_may_approve}"),
              context(f"Expires at {when(r.expires_at, now)} (in {human_duration(left)}). "
                      "Every decision is recorded in the audit log."),
              context(LIMITS),
              {"type": "actions", "block_id": f"cr_actions:{r.id}",
               "elements": [button("Approve", APPROVE_ACTION, r.id, "primary"),
                            button("Reject", REJECT_ACTION, r.id, "danger")]}]
    return payload(f"{title} waits for approval", blocks)


def applied_reply(request: ChangeRequest, server_label: str, result: str,
                  now: datetime) -> dict[str, Any]:
    """The thread reply once the loop has made the cloud call."""
    text = f"{code(server_label)}: " + _applied(request, result, None, now)
    return payload(text, [section(text)])


@dataclass(frozen=True)
class NativeLine:
    """One server's Rackspace Scheduled Images as the cloud tells them (None: disabled)."""

    server_label: str
    spec: ScheduleSpec | None


def native_listing(lines: Sequence[NativeLine], *, unreadable: str | None = None,
                   unchecked: int = 0) -> str:
    """The `/image schedules` part read from the cloud: each server that has them, or a short
    note when the cloud could not be read (the bot's own listing is not affected)."""
    if unreadable is not None:
        return (f":warning: {SERVICE}: could not read them from the cloud just now "
                f"({user_text(unreadable)}); the bot's own schedules above are unaffected.")
    enabled = [line for line in lines if line.spec is not None]
    out = [f"*{SERVICE}* (read from the cloud; the cloud picks the hour):"]
    if not enabled:
        out.append("• none set on the servers this channel may touch.")
    for line in enabled:
        out.append(f"• {code(line.server_label)}: {escape(spec_text(line.spec))}")
    if unchecked:
        out.append(f"• … {unchecked} more servers not checked.")
    return "\n".join(out)
