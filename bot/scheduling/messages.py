"""Slack payloads for schedules and their change requests: pure functions, no I/O.

Approval messages (with Approve / Reject buttons while pending, the outcome once decided), the
`schedules` and `approvals` answers, and the notifications a scheduled run sends. Every payload
is `{"text", "blocks"}` within Block Kit limits (see `bot.blocks`); user text is escaped, and a
channel ping appears only when the caller passes the policy's `mention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.blocks import (
    button,
    code,
    context,
    escape,
    human_duration,
    payload,
    plural,
    section,
    user,
    user_text,
)
from bot.scheduling.approvals import ChangeRequest, when
from bot.scheduling.due import ScheduleSpec, describe, zone
from bot.scheduling.retention import RetainableImage
from bot.vocabulary import RequestStatus, RunResult

APPROVE_ACTION = "cr_approve"
REJECT_ACTION = "cr_reject"
MAX_LISTED_IMAGES = 10


def local_and_utc(local: datetime, utc: datetime) -> str:
    """`Sat 2025-03-01 03:00 CET (02:00 UTC)`; just `Sat 2025-03-01 03:00 UTC` when the zone is
    UTC itself (the time is not said twice)."""
    shown = f"{local:%a %Y-%m-%d %H:%M} {local.tzname() or ''}".rstrip()
    if local.utcoffset() == timedelta(0) and (local.tzname() or "UTC") in ("UTC", "GMT"):
        return shown if local.tzname() else shown + " UTC"
    return f"{shown} ({utc.astimezone(UTC):%H:%M} UTC)"


def spec_text(spec: ScheduleSpec | None) -> str:
    """The schedule in words, or `no schedule`."""
    return "no schedule" if spec is None else describe(spec, with_keep=True)


@dataclass(frozen=True)
class ApprovalView:
    """Everything an approval message shows besides the request itself."""

    request: ChangeRequest
    server_label: str
    who_may_approve: str
    next_runs: Sequence[tuple[datetime, datetime]] = ()  # (local, utc)
    dst_notes: Sequence[str] = ()
    would_delete: Sequence[RetainableImage] = ()
    notify_channel: str | None = None
    # Schedule operations (bot.scheduling.op_messages): what it will do, and once approved.
    operation_line: str | None = None
    operation_done: str | None = None
    # The schedule's own images retention would count but never deletes: protected ones.
    kept_protected: Sequence[RetainableImage] = ()


def _change_line(request: ChangeRequest) -> str:
    if request.kind == "off":
        return f"*Turn off* the schedule: {escape(spec_text(request.old))} → *no schedule*"
    verb = "Replace" if request.old is not None else "Set"
    return (f"*{verb}* the schedule: {escape(spec_text(request.old))} → "
            f"*{escape(spec_text(request.new))}*")


def _outcome(request: ChangeRequest, now: datetime, done: str | None = None) -> str:
    """What happened to a decided request, by whom and when (in place of who may approve and
    the expiry, which no longer matter)."""
    at = when(request.decided_at, now) if request.decided_at else "an unknown time"
    reason = f" — “{user_text(request.reason)}”" if request.reason else ""
    if request.status == RequestStatus.APPROVED:
        return (f":white_check_mark: *Approved* by {user(request.decided_by)} at {at}{reason}. "
                + (done or "The new schedule is in effect."))
    if request.status == RequestStatus.REJECTED:
        verb = "Withdrawn" if request.decided_by == request.requested_by else "Rejected"
        return (f":x: *{verb}* by {user(request.decided_by)} at {at}{reason}. The schedule "
                "stays as it was.")
    if request.status == RequestStatus.EXPIRED:
        return (f":hourglass: *Expired* at {when(request.expires_at, now)}: nobody decided in "
                "time. The schedule stays as it was; propose the change again if it is still "
                "wanted.")
    by = f" by {user(request.decided_by)}" if request.decided_by else ""
    return (f":leftwards_arrow_with_hook: *Superseded*{by} at {at}{reason}: a newer request "
            "for this server replaced it.")


def approval_message(view: ApprovalView, now: datetime) -> dict[str, Any]:
    """The change request message: what changes from what to what, the next runs (zone and UTC)
    with DST warnings, what retention would delete, who asked, who may approve, the expiry, and
    Approve / Reject buttons while pending (the outcome instead once decided)."""
    r = view.request
    head = (f"*Schedule change {r.id} for {code(view.server_label)}*\n"
            f"{view.operation_line or _change_line(r)}\nRequested by {user(r.requested_by)}")
    if not r.pending:  # decided: what happened replaces who may approve, expiry and buttons
        blocks: list[dict[str, Any]] = [section(head),
                                        section(_outcome(r, now, view.operation_done)),
                                        context("Every decision is recorded in the audit log.")]
        return payload(f"Schedule change {r.id} for {user_text(view.server_label)}: {r.status}",
                       blocks)
    left = r.expires_at - now
    blocks = [section(f"{head} · may be approved by {view.who_may_approve}"),
              context(f"Expires at {when(r.expires_at, now)} "
                      f"(in {human_duration(max(left.total_seconds(), 0))}). "
                      "Every decision is recorded in the audit log.")]
    if r.kind == "set" and view.next_runs:
        runs = "\n".join(f"• {local_and_utc(local, utc)}" for local, utc in view.next_runs)
        blocks.append(section(f"*Next runs:*\n{runs}"))
    for note in view.dst_notes[:3]:
        blocks.append(context(f":warning: {escape(note)}"))
    previews_retention = r.operation is None or r.operation.kind == "run-now"
    if r.kind == "set" and r.new is not None and previews_retention:
        if view.would_delete:
            names = "\n".join(f"• {code(img.name or img.id)} ({img.created_at:%Y-%m-%d %H:%M} "
                              "UTC)" for img in view.would_delete[:MAX_LISTED_IMAGES])
            more = len(view.would_delete) - MAX_LISTED_IMAGES
            if more > 0:
                names += f"\n• … and {more} more"
            blocks.append(section(f"*Retention:* the next successful run would delete "
                                  f"{plural(len(view.would_delete), 'image')} this "
                                  f"schedule made:\n"
                                  f"{names}"))
        else:
            keep = plural(r.new.keep, "image")
            blocks.append(context(f"Retention keeps the newest {keep} this schedule makes; "
                                  "the next run would delete none. Images the bot did not make "
                                  "and protected images are never deleted."))
        if view.kept_protected:
            blocks.append(section(_kept_protected(view.kept_protected)))
    if view.notify_channel:
        blocks.append(context(f"Run results go to {user_text(view.notify_channel)}."))
    blocks.append({
        "type": "actions",
        "block_id": f"cr_actions:{r.id}",
        "elements": [button("Approve", APPROVE_ACTION, r.id, "primary"),
                     button("Reject", REJECT_ACTION, r.id, "danger")],
    })
    return payload(f"Schedule change {r.id} for {user_text(view.server_label)} waits for approval",
                   blocks)


def _kept_protected(images: Sequence[RetainableImage]) -> str:
    """The schedule's protected images: counted by nothing, deleted by nothing."""
    names = "\n".join(f"• {code(img.name or img.id)} ({img.created_at:%Y-%m-%d %H:%M} UTC)"
                      for img in images[:MAX_LISTED_IMAGES])
    more = len(images) - MAX_LISTED_IMAGES
    if more > 0:
        names += f"\n• … and {more} more"
    return (f":lock: *Kept because protected:* {plural(len(images), 'image')} this schedule "
            f"made, never deleted while protected:\n{names}")


