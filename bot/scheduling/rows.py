"""Between stored rows and the pure scheduling types: specs, change requests, approval views.

Pure: no I/O. The shells (`requests`, `loop`, `service`) and the tests use these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import Any

import commands
from bot.scheduling.approvals import ApprovalRules, ChangeRequest
from bot.scheduling.due import DEFAULT_WINDOW, ScheduleSpec, ambiguous_or_missing, preview
from bot.scheduling.messages import ApprovalView
from bot.scheduling.op_messages import operation_done, operation_line, operation_runs
from bot.scheduling.operations import OpState, ScheduleOp, Timing
from bot.scheduling.retention import RetainableImage
from bot.store import AuditEntry, OutboxItem, RequestPlan, RequestRow, ScheduleRow
from bot.vocabulary import OutboxKind, RequestStatus


def spec_of(request: commands.Schedule) -> ScheduleSpec:
    """The spec a parsed `/image schedule` asks for (`InvalidSchedule` when it cannot run)."""
    return ScheduleSpec(request.frequency, request.day, request.at, request.tz, request.keep,
                        request.keep_days)


def spec_to_dict(spec: ScheduleSpec) -> dict[str, Any]:
    """A spec as stored: frequency, day, at 'HH:MM', tz, keep (and keep_days, native when
    set)."""
    stored: dict[str, Any] = {"frequency": spec.frequency, "day": spec.day,
                              "at": spec.at.strftime("%H:%M"), "tz": spec.tz, "keep": spec.keep}
    return (stored | ({} if spec.keep_days is None else {"keep_days": spec.keep_days})
            | ({"native": True} if spec.native else {}))


def spec_from_dict(data: Mapping[str, Any]) -> ScheduleSpec:
    """The inverse of `spec_to_dict`."""
    hh, mm = str(data["at"]).split(":")
    days = data.get("keep_days")
    return ScheduleSpec(data["frequency"], data.get("day"), time(int(hh), int(mm)),
                        str(data["tz"]), int(data["keep"]),
                        keep_days=None if days is None else int(days),
                        native=bool(data.get("native", False)))


def schedule_spec(row: ScheduleRow) -> ScheduleSpec:
    """The spec of a stored schedule."""
    return spec_from_dict({"frequency": row.frequency, "day": row.day, "at": row.at,
                           "tz": row.tz, "keep": row.keep, "keep_days": row.keep_days})


def active_spec(row: ScheduleRow | None) -> ScheduleSpec | None:
    """The spec of a server's schedule when it is active (None: none, or turned off)."""
    return schedule_spec(row) if row is not None and row.status == "active" else None


def to_request(row: RequestRow) -> ChangeRequest:
    """The pure `ChangeRequest` of a stored row."""
    return ChangeRequest(
        id=row.id, kind=row.kind,  # type: ignore[arg-type]
        server=row.server_id,
        old=spec_from_dict(row.old_spec) if row.old_spec else None,
        new=spec_from_dict(row.new_spec) if row.new_spec else None,
        requested_by=row.requested_by, channel=row.channel, created_at=row.created_at,
        expires_at=row.expires_at, status=RequestStatus(row.status),
        decided_by=row.decided_by, decided_at=row.decided_at, reason=row.reason,
        operation=(ScheduleOp.from_stored(row.operation, row.operation_detail)
                   if row.operation else None))


def op_state(row: ScheduleRow) -> OpState:
    """The operation columns of a stored schedule (pause, skip-next, run-now)."""
    return OpState(paused_at=row.paused_at, pause_request=row.pause_request,
                   resumed_at=row.resumed_at, skip_slot=row.skip_slot,
                   skip_request=row.skip_request, run_now_at=row.run_now_at,
                   run_now_request=row.run_now_request)


def timing(row: ScheduleRow, window: timedelta = DEFAULT_WINDOW) -> Timing:
    """What the catch-up policy reads off a stored schedule besides its spec."""
    return Timing(effective_at=row.effective_at, last_slot=row.last_slot, window=window)


def label(row: RequestRow | ScheduleRow) -> str:
    """How a request or schedule names its server: the name when known, else the reference."""
    return row.server_name or row.server_ref


def decision_fields(request: ChangeRequest) -> dict[str, Any]:
    """The columns a decision (approve, reject, expire, supersede) writes."""
    return {"status": request.status, "decided_by": request.decided_by,
            "decided_at": request.decided_at, "reason": request.reason}


def approval_view(request: ChangeRequest, server_label: str, rules: ApprovalRules,
                  notify: str | None, now: datetime,
                  doomed: Iterable[RetainableImage] = (),
                  kept: Iterable[RetainableImage] = ()) -> ApprovalView:
    """What the approval message shows: the next runs, DST notes, who may approve, the images
    the change would delete and the protected ones it keeps (`kept`); for an operation, what it
    will do."""
    runs: list[tuple[datetime, datetime]] = []
    notes: list[str] = []
    op = request.operation
    if op is not None:
        runs = operation_runs(op, request.old, now)
    elif request.new is not None:
        runs = preview(request.new, now, 3)
        notes = [n.text for n in ambiguous_or_missing(request.new, 366, now=now)]
    return ApprovalView(request=request, server_label=server_label,
                        who_may_approve=rules.who_may_approve(request.requested_by),
                        next_runs=runs, dst_notes=notes, would_delete=tuple(doomed),
                        notify_channel=notify,
                        operation_line=(operation_line(op, server_label, request.old)
                                        if op else None),
                        operation_done=operation_done(op, request.old) if op else None,
                        kept_protected=tuple(kept))


def request_plan(request_id: str, *, user: str, channel: str, values: Mapping[str, Any],
                 created: AuditEntry, replaced: Iterable[ChangeRequest], card: dict[str, Any],
                 more_outbox: Iterable[OutboxItem] = (),
                 copies: tuple[str, ...] = ()) -> RequestPlan:
    """What `add_change_request` writes for a new request: its row, the requests it
    supersedes (each compare-and-set from pending, and audited), its card in `channel` (thread
    key = the request id) and any further outbox items."""
    replaced = list(replaced)
    audit = [created, *(AuditEntry("request_superseded", r.id, user, {"by": request_id})
                        for r in replaced)]
    return RequestPlan(
        values=values,
        updates=[(r.id, RequestStatus.PENDING, decision_fields(r)) for r in replaced],
        audit=audit,
        outbox=[OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=channel, payload=card,
                           thread_key=request_id), *more_outbox],
        copies=copies)
