"""The durable truth: jobs, their audit trail, the Slack outbox and delivery dedupe in SQLite.

Every state change is written together with its `job_events` row and the outbox items that tell
Slack about it, in one transaction, so a crash never loses or repeats a message. `Store` is
synchronous and owns one connection; `AsyncStore` runs it on one dedicated worker thread so the
event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.errors import (
    ConflictingUpdate,
    ImagebotError,
    InvalidTransition,
    JobError,
    ServerInUse,
)
from bot.imaging import jobs
from bot.imaging.jobs import DATETIME_FIELDS, JOB_FIELDS, Job

OUTBOX_KINDS = frozenset({"post_parent", "update_parent", "reply", "ephemeral", "respond",
                          "channel_post"})
_JOB_ID = re.compile(r"^[Jj](\d+)$")
ID_TABLES = ("jobs", "change_requests", "schedules")  # J<n>, R<n>, S<n>
_SETTABLE = frozenset(JOB_FIELDS) - {"id", "state", "created_at", "updated_at"}

P = ParamSpec("P")
T = TypeVar("T")


class StoreError(ImagebotError):
    """The database could not be opened, read or written (translated from sqlite3).

    Deliberately not a JobError: callers that drop work on JobError must not drop it because
    the disk was briefly locked or full.
    """


@dataclass(frozen=True)
class OutboxItem:
    """A Slack message to send later, written in the same transaction as the change it reports."""

    kind: str
    channel: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    thread_key: str | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class OutboxMessage:
    """A stored outbox row."""

    id: int
    kind: str
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
    from_state: str | None
    to_state: str | None
    actor: str | None
    detail: Mapping[str, Any]


# --- schema -----------------------------------------------------------------------------------

migrations = Migrations("imagebot")


@migrations()
def m001_initial(db: Database) -> None:
    """Jobs, events, outbox, deliveries, meta."""
    job_columns = ",\n".join(
        f"{name} {_sql_type(name)}" for name in JOB_FIELDS if name not in ("id", "state"))
    db.execute(f"""
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL,
            {job_columns}
        )""")
    db.execute("CREATE UNIQUE INDEX jobs_dedupe ON jobs(dedupe_key) WHERE dedupe_key IS NOT NULL")
    db.execute("CREATE INDEX jobs_state ON jobs(state)")
    db.execute("CREATE INDEX jobs_server ON jobs(server_ref)")
    db.execute("""
        CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            actor TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("CREATE INDEX job_events_job ON job_events(job_id, id)")
    # Append-only: the audit trail cannot be rewritten through this database.
    db.execute("""CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
                  BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END""")
    db.execute("""CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
                  BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END""")
    db.execute("""
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT,
            channel TEXT NOT NULL,
            thread_key TEXT,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            sent_at TEXT,
            error TEXT,
            result_ts TEXT
        )""")
    db.execute("CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE sent_at IS NULL")
    db.execute("""
        CREATE TABLE deliveries (
            key TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            job_id TEXT
        )""")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")


def _sql_type(name: str) -> str:
    if name in ("image_size",):
        return "INTEGER"
    if name == "volume_backed":
        return "INTEGER NOT NULL DEFAULT 0"
    if name == "data_disks":
        return "TEXT NOT NULL DEFAULT '[]'"
    if name in ("server_ref", "requested_by", "channel", "created_at", "updated_at"):
        return "TEXT NOT NULL"
    return "TEXT"


# --- conversions -------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store only takes aware UTC datetimes")
    return value.astimezone(UTC)


def _dt_out(value: datetime | None) -> str | None:
    # Fixed-width text so that SQL string comparison orders instants correctly.
    return None if value is None else _utc(value).isoformat(timespec="microseconds")


def _dt_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _to_row(name: str, value: Any) -> Any:
    if name in DATETIME_FIELDS:
        return _dt_out(value)
    if name == "data_disks":
        return json.dumps(list(value or ()))
    if name == "volume_backed":
        return int(bool(value))
    return value


def _job(row: Mapping[str, Any]) -> Job:
    values: dict[str, Any] = {}
    for name in JOB_FIELDS:
        value = row[name]
        if name in DATETIME_FIELDS:
            value = _dt_in(value)
        elif name == "data_disks":
            value = tuple(json.loads(value or "[]"))
        elif name == "volume_backed":
            value = bool(value)
        values[name] = value
    return Job(**values)


