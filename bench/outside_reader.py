"""The outside-reader case: other processes open the bot's database while jobs run.

An operator's `sqlite3`, a monitoring read, an online backup: each is a process of its own
that opens the database, reads, and closes it again. If the bot ever dropped its SQLite locks
(closing any descriptor of the file drops all of a process's POSIX locks on it: SQLite, "How
To Corrupt An SQLite Database File", section 2.2), such a reader believes it is the last
connection, checkpoints and deletes the WAL, and every later write of the bot is invisible to
others and gone after a restart; ids get handed out again.

`imagebot run --http`, the simulated cloud and the Slack emulator run as separate processes
(bench.procs). Commands go in in waves; after each wave a fresh process reads the database
(every other time it also takes an online backup with SQLite's backup API, as `sqlite3
.backup` does, and checks the copy). Then the bot is SIGKILLed and restarted on the same file.
Every acknowledged command must end as a job with a final state, exactly one image in the
cloud per job id (an id handed out twice would show as two), and no outside read ever sees a
job vanish or a final state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fig_ack import command_body
from bench.kill9 import _images_by_job, _post, db_state
from bench.procs import start_bot, world
from bench.reliability_cases import CaseResult
from sandbox.slack.model import SlackWorkspace

FINAL = ("succeeded", "failed", "cancelled")

# Runs in its own process: open, read (and maybe back up), close. The close is the moment a
# reader that believes it is the last connection checkpoints and deletes the WAL.
OUTSIDE = r"""
import json, sqlite3, sys
db, backup = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db, timeout=10)
out = {"jobs": dict(conn.execute("SELECT id, state FROM jobs ORDER BY seq").fetchall())}
if backup:
    copy = sqlite3.connect(backup)
    conn.backup(copy)
    out["backup_check"] = copy.execute("PRAGMA integrity_check").fetchone()[0]
    out["backup_jobs"] = [r[0] for r in copy.execute("SELECT id FROM jobs ORDER BY seq")]
    copy.close()
conn.close()
print(json.dumps(out))
"""


async def outside_read(db: Path, backup: Path | None) -> dict[str, Any]:
    """One read by another process; with `backup`, an online backup into that file too."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OUTSIDE, str(db), str(backup or ""),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"outside reader failed: {err.decode(errors='replace')[-500:]}")
    doc: dict[str, Any] = json.loads(out)
    return doc


class ReadLog:
    """What the outside reads saw so far; a read must never lose what an earlier one saw."""

    def __init__(self, result: CaseResult) -> None:
        self.result = result
        self.seen: dict[str, str] = {}
        self.reads = 0
        self.backups = 0

    def add(self, doc: dict[str, Any]) -> None:
        """Check one read against all earlier ones."""
        self.reads += 1
        now: dict[str, str] = doc["jobs"]
        for job_id, state in self.seen.items():
            if job_id not in now:
                self.result.problems.append(f"read {self.reads}: {job_id} (seen before as "
                                            f"{state}) is gone")
            elif state in FINAL and now[job_id] != state:
                self.result.problems.append(f"read {self.reads}: {job_id} was {state}, "
                                            f"now {now[job_id]}")
        if "backup_check" in doc:
            self.backups += 1
            if doc["backup_check"] != "ok":
                self.result.problems.append(f"backup {self.backups}: {doc['backup_check']}")
            missing = sorted(set(now) - set(doc["backup_jobs"]))
            if missing:
                self.result.problems.append(f"backup {self.backups} lacks {missing}")
        self.seen.update(now)


async def outside_reader(n_jobs: int = 40, wave: int = 4, speed: float = 50.0,
                         within: float = 300.0) -> CaseResult:
    """Run the case; see the module docstring."""
    result = CaseResult(f"outside reader+backup ({n_jobs} jobs, procs)")
    log = ReadLog(result)
    async with world(n_jobs, speed) as w:
        ws = SlackWorkspace()
        ws.base_url = w.slack_url
        url = f"http://127.0.0.1:{w.port}/slack/events"
        bot = await start_bot(w)
        acks: list[int] = []
        with tempfile.TemporaryDirectory(prefix="imagebot-backup-") as backups:
            try:
                async with httpx.AsyncClient(timeout=30) as client:
                    for start in range(1, n_jobs + 1, wave):
                        bodies = [command_body(ws, "alice", "#ops", f"create load-{i} --now")
                                  for i in range(start, min(start + wave, n_jobs + 1))]
                        acks += await asyncio.gather(*(_post(client, url, b) for b in bodies))
                        # Jobs run meanwhile: the reads and backups happen under load.
                        backup = Path(backups) / f"b{start}.db" if len(acks) % (2 * wave) \
                            else None
                        log.add(await outside_read(w.db, backup))
                # The worst moment for a bot whose writes went to a deleted WAL.
                bot.send_signal(signal.SIGKILL)
                await bot.wait()
                log.add(await outside_read(w.db, None))
                bot = await start_bot(w)
                rows = await _settle(w.db, within, result)
                log.add(await outside_read(w.db, Path(backups) / "last.db"))
                async with httpx.AsyncClient(timeout=30) as client:
                    cloud = (await client.get(f"{w.cloud_url}/_sim/state")).json()
            finally:
                with contextlib.suppress(ProcessLookupError):
                    bot.send_signal(signal.SIGTERM)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bot.wait(), 10)
    _check(result, n_jobs, acks, rows, _images_by_job(cloud))
    result.name = f"outside reader+backup ({n_jobs} jobs, {log.reads} reads)"
    return result


async def _settle(db: Path, within: float, result: CaseResult) -> list[tuple[str, str]]:
    deadline = time.monotonic() + within
    while True:
        rows, depth = db_state(db)
        if all(state in FINAL for _, state in rows) and depth == 0:
            return rows
        if time.monotonic() > deadline:
            result.problems.append(f"still busy after {within:.0f}s: outbox {depth}")
            return rows
        await asyncio.sleep(0.5)


def _check(result: CaseResult, n_jobs: int, acks: list[int], rows: list[tuple[str, str]],
           images: dict[str, int]) -> None:
    acked = sum(1 for a in acks if a == 200)
    if acked != n_jobs:
        result.problems.append(f"{acked} acks for {n_jobs} commands")
    states = dict(rows)
    # Ids are handed out in order, J1..Jn: a job lost and its id reused shows as a missing
    # row, a wrong count, or two images carrying one id.
    for number in range(1, acked + 1):
        job_id = f"J{number}"
        state = states.get(job_id)
        problems = []
        if state is None:
            problems.append(f"{job_id} acknowledged, not in the database")
        elif state not in FINAL:
            problems.append(f"{job_id} still {state}")
        if images.get(job_id, 0) != 1:
            problems.append(f"{job_id}: {images.get(job_id, 0)} images in the cloud")
        result.check(not problems, "; ".join(problems))
        if state not in FINAL:
            result.lost += 1
    extra = sorted(set(states) - {f"J{n}" for n in range(1, acked + 1)})
    if extra:
        result.problems.append(f"jobs nobody asked for: {extra}")


if __name__ == "__main__":
    print(asyncio.run(outside_reader()).line())
