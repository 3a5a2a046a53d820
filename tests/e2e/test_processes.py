"""The bot as its own process (`imagebot run --http`), with cloud-sim and the Slack emulator in
processes of their own, and other processes opening its database: what an operator does.

Each test fails on a bot that drops its SQLite locks (an outside reader then deletes the WAL and
later writes vanish), reuses job ids, or lets two instances run on one database."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.procs import (
    FINAL,
    World,
    cloud_state,
    free_port,
    images_by_job,
    kill,
    post_commands,
    start_bot,
    stop,
    world,
)
from sandbox.slack.model import SlackWorkspace

pytestmark = pytest.mark.timeout(240)


def outside_read(db: Path) -> dict[str, str]:
    """What an operator's sqlite3 sees: open, read, close (the last connection of this process,
    so SQLite may checkpoint and delete the WAL if it believes nobody else has it open)."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return dict(conn.execute("SELECT id, state FROM jobs ORDER BY seq").fetchall())


def outside_backup(db: Path, target: Path) -> dict[str, str]:
    """An online backup from another process (sqlite3's backup API), then read the copy."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as source, \
            contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
        return dict(copy.execute("SELECT id, state FROM jobs ORDER BY seq").fetchall())


async def ack(w: World, ws: SlackWorkspace, text: str) -> None:
    """Post a signed `/image` command; Slack must get its 200 ack."""
    assert await post_commands(w, ws, [text]) == [200]


async def wait_final(db: Path, job_id: str, within: float = 90.0) -> str:
    """Poll, as an outside reader, until the job has a final state."""
    deadline = time.monotonic() + within
    while True:
        state = outside_read(db).get(job_id)
        if state in FINAL:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"an outside reader never saw {job_id} end (last: {state})")
        await asyncio.sleep(0.2)


async def test_outside_reader_between_jobs_then_sigkill_loses_nothing(tmp_path: Path) -> None:
    async with world(3, 50.0) as w:
        ws = w.workspace()  # one workspace: every command gets a trigger id of its own
        bot = await start_bot(w)
        try:
            await ack(w, ws, "create web-1 --now")
            assert await wait_final(w.db, "J1") == "succeeded"
            # Between jobs: an operator's read and an online backup, each opened and closed.
            assert outside_read(w.db)["J1"] == "succeeded"
            assert outside_backup(w.db, tmp_path / "copy.db")["J1"] == "succeeded"
            await ack(w, ws, "create web-2 --now")
            assert await wait_final(w.db, "J2") == "succeeded"
            await kill(bot)
            bot = await start_bot(w)
            after = outside_read(w.db)
            assert after == {"J1": "succeeded", "J2": "succeeded"}
            await ack(w, ws, "create web-1 --now")
            assert await wait_final(w.db, "J3") == "succeeded"  # J2 is not handed out again
            # One image per job, J2 not made again after the kill.
            assert images_by_job(await cloud_state(w)) == {"J1": 1, "J2": 1, "J3": 1}
        finally:
            await stop(bot, within=15)


async def test_second_instance_on_the_same_database_refuses_and_sigkill_frees_it() -> None:
    async with world(0, 50.0) as w:
        bot = await start_bot(w)
        try:
            imagebot = str(Path(sys.executable).with_name("imagebot"))
            second = await asyncio.create_subprocess_exec(
                imagebot, "run", "--http", "--port", str(free_port()), env=w.env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(second.communicate(), 60)
            finally:
                # A second instance that did start (the bug) must not outlive the test.
                if second.returncode is None:
                    await kill(second)
            assert second.returncode == 1
            lines = err.decode().strip().splitlines()
            assert len(lines) == 1, lines
            assert f"pid {bot.pid}, since " in lines[0] and str(w.db) in lines[0], lines[0]
            assert b"listening" not in out
            # The holder dies the hard way: the kernel frees the lock, the next start works.
            await kill(bot)
            bot = await start_bot(w)
            assert bot.returncode is None
            async with httpx.AsyncClient(timeout=10) as client:
                health = await client.get(f"http://127.0.0.1:{w.port}/healthz")
            assert health.status_code == 200, health.text
        finally:
            await stop(bot, within=15)