def _outbox(row: Mapping[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"], kind=row["kind"], channel=row["channel"],
        payload=json.loads(row["payload"]), thread_key=row["thread_key"], job_id=row["job_id"],
        created_at=_dt_in(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
        attempts=row["attempts"], next_attempt_at=_dt_in(row["next_attempt_at"]),
        sent_at=_dt_in(row["sent_at"]), error=row["error"], result_ts=row["result_ts"],
        posting_at=_dt_in(row["posting_at"]))


def normalize_job_id(job_id: str) -> str:
    """'j17' / 'J17' -> 'J17'; JobError for anything else."""
    match = _JOB_ID.match(job_id.strip())
    if not match:
        raise JobError(f"{job_id!r} is not a job id (job ids look like J17).")
    return f"J{int(match.group(1))}"


def _channel_clause(channel: str | Collection[str], params: list[Any]) -> str:
    """`channel IN (...)` for one channel value or several, appending to `params`."""
    values = [channel] if isinstance(channel, str) else list(channel)
    params.extend(values)
    return f"channel IN ({', '.join('?' for _ in values)})" if values else "0"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _private_umask() -> Iterator[None]:
    """Files created meanwhile are owner-only. umask is process-wide, so this is held only for
    the connect that creates the database (once), and only ever makes files more private."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def open_database(path: Path) -> Database:
    """The one place that opens a connection to the job database.

    Nothing here (or anywhere) opens, closes, chmods or replaces the database file or its
    -wal/-shm by hand once a connection exists: closing ANY descriptor of the file drops all of
    this process's POSIX locks on it, and an outside reader then checkpoints and deletes the
    WAL under our feet ("How To Corrupt An SQLite Database File", section 2.2). A new database
    is created owner-only (it holds response_urls) by the connect itself under a 077 umask;
    SQLite creates -wal and -shm with the database file's own permissions (os_unix.c,
    findCreateFileMode), so they follow.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            # An older or hand-made file: tighten it by name (no descriptor is opened, so no
            # lock of any connection can be dropped), before our connection exists.
            os.chmod(path, 0o600)
        return Database(path)
    with _private_umask():
        db = Database(path)
        # The file must exist before the umask is restored, whenever sqlite creates it.
        db.execute("PRAGMA schema_version").fetchone()
    return db


# --- the store ---------------------------------------------------------------------------------


class Store:
    """Synchronous SQLite store; one connection, used from one thread."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or _utcnow
        try:
            self.db = open_database(self.path)
            self.db.execute("PRAGMA busy_timeout = 5000")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.enable_wal()
            # WAL + NORMAL: a commit survives any process crash (kill -9 included); only an OS
            # crash or power cut can lose the last commits. FULL would fsync every job row.
            self.db.execute("PRAGMA synchronous = NORMAL")
            migrations.apply(self.db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the job database {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def _now(self) -> datetime:
        return _utc(self.clock())

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction. IMMEDIATE takes the write lock up front, so a second process
        (the CLI) waits on busy_timeout instead of failing mid-transaction."""
        if self.db.conn.in_transaction:
            with self.db.atomic():  # nested: a savepoint
                yield
            return
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        self.db.conn.execute("COMMIT")

    # --- jobs ----------------------------------------------------------------------------

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
        with self._tx():
            if dedupe_key is not None:
                existing = self._find_dedupe(dedupe_key)
                if existing is not None:
                    return existing, False
            if refuse_if_in_flight:
                busy = self._in_flight_for_server([server_ref], extra.get("cloud"))
                if busy:
                    raise ServerInUse(busy[0])
            values: dict[str, Any] = dict(extra)
            if "announced_at" not in values and any(i.kind == "post_parent" for i in outbox):
                values["announced_at"] = now
            values.update(server_ref=server_ref, requested_by=requested_by, channel=channel,
                          image_name=image_name, note=note, dedupe_key=dedupe_key,
                          response_url=response_url, schedule_id=schedule_id,
                          created_at=now, updated_at=now)
            row = {name: _to_row(name, value) for name, value in values.items()}
            seq = self._allocate("jobs")
            job_id = f"J{seq}"
            row.update(seq=seq, id=job_id, state=state)
            columns = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            self.db.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", list(row.values()))
            self._event(job_id, now, "created", None, state, actor or requested_by,
                        {"server_ref": server_ref})
            self._enqueue(now, outbox, job_id)
            job = self._get(job_id)
        return job, True

    # --- ids ----------------------------------------------------------------------------

    def _last_id(self, table: str) -> int:
        """The highest number ever handed out for `table` (J, R or S ids): the durable
        sequence, the AUTOINCREMENT counter and the rows, whichever is highest."""
        if table not in ID_TABLES:
            raise ValueError(f"no id sequence for {table!r}")
        found = [self.db.execute(f"SELECT MAX(seq) FROM {table}").fetchone()[0] or 0]
        for sql in ("SELECT seq FROM sqlite_sequence WHERE name = ?",
                    "SELECT last FROM id_sequences WHERE name = ?"):
            row = self.db.execute(sql, [table]).fetchone()
            found.append(int(row[0]) if row else 0)
        return max(found)

    def _allocate(self, table: str) -> int:
        """The next number for `table`, recorded in the same transaction as the row that uses
        it, so a number is never handed out twice (never lowered, rows deleted or not)."""
        number = self._last_id(table) + 1
        self._set_last_id(table, number)
        return number

    def _set_last_id(self, table: str, number: int) -> None:
        self.db.execute("INSERT INTO id_sequences (name, last) VALUES (?, ?) ON CONFLICT(name) "
                        "DO UPDATE SET last = MAX(last, excluded.last)", [table, number])

    def next_job_number(self) -> int:
        """The number the next job will get (J<n>)."""
        return self._last_id("jobs") + 1

    def skip_job_ids_past(self, number: int) -> int:
        """Never hand out J<number> or below (an image in the cloud already carries one: its
        job row was lost). Returns the next job number."""
        with self._tx():
            self._set_last_id("jobs", max(number, self._last_id("jobs")))
            return self._last_id("jobs") + 1

    def _find_dedupe(self, key: str) -> Job | None:
        rows = list(self.db.query("SELECT * FROM jobs WHERE dedupe_key = ?", [key]))
        return _job(rows[0]) if rows else None

    def _get(self, job_id: str) -> Job:
        rows = list(self.db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
        if not rows:
            raise JobError(f"There is no job {job_id}.")
        return _job(rows[0])

    def get_job(self, job_id: str) -> Job:
        """The job with this id ('J17' or 'j17'); JobError when unknown."""
        return self._get(normalize_job_id(job_id))

    def transition(self, job_id: str, *, expected: str | Collection[str], target: str,
                   event: str, actor: str | None = None, fields: Mapping[str, Any] | None = None,
                   outbox: Sequence[OutboxItem] = ()) -> Job:
        """Compare-and-set the state: `ConflictingUpdate` when the current state is not in
        `expected`, `InvalidTransition` when the state machine forbids `current -> target`.
        The row, its event and the outbox items are written atomically."""
        job_id = normalize_job_id(job_id)
        allowed = {expected} if isinstance(expected, str) else set(expected)
        values = dict(fields or {})
        self._check_fields(values)
        now = self._now()
        with self._tx():
            current = self._get(job_id)
            if current.state not in allowed:
                raise ConflictingUpdate(
                    f"Job {job_id} is {current.state}, not {' or '.join(sorted(allowed))}.")
            if not jobs.can_transition(current.state, target):
                raise InvalidTransition(current.state, target)
            self._write(job_id, values | {"state": target}, now, current.state)
            self._event(job_id, now, event, current.state, target, actor,
                        _detail(values))
            self._enqueue(now, outbox, job_id)
            return self._get(job_id)

    def update_job(self, job_id: str, *, fields: Mapping[str, Any],
                   event: str | None = None, actor: str | None = None,
                   outbox: Sequence[OutboxItem] = (), expected: str | None = None) -> Job:
        """Set non-state fields (thread_ts, task_state, deadline_at ...), with an optional event
        and outbox items, atomically; `ConflictingUpdate` when `expected` is given and the job
        is no longer in that state."""
        job_id = normalize_job_id(job_id)
        values = dict(fields)
        self._check_fields(values)
        now = self._now()
        with self._tx():
            current = self._get(job_id)
            if expected is not None and current.state != expected:
                raise ConflictingUpdate(f"Job {job_id} is {current.state}, not {expected}.")
            self._write(job_id, values, now, current.state)
            if event is not None:
                self._event(job_id, now, event, current.state, current.state, actor,
                            _detail(values))
            self._enqueue(now, outbox, job_id)
            return self._get(job_id)

    @staticmethod
    def _check_fields(values: Mapping[str, Any]) -> None:
        bad = set(values) - _SETTABLE
        if bad:
            raise JobError(f"cannot set job fields {sorted(bad)}")

    def _write(self, job_id: str, values: Mapping[str, Any], now: datetime,
               expected_state: str) -> None:
        row = {name: _to_row(name, value) for name, value in values.items()}
        row["updated_at"] = _dt_out(now)
        sets = ", ".join(f"{name} = ?" for name in row)
        # The state guard makes the update a true compare-and-set even across processes.
        cursor = self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND state = ?",
                                 [*row.values(), job_id, expected_state])
        if cursor.rowcount != 1:
            raise ConflictingUpdate(f"Job {job_id} changed while it was being updated.")

    def _event(self, job_id: str, at: datetime, event: str, from_state: str | None,
               to_state: str | None, actor: str | None, detail: Mapping[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO job_events (job_id, at, event, from_state, to_state, actor, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [job_id, _dt_out(at), event, from_state, to_state, actor,
             json.dumps(detail, default=str, sort_keys=True)])

    def in_flight_jobs(self) -> list[Job]:
        """Jobs the engine works on (queued .. uploading), oldest first."""
        marks = ", ".join("?" for _ in jobs.IN_FLIGHT)
        return [_job(r) for r in self.db.query(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq", sorted(jobs.IN_FLIGHT))]

    def _in_flight_for_server(self, refs: Collection[str], cloud: str | None) -> list[Job]:
        refs = sorted(set(refs))
        if not refs:
            return []
        marks = ", ".join("?" for _ in jobs.IN_FLIGHT)
        names = ", ".join("?" for _ in refs)
        return [_job(r) for r in self.db.query(
            f"SELECT * FROM jobs WHERE state IN ({marks}) AND cloud IS ? AND "
            f"(server_ref IN ({names}) OR server_name IN ({names}) OR server_id IN ({names})) "
            "ORDER BY seq", [*sorted(jobs.IN_FLIGHT), cloud, *refs, *refs, *refs])]

    def in_flight_for_server(self, refs: Collection[str], cloud: str | None) -> list[Job]:
        """In-flight jobs on `cloud` whose server ref, name or id is one of `refs`, oldest
        first: the bot's own work on that server."""
        return self._in_flight_for_server(refs, cloud)

    def list_jobs(self, *, server: str | None = None, states: Collection[str] | None = None,
                  limit: int = 10, channel: str | Collection[str] | None = None) -> list[Job]:
        """Newest first; `server` matches server_ref, server_name or server_id; `channel` (an
        id, or the values a channel's rows may carry) keeps only that channel's jobs."""
        where: list[str] = []
        params: list[Any] = []
        if channel is not None:
            where.append(_channel_clause(channel, params))
        if server is not None:
            where.append("(server_ref = ? OR server_name = ? OR server_id = ?)")
            params += [server, server, server]
        if states is not None:
            if not states:
                return []
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params += list(states)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(max(0, int(limit)))
        return [_job(r) for r in self.db.query(sql, params)]

    def latest_job_for_server(self, server: str,
                              channel: str | Collection[str] | None = None) -> Job | None:
        """The newest job for a server (by ref, name or id), of `channel` if given, or None."""
        found = self.list_jobs(server=server, limit=1, channel=channel)
        return found[0] if found else None

    def job_events(self, job_id: str) -> list[JobEvent]:
        """The audit trail of a job, oldest first."""
        job_id = normalize_job_id(job_id)
        return [
            JobEvent(id=r["id"], job_id=r["job_id"], at=_dt_in(r["at"]) or self._now(),
                     event=r["event"], from_state=r["from_state"], to_state=r["to_state"],
                     actor=r["actor"], detail=json.loads(r["detail"]))
            for r in self.db.query("SELECT * FROM job_events WHERE job_id = ? ORDER BY id",
                                   [job_id])
        ]

    # --- outbox ---------------------------------------------------------------------------

    def _enqueue(self, now: datetime, items: Sequence[OutboxItem], job_id: str | None) -> None:
        for item in items:
            if item.kind not in OUTBOX_KINDS:
                raise ValueError(f"unknown outbox kind {item.kind!r}")
            self.db.execute(
                "INSERT INTO outbox (job_id, channel, thread_key, kind, payload, created_at, "
                "attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                [item.job_id or job_id, item.channel, item.thread_key, item.kind,
                 json.dumps(dict(item.payload)), _dt_out(now), _dt_out(now)])

    def enqueue(self, items: Sequence[OutboxItem]) -> None:
        """Queue messages not tied to a job change (e.g. a schedule report)."""
        with self._tx():
            self._enqueue(self._now(), items, None)

    def pending_outbox(self, now: datetime, limit: int = 100) -> list[OutboxMessage]:
        """Unsent items due at `now`, in the order they were written."""
        return [_outbox(r) for r in self.db.query(
            "SELECT * FROM outbox WHERE sent_at IS NULL AND next_attempt_at IS NOT NULL "
            "AND next_attempt_at <= ? ORDER BY id LIMIT ?", [_dt_out(now), limit])]

    def mark_sent(self, outbox_id: int, result_ts: str | None = None) -> None:
        """The item was delivered (Slack's `ts` when it made a message)."""
        self.db.execute("UPDATE outbox SET sent_at = ?, result_ts = ?, "
                        "attempts = attempts + 1, error = NULL WHERE id = ?",
                        [_dt_out(self._now()), result_ts, outbox_id])

    def mark_posting(self, outbox_id: int) -> None:
        """Record, before calling Slack, that this item may be posted from now on: after a
        crash the notifier then looks for the message instead of posting it twice."""
        with self.db.atomic():
            self.db.execute("UPDATE outbox SET posting_at = COALESCE(posting_at, ?) WHERE id = ?",
                            [_dt_out(self._now()), outbox_id])

    def clear_posting(self, outbox_id: int) -> None:
        """Slack answered that the post did not happen: no need to look for it next time."""
        with self.db.atomic():
            self.db.execute("UPDATE outbox SET posting_at = NULL WHERE id = ?", [outbox_id])

    def mark_failed(self, outbox_id: int, *, retry_at: datetime | None, error: str) -> None:
        """Delivery failed: retry at `retry_at`, or give up for good when it is None."""
        self.db.execute("UPDATE outbox SET attempts = attempts + 1, error = ?, "
                        "next_attempt_at = ? WHERE id = ?",
                        [error, _dt_out(retry_at), outbox_id])

    def outbox_depth(self) -> int:
        """Items still waiting to go out (not given up)."""
        row = self.db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL "
                              "AND next_attempt_at IS NOT NULL").fetchone()
        return int(row[0])

    def outbox_item(self, outbox_id: int) -> OutboxMessage:
        """One outbox row (for inspection and tests)."""
        rows = list(self.db.query("SELECT * FROM outbox WHERE id = ?", [outbox_id]))
        if not rows:
            raise JobError(f"no outbox item {outbox_id}")
        return _outbox(rows[0])

    # --- dedupe and meta -------------------------------------------------------------------

    def claim_delivery(self, key: str, job_id: str | None = None) -> bool:
        """True the first time `key` is seen (Slack retries and redeliveries repeat keys)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO deliveries (key, at, job_id) VALUES (?, ?, ?)",
            [key, _dt_out(self._now()), job_id])
        return cursor.rowcount == 1

    def delivery_job(self, key: str) -> str | None:
        """The job recorded with a delivery key, if any."""
        row = self.db.execute("SELECT job_id FROM deliveries WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def get_meta(self, key: str) -> str | None:
        """A stored setting (e.g. the engine's observe cursor)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def health_probe(self) -> None:
        """Raise unless the database reads clean and takes a committed write: the page cache
        is dropped first so `quick_check` reads the file itself (damage done to it behind our
        back is found), then one small write transaction (a full disk or a read-only file
        fails here, not in the next job's transaction)."""
        self.db.execute("PRAGMA shrink_memory")
        verdict = self.db.execute("PRAGMA quick_check(1)").fetchone()
        if not verdict or verdict[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {str(verdict and verdict[0])[:200]}")
        with self._tx():
            self.set_meta("health_probe_at", _dt_out(self._now()) or "")
            # A full database still takes that update in place; ask for a fresh page as the
            # next job's rows will (SQLITE_FULL when none is left), and give it back.
            self.db.execute("INSERT INTO meta (key, value) VALUES ('health_probe_room', "
                            "zeroblob(4096))")
            self.db.execute("DELETE FROM meta WHERE key = 'health_probe_room'")

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])

    def _audit(self, now: datetime, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            self.db.execute(
                "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
                [_dt_out(now), entry.actor, entry.action, entry.subject,
                 json.dumps(dict(entry.detail), default=str, sort_keys=True)])

    def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit rows (the table rejects UPDATE and DELETE)."""
        with self._tx():
            self._audit(self._now(), entries)

    def audit_rows(self, subject: str | None = None, limit: int = 1000) -> list[AuditRow]:
        """Audit rows, oldest first, optionally about one subject (R4, S1, J17)."""
        sql = "SELECT * FROM audit"
        params: list[Any] = []
        if subject is not None:
            sql += " WHERE subject = ?"
            params.append(subject)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [AuditRow(id=r["id"], at=_dt_in(r["at"]) or self._now(), actor=r["actor"],
                         action=r["action"], subject=r["subject"],
                         detail=json.loads(r["detail"]))
                for r in self.db.query(sql, params)]

    def _request(self, request_id: str) -> RequestRow:
        rows = list(self.db.query("SELECT * FROM change_requests WHERE id = ?", [request_id]))
        if not rows:
            raise JobError(f"There is no change request {request_id}.")
        return _request_row(rows[0])

    def get_change_request(self, request_id: str) -> RequestRow:
        """One change request ('R4' or 'r4'); JobError when unknown."""
        return self._request(normalize_request_id(request_id))

    def list_change_requests(self, *, statuses: Collection[str] | None = None,
                             server_id: str | None = None, limit: int = 100,
                             channel: str | Collection[str] | None = None) -> list[RequestRow]:
        """Change requests, oldest first, filtered by status, server and channel (id)."""
        where: list[str] = []
        params: list[Any] = []
        if channel is not None:
            where.append(_channel_clause(channel, params))
        if statuses is not None:
            if not statuses:
                return []
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params += list(statuses)
        if server_id is not None:
            where.append("server_id = ?")
            params.append(server_id)
        sql = "SELECT * FROM change_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [_request_row(r) for r in self.db.query(sql, params)]

    def add_change_request(self, build: Callable[[str], RequestPlan]) -> RequestRow:
        """Insert a change request whose id ('R<n>') is allocated inside the transaction.

        `build(id)` returns the row values, CAS updates of other requests (e.g. superseding),
        audit entries and outbox items; all are written atomically.
        """
        now = self._now()
        with self._tx():
            seq = self._allocate("change_requests")
            request_id = f"R{seq}"
            plan = build(request_id)
            for other_id, expected, fields in plan.updates:
                self._write_request(other_id, expected, fields, now)
            values = {k: _request_value(k, v) for k, v in plan.values.items()}
            values.update(seq=seq, id=request_id, created_at=_dt_out(now),
                          updated_at=_dt_out(now))
            columns = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            self.db.execute(f"INSERT INTO change_requests ({columns}) VALUES ({marks})",
                            list(values.values()))
            self._audit(now, plan.audit)
            self._enqueue(now, plan.outbox, None)
            return self._request(request_id)

    def _write_request(self, request_id: str, expected: str, fields: Mapping[str, Any],
                       now: datetime) -> None:
        values = {k: _request_value(k, v) for k, v in fields.items()}
        values["updated_at"] = _dt_out(now)
        sets = ", ".join(f"{k} = ?" for k in values)
        # Every change dirties the posted message so the service rewrites it.
        cursor = self.db.execute(
            f"UPDATE change_requests SET {sets}, message_dirty = message_dirty + 1 "
            "WHERE id = ? AND status = ?", [*values.values(), request_id, expected])
        if cursor.rowcount != 1:
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
        return [_request_row(r) for r in self.db.query(
            "SELECT * FROM change_requests WHERE message_dirty > 0 ORDER BY seq")]

    def mark_request_clean(self, request_id: str, version: int) -> bool:
        """The message shows version `version`; False when the row changed again since."""
        cursor = self.db.execute(
            "UPDATE change_requests SET message_dirty = 0 WHERE id = ? AND message_dirty = ?",
            [request_id, version])
        return cursor.rowcount == 1

    def mark_request_warned(self, request_id: str) -> bool:
        """Record that the about-to-expire warning went out (True only the first time)."""
        with self._tx():
            cursor = self.db.execute(
                "UPDATE change_requests SET warned_at = ? WHERE id = ? AND warned_at IS NULL "
                "AND status = 'pending'", [_dt_out(self._now()), request_id])
            return cursor.rowcount == 1

    def posted_message(self, thread_key: str) -> tuple[str, str] | None:
        """(channel, ts) of the delivered `channel_post` with this thread_key, if any."""
        row = self.db.execute(
            "SELECT channel, result_ts FROM outbox WHERE kind = 'channel_post' AND "
            "thread_key = ? AND sent_at IS NOT NULL AND result_ts IS NOT NULL ORDER BY id "
            "LIMIT 1", [thread_key]).fetchone()
        return (row[0], row[1]) if row else None

    def _upsert_schedule(self, values: Mapping[str, Any], now: datetime) -> ScheduleRow:
        server_id = values["server_id"]
        row = {k: _request_value(k, v) for k, v in values.items()}
        row["updated_at"] = _dt_out(now)
        existing = self.db.execute("SELECT id FROM schedules WHERE server_id = ?",
                                   [server_id]).fetchone()
        if existing:
            sets = ", ".join(f"{k} = ?" for k in row)
            self.db.execute(f"UPDATE schedules SET {sets} WHERE id = ?",
                            [*row.values(), existing[0]])
            return self._schedule(existing[0])
        seq = self._allocate("schedules")
        schedule_id = f"S{seq}"
        row.update(seq=seq, id=schedule_id, created_at=_dt_out(now))
        self.db.execute(f"INSERT INTO schedules ({', '.join(row)}) VALUES "
                        f"({', '.join('?' for _ in row)})", list(row.values()))
        return self._schedule(schedule_id)

    def _schedule(self, schedule_id: str) -> ScheduleRow:
        rows = list(self.db.query("SELECT * FROM schedules WHERE id = ?", [schedule_id]))
        if not rows:
            raise JobError(f"There is no schedule {schedule_id}.")
        return _schedule_row(rows[0])

    def get_schedule(self, schedule_id: str) -> ScheduleRow:
        """One schedule by id ('S1'); JobError when unknown."""
        return self._schedule(schedule_id.strip().upper())

    def schedule_for_server(self, server_id: str) -> ScheduleRow | None:
        """The schedule row of a server (active or off), if any."""
        rows = list(self.db.query("SELECT * FROM schedules WHERE server_id = ?", [server_id]))
        return _schedule_row(rows[0]) if rows else None

    def list_schedules(self, *, status: str | None = "active",
                       server: str | None = None,
                       channel: str | Collection[str] | None = None) -> list[ScheduleRow]:
        """Schedules in id order; `server` matches server_ref, server_name or server_id;
        `channel` (an id) keeps the schedules made in that channel."""
        where: list[str] = []
        params: list[Any] = []
        if channel is not None:
            where.append(_channel_clause(channel, params))
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if server is not None:
            where.append("(server_ref = ? OR server_name = ? OR server_id = ?)")
            params += [server, server, server]
        sql = "SELECT * FROM schedules" + (" WHERE " + " AND ".join(where) if where else "")
        return [_schedule_row(r) for r in self.db.query(sql + " ORDER BY seq", params)]

    def update_schedule(self, schedule_id: str, fields: Mapping[str, Any],
                        audit: Sequence[AuditEntry] = (),
                        outbox: Sequence[OutboxItem] = ()) -> ScheduleRow:
        """Set schedule fields (last_result, ...) with audit rows and outbox items."""
        now = self._now()
        with self._tx():
            row = {k: _request_value(k, v) for k, v in fields.items()}
            row["updated_at"] = _dt_out(now)
            self.db.execute(f"UPDATE schedules SET {', '.join(f'{k} = ?' for k in row)} "
                            "WHERE id = ?", [*row.values(), schedule_id])
            self._audit(now, audit)
            self._enqueue(now, outbox, None)
            return self._schedule(schedule_id)

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
                [schedule_id, _dt_out(slot), missed, 0, result, _dt_out(now), _dt_out(now)])
            if cursor.rowcount != 1:
                return None
            run_id = int(cursor.lastrowid or 0)
            created: Job | None = None
            if job is not None:
                created, _ = self.create_job(**job)
                self.db.execute("UPDATE schedule_runs SET job_id = ?, attempts = 1 WHERE id = ?",
                                [created.id, run_id])
            row = {k: _request_value(k, v) for k, v in schedule_fields.items()}
            row["updated_at"] = _dt_out(now)
            self.db.execute(f"UPDATE schedules SET {', '.join(f'{k} = ?' for k in row)} "
                            "WHERE id = ?", [*row.values(), schedule_id])
            self._audit(now, audit)
            return self._run(run_id), created

    def _run(self, run_id: int) -> RunRow:
        rows = list(self.db.query("SELECT * FROM schedule_runs WHERE id = ?", [run_id]))
        if not rows:
            raise JobError(f"There is no schedule run {run_id}.")
        return _run_row(rows[0])

    def open_runs(self) -> list[RunRow]:
        """Runs still being worked on (a job in flight, or waiting to retry a busy server)."""
        return [_run_row(r) for r in self.db.query(
            "SELECT * FROM schedule_runs WHERE result IN ('running', 'retry_wait') ORDER BY id")]

    def runs_for_schedule(self, schedule_id: str) -> list[RunRow]:
        """Every run of a schedule, oldest first."""
        return [_run_row(r) for r in self.db.query(
            "SELECT * FROM schedule_runs WHERE schedule_id = ? ORDER BY id", [schedule_id])]

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
            values = {k: _request_value(k, v) for k, v in fields.items()}
            values["updated_at"] = _dt_out(now)
            created: Job | None = None
            if job is not None:
                created, _ = self.create_job(**job)
                values["job_id"] = created.id
                values["attempts"] = current.attempts + 1
            sets = ", ".join(f"{k} = ?" for k in values)
            cursor = self.db.execute(
                f"UPDATE schedule_runs SET {sets} WHERE id = ? AND result = ?",
                [*values.values(), run_id, expected])
            if cursor.rowcount != 1:
                raise ConflictingUpdate(f"Schedule run {run_id} is no longer {expected}.")
            if schedule_fields:
                row = {k: _request_value(k, v) for k, v in schedule_fields.items()}
                row["updated_at"] = _dt_out(now)
                self.db.execute(f"UPDATE schedules SET {', '.join(f'{k} = ?' for k in row)} "
                                "WHERE id = ?", [*row.values(), current.schedule_id])
            self._audit(now, audit)
            self._enqueue(now, outbox, created.id if created else current.job_id)
            return self._run(run_id), created


def _detail(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _to_row(k, v) for k, v in values.items()
            if k not in ("response_url",)}  # response_urls are credentials of a sort


# --- async facade ------------------------------------------------------------------------------


class AsyncStore:
    """The Store's methods as coroutines, all run on one dedicated worker thread."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor | None = None) -> None:
        self.store = store
        self._executor = executor or ThreadPoolExecutor(max_workers=1,
                                                        thread_name_prefix="imagebot-store")

    @classmethod
    async def open(cls, path: str | Path, *,
                   clock: Callable[[], datetime] | None = None) -> AsyncStore:
        """Open the store ON the worker thread, so the connection lives there."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagebot-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(executor, partial(Store, path, clock=clock))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))
        except sqlite3.Error as exc:  # the edge: callers only see our error tree
            raise StoreError(f"job database error: {exc}") from exc

    async def run(self, fn: Callable[Concatenate[Store, P], T], *args: P.args,
                  **kwargs: P.kwargs) -> T:
        """Run one `Store` method on the store's thread: `await store.run(Store.get_job, "J1")`.

        Every call of the service goes through here, so the store's API is declared once (on
        `Store`) and the arguments are type-checked against it."""
        return await self._run(fn, self.store, *args, **kwargs)

    async def close(self) -> None:
        """Close the connection on its thread and stop the worker."""
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)













































# --- schedules, change requests, runs, audit (issue 7) ------------------------------------------

_REQUEST_ID = re.compile(r"^[Rr](\d+)$")


def normalize_request_id(request_id: str) -> str:
    """'r4' / 'R4' -> 'R4'; JobError for anything else."""
    match = _REQUEST_ID.match(request_id.strip())
    if not match:
        raise JobError(f"{request_id!r} is not a change request id (they look like R4).")
    return f"R{int(match.group(1))}"


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
    as (id, expected status, fields), audit entries and outbox items."""

    values: Mapping[str, Any]
    updates: Sequence[tuple[str, str, Mapping[str, Any]]] = ()
    audit: Sequence[AuditEntry] = ()
    outbox: Sequence[OutboxItem] = ()


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
    status: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    warned_at: datetime | None
    message_dirty: int
    updated_at: datetime


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


@dataclass(frozen=True)
class RunRow:
    """One claimed slot of a schedule."""

    id: int
    schedule_id: str
    slot: datetime
    missed: int
    attempts: int
    job_id: str | None
    result: str  # running | retry_wait | succeeded | failed | skipped
    next_attempt_at: datetime | None
    detail: str | None
    created_at: datetime
    updated_at: datetime


_SPEC_COLUMNS = frozenset({"old_spec", "new_spec"})


def _request_value(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return _dt_out(value)
    if name in _SPEC_COLUMNS:
        return None if value is None else json.dumps(dict(value), sort_keys=True)
    return value


def _dt_req(value: str | None) -> datetime:
    return _dt_in(value) or datetime.min.replace(tzinfo=UTC)


def _request_row(row: Mapping[str, Any]) -> RequestRow:
    return RequestRow(
        id=row["id"], kind=row["kind"], server_id=row["server_id"],
        server_ref=row["server_ref"], server_name=row["server_name"],
        old_spec=json.loads(row["old_spec"]) if row["old_spec"] else None,
        new_spec=json.loads(row["new_spec"]) if row["new_spec"] else None,
        requested_by=row["requested_by"], channel=row["channel"],
        channel_name=row["channel_name"], created_at=_dt_req(row["created_at"]),
        expires_at=_dt_req(row["expires_at"]),
        status=row["status"], decided_by=row["decided_by"], decided_at=_dt_in(row["decided_at"]),
        reason=row["reason"], warned_at=_dt_in(row["warned_at"]),
        message_dirty=row["message_dirty"], updated_at=_dt_req(row["updated_at"]))


def _schedule_row(row: Mapping[str, Any]) -> ScheduleRow:
    return ScheduleRow(
        id=row["id"], server_id=row["server_id"], server_ref=row["server_ref"],
        server_name=row["server_name"], frequency=row["frequency"], day=row["day"],
        at=row["at"], tz=row["tz"], keep=int(row["keep"]), channel=row["channel"],
        channel_name=row["channel_name"],
        created_by=row["created_by"], approved_by=row["approved_by"],
        request_id=row["request_id"], effective_at=_dt_req(row["effective_at"]),
        last_slot=_dt_in(row["last_slot"]), last_result=row["last_result"],
        last_run_at=_dt_in(row["last_run_at"]), status=row["status"],
        created_at=_dt_req(row["created_at"]), updated_at=_dt_req(row["updated_at"]))


def _run_row(row: Mapping[str, Any]) -> RunRow:
    return RunRow(
        id=row["id"], schedule_id=row["schedule_id"], slot=_dt_req(row["slot"]),
        missed=row["missed"], attempts=row["attempts"], job_id=row["job_id"],
        result=row["result"], next_attempt_at=_dt_in(row["next_attempt_at"]),
        detail=row["detail"], created_at=_dt_req(row["created_at"]),
        updated_at=_dt_req(row["updated_at"]))


@migrations()
def m002_schedules(db: Database) -> None:
    """Schedules (one per server), change requests, schedule runs (slot claims), audit."""
    db.execute("""
        CREATE TABLE schedules (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            server_id TEXT NOT NULL UNIQUE,
            server_ref TEXT NOT NULL,
            server_name TEXT,
            frequency TEXT NOT NULL CHECK (frequency IN ('daily', 'weekly')),
            day TEXT,
            at TEXT NOT NULL,
            tz TEXT NOT NULL,
            keep INTEGER NOT NULL,
            channel TEXT NOT NULL,
            channel_name TEXT,
            created_by TEXT NOT NULL,
            approved_by TEXT,
            request_id TEXT,
            effective_at TEXT NOT NULL,
            last_slot TEXT,
            last_result TEXT,
            last_run_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('active', 'off')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE change_requests (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('set', 'off')),
            server_id TEXT NOT NULL,
            server_ref TEXT NOT NULL,
            server_name TEXT,
            old_spec TEXT,
            new_spec TEXT,
            requested_by TEXT NOT NULL,
            channel TEXT NOT NULL,
            channel_name TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'approved', 'rejected', 'expired', 'superseded')),
            decided_by TEXT,
            decided_at TEXT,
            reason TEXT,
            warned_at TEXT,
            message_dirty INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX change_requests_status ON change_requests(status, expires_at)")
    db.execute("""
        CREATE TABLE schedule_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            schedule_id TEXT NOT NULL,
            slot TEXT NOT NULL,
            missed INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            job_id TEXT,
            result TEXT NOT NULL,
            next_attempt_at TEXT,
            detail TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (schedule_id, slot)
        )""")
    db.execute("CREATE INDEX schedule_runs_open ON schedule_runs(result)")
    db.execute("""
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT,
            action TEXT NOT NULL,
            subject TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("CREATE INDEX audit_subject ON audit(subject, id)")
    db.execute("""CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""")
    db.execute("""CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
                  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""")


@migrations()
def m003_outbox_posting(db: Database) -> None:
    """When a post to Slack was attempted, so a crash mid-post is reconciled, not repeated."""
    db.execute("ALTER TABLE outbox ADD COLUMN posting_at TEXT")


@migrations()
def m004_job_cloud(db: Database) -> None:
    """Which cloud a job runs on (per-channel policy). m001 derives its columns from `Job`,
    so a database created after the field was added has it already."""
    if "cloud" not in db["jobs"].columns_dict:  # type: ignore[union-attr]
        db.execute("ALTER TABLE jobs ADD COLUMN cloud TEXT")


@migrations()
def m005_id_sequences(db: Database) -> None:
    """A durable sequence per id kind (jobs J<n>, change requests R<n>, schedules S<n>): the
    last number handed out, only ever raised, so no id is reused, and start-up can skip it past
    ids that images in the cloud already carry."""
    db.execute("CREATE TABLE id_sequences (name TEXT PRIMARY KEY, last INTEGER NOT NULL)")
    for table in ID_TABLES:
        db.execute("INSERT INTO id_sequences (name, last) SELECT ?, "
                   "MAX(COALESCE(MAX(t.seq), 0), COALESCE((SELECT seq FROM sqlite_sequence "
                   f"WHERE name = ?), 0)) FROM {table} t", [table, table])


@migrations()
def m006_job_channel_name(db: Database) -> None:
    """The job's channel name (policy lookup by name on clicks and alerts) and who cancelled it.
    m001 derives its columns from `Job`, so a fresh database has them already."""
    columns = db["jobs"].columns_dict  # type: ignore[union-attr]
    for name in ("channel_name", "cancelled_by"):
        if name not in columns:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} TEXT")


@migrations()
def m007_job_announced(db: Database) -> None:
    """When a job's public card was queued (typed creates stay private until resolved). Jobs
    made before this had their card queued at creation. m001 derives its columns from `Job`, so
    a database created after the field was added has it already."""
    if "announced_at" not in db["jobs"].columns_dict:  # type: ignore[union-attr]
        db.execute("ALTER TABLE jobs ADD COLUMN announced_at TEXT")
        db.execute("UPDATE jobs SET announced_at = created_at")
