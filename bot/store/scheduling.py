"""Schedules, change requests, schedule runs (slot claims) and the append-only audit.

Each decision is written as one transaction: a request's compare-and-set with the schedule it
approves, a slot claim with the job it starts, a run's result with its retry job, always with
their audit rows and outbox items."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.errors import ConflictingUpdate, NoSuchRequest, NoSuchSchedule
from bot.imaging.jobs import Job
from bot.store.copies import CopyTables
from bot.store.db import Where, normalize_id
from bot.store.jobs import JobTables
from bot.store.rows import (
    AuditEntry,
    AuditRow,
    OutboxItem,
    RequestPlan,
    RequestRow,
    RunRow,
    ScheduleRow,
    audit_row,
    column_value,
    dt_out,
    request_row,
    run_row,
    schedule_row,
    to_json,
)
from bot.vocabulary import RequestStatus, RunResult


def normalize_request_id(request_id: str) -> str:
    """'r4' / 'R4' -> 'R4'; JobError for anything else."""
    return normalize_id(request_id, "R",
                        "%r is not a change request id (they look like R4).")


def _stored(fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Column values as stored, stamped `updated_at` = now."""
    return {k: column_value(k, v) for k, v in fields.items()} | {"updated_at": dt_out(now)}


class ScheduleTables(JobTables, CopyTables):
    """The `audit`, `change_requests`, `schedules` and `schedule_runs` tables."""

    # --- audit -----------------------------------------------------------------------------

    def _audit(self, now: datetime, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            self._insert("audit", {"at": dt_out(now), "actor": entry.actor,
                                   "action": entry.action, "subject": entry.subject,
                                   "detail": to_json(entry.detail)})

    def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit rows (the table rejects UPDATE and DELETE)."""
        with self._tx():
            self._audit(self._now(), entries)

    def audit_rows(self, subject: str | None = None, limit: int = 1000) -> list[AuditRow]:
        """Audit rows, oldest first, optionally about one subject (R4, S1, J17)."""
        where = Where() if subject is None else Where().eq("subject", subject)
        return self._select("audit", audit_row, where, order="id", limit=limit)

    # --- change requests ----------------------------------------------------------------

    def _request(self, request_id: str) -> RequestRow:
        return self._get("change_requests", request_row, request_id,
                         f"There is no change request {request_id}.", NoSuchRequest)

    def get_change_request(self, request_id: str) -> RequestRow:
        """One change request ('R4' or 'r4'); NoSuchRequest when unknown."""
        return self._request(normalize_request_id(request_id))

    def list_change_requests(self, *, statuses: Collection[str] | None = None,
                             server_id: str | None = None, limit: int = 100,
                             channel: str | Collection[str] | None = None,
                             requested_by: str | None = None,
                             newest_first: bool = False) -> list[RequestRow]:
        """Change requests, oldest first (or newest first), filtered by status, server,
        channel (id) and requester."""
        where = Where().channel(channel)
        if statuses is not None:
            where.any_of("status", statuses)
        if server_id is not None:
            where.eq("server_id", server_id)
        if requested_by is not None:
            where.eq("requested_by", requested_by)
        return self._select("change_requests", request_row, where,
                            order="seq DESC" if newest_first else "seq", limit=limit)

    def add_change_request(self, build: Callable[[str], RequestPlan]) -> RequestRow:
        """Insert a change request whose id ('R<n>') is allocated inside the transaction.

        `build(id)` returns the row values, CAS updates of other requests (e.g. superseding),
        audit entries and outbox items; all are written atomically.
        """
        now = self._now()
        with self._tx():
            seq, request_id = self.next_id("change_requests", "R")
            plan = build(request_id)
            for other_id, expected, fields in plan.updates:
                self._write_request(other_id, expected, fields, now)
            self._insert("change_requests", _stored(plan.values, now) | {
                "seq": seq, "id": request_id, "created_at": dt_out(now)})
            self._audit(now, plan.audit)
            self._add_copies(request_id, plan.copies, now)  # the DM copies' rows (m011)
            self._enqueue(now, plan.outbox, None)
            return self._request(request_id)

    def _write_request(self, request_id: str, expected: str, fields: Mapping[str, Any],
                       now: datetime) -> None:
        # Every change dirties the posted message so the service rewrites it.
        changed = self._update("change_requests", _stored(fields, now),
                               Where().eq("id", request_id).eq("status", expected),
                               also="message_dirty = message_dirty + 1")
        if changed != 1:
            raise ConflictingUpdate(f"Change request {request_id} is no longer {expected}.")

    def update_change_request(self, request_id: str, *, expected: str,
                              fields: Mapping[str, Any], audit: Sequence[AuditEntry] = (),
                              outbox: Sequence[OutboxItem] = (),
                              schedule: Mapping[str, Any] | None = None) -> RequestRow:
        """Compare-and-set a request's status (`ConflictingUpdate` when it is not `expected`),
        optionally upserting the server's schedule (by server_id), in one transaction."""
        now = self._now()
        with self._tx():
            self._write_request(request_id, expected, fields, now)
            if schedule is not None:
                self._upsert_schedule(schedule, now)
            self._audit(now, audit)
            self._enqueue(now, outbox, None)
            return self._request(request_id)

    def dirty_requests(self) -> list[RequestRow]:
        """Requests whose posted message must be rewritten."""
        return self._select("change_requests", request_row, Where(["message_dirty > 0"]),
                            order="seq")

    def mark_request_clean(self, request_id: str, version: int) -> bool:
        """The message shows version `version`; False when the row changed again since."""
        return self._update("change_requests", {"message_dirty": 0},
                            Where().eq("id", request_id).eq("message_dirty", version)) == 1

    def mark_request_warned(self, request_id: str) -> bool:
        """Record that the about-to-expire warning went out (True only the first time)."""
        with self._tx():
            where = Where(["warned_at IS NULL"]).eq("id", request_id).eq(
                "status", RequestStatus.PENDING)
            return self._update("change_requests", {"warned_at": dt_out(self._now())},
                                where) == 1

    # --- schedules --------------------------------------------------------------------------

    def _set_schedule(self, schedule_id: str, fields: Mapping[str, Any], now: datetime) -> None:
        """The one UPDATE of a schedule's fields (stamped `updated_at`)."""
        self._update("schedules", _stored(fields, now), Where().eq("id", schedule_id))

    def _upsert_schedule(self, values: Mapping[str, Any], now: datetime) -> ScheduleRow:
        existing = self.schedule_for_server(values["server_id"])
        if existing is not None:
            self._set_schedule(existing.id, values, now)
            return self._schedule(existing.id)
        seq, schedule_id = self.next_id("schedules", "S")
        self._insert("schedules", _stored(values, now) | {
            "seq": seq, "id": schedule_id, "created_at": dt_out(now)})
        return self._schedule(schedule_id)

    def _schedule(self, schedule_id: str) -> ScheduleRow:
        return self._get("schedules", schedule_row, schedule_id,
                         f"There is no schedule {schedule_id}.", NoSuchSchedule)

    def get_schedule(self, schedule_id: str) -> ScheduleRow:
        """One schedule by id ('S1'); NoSuchSchedule when unknown."""
        return self._schedule(schedule_id.strip().upper())

    def schedule_for_server(self, server_id: str) -> ScheduleRow | None:
        """The schedule row of a server (active or off), if any."""
        return self._first("schedules", schedule_row, Where().eq("server_id", server_id))

    def list_schedules(self, *, status: str | None = "active",
                       server: str | None = None,
                       channel: str | Collection[str] | None = None) -> list[ScheduleRow]:
        """Schedules in id order; `server` matches server_ref, server_name or server_id;
        `channel` (an id) keeps the schedules made in that channel."""
        where = Where().channel(channel)
        if status is not None:
            where.eq("status", status)
        return self._select("schedules", schedule_row, where.server(server), order="seq")

    def update_schedule(self, schedule_id: str, fields: Mapping[str, Any],
                        audit: Sequence[AuditEntry] = (),
                        outbox: Sequence[OutboxItem] = ()) -> ScheduleRow:
        """Set schedule fields (last_result, ...) with audit rows and outbox items."""
        now = self._now()
        with self._tx():
            self._set_schedule(schedule_id, fields, now)
            self._audit(now, audit)
            self._enqueue(now, outbox, None)
            return self._schedule(schedule_id)

    # --- runs ----------------------------------------------------------------------------------

    def claim_slot(self, schedule_id: str, slot: datetime, *, missed: int, result: str,
                   job: Mapping[str, Any] | None, schedule_fields: Mapping[str, Any],
                   audit: Sequence[AuditEntry] = ()) -> tuple[RunRow, Job | None] | None:
        """Claim (schedule, slot) and, when `job` is given, create its job, atomically.

        None when the slot was already claimed (another tick or another bot instance): the
        UNIQUE(schedule_id, slot) row is the idempotency key, so one slot never makes two images.
        """
        now = self._now()
        with self._tx():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO schedule_runs (schedule_id, slot, missed, attempts, "
                "result, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [schedule_id, dt_out(slot), missed, 0, result, dt_out(now), dt_out(now)])
            if cursor.rowcount != 1:
                return None
            run_id = int(cursor.lastrowid or 0)
            created: Job | None = None
            if job is not None:
                created, _ = self.create_job(**job)
                self._update("schedule_runs", {"job_id": created.id, "attempts": 1},
                             Where().eq("id", run_id))
            self._set_schedule(schedule_id, schedule_fields, now)
            self._audit(now, audit)
            return self._run(run_id), created

    def _run(self, run_id: int) -> RunRow:
        return self._get("schedule_runs", run_row, run_id, f"There is no schedule run {run_id}.")

    def open_runs(self) -> list[RunRow]:
        """Runs still being worked on (a job in flight, or waiting to retry a busy server)."""
        where = Where().any_of("result", [RunResult.RUNNING, RunResult.RETRY_WAIT])
        return self._select("schedule_runs", run_row, where, order="id")

    def runs_for_schedule(self, schedule_id: str) -> list[RunRow]:
        """Every run of a schedule, oldest first."""
        return self._select("schedule_runs", run_row, Where().eq("schedule_id", schedule_id),
                            order="id")

    def update_run(self, run_id: int, *, expected: str, fields: Mapping[str, Any],
                   job: Mapping[str, Any] | None = None,
                   schedule_fields: Mapping[str, Any] | None = None,
                   audit: Sequence[AuditEntry] = (),
                   outbox: Sequence[OutboxItem] = ()) -> tuple[RunRow, Job | None]:
        """Compare-and-set a run's result (`ConflictingUpdate` when it is not `expected`);
        optionally create a retry job (attempts + 1) and update the schedule, atomically."""
        now = self._now()
        with self._tx():
            current = self._run(run_id)
            values = _stored(fields, now)
            created: Job | None = None
            if job is not None:
                created, _ = self.create_job(**job)
                values["job_id"] = created.id
                values["attempts"] = current.attempts + 1
            if self._update("schedule_runs", values,
                            Where().eq("id", run_id).eq("result", expected)) != 1:
                raise ConflictingUpdate(f"Schedule run {run_id} is no longer {expected}.")
            if schedule_fields:
                self._set_schedule(current.schedule_id, schedule_fields, now)
            self._audit(now, audit)
            self._enqueue(now, outbox, created.id if created else current.job_id)
            return self._run(run_id), created

    # --- Rackspace Scheduled Images (native change requests) ---------------------------------

    def native_to_apply(self) -> list[RequestRow]:
        """Approved `--native` requests whose cloud call has not been recorded yet."""
        where = Where(["applied_at IS NULL"]).eq("native", 1).eq("status",
                                                                  RequestStatus.APPROVED)
        return self._select("change_requests", request_row, where, order="seq")

    def record_native_applied(self, request_id: str, *, result: str,
                              audit: Sequence[AuditEntry] = (),
                              outbox: Sequence[OutboxItem] = ()) -> bool:
        """Record how the cloud answered a native request, once (False when it already was),
        with its audit rows and the thread reply; its message is rewritten."""
        now = self._now()
        with self._tx():
            changed = self._update(
                "change_requests", _stored({"applied_at": now, "apply_result": result}, now),
                Where(["applied_at IS NULL"]).eq("id", request_id),
                also="message_dirty = message_dirty + 1")
            if changed != 1:
                return False
            self._audit(now, audit)
            self._enqueue(now, outbox, None)
            return True
