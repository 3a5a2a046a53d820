"""Outside readers during load: `imagebot run --http` as its own process, while another process
(this one) keeps opening the database with sqlite3, reading it, taking online backups with the
backup API (what `sqlite3 .backup` does) and closing it again; then SIGKILL and a restart.

A bot that drops its own SQLite locks lets such a reader checkpoint and delete the WAL, and
every later write is lost. At the end every acknowledged job must be in the database with a
final state, ids unique, one image per job and one parent and final reply per thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from pathlib import Path

from bench import procs
from bench.kill9 import check
from bench.reliability_cases import CaseResult


def read_and_back_up(db: Path, target: Path) -> str | None:
    """One outside visit: read, back up online, check the copy, close. A problem or None."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
        with contextlib.closing(sqlite3.connect(target)) as copy:
            conn.backup(copy)
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
    target.unlink(missing_ok=True)
    return None if verdict == "ok" else f"backup integrity_check: {verdict}"


async def outside_reader(n_jobs: int = 12, batches: int = 3, speed: float = 50.0,
                         within: float = 300.0) -> CaseResult:
    """Run the case; see the module docstring."""
    result = CaseResult(f"outside reader/backup ({n_jobs} jobs, procs)")
    async with procs.world(n_jobs, speed) as w:
        ws = w.workspace()
        bot = await procs.start_bot(w)
        stop_visits = asyncio.Event()
        visits: list[str | None] = []

        async def visitor(tmp: Path) -> None:
            while not stop_visits.is_set():
                visits.append(await asyncio.to_thread(read_and_back_up, w.db,
                                                      tmp / f"copy-{len(visits)}.db"))
                await asyncio.sleep(0.05)

        acks: list[int] = []
        with tempfile.TemporaryDirectory(prefix="imagebot-backup-") as tmp:
            reader = asyncio.create_task(visitor(Path(tmp)))
            try:
                size = max(1, n_jobs // batches)
                for start in range(1, n_jobs + 1, size):
                    acks += await procs.post_commands(w, ws, [
                        f"create load-{i} --now"
                        for i in range(start, min(n_jobs, start + size - 1) + 1)])
                    # Between batches: one more visit that surely opens and closes.
                    visits.append(await asyncio.to_thread(
                        read_and_back_up, w.db, Path(tmp) / "between.db"))
                await asyncio.sleep(0.5)
                await procs.kill(bot)
                bot = await procs.start_bot(w)
                rows, depth, settled = await procs.wait_settled(w.db, within, at_least=n_jobs)
                if not settled:
                    result.problems.append(f"outside readers saw {len(rows)} jobs, "
                                           f"outbox {depth}, after {within:.0f}s")
                cloud, messages = await procs.cloud_state(w), await procs.slack_messages(w)
            finally:
                stop_visits.set()
                await reader
                await procs.stop(bot)
    ids = [job_id for job_id, _ in rows]
    if len(set(ids)) != len(ids) or ids != [f"J{n}" for n in range(1, len(ids) + 1)]:
        result.problems.append(f"job ids not unique and in order: {ids}")
    result.problems += [v for v in visits if v]
    if not visits:
        result.problems.append("no outside visit happened")
    check(result, n_jobs, acks, rows, cloud, messages)
    return result


if __name__ == "__main__":
    print(asyncio.run(outside_reader()).line())
