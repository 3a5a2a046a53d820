"""One `imagebot run` per database: an exclusive lock on a side file, `<db>.lock`.

Two instances on one file post every card twice and can make two images for one job. The lock
is `flock(2)` on a side file, never on the database (SQLite's POSIX locks on the database must
not be disturbed: closing any descriptor of it drops them all). The kernel releases a flock
when its holder dies, however it dies (SIGKILL included), so a crash never blocks the next
start. The holder writes its pid and start time into the file so a refused start can say who.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import AlreadyRunning, ConfigError


def lock_path(db_path: Path) -> Path:
    """The side file that says which process runs on `db_path`."""
    return Path(f"{db_path}.lock")


@dataclass
class InstanceLock:
    """Held while the process runs; `release()` (or the process's death) frees it."""

    path: Path
    fd: int

    def release(self) -> None:
        """Give the database up (closing the descriptor drops the flock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError, TypeError):
        doc = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {int(doc['pid'])}, since {doc['since']}"
    return "pid unknown: it is just starting"


def hold_database(db_path: Path, *, now: datetime | None = None) -> InstanceLock:
    """Take the database for this process, or `AlreadyRunning` naming the holder."""
    path = lock_path(db_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create the lock file {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise AlreadyRunning(f"another imagebot ({holder}) is running on {db_path}; "
                             "stop it first, or point IMAGEBOT_DB elsewhere") from None
    since = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": since}).encode(), 0)
    return InstanceLock(path, fd)