@dataclass(frozen=True)
class ScheduleLine:
    """One schedule in the `schedules` answer."""

    id: str
    server_label: str
    spec: ScheduleSpec
    next_run: tuple[datetime, datetime] | None  # (local, utc)
    last_result: str | None
    last_run_at: datetime | None
    approved_by: str | None
    notes: Sequence[str] = ()  # mrkdwn lines: paused, skip-next pending, run-now queued


def schedules_text(lines: Sequence[ScheduleLine],
                   pending: Sequence[tuple[ChangeRequest, str]], now: datetime) -> str:
    """The `/image schedules` answer: each schedule with next run (zone and UTC), last result,
    and the pending change requests."""
    out: list[str] = []
    if not lines:
        out.append("No schedules.")
    for line in lines:
        text = f"*{line.id}* {code(line.server_label)}: {escape(describe(line.spec, with_keep=True))}"
        if line.next_run:
            text += f"\n    next: {local_and_utc(*line.next_run)}"
        for note in line.notes:
            text += f"\n    {note}"
        last = user_text(_done(line.last_result)) if line.last_result else "no run yet"
        if line.last_run_at:
            last += f" ({when(line.last_run_at, now)})"
        text += f"\n    last: {last}"
        if line.approved_by:
            text += f" · approved by {user(line.approved_by)}"
        out.append(text)
    if pending:
        out.append("*Pending changes:*")
        out += [_pending_line(r, label, now) for r, label in pending]
    return "\n".join(out)


def _done(result: str) -> str:
    """A run's stored result in the words jobs use: success is "done" everywhere."""
    word, sep, rest = result.partition(":")
    return f"done{sep}{rest}" if word == RunResult.SUCCEEDED else result


