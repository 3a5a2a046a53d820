"""The store's row types and the conversions between them and SQLite values.

Datetimes are stored as fixed-width UTC ISO text (string order is time order), JSON columns as
sorted-key JSON text; states, kinds and results are `bot.vocabulary` StrEnums whose values are
the stored strings, so a row reads back as the enum member and writes as the same text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.imaging.jobs import DATETIME_FIELDS, JOB_FIELDS, Job
from bot.vocabulary import JobState, OutboxKind, RequestStatus, RunResult

OUTBOX_KINDS = frozenset(OutboxKind)

# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxItem:
    """A Slack message to send later, written in the same transaction as the change it reports.

    `kind` is an `OutboxKind` value (checked when it is queued)."""

    kind: str
    channel: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    thread_key: str | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class OutboxMessage:
    """A stored outbox row."""

    id: int
    kind: OutboxKind
    channel: str
    payload: Mapping[str, Any]
    thread_key: str | None
    job_id: str | None
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    error: str | None
    result_ts: str | None
    posting_at: datetime | None = None  # a post was attempted then; it may have gone through


@dataclass(frozen=True)
class JobEvent:
    """One row of a job's append-only audit trail."""

    id: int
    job_id: str
    at: datetime
    event: str
    from_state: JobState | None
    to_state: JobState | None
    actor: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class AuditEntry:
    """One append-only audit fact to write: who did what to which subject (R4, S1, J17)."""

    action: str
    subject: str | None = None
    actor: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRow:
    """A stored audit row."""

    id: int
    at: datetime
    actor: str | None
    action: str
    subject: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class RequestPlan:
    """What `add_change_request` writes: the new row's values, CAS updates of other requests
    as (id, expected status, fields), audit entries, outbox items and the users who get a DM
    copy (`request_copies`)."""

    values: Mapping[str, Any]
    updates: Sequence[tuple[str, str, Mapping[str, Any]]] = ()
    audit: Sequence[AuditEntry] = ()
    outbox: Sequence[OutboxItem] = ()
    copies: Sequence[str] = ()


@dataclass(frozen=True)
class RequestRow:
    """A stored change request (specs as dicts: frequency, day, at 'HH:MM', tz, keep)."""

    id: str
    kind: str
    server_id: str
    server_ref: str
    server_name: str | None
    old_spec: Mapping[str, Any] | None
    new_spec: Mapping[str, Any] | None
    requested_by: str
    channel: str
    channel_name: str | None
    created_at: datetime
    expires_at: datetime
    status: RequestStatus
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    warned_at: datetime | None
    message_dirty: int
    updated_at: datetime
    # A schedule operation (issue 18): "pause", "resume", "run-now", "skip-next"; None for a
    # schedule change. Its detail: {"schedule_id": "S3", "slot": "<iso>"} (the slot skipped).
    operation: str | None = None
    operation_detail: Mapping[str, Any] | None = None
    # Rackspace Scheduled Images (m010): the request sets the cloud's schedule, not ours;
    # `applied_at`/`apply_result` say when and how the loop carried it out.
    native: bool = False
    applied_at: datetime | None = None
    apply_result: str | None = None


@dataclass(frozen=True)
class ScheduleRow:
    """A stored schedule; one per server, replaced in place on approval (same id)."""

    id: str
    server_id: str
    server_ref: str
    server_name: str | None
    frequency: str
    day: str | None
    at: str
    tz: str
    keep: int
    channel: str
    channel_name: str | None
    created_by: str
    approved_by: str | None
    request_id: str | None
    effective_at: datetime
    last_slot: datetime | None
    last_result: str | None
    last_run_at: datetime | None
    status: str
    created_at: datetime
    updated_at: datetime
    verify: bool = False  # `--verify`: each run's image is restore-tested
    # Schedule operations (issue 18, m009).
    paused_at: datetime | None = None  # paused since (None: running)
    pause_request: str | None = None
    resumed_at: datetime | None = None  # slots before the last resume never count
    skip_slot: datetime | None = None  # the one slot `skip-next` skips
    skip_request: str | None = None
    run_now_at: datetime | None = None  # a `run-now` approved and not yet started
    run_now_request: str | None = None
    target: str | None = None  # a fleet's target (`web-*`, `meta:role=web`); None: one server
    keep_days: int | None = None  # `--keep-days`: age retention


