"""Group commit (issue #17, "Acks"): creates queued while the store thread is busy share one
transaction, each in its own savepoint; a caller is answered only after COMMIT; a failed COMMIT
fails exactly that batch; a caller's own error fails only that caller; a process killed in the
middle of a burst loses no create it had acked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.errors import InvalidTransition, ServerInUse
from bot.imaging import jobs
from bot.store import AsyncStore, Store, StoreError
from tests.helpers import Clock

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def astore(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    s = await AsyncStore.open(tmp_path / "g.db", clock=Clock(T0))
    yield s
    await s.close()


def create(astore: AsyncStore, n: int, **kw: Any) -> Any:
    args: dict[str, Any] = dict(server_ref=f"web{n}", requested_by="U1", channel="C1",
                                state=jobs.QUEUED, dedupe_key=f"trigger:{n}",
                                refuse_if_in_flight=True)
    args.update(kw)
    return astore.run(Store.create_job, **args)


@contextlib.asynccontextmanager
async def store_thread_busy(astore: AsyncStore) -> AsyncIterator[None]:
    """Hold the store thread (as a long engine write would) until the block ends, so every
    create fired meanwhile queues for the next group commit."""
    release = threading.Event()
    held = asyncio.ensure_future(astore._run(release.wait, 10))
    await asyncio.sleep(0.05)
    try:
        yield
    finally:
        release.set()
        await held


async def statements(astore: AsyncStore) -> list[str]:
    """Every SQL statement the store's connection runs from now on (SQLite's trace hook)."""
    seen: list[str] = []
    await astore._run(astore.store.db.conn.set_trace_callback, seen.append)
    return seen


def committed(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What another connection (another process, after a crash) reads: committed rows only."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
        return conn.execute(sql, params).fetchall()


async def test_a_burst_of_creates_is_one_transaction_and_all_durable(
        astore: AsyncStore) -> None:
    seen = await statements(astore)
    async with store_thread_busy(astore):
        burst = [asyncio.ensure_future(create(astore, n)) for n in range(1, 51)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in burst)  # nobody is answered while nothing committed
    results = await asyncio.gather(*burst)
    assert all(created for _, created in results)
    ids = [job.id for job, _ in results]
    assert ids == [f"J{n}" for n in range(1, 51)]  # distinct, increasing in arrival order
    begins = [s for s in seen if s.startswith("BEGIN")]
    commits = [s for s in seen if s == "COMMIT"]
    assert len(begins) == 1 and len(commits) == 1
    assert (astore.batches, astore.batched_calls) == (1, 50)
    rows = committed(astore.store.path, "SELECT id, dedupe_key FROM jobs ORDER BY seq")
    assert rows == [(f"J{n}", f"trigger:{n}") for n in range(1, 51)]
    # Per create, savepoints aside: the insert that checks dedupe and busy, allocates its id
    # and returns the row (issue 17: "dedupe and id in one statement"), and its event.
    # Nothing reads the row back ...
    work = [s for s in seen if not s.startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    assert len(work) == 2 * 50
    assert not any(s.startswith("SELECT") for s in work)
    # One savepoint per create (the batch's for that call; create_job's own `_tx` shares it).
    assert len([s for s in seen if s.startswith("SAVEPOINT")]) == 50
    assert not any(s.startswith("SELECT * FROM jobs WHERE id") for s in seen)
    # ... and the answer is the row as stored all the same.
    assert results[0][0] == await astore.run(Store.get_job, "J1")


async def test_creates_under_load_take_few_transactions(astore: AsyncStore) -> None:
    seen = await statements(astore)
    results = await asyncio.gather(*(create(astore, n) for n in range(1, 101)))
    assert [job.number for job, _ in results] == list(range(1, 101))
    assert len([s for s in seen if s.startswith("BEGIN")]) < 100 / 4


async def test_a_batch_wakes_the_event_loop_once(astore: AsyncStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Each wake-up writes to the loop's self-pipe from the store thread, which then waits for
    # the GIL again behind the loop; a batch's callers are all answered from one.
    loop = asyncio.get_running_loop()
    real = loop.call_soon_threadsafe
    wakes: list[str] = []

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        wakes.append(threading.current_thread().name)
        return real(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    async with store_thread_busy(astore):
        burst = [asyncio.ensure_future(create(astore, n)) for n in range(1, 31)]
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*burst)
    assert [job.number for job, _ in results] == list(range(1, 31))
    assert astore.batches == 1
    # The busy call's own answer, then one for the 30 callers (one each: 31 in all).
    store_wakes = [name for name in wakes if name.startswith("imagebot-store")]
    assert len(store_wakes) == 2, wakes


async def test_nobody_is_answered_before_commit(astore: AsyncStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real = astore.store._commit

    def slow_commit() -> None:
        time.sleep(0.3)  # the window in which an early answer would be caught
        real()

    monkeypatch.setattr(astore.store, "_commit", slow_commit)
    path = astore.store.path

    async def create_and_look(n: int) -> int:
        job, _ = await create(astore, n)
        return len(committed(path, "SELECT 1 FROM jobs WHERE id = ?", (job.id,)))

    async with store_thread_busy(astore):
        found = [asyncio.ensure_future(create_and_look(n)) for n in range(1, 11)]
        await asyncio.sleep(0)
    assert await asyncio.gather(*found) == [1] * 10


async def test_a_callers_own_error_fails_only_that_caller(astore: AsyncStore) -> None:
    first, _ = await create(astore, 0, server_ref="db9", dedupe_key="trigger:old")
    async with store_thread_busy(astore):
        burst = [asyncio.ensure_future(c) for c in [
            create(astore, 1),
            create(astore, 2, server_ref="db9"),             # busy: our job J1 images it
            create(astore, 3, state=jobs.SUCCEEDED),          # not a state to start in
            create(astore, 4, server_ref="db9", dedupe_key="trigger:old"),  # a retry
            create(astore, 5, server_ref="web1"),             # busy: J2, earlier in this batch
            create(astore, 6)]]
    done = await asyncio.gather(*burst, return_exceptions=True)
    assert done[0][1] and done[5][1]
    assert isinstance(done[1], ServerInUse) and done[1].job.id == first.id
    assert isinstance(done[2], InvalidTransition)
    assert done[3] == (first, False)
    assert isinstance(done[4], ServerInUse) and done[4].job.id == done[0][0].id
    assert [done[0][0].id, done[5][0].id] == ["J2", "J3"]
    assert committed(astore.store.path, "SELECT id FROM jobs ORDER BY seq") == [
        ("J1",), ("J2",), ("J3",)]
    assert astore.batches == 2  # the first create, then the burst


def orphan_event(store: Store) -> None:
    """A write only COMMIT can refuse: a deferred foreign key (SQLite checks deferred
    constraints at COMMIT, foreignkeys.html section 4.2) to a job that does not exist."""
    store.db.execute("PRAGMA defer_foreign_keys = ON")
    store.db.execute("INSERT INTO job_events (job_id, at, event, detail) "
                     "VALUES ('J999', '2025-03-01T12:00:00Z', 'orphan', '{}')")


async def test_a_failed_commit_fails_exactly_that_batch(astore: AsyncStore) -> None:
    async with store_thread_busy(astore):
        doomed = [asyncio.ensure_future(c) for c in [
            create(astore, 1), astore.run_grouped(orphan_event), create(astore, 2)]]
    outcomes = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes
    assert "nothing was saved" in str(outcomes[0]) and "FOREIGN KEY" in str(outcomes[0])
    assert committed(astore.store.path, "SELECT COUNT(*) FROM jobs") == [(0,)]
    assert committed(astore.store.path, "SELECT COUNT(*) FROM job_events") == [(0,)]
    # The next batch commits; the retries (same trigger_id) create their jobs once.
    async with store_thread_busy(astore):
        retried = [asyncio.ensure_future(create(astore, n)) for n in (1, 2, 3)]
    assert [(j.id, c) for j, c in await asyncio.gather(*retried)] == [
        ("J1", True), ("J2", True), ("J3", True)]
    again = await asyncio.gather(create(astore, 1), create(astore, 2))
    assert [(j.id, c) for j, c in again] == [("J1", False), ("J2", False)]


async def test_a_full_disk_keeps_every_answered_create_and_no_other(
        astore: AsyncStore) -> None:
    path = astore.store.path
    pages = committed(path, "PRAGMA page_count")[0][0]
    await astore._run(astore.store.db.execute, f"PRAGMA max_page_count = {pages + 12}")
    async with store_thread_busy(astore):
        burst = [asyncio.ensure_future(create(astore, n, note="x" * 3000))
                 for n in range(1, 41)]
    outcomes = await asyncio.gather(*burst, return_exceptions=True)
    answered = [o[0].dedupe_key for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if not isinstance(o, tuple)]
    assert answered and refused  # the disk filled up inside the batch
    assert all(isinstance(o, StoreError) for o in refused)
    rows = committed(path, "SELECT dedupe_key FROM jobs ORDER BY seq")
    assert [key for (key,) in rows] == answered
    # Room again: the store goes on, and the ids never went backwards.
    await astore._run(astore.store.db.execute, "PRAGMA max_page_count = 1073741823")
    job, _ = await create(astore, 99)
    assert job.number == len(answered) + 1


def burst_writer(db: Path) -> str:
    """A child process that acks creates in bursts of 10 and prints each ack (id, key) as it
    is answered, until it is killed (bounded, in case it is not)."""
    return textwrap.dedent(f"""
        import asyncio, sys
        from bot.imaging import jobs
        from bot.store import AsyncStore, Store

        async def one(store, n):
            job, _ = await store.run(Store.create_job, server_ref=f"web{{n}}",
                requested_by="U1", channel="C1", state=jobs.QUEUED,
                dedupe_key=f"trigger:{{n}}", refuse_if_in_flight=True)
            print(job.id, job.dedupe_key, flush=True)

        async def main():
            store = await AsyncStore.open({str(db)!r})
            for burst in range(500):
                await asyncio.gather(*(one(store, burst * 10 + i) for i in range(10)))

        asyncio.run(main())
        """)


def test_a_killed_process_loses_no_acked_create(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    proc = subprocess.Popen([sys.executable, "-c", burst_writer(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    acked: list[tuple[str, str]] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(acked) < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            job_id, key = line.split()
            acked.append((job_id, key))
        proc.send_signal(signal.SIGKILL)  # mid-burst: some creates are in an open batch
    finally:
        proc.kill()
        proc.wait(10)
    assert len(acked) >= 150
    rows = set(committed(db, "SELECT id, dedupe_key FROM jobs"))
    assert set(acked) <= rows
    numbers = sorted(int(job_id[1:]) for job_id, _ in rows)
    assert numbers == list(range(1, len(numbers) + 1))  # no id handed out twice or skipped


async def test_a_locked_database_fails_the_batch_and_the_next_one_commits(
        astore: AsyncStore) -> None:
    await astore._run(astore.store.db.execute, "PRAGMA busy_timeout = 20")
    other = sqlite3.connect(astore.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (the CLI) holds the write lock
    try:
        outcomes = await asyncio.gather(*(create(astore, n) for n in (1, 2)),
                                        return_exceptions=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(o, StoreError) and "locked" in str(o) for o in outcomes), outcomes
    assert [job.id for job, _ in await asyncio.gather(create(astore, 1), create(astore, 2))] \
        == ["J1", "J2"]
