"""Fleet runs: per run of a fleet schedule, the servers its target matched (`fleet_members`,
one row each with the job that images it) and the run's digest message (`fleet_runs`).

As for single-server runs, claiming the slot, creating every member's job and queueing the
digest card is one transaction (UNIQUE(schedule_id, slot) is the idempotency key), and each
later step is a compare-and-set written with its audit rows and outbox items."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.errors import ConflictingUpdate
from bot.store.db import Where
from bot.store.rows import AuditEntry, OutboxItem, RunRow, dt_in, dt_out
from bot.store.scheduling import ScheduleTables, _stored


@dataclass(frozen=True)
class FleetMember:
    """One server of one fleet run."""

    run_id: int
    server_id: str
    server_name: str
    job_id: str | None
    attempts: int
    result: str  # a RunResult: running, retry_wait, succeeded, failed
    next_attempt_at: datetime | None
    detail: str | None
    resumed: bool  # "writes may resume" was said for it
    deleted: int  # images retention deleted after its success


@dataclass(frozen=True)
class FleetRun:
    """A fleet run's target as resolved, what it dropped and skipped, and its digest."""

    run_id: int
    schedule_id: str
    target: str
    dropped: tuple[str, ...]  # servers of the previous run that the target no longer matches
    skipped: tuple[str, ...]  # matched, but the channel policy may not touch them
    digest: str | None  # the card text last sent to Slack (rewritten when it changes)
    summarized_at: datetime | None
    card_done: bool = False  # the card shows the summarized run: nothing more to rewrite


def _member(row: Mapping[str, Any]) -> FleetMember:
    return FleetMember(run_id=row["run_id"], server_id=row["server_id"],
                       server_name=row["server_name"], job_id=row["job_id"],
                       attempts=row["attempts"], result=row["result"],
                       next_attempt_at=dt_in(row["next_attempt_at"]), detail=row["detail"],
                       resumed=bool(row["resumed"]), deleted=int(row["deleted"]))


def _fleet_run(row: Mapping[str, Any]) -> FleetRun:
    return FleetRun(run_id=row["run_id"], schedule_id=row["schedule_id"], target=row["target"],
                    dropped=tuple(json.loads(row["dropped"])),
                    skipped=tuple(json.loads(row["skipped"])), digest=row["digest"],
                    summarized_at=dt_in(row["summarized_at"]), card_done=bool(row["card_done"]))


# (server_id, server_name, the job's values)
NewMember = tuple[str, str, Mapping[str, Any]]
# (server_id, expected result, fields, the next attempt's job or None)
MemberUpdate = tuple[str, str, Mapping[str, Any], Mapping[str, Any] | None]