@dataclass(frozen=True)
class RunRow:
    """One claimed slot of a schedule."""

    id: int
    schedule_id: str
    slot: datetime
    missed: int
    attempts: int
    job_id: str | None
    result: RunResult
    next_attempt_at: datetime | None
    detail: str | None
    created_at: datetime
    updated_at: datetime


# --- conversions -------------------------------------------------------------------------------


def utc(value: datetime) -> datetime:
    """`value` in UTC; ValueError for a naive datetime (the store only takes aware ones)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store only takes aware UTC datetimes")
    return value.astimezone(UTC)


def dt_out(value: datetime | None) -> str | None:
    """A datetime as stored: fixed-width text, so SQL string comparison orders instants."""
    return None if value is None else utc(value).isoformat(timespec="microseconds")


def dt_in(value: str | None) -> datetime | None:
    """A stored datetime read back."""
    return None if value is None else datetime.fromisoformat(value)


def _dt_req(value: str | None) -> datetime:
    return dt_in(value) or datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RowCodec:
    """How one row dataclass is stored in its table: datetimes as fixed-width UTC text, tuples
    as JSON lists, flags as 0/1 (a flag that may be unknown stays NULL), enums as their value.
    `jobs` and `verifications` are both read and written through one of these."""

    fields: tuple[str, ...]
    datetimes: frozenset[str]
    tuples: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    enums: Mapping[str, type[StrEnum]] = field(default_factory=dict)

    def column(self, name: str, value: Any) -> Any:
        """A field's value as stored."""
        if name in self.datetimes:
            return dt_out(value)
        if name in self.tuples:
            return json.dumps(list(value or ()))
        if name in self.flags:
            return None if value is None else int(bool(value))
        return value

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row's columns as the dataclass's field values."""
        values: dict[str, Any] = {}
        for name in self.fields:
            value = row[name]
            if name in self.datetimes:
                value = dt_in(value)
            elif name in self.tuples:
                value = tuple(json.loads(value or "[]"))
            elif name in self.flags:
                value = None if value is None else bool(value)
            elif name in self.enums and value is not None:
                value = self.enums[name](value)
            values[name] = value
        return values


JOB_CODEC = RowCodec(JOB_FIELDS, DATETIME_FIELDS, tuples=frozenset({"data_disks"}),
                     flags=frozenset({"volume_backed", "verify"}))


def job_value(name: str, value: Any) -> Any:
    """A `Job` field's value as stored."""
    return JOB_CODEC.column(name, value)


_SPEC_COLUMNS = frozenset({"old_spec", "new_spec", "operation_detail"})


def column_value(name: str, value: Any) -> Any:
    """A change request, schedule or run column's value as stored."""
    if isinstance(value, datetime):
        return dt_out(value)
    if name in _SPEC_COLUMNS:
        return None if value is None else json.dumps(dict(value), sort_keys=True)
    return value


