"""What schedule operations (pause, resume, run-now, skip-next) say: pure functions, no I/O.

The approval message's change line and outcome, the notes `/image schedules` adds under a
schedule, and the notices of the loop. mrkdwn, user text escaped (see `bot.blocks`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.blocks import code, escape, payload, section
from bot.scheduling.approvals import when
from bot.scheduling.due import ScheduleSpec, describe, preview, zone
from bot.scheduling.messages import local_and_utc
from bot.scheduling.operations import OpState, ScheduleOp


def slot_text(spec: ScheduleSpec, slot: datetime) -> str:
    """A slot in the schedule's zone and in UTC."""
    return local_and_utc(slot.astimezone(zone(spec.tz)), slot)


def _what(op: ScheduleOp, server_label: str, spec: ScheduleSpec | None) -> str:
    said = escape(describe(spec)) if spec is not None else "no schedule"
    return f"{op.schedule_id} ({code(server_label)}, {said})"


def operation_line(op: ScheduleOp, server_label: str, spec: ScheduleSpec | None) -> str:
    """The approval message's line saying what the operation will do."""
    what = _what(op, server_label, spec)
    if op.kind == "pause":
        return f"*Pause* {what}: no runs until resumed"
    if op.kind == "resume":
        return (f"*Resume* {what}: it runs again from its next slot; the slots missed while "
                "paused are not caught up")
    if op.kind == "skip-next" and op.slot is not None and spec is not None:
        return (f"*Skip the next run* of {what}: the slot {slot_text(spec, op.slot)} does not "
                "run; the slots after it run as usual")
    return (f"*Run* {what} *once now*: one image as soon as this is approved; the regular "
            "slots stay as they are")


def operation_done(op: ScheduleOp, spec: ScheduleSpec | None) -> str:
    """What an approved operation did (the rewritten approval message)."""
    if op.kind == "pause":
        return f"{op.schedule_id} is paused: no runs until resumed."
    if op.kind == "resume":
        return f"{op.schedule_id} runs again from its next slot."
    if op.kind == "skip-next" and op.slot is not None and spec is not None:
        return f"{op.schedule_id} skips the slot {slot_text(spec, op.slot)}."
    return f"{op.schedule_id} runs once now."


def operation_runs(op: ScheduleOp, spec: ScheduleSpec | None,
                   now: datetime) -> list[tuple[datetime, datetime]]:
    """The next runs the approval message lists: after the skipped slot for skip-next, the
    regular ones for resume and run-now (unchanged by it), none for pause."""
    if spec is None or op.kind == "pause":
        return []
    after = op.slot if op.kind == "skip-next" and op.slot is not None else now
    return preview(spec, max(after, now), 3)


def schedule_notes(state: OpState, spec: ScheduleSpec, now: datetime) -> list[str]:
    """The lines `/image schedules` adds under a schedule: paused, a skip-next pending, a
    run-now queued."""
    notes: list[str] = []
    if state.paused_at is not None:
        by = f" ({state.pause_request})" if state.pause_request else ""
        notes.append(f":double_vertical_bar: paused since {when(state.paused_at, now)}{by}: "
                     "no runs until resumed")
    if state.skip_slot is not None and state.skip_slot > now:
        by = f" ({state.skip_request})" if state.skip_request else ""
        notes.append(f":fast_forward: skip-next{by}: the slot {slot_text(spec, state.skip_slot)} "
                     "does not run")
    if state.run_now_at is not None:
        by = f" ({state.run_now_request})" if state.run_now_request else ""
        notes.append(f":arrow_forward: run-now queued{by}: one run as soon as nothing else of "
                     "this schedule runs")
    return notes


def skipped_on_request(schedule_id: str, server_label: str, spec: ScheduleSpec,
                       slot: datetime, request_id: str | None) -> dict[str, Any]:
    """Notice: the slot skip-next named was skipped (once)."""
    asked = f", as {request_id} asked" if request_id else ""
    text = (f":fast_forward: Schedule {schedule_id} of {code(server_label)} skipped its slot "
            f"{slot_text(spec, slot)}{asked}. The next slot runs as usual.")
    return payload(text, [section(text)])


def run_now_note(schedule_id: str, spec: ScheduleSpec, request_id: str | None,
                 at: datetime) -> str:
    """The job note of a run-now (shown on its thread parent)."""
    asked = f" ({request_id})" if request_id else ""
    return (f"Run-now of {schedule_id} ({describe(spec)}){asked}, approved at "
            f"{slot_text(spec, at)}; the regular slots are unchanged")
