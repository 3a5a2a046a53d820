"""Image jobs and their append-only events.

Every state change is written together with its `job_events` row and the outbox items that
tell Slack about it, in one transaction; `transition` is a compare-and-set on the state, checked
against the state machine of `bot.imaging.jobs`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.errors import ConflictingUpdate, InvalidTransition, JobError, ServerInUse
from bot.imaging import jobs
from bot.imaging.jobs import JOB_FIELDS, Job
from bot.store.db import Where, last_id_sql, normalize_id
from bot.store.outbox import OutboxTables
from bot.store.rows import (
    JobEvent,
    OutboxItem,
    dt_out,
    event_detail,
    job_event_row,
    job_row,
    job_value,
    to_json,
)
from bot.vocabulary import OutboxKind

_SETTABLE = frozenset(JOB_FIELDS) - {"id", "state", "created_at", "updated_at"}


# The in-flight states as the literal SQL the partial indexes of m013 carry (SQLite uses a
# partial index only for a query that repeats its WHERE term to the letter); a test checks the
# two agree with `jobs.IN_FLIGHT`.
IN_FLIGHT_SQL = "state IN (" + ", ".join(f"'{s}'" for s in sorted(jobs.IN_FLIGHT)) + ")"


def _in_flight_sql(refs: Sequence[str], cloud: str | None) -> tuple[str, list[Any]]:
    """A WHERE term (and its parameters) for the in-flight jobs on `cloud` whose server ref,
    name or id is one of `refs`: one OR branch per column, each able to use its partial
    index (m013), so only that server's running jobs are read."""
    marks = ", ".join("?" for _ in refs)
    branches = [f"({column} IN ({marks}) AND {IN_FLIGHT_SQL} AND cloud IS ?)"
                for column in ("server_ref", "server_name", "server_id")]
    return "(" + " OR ".join(branches) + ")", [*refs, cloud] * 3


def normalize_job_id(job_id: str) -> str:
    """'j17' / 'J17' -> 'J17'; JobError for anything else."""
    return normalize_id(job_id, "J", "%r is not a job id (job ids look like J17).")


def _check_fields(values: Mapping[str, Any]) -> None:
    bad = set(values) - _SETTABLE
    if bad:
        raise JobError(f"cannot set job fields {sorted(bad)}")


