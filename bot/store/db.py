"""The connection: the one place that opens the database, its one write transaction (`_tx`),
the one id allocation (`next_id`) and the generic row helpers the table groups share.

`StoreBase` is the base of the table-group mixins (`jobs`, `outbox`, `scheduling`) that make
up `Store`; it also holds the service's own settings (`meta`) and the health probe.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from bot.errors import ImagebotError, JobError, StoreError
from bot.store.migrations import migrations
from bot.store.rows import dt_out, utc
from commands import ids

ID_TABLES = ("jobs", "change_requests", "schedules", "verifications")  # J, R, S, V<n>

R = TypeVar("R")


def normalize_id(value: str, prefix: str, refusal: str) -> str:
    """'j17' / 'J17' -> 'J17' for `prefix` 'J'; JobError(`refusal` % value) for anything else."""
    found = ids.normalize(prefix, value.strip())  # the grammar's reading (commands/ids.py)
    if found is None:
        raise JobError(refusal % (value,))
    return found


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


@dataclass
class Where:
    """A WHERE clause built from filters (all must hold), with its parameters."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def eq(self, column: str, value: Any) -> Where:
        """`column = value`."""
        self.clauses.append(f"{column} = ?")
        self.params.append(value)
        return self

    def any_of(self, column: str, values: Collection[Any]) -> Where:
        """`column` is one of `values` (none matches when `values` is empty)."""
        values = list(values)
        self.clauses.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "0")
        self.params.extend(values)
        return self

    def channel(self, channel: str | Collection[str] | None) -> Where:
        """The rows of one channel value or of several (no filter when None)."""
        if channel is None:
            return self
        return self.any_of("channel", [channel] if isinstance(channel, str) else channel)

    def same(self, column: str, value: Any) -> Where:
        """`column IS value` (None matches NULL)."""
        self.clauses.append(f"{column} IS ?")
        self.params.append(value)
        return self

    def server(self, server: str | Collection[str] | None) -> Where:
        """The rows whose server ref, name or id is `server` (or one of several; no filter
        when None)."""
        if server is None:
            return self
        refs = [server] if isinstance(server, str) else list(server)
        marks = ", ".join("?" for _ in refs)
        self.clauses.append(f"(server_ref IN ({marks}) OR server_name IN ({marks}) "
                            f"OR server_id IN ({marks}))")
        self.params += [*refs, *refs, *refs]
        return self

    def sql(self) -> str:
        """' WHERE ...', or '' when there is no filter."""
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""


def last_id_sql(table: str) -> str:
    """An SQL expression for the highest number ever handed out for `table` (see
    `StoreBase._last_id`), so a statement can allocate the next id itself."""
    if table not in ID_TABLES:
        raise ValueError(f"no id sequence for {table!r}")
    return (f"MAX(COALESCE((SELECT MAX(seq) FROM {table}), 0), "
            f"COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), "
            f"COALESCE((SELECT last FROM id_sequences WHERE name = '{table}'), 0))")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """One SQLite connection, used from one thread, and what every table group shares."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None,
                 writers: AbstractContextManager[Any] | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or _utcnow
        # Held around each write transaction. The connections of one process share it
        # (wiring): they then take turns on a lock that hands over at once, instead of on
        # SQLite's busy handler, which sleeps 1, 2, 5... ms between tries (measured: a group
        # commit of creates waited up to 6 ms behind an engine commit). Other processes still
        # meet busy_timeout.
        self.writers = writers if writers is not None else threading.RLock()
        self._in_call_savepoint = False  # see `_tx` and `api.Store.run_batch`
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
        return utc(self.clock())

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction. IMMEDIATE takes the write lock up front, so a second process
        (the CLI) waits on busy_timeout instead of failing mid-transaction."""
        if self.db.conn.in_transaction:
            if self._in_call_savepoint:
                # The outermost `_tx` of a group-committed call: `run_batch`'s savepoint for
                # this call already covers it (two fewer statements per create).
                self._in_call_savepoint = False
                yield
                return
            with self.db.atomic():  # nested: a savepoint
                yield
            return
        with self.writers:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.rollback()
                raise
            self.db.conn.execute("COMMIT")

    # --- rows ------------------------------------------------------------------------------

    def _select(self, table: str, convert: Callable[[Mapping[str, Any]], R],
                where: Where | None = None, *, order: str | None = None,
                limit: int | None = None) -> list[R]:
        """The rows of `table` that match `where`, in `order`, converted."""
        where = where or Where()
        sql = f"SELECT * FROM {table}{where.sql()}"
        params = list(where.params)
        if order is not None:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [convert(row) for row in self.db.query(sql, params)]

    def _first(self, table: str, convert: Callable[[Mapping[str, Any]], R],
               where: Where) -> R | None:
        """The one row of `table` that matches `where` (a unique key), or None."""
        found = self._select(table, convert, where)
        return found[0] if found else None

    def _get(self, table: str, convert: Callable[[Mapping[str, Any]], R], key: Any,
             missing: str, error: type[ImagebotError] = JobError) -> R:
        """The row whose id is `key`; `error(missing)` when there is none."""
        found = self._first(table, convert, Where().eq("id", key))
        if found is None:
            raise error(missing)
        return found

    def _insert(self, table: str, row: Mapping[str, Any]) -> sqlite3.Cursor:
        marks = ", ".join("?" for _ in row)
        return self.db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})",
                               list(row.values()))

    def _update(self, table: str, row: Mapping[str, Any], where: Where, *,
                also: str = "") -> int:
        """UPDATE `table` SET the columns of `row` (and the SQL `also`) WHERE `where`; the
        number of rows changed (a compare-and-set checks it)."""
        sets = ", ".join([*(f"{name} = ?" for name in row), *([also] if also else [])])
        cursor = self.db.execute(f"UPDATE {table} SET {sets}{where.sql()}",
                                 [*row.values(), *where.params])
        return cursor.rowcount

    # --- ids -------------------------------------------------------------------------------

    def _last_id(self, table: str) -> int:
        """The highest number ever handed out for `table` (J, R or S ids): the durable
        sequence, the AUTOINCREMENT counter and the rows, whichever is highest."""
        return int(self.db.execute(f"SELECT {last_id_sql(table)}").fetchone()[0])

    def _set_last_id(self, table: str, number: int) -> None:
        self.db.execute("INSERT INTO id_sequences (name, last) VALUES (?, ?) ON CONFLICT(name) "
                        "DO UPDATE SET last = MAX(last, excluded.last)", [table, number])

    def next_id(self, table: str, prefix: str) -> tuple[int, str]:
        """The next (seq, id) for a row of `table` ('J', 'R' or 'S' `prefix`), recorded in the
        same transaction as the row that uses it, so a number is never handed out twice (never
        lowered, rows deleted or not). Call it inside `_tx`."""
        number = self._last_id(table) + 1
        self._set_last_id(table, number)
        return number, f"{prefix}{number}"

    # --- meta and health --------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A stored setting (e.g. the engine's observe cursor)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])

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
            self.set_meta("health_probe_at", dt_out(self._now()) or "")
            # A full database still takes that update in place; ask for a fresh page as the
            # next job's rows will (SQLITE_FULL when none is left), and give it back.
            self.db.execute("INSERT INTO meta (key, value) VALUES ('health_probe_room', "
                            "zeroblob(4096))")
            self.db.execute("DELETE FROM meta WHERE key = 'health_probe_room'")
