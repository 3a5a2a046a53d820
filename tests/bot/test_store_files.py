"""How the job database is opened: once, private, and never touched by hand afterwards.

The outside readers here are real processes: POSIX locks belong to a process, so only another
process shows whether ours still hold theirs (SQLite, "How To Corrupt An SQLite Database File",
section 2.2: closing any descriptor of the file drops all of the process's locks on it)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.imaging import jobs
from bot.store import AsyncStore, Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

OUTSIDE_READ = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
print(",".join(r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY seq")))
conn.close()  # the last connection of this process: it may checkpoint and delete the WAL
"""


def outside_job_ids(path: Path) -> list[str]:
    """The job ids another process sees; it opens, reads and closes the database."""
    out = subprocess.run([sys.executable, "-c", OUTSIDE_READ, str(path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout.strip()
    return out.split(",") if out else []


def wal_exists(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


async def test_outside_reader_between_jobs_sees_every_commit_with_two_stores(
        tmp_path: Path) -> None:
    """As wiring does: one store for the engine, one for the listeners, on the same file."""
    path = tmp_path / "bot.db"
    engine = await AsyncStore.open(path, clock=lambda: NOW)
    listeners = await AsyncStore.open(path, clock=lambda: NOW)
    try:
        first, _ = await listeners.run(Store.create_job, server_ref="web-1", requested_by="U1",
                                              channel="C1", state=jobs.QUEUED)
        assert outside_job_ids(path) == [first.id]
        second, _ = await listeners.run(Store.create_job, server_ref="web-2", requested_by="U1",
                                               channel="C1", state=jobs.QUEUED)
        await engine.run(Store.transition, first.id, expected=jobs.QUEUED, target=jobs.CANCELLED,
                                event="cancelled")
        assert outside_job_ids(path) == [first.id, second.id]
        assert wal_exists(path)  # still ours, not deleted by the outside reader
    finally:
        await listeners.close()
        await engine.close()


def test_new_database_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new" / "bot.db"
    previous = os.umask(0o022)
    try:
        store = Store(path)
        try:
            store.create_job(server_ref="web-1", requested_by="U1", channel="C1",
                             state=jobs.QUEUED)
            for name in (str(path), f"{path}-wal", f"{path}-shm"):
                assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
        finally:
            store.close()
        assert os.umask(0o022) == 0o022  # the process's umask is given back
    finally:
        os.umask(previous)