def event_detail(values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a job change as its event records them (never the response_url: those
    are credentials of a sort)."""
    return {k: job_value(k, v) for k, v in values.items() if k not in ("response_url",)}


def to_json(detail: Mapping[str, Any]) -> str:
    """A detail mapping as stored (anything not JSON becomes its str)."""
    return json.dumps(dict(detail), default=str, sort_keys=True)


def job_row(row: Mapping[str, Any]) -> Job:
    """A `jobs` row read back."""
    return Job(**JOB_CODEC.values(row))


def _state(value: str | None) -> JobState | None:
    return None if value is None else JobState(value)


def job_event_row(row: Mapping[str, Any]) -> JobEvent:
    """A `job_events` row read back."""
    return JobEvent(id=row["id"], job_id=row["job_id"], at=_dt_req(row["at"]),
                    event=row["event"], from_state=_state(row["from_state"]),
                    to_state=_state(row["to_state"]), actor=row["actor"],
                    detail=json.loads(row["detail"]))


def audit_row(row: Mapping[str, Any]) -> AuditRow:
    """An `audit` row read back."""
    return AuditRow(id=row["id"], at=_dt_req(row["at"]), actor=row["actor"],
                    action=row["action"], subject=row["subject"], detail=json.loads(row["detail"]))


def outbox_row(row: Mapping[str, Any]) -> OutboxMessage:
    """An `outbox` row read back."""
    return OutboxMessage(
        id=row["id"], kind=OutboxKind(row["kind"]), channel=row["channel"],
        payload=json.loads(row["payload"]), thread_key=row["thread_key"], job_id=row["job_id"],
        created_at=_dt_req(row["created_at"]),
        attempts=row["attempts"], next_attempt_at=dt_in(row["next_attempt_at"]),
        sent_at=dt_in(row["sent_at"]), error=row["error"], result_ts=row["result_ts"],
        posting_at=dt_in(row["posting_at"]))


def request_row(row: Mapping[str, Any]) -> RequestRow:
    """A `change_requests` row read back."""
    return RequestRow(
        id=row["id"], kind=row["kind"], server_id=row["server_id"],
        server_ref=row["server_ref"], server_name=row["server_name"],
        old_spec=json.loads(row["old_spec"]) if row["old_spec"] else None,
        new_spec=json.loads(row["new_spec"]) if row["new_spec"] else None,
        requested_by=row["requested_by"], channel=row["channel"],
        channel_name=row["channel_name"], created_at=_dt_req(row["created_at"]),
        expires_at=_dt_req(row["expires_at"]),
        status=RequestStatus(row["status"]), decided_by=row["decided_by"],
        decided_at=dt_in(row["decided_at"]), reason=row["reason"],
        warned_at=dt_in(row["warned_at"]),
        message_dirty=row["message_dirty"], updated_at=_dt_req(row["updated_at"]),
        operation=row["operation"],
        operation_detail=(json.loads(row["operation_detail"]) if row["operation_detail"]
                          else None),
        native=bool(row["native"]), applied_at=dt_in(row["applied_at"]),
        apply_result=row["apply_result"])


def schedule_row(row: Mapping[str, Any]) -> ScheduleRow:
    """A `schedules` row read back."""
    return ScheduleRow(
        id=row["id"], server_id=row["server_id"], server_ref=row["server_ref"],
        server_name=row["server_name"], frequency=row["frequency"], day=row["day"],
        at=row["at"], tz=row["tz"], keep=int(row["keep"]), channel=row["channel"],
        channel_name=row["channel_name"],
        created_by=row["created_by"], approved_by=row["approved_by"],
        request_id=row["request_id"], effective_at=_dt_req(row["effective_at"]),
        last_slot=dt_in(row["last_slot"]), last_result=row["last_result"],
        last_run_at=dt_in(row["last_run_at"]), status=row["status"],
        created_at=_dt_req(row["created_at"]), updated_at=_dt_req(row["updated_at"]),
        verify=bool(row["verify"]),
        paused_at=dt_in(row["paused_at"]), pause_request=row["pause_request"],
        resumed_at=dt_in(row["resumed_at"]), skip_slot=dt_in(row["skip_slot"]),
        skip_request=row["skip_request"], run_now_at=dt_in(row["run_now_at"]),
        run_now_request=row["run_now_request"],
        target=row["target"],
        keep_days=None if row["keep_days"] is None else int(row["keep_days"]))


def run_row(row: Mapping[str, Any]) -> RunRow:
    """A `schedule_runs` row read back."""
    return RunRow(
        id=row["id"], schedule_id=row["schedule_id"], slot=_dt_req(row["slot"]),
        missed=row["missed"], attempts=row["attempts"], job_id=row["job_id"],
        result=RunResult(row["result"]), next_attempt_at=dt_in(row["next_attempt_at"]),
        detail=row["detail"], created_at=_dt_req(row["created_at"]),
        updated_at=_dt_req(row["updated_at"]))