def _pending_line(request: ChangeRequest, label: str, now: datetime) -> str:
    change = "off" if request.kind == "off" else spec_text(request.new)
    if request.operation is not None:
        change = f"{request.operation.kind} {request.operation.schedule_id}"
    return (f"• *{request.id}* {code(label)}: {escape(change)} — asked by "
            f"{user(request.requested_by)}, expires {when(request.expires_at, now)}")


def approvals_text(pending: Sequence[tuple[ChangeRequest, str]], now: datetime) -> str:
    """The `/image approvals` answer."""
    if not pending:
        return "No change requests are waiting for a decision."
    return "*Waiting for a decision:*\n" + "\n".join(
        _pending_line(r, label, now) for r, label in pending) + \
        "\nDecide with `/image approve R…` or `/image reject R… [reason]`, or the buttons."


def run_note(schedule_id: str, spec: ScheduleSpec, slot: datetime, missed: int,
             attempt: int = 1) -> str:
    """The job note of a scheduled run (shown on its thread parent)."""
    local = slot.astimezone(zone(spec.tz))
    note = (f"Scheduled run of {schedule_id} ({describe(spec)}) for "
            f"{local_and_utc(local, slot)}")
    if missed:
        were = "was" if missed == 1 else "were"
        note += (f"; {plural(missed, 'earlier slot')} {were} missed while the bot was down "
                 "(one catch-up run)")
    if attempt > 1:
        note += f"; attempt {attempt}"
    return note


def retention_reply(deleted: Sequence[RetainableImage],
                    failed: Sequence[tuple[RetainableImage, str]], keep: int) -> dict[str, Any]:
    """The thread reply listing what retention deleted (and what it could not)."""
    if not deleted and not failed:
        text = f":broom: Retention: nothing to delete (keeping the newest {keep})."
        return payload(text, [section(text)])
    lines = [f":broom: Retention (keep {keep}): deleted {plural(len(deleted), 'old image')} "
             "this schedule made."]
    lines += [f"• {code(img.name or img.id)} ({img.created_at:%Y-%m-%d %H:%M} UTC)"
              for img in deleted[:MAX_LISTED_IMAGES]]
    if len(deleted) > MAX_LISTED_IMAGES:
        lines.append(f"• … and {len(deleted) - MAX_LISTED_IMAGES} more")
    for img, why in failed[:MAX_LISTED_IMAGES]:
        lines.append(f":warning: could not delete {code(img.name or img.id)}: {user_text(why)}")
    text = "\n".join(lines)
    return payload(text, [section(text)])


def _ping(mention: str | None, text: str) -> str:
    return f"{mention} {text}" if mention else text


def busy_retry_reply(attempt: int, retry_at: datetime, now: datetime) -> dict[str, Any]:
    """Thread reply: the server was busy, the run will try again."""
    text = (f":hourglass_flowing_sand: The server was busy (attempt {attempt}). I will try "
            f"again at {when(retry_at, now)}.")
    return payload(text, [section(text)])


def alert(text: str, mention: str | None = None) -> dict[str, Any]:
    """A channel alert; `mention` (the policy's, e.g. `<!here>`) is the only ping it may carry."""
    body = _ping(mention, f":rotating_light: {text}")
    return payload(body, [section(body)])


def run_failed_alert(schedule_id: str, server_label: str, reason: str, attempts: int,
                     mention: str | None) -> dict[str, Any]:
    """Alert: a scheduled run failed for good."""
    tries = f" after {plural(attempts, 'attempt')}" if attempts > 1 else ""
    return alert(f"Scheduled image {schedule_id} of {code(server_label)} failed{tries}: "
                 f"{user_text(reason)}", mention)


def skipped_notice(schedule_id: str, server_label: str, slot: datetime, missed: int,
                   now: datetime) -> dict[str, Any]:
    """Notice: slots were too old to catch up on (the bot was down too long)."""
    text = (f":fast_forward: Schedule {schedule_id} of {code(server_label)} skipped "
            f"{plural(missed, 'slot')} (latest {when(slot, now)}): the bot was down past the "
            "catch-up window. The next slot runs as usual.")
    return payload(text, [section(text)])


def expiry_warning(request: ChangeRequest, server_label: str, who_may_approve: str,
                   now: datetime, mention: str | None = None) -> dict[str, Any]:
    """Notice: a change request expires soon."""
    left = human_duration(max((request.expires_at - now).total_seconds(), 0))
    text = _ping(mention, f":hourglass: Schedule change {request.id} for {code(server_label)} "
                          f"expires in {left} ({when(request.expires_at, now)}). It may be "
                          f"approved by {who_may_approve}.")
    return payload(text, [section(text)])
