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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot import jobs
from bot.errors import ConflictingUpdate, ImagebotError, InvalidTransition, JobError
from bot.jobs import DATETIME_FIELDS, JOB_FIELDS, Job

OUTBOX_KINDS = frozenset({"post_parent", "update_parent", "reply", "ephemeral", "respond",
                          "channel_post"})
_JOB_ID = re.compile(r"^[Jj](\d+)$")
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
        sent_at=_dt_in(row["sent_at"]), error=row["error"], result_ts=row["result_ts"])


def normalize_job_id(job_id: str) -> str:
    """'j17' / 'J17' -> 'J17'; JobError for anything else."""
    match = _JOB_ID.match(job_id.strip())
    if not match:
        raise JobError(f"{job_id!r} is not a job id (job ids look like J17).")
    return f"J{int(match.group(1))}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds response_urls)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


# --- the store ---------------------------------------------------------------------------------


class Store:
    """Synchronous SQLite store; one connection, used from one thread."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or _utcnow
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            self.db = Database(self.path)
            self.db.execute("PRAGMA busy_timeout = 5000")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.enable_wal()
            migrations.apply(self.db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the job database {self.path}: {exc}") from exc
        # WAL side files also hold job data.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)

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
                   actor: str | None = None, **extra: Any) -> tuple[Job, bool]:
        """Create a job (plus its first event and outbox items) in one transaction.

        Returns (job, True), or (the existing job, False) when `dedupe_key` was used before.
        Outbox items without a job_id get the new job's id. `extra` sets other Job fields
        (e.g. confirmed_by, confirmed_at for a job created already confirmed).
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
            values: dict[str, Any] = dict(extra)
            values.update(server_ref=server_ref, requested_by=requested_by, channel=channel,
                          image_name=image_name, note=note, dedupe_key=dedupe_key,
                          response_url=response_url, schedule_id=schedule_id,
                          created_at=now, updated_at=now)
            row = {name: _to_row(name, value) for name, value in values.items()}
            seq = self._next_seq()
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

    def _next_seq(self) -> int:
        # AUTOINCREMENT keeps ids monotonic even if rows were ever removed.
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
        top = self.db.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0
        return max(top, row[0] if row else 0) + 1

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
                   outbox: Sequence[OutboxItem] = ()) -> Job:
        """Set non-state fields (thread_ts, task_state, deadline_at ...), with an optional event
        and outbox items, atomically."""
        job_id = normalize_job_id(job_id)
        values = dict(fields)
        self._check_fields(values)
        now = self._now()
        with self._tx():
            current = self._get(job_id)
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

    def list_jobs(self, *, server: str | None = None, states: Collection[str] | None = None,
                  limit: int = 10) -> list[Job]:
        """Newest first; `server` matches server_ref, server_name or server_id."""
        where: list[str] = []
        params: list[Any] = []
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

    def latest_job_for_server(self, server: str) -> Job | None:
        """The newest job for a server (by ref, name or id), or None."""
        found = self.list_jobs(server=server, limit=1)
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

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])


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

    async def close(self) -> None:
        """Close the connection on its thread and stop the worker."""
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)

    async def create_job(self, **kwargs: Any) -> tuple[Job, bool]:
        """See Store.create_job."""
        return await self._run(partial(self.store.create_job, **kwargs))

    async def get_job(self, job_id: str) -> Job:
        """See Store.get_job."""
        return await self._run(self.store.get_job, job_id)

    async def transition(self, job_id: str, *, expected: str | Collection[str], target: str,
                         event: str, actor: str | None = None,
                         fields: Mapping[str, Any] | None = None,
                         outbox: Sequence[OutboxItem] = ()) -> Job:
        """See Store.transition."""
        return await self._run(partial(self.store.transition, job_id, expected=expected,
                                       target=target, event=event, actor=actor, fields=fields,
                                       outbox=outbox))

    async def update_job(self, job_id: str, *, fields: Mapping[str, Any],
                         event: str | None = None, actor: str | None = None,
                         outbox: Sequence[OutboxItem] = ()) -> Job:
        """See Store.update_job."""
        return await self._run(partial(self.store.update_job, job_id, fields=fields,
                                       event=event, actor=actor, outbox=outbox))

    async def in_flight_jobs(self) -> list[Job]:
        """See Store.in_flight_jobs."""
        return await self._run(self.store.in_flight_jobs)

    async def list_jobs(self, *, server: str | None = None,
                        states: Collection[str] | None = None, limit: int = 10) -> list[Job]:
        """See Store.list_jobs."""
        return await self._run(partial(self.store.list_jobs, server=server, states=states,
                                       limit=limit))

    async def latest_job_for_server(self, server: str) -> Job | None:
        """See Store.latest_job_for_server."""
        return await self._run(self.store.latest_job_for_server, server)

    async def job_events(self, job_id: str) -> list[JobEvent]:
        """See Store.job_events."""
        return await self._run(self.store.job_events, job_id)

    async def enqueue(self, items: Sequence[OutboxItem]) -> None:
        """See Store.enqueue."""
        await self._run(self.store.enqueue, items)

    async def pending_outbox(self, now: datetime, limit: int = 100) -> list[OutboxMessage]:
        """See Store.pending_outbox."""
        return await self._run(self.store.pending_outbox, now, limit)

    async def mark_sent(self, outbox_id: int, result_ts: str | None = None) -> None:
        """See Store.mark_sent."""
        await self._run(self.store.mark_sent, outbox_id, result_ts)

    async def mark_failed(self, outbox_id: int, *, retry_at: datetime | None,
                          error: str) -> None:
        """See Store.mark_failed."""
        await self._run(partial(self.store.mark_failed, outbox_id, retry_at=retry_at,
                                error=error))

    async def outbox_depth(self) -> int:
        """See Store.outbox_depth."""
        return await self._run(self.store.outbox_depth)

    async def outbox_item(self, outbox_id: int) -> OutboxMessage:
        """See Store.outbox_item."""
        return await self._run(self.store.outbox_item, outbox_id)

    async def claim_delivery(self, key: str, job_id: str | None = None) -> bool:
        """See Store.claim_delivery."""
        return await self._run(self.store.claim_delivery, key, job_id)

    async def delivery_job(self, key: str) -> str | None:
        """See Store.delivery_job."""
        return await self._run(self.store.delivery_job, key)

    async def get_meta(self, key: str) -> str | None:
        """See Store.get_meta."""
        return await self._run(self.store.get_meta, key)

    async def set_meta(self, key: str, value: str) -> None:
        """See Store.set_meta."""
        await self._run(self.store.set_meta, key, value)