class FleetTables(ScheduleTables):
    """The `fleet_runs` and `fleet_members` tables."""

    def claim_fleet_slot(self, schedule_id: str, slot: datetime, *, missed: int, target: str,
                         members: Sequence[NewMember], dropped: Sequence[str],
                         skipped: Sequence[str], result: str,
                         schedule_fields: Mapping[str, Any], audit: Sequence[AuditEntry] = (),
                         outbox: Callable[[int], Sequence[OutboxItem]] | None = None,
                         ) -> RunRow | None:
        """Claim (schedule, slot), create one job per member and the digest's outbox items
        (`outbox(run_id)`), atomically; None when the slot was claimed before."""
        now = self._now()
        with self._tx():
            claimed = self.claim_slot(schedule_id, slot, missed=missed, result=result, job=None,
                                      schedule_fields=schedule_fields, audit=audit)
            if claimed is None:
                return None
            run = claimed[0]
            self._insert("fleet_runs", {"run_id": run.id, "schedule_id": schedule_id,
                                        "target": target, "dropped": json.dumps(list(dropped)),
                                        "skipped": json.dumps(list(skipped))})
            for server_id, name, job in members:
                created, _ = self.create_job(**job)
                self._insert("fleet_members", {
                    "run_id": run.id, "server_id": server_id, "server_name": name,
                    "job_id": created.id, "attempts": 1, "result": result})
            self._enqueue(now, outbox(run.id) if outbox else (), None)
            return run

    def fleet_run(self, run_id: int) -> FleetRun | None:
        """The fleet part of a run, or None for a single-server run."""
        return self._first("fleet_runs", _fleet_run, Where().eq("run_id", run_id))

    def fleet_members(self, run_id: int) -> list[FleetMember]:
        """The servers of one fleet run, by name."""
        return self._select("fleet_members", _member, Where().eq("run_id", run_id),
                            order="server_name")

    def open_fleet_runs(self) -> list[FleetRun]:
        """Fleet runs not summarized yet, or whose card does not show the summary yet."""
        return self._select("fleet_runs", _fleet_run,
                            Where(["(summarized_at IS NULL OR card_done = 0)"]), order="run_id")

    def fleet_work(self) -> int:
        """Fleet runs owing a step now: no member's job is working and none waits to retry a
        busy server, but the summary is not written, or the card does not show it yet (what
        `wait` and `settle` wait for, like jobs in flight)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM fleet_runs f WHERE (f.summarized_at IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM fleet_members m WHERE m.run_id = f.run_id AND (m.result = "
            "'retry_wait' OR (m.result = 'running' AND m.job_id IN (SELECT id FROM jobs "
            "WHERE state NOT IN ('succeeded', 'failed', 'cancelled')))))) "
            "OR (f.summarized_at IS NOT NULL AND f.card_done = 0)").fetchone()
        return int(row[0])

    def schedule_run(self, run_id: int) -> RunRow:
        """One run row by id."""
        return self._run(run_id)

    def failed_verification_images(self, image_ids: Sequence[str]) -> set[str]:
        """Of these images, the ones a restore test failed (retention does not count them as
        good)."""
        if not image_ids:
            return set()
        marks = ", ".join("?" for _ in image_ids)
        rows = self.db.execute(f"SELECT image_id FROM verifications WHERE outcome = 'failed' "
                               f"AND image_id IN ({marks})", list(image_ids)).fetchall()
        return {str(r[0]) for r in rows}

    def previous_fleet_members(self, schedule_id: str) -> list[FleetMember]:
        """The members of the schedule's latest fleet run (to say who was dropped since)."""
        latest = self.db.execute("SELECT MAX(run_id) FROM fleet_runs WHERE schedule_id = ?",
                                 [schedule_id]).fetchone()
        return [] if latest is None or latest[0] is None else self.fleet_members(int(latest[0]))

    def update_fleet(self, run_id: int, *, members: Sequence[MemberUpdate] = (),
                     resumed: Sequence[str] = (), fleet_fields: Mapping[str, Any] | None = None,
                     run_expected: str | None = None, run_fields: Mapping[str, Any] | None = None,
                     schedule_fields: Mapping[str, Any] | None = None,
                     audit: Sequence[AuditEntry] = (),
                     outbox: Sequence[OutboxItem] = ()) -> None:
        """Compare-and-set member results (and mark `resumed` servers said), the run row and
        the digest fields, with audit and outbox, in one transaction (`ConflictingUpdate`
        when a member or the run is no longer as expected)."""
        now = self._now()
        with self._tx():
            for server_id, expected, fields, job in members:
                values = dict(fields)
                if job is not None:
                    created, _ = self.create_job(**job)
                    values["job_id"] = created.id
                where = Where().eq("run_id", run_id).eq("server_id", server_id).eq(
                    "result", expected)
                values = {k: dt_out(v) if isinstance(v, datetime) else v
                          for k, v in values.items()}
                also = "attempts = attempts + 1" if job is not None else ""
                if self._update("fleet_members", values, where, also=also) != 1:
                    raise ConflictingUpdate(f"Fleet run {run_id}: {server_id} is no longer "
                                            f"{expected}.")
            for server_id in resumed:
                self._update("fleet_members", {"resumed": 1}, Where().eq("run_id", run_id).eq(
                    "server_id", server_id))
            if run_fields:
                where = Where().eq("id", run_id)
                if run_expected is not None:
                    where.eq("result", run_expected)
                if self._update("schedule_runs", _stored(run_fields, now), where) != 1:
                    raise ConflictingUpdate(f"Schedule run {run_id} changed.")
            if fleet_fields:
                self._update("fleet_runs", {k: dt_out(v) if isinstance(v, datetime) else v
                                            for k, v in fleet_fields.items()},
                             Where().eq("run_id", run_id))
            if schedule_fields:
                schedule_id = self.db.execute("SELECT schedule_id FROM schedule_runs WHERE id = ?",
                                              [run_id]).fetchone()[0]
                self._set_schedule(schedule_id, schedule_fields, now)
            self._audit(now, audit)
            self._enqueue(now, outbox, None)