class JobTables(OutboxTables):
    """The `jobs` and `job_events` tables (a job's outbox items are written with it)."""

    def create_job(self, *, server_ref: str, requested_by: str, channel: str, state: str,
                   image_name: str | None = None, note: str | None = None,
                   dedupe_key: str | None = None, response_url: str | None = None,
                   schedule_id: str | None = None, outbox: Sequence[OutboxItem] = (),
                   actor: str | None = None, refuse_if_in_flight: bool = False,
                   **extra: Any) -> tuple[Job, bool]:
        """Create a job (plus its first event and outbox items) in one transaction.

        Returns (job, True), or (the existing job, False) when `dedupe_key` was used before.
        Outbox items without a job_id get the new job's id. `extra` sets other Job fields
        (e.g. confirmed_by, confirmed_at for a job created already confirmed). A job created
        with its `post_parent` is announced at once (`announced_at`). With
        `refuse_if_in_flight`, `ServerInUse` is raised (nothing written) when an in-flight job
        on the same cloud has `server_ref` as its ref, name or id; the check and the insert are
        one transaction, so two creates at once cannot both pass.
        """
        if state not in jobs.STATES or state in jobs.TERMINAL:
            raise InvalidTransition("new", state)
        unknown = set(extra) - _SETTABLE
        if unknown:
            raise TypeError(f"unknown job fields: {sorted(unknown)}")
        now = self._now()
        values: dict[str, Any] = dict(extra)
        if "announced_at" not in values and any(i.kind == OutboxKind.POST_PARENT
                                                for i in outbox):
            values["announced_at"] = now
        values.update(server_ref=server_ref, requested_by=requested_by, channel=channel,
                      image_name=image_name, note=note, dedupe_key=dedupe_key,
                      response_url=response_url, schedule_id=schedule_id,
                      created_at=now, updated_at=now, state=state)
        row = {name: job_value(name, value) for name, value in values.items()}
        busy = (server_ref, extra.get("cloud")) if refuse_if_in_flight else None
        with self._tx():
            # One statement checks "asked before?" and "is the server busy?", allocates the
            # id and writes the row; only a create it refused reads again, to say why.
            job = self._insert_job(row, busy=busy)
            if job is None:
                found = self._dedupe_or_busy(server_ref, extra.get("cloud"), dedupe_key,
                                             busy=refuse_if_in_flight)
                for old in found:
                    if dedupe_key is not None and old.dedupe_key == dedupe_key:
                        return old, False
                if found:
                    raise ServerInUse(found[0])
                raise ConflictingUpdate(f"Job for {server_ref} was not created; try again.")
            # No `id_sequences` write: the id is the row's AUTOINCREMENT seq, which
            # sqlite_sequence keeps past deletes, and `last_id_sql` reads both.
            self._event(job.id, now, "created", None, state, actor or requested_by,
                        {"server_ref": server_ref})
            self._enqueue(now, outbox, job.id)
        return job, True

    def _dedupe_or_busy(self, server_ref: str, cloud: str | None, dedupe_key: str | None,
                        *, busy: bool = True) -> list[Job]:
        """The job already made under `dedupe_key` and (with `busy`) the in-flight jobs on
        `server_ref` (its ref, name or id, on `cloud`), oldest first, in one statement."""
        where, params = _in_flight_sql([server_ref], cloud) if busy else ("0", [])
        sql = f"SELECT * FROM jobs WHERE {where} OR dedupe_key = ? ORDER BY seq"
        return [job_row(row) for row in self.db.query(sql, [*params, dedupe_key])]

    def _insert_job(self, row: Mapping[str, Any],
                    busy: tuple[str, str | None] | None = None) -> Job | None:
        """INSERT the job under the next J<n>, allocated by the statement itself; the row as
        stored comes back (RETURNING), so nothing is read again. None (nothing written) when
        its dedupe key is taken or, with `busy` (a server ref and its cloud), when an
        in-flight job is on that server: the check is part of the same statement."""
        names = [*row, "seq", "id"]
        marks = ", ".join("?" for _ in row)
        params = list(row.values())
        refused = ""
        if busy is not None:
            where, busy_params = _in_flight_sql([busy[0]], busy[1])
            refused = f" AND NOT EXISTS (SELECT 1 FROM jobs WHERE {where} OR dedupe_key = ?)"
            params += [*busy_params, row.get("dedupe_key")]
        # `WHERE true`: SQLite's documented fix for the parse ambiguity of INSERT ... SELECT
        # with an upsert clause (lang_upsert.html, "Parsing Ambiguity").
        cursor = self.db.execute(
            f"INSERT INTO jobs ({', '.join(names)}) SELECT {marks}, n, 'J' || n "
            f"FROM (SELECT {last_id_sql('jobs')} + 1 AS n) WHERE true{refused} "
            "ON CONFLICT(dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING *",
            params)
        found = cursor.fetchall()
        if not found:
            return None
        columns = [d[0] for d in cursor.description]
        return job_row(dict(zip(columns, found[0], strict=True)))

    def next_job_number(self) -> int:
        """The number the next job will get (J<n>)."""
        return self._last_id("jobs") + 1

    def skip_job_ids_past(self, number: int) -> int:
        """Never hand out J<number> or below (an image in the cloud already carries one: its
        job row was lost). Returns the next job number."""
        with self._tx():
            self._set_last_id("jobs", max(number, self._last_id("jobs")))
            return self._last_id("jobs") + 1

    def _job(self, job_id: str) -> Job:
        return self._get("jobs", job_row, job_id, f"There is no job {job_id}.")

    def get_job(self, job_id: str) -> Job:
        """The job with this id ('J17' or 'j17'); JobError when unknown."""
        return self._job(normalize_job_id(job_id))

    def transition(self, job_id: str, *, expected: str | Collection[str], target: str,
                   event: str, actor: str | None = None, fields: Mapping[str, Any] | None = None,
                   outbox: Sequence[OutboxItem] = ()) -> Job:
        """Compare-and-set the state: `ConflictingUpdate` when the current state is not in
        `expected`, `InvalidTransition` when the state machine forbids `current -> target`.
        The row, its event and the outbox items are written atomically."""
        job_id = normalize_job_id(job_id)
        allowed = {expected} if isinstance(expected, str) else set(expected)
        values = dict(fields or {})
        _check_fields(values)
        now = self._now()
        with self._tx():
            current = self._job(job_id)
            if current.state not in allowed:
                raise ConflictingUpdate(
                    f"Job {job_id} is {current.state}, not {' or '.join(sorted(allowed))}.")
            if not jobs.can_transition(current.state, target):
                raise InvalidTransition(current.state, target)
            self._write(job_id, values | {"state": target}, now, current.state)
            self._event(job_id, now, event, current.state, target, actor, event_detail(values))
            self._enqueue(now, outbox, job_id)
            return self._job(job_id)

    def update_job(self, job_id: str, *, fields: Mapping[str, Any],
                   event: str | None = None, actor: str | None = None,
                   outbox: Sequence[OutboxItem] = (), expected: str | None = None) -> Job:
        """Set non-state fields (thread_ts, task_state, deadline_at ...), with an optional event
        and outbox items, atomically; `ConflictingUpdate` when `expected` is given and the job
        is no longer in that state."""
        job_id = normalize_job_id(job_id)
        values = dict(fields)
        _check_fields(values)
        now = self._now()
        with self._tx():
            current = self._job(job_id)
            if expected is not None and current.state != expected:
                raise ConflictingUpdate(f"Job {job_id} is {current.state}, not {expected}.")
            self._write(job_id, values, now, current.state)
            if event is not None:
                self._event(job_id, now, event, current.state, current.state, actor,
                            event_detail(values))
            self._enqueue(now, outbox, job_id)
            return self._job(job_id)

    def card_posted(self, job_id: str, outbox_id: int, ts: str, channel: str, *,
                    showed_copy: bool) -> list[int]:
        """A job's card is in the channel (`ts`): its thread, the card's outbox item sent,
        and, when the card's first post already showed the copy under way (`showed_copy`),
        the job's unsent "copying now" replies (`on_card` in their payload) closed without a
        call: the card said it (issue 17, message design). One transaction, so after a crash
        either all of it or none holds; a reply a post was attempted for is never closed.
        Returns the ids closed."""
        with self._tx():
            self.update_job(job_id, fields={"thread_ts": ts, "channel": channel}, event="posted")
            self.mark_sent(outbox_id, result_ts=ts)
            if not showed_copy:
                return []
            rows = self.db.execute(
                "UPDATE outbox SET sent_at = ?, error = 'shown on the card' WHERE job_id = ? "
                "AND kind = 'reply' AND sent_at IS NULL AND posting_at IS NULL "
                "AND json_extract(payload, '$.on_card') = 'copy' RETURNING id",
                [dt_out(self._now()), normalize_job_id(job_id)]).fetchall()
            return sorted(int(r[0]) for r in rows)

    def _write(self, job_id: str, values: Mapping[str, Any], now: datetime,
               expected_state: str) -> None:
        row = {name: job_value(name, value) for name, value in values.items()}
        row["updated_at"] = dt_out(now)
        # The state guard makes the update a true compare-and-set even across processes.
        if self._update("jobs", row, Where().eq("id", job_id).eq("state", expected_state)) != 1:
            raise ConflictingUpdate(f"Job {job_id} changed while it was being updated.")

    def _event(self, job_id: str, at: datetime, event: str, from_state: str | None,
               to_state: str | None, actor: str | None, detail: Mapping[str, Any]) -> None:
        self._insert("job_events", {"job_id": job_id, "at": dt_out(at), "event": event,
                                    "from_state": from_state, "to_state": to_state,
                                    "actor": actor, "detail": to_json(detail)})

    def in_flight_jobs(self) -> list[Job]:
        """Jobs the engine works on (queued .. uploading), oldest first."""
        return self._select("jobs", job_row, Where().any_of("state", sorted(jobs.IN_FLIGHT)),
                            order="seq")

    def in_flight_for_server(self, refs: Collection[str], cloud: str | None) -> list[Job]:
        """In-flight jobs on `cloud` whose server ref, name or id is one of `refs`, oldest
        first: the bot's own work on that server."""
        refs = sorted(set(refs))
        if not refs:
            return []
        where, params = _in_flight_sql(refs, cloud)
        return [job_row(row) for row in
                self.db.query(f"SELECT * FROM jobs WHERE {where} ORDER BY seq", params)]

    def list_jobs(self, *, server: str | None = None, states: Collection[str] | None = None,
                  limit: int = 10, channel: str | Collection[str] | None = None) -> list[Job]:
        """Newest first; `server` matches server_ref, server_name or server_id; `channel` (an
        id, or the values a channel's rows may carry) keeps only that channel's jobs."""
        where = Where().channel(channel).server(server)
        if states is not None:
            where.any_of("state", states)
        return self._select("jobs", job_row, where, order="seq DESC", limit=max(0, int(limit)))

    def latest_job_for_server(self, server: str,
                              channel: str | Collection[str] | None = None) -> Job | None:
        """The newest job for a server (by ref, name or id), of `channel` if given, or None."""
        found = self.list_jobs(server=server, limit=1, channel=channel)
        return found[0] if found else None

    def job_events(self, job_id: str) -> list[JobEvent]:
        """The audit trail of a job, oldest first."""
        return self._select("job_events", job_event_row,
                            Where().eq("job_id", normalize_job_id(job_id)), order="id")
