"""`Store`, the synchronous API of the job database composed from its table groups, and
`AsyncStore`, which runs that API on one dedicated worker thread so the event loop never blocks
on SQLite.

Group commit: `AsyncStore.run` sends the calls in `GROUPED` (creates: what a Slack ack waits
for) to a queue; the store thread takes every call queued while it was busy and runs them in
ONE transaction, each in its own savepoint. A caller is answered only after that COMMIT (its row
is durable before it is acked); a call that raises fails alone (its savepoint rolled back); a
failed COMMIT fails every call of that batch with a `StoreError` (nothing of it was saved, so a
retry with the same trigger_id dedupes against nothing and creates the job once)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from bot.errors import StoreError
from bot.store.fleet import FleetTables
from bot.store.verify import VerifyTables

P = ParamSpec("P")
T = TypeVar("T")

NOT_SAVED = ("The job database could not save this request ({}); nothing was saved. "
             "Please try again.")


@dataclass(frozen=True)
class Outcome:
    """What one call of a batch came to: its value, or the exception it is to raise."""

    value: Any = None
    error: BaseException | None = None


class Store(FleetTables, VerifyTables):
    """Synchronous SQLite store; one connection, used from one thread.

    Its table groups: the connection, ids, meta and health (`db.StoreBase`), the outbox and
    delivery dedupe (`outbox`), jobs and their events (`jobs`), schedules, change requests,
    runs and audit (`scheduling`), fleet runs (`fleet`), restore tests (`verify`)."""

    def run_batch(self, calls: Sequence[Callable[[], Any]]) -> list[Outcome]:
        """Run `calls` in one write transaction, each in its own savepoint, and commit once.

        A call that raises has its savepoint rolled back and gets its own error; the others
        are kept. A failure that ends the whole transaction (SQLite may roll back everything on
        SQLITE_FULL or an I/O error) or a failed COMMIT turns every call kept so far into a
        `StoreError`: an outcome with a value means its writes are committed."""
        with self.writers:  # the process's connections take turns (`StoreBase.writers`)
            return self._run_batch(calls)

    def _run_batch(self, calls: Sequence[Callable[[], Any]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        kept: list[int] = []  # calls whose writes sit in the open transaction

        def lose(reason: BaseException) -> None:
            for i in kept:
                outcomes[i] = Outcome(error=_not_saved(reason))
            kept.clear()

        conn = self.db.conn
        for call in calls:
            if not conn.in_transaction:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    outcomes.append(Outcome(error=_not_saved(exc)))
                    continue
            try:
                with self.db.atomic():  # in a transaction: a savepoint of this call alone
                    self._in_call_savepoint = True  # the call's own `_tx` needs no second one
                    try:
                        value = call()
                    finally:
                        self._in_call_savepoint = False
            except Exception as exc:
                outcomes.append(Outcome(error=_translated(exc)))
                if not conn.in_transaction:  # the error took the whole transaction with it
                    lose(exc)
                continue
            outcomes.append(Outcome(value))
            kept.append(len(outcomes) - 1)
        if conn.in_transaction:
            try:
                self._commit()
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.db.rollback()
                lose(exc)
        return outcomes

    def _commit(self) -> None:
        self.db.conn.execute("COMMIT")


def _translated(exc: Exception) -> BaseException:
    # The edge: callers only see our error tree.
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"job database error: {exc}")
    return exc


def _not_saved(reason: BaseException) -> StoreError:
    error = StoreError(NOT_SAVED.format(str(reason)[:200] or type(reason).__name__))
    error.__cause__ = reason
    return error


def _settle_all(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _settle(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if future.done():  # the caller gave up (cancelled); the outcome stands in the database
        return
    if outcome.error is not None:
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome.value)


@dataclass
class _Queued:
    call: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class AsyncStore:
    """The Store's methods as coroutines, all run on one dedicated worker thread."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor | None = None) -> None:
        self.store = store
        self._executor = executor or ThreadPoolExecutor(max_workers=1,
                                                        thread_name_prefix="imagebot-store")
        self._lock = threading.Lock()  # the queue is filled on the loop, drained on the thread
        self._queue: list[_Queued] = []
        self._drain_submitted = False
        self.batches = 0  # group-commit transactions run, and the calls they carried
        self.batched_calls = 0
        # Awaited before each `run` (wiring: the background connection waits for the acks in
        # flight, `bot.priority.AcksFirst.turn`); None = never wait.
        self.before_call: Callable[[], Awaitable[None]] | None = None

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], datetime] | None = None,
                   writers: AbstractContextManager[Any] | None = None) -> AsyncStore:
        """Open the store ON the worker thread, so the connection lives there; `writers`: the
        lock this process's connections share around write transactions (`StoreBase`)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagebot-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(executor, partial(Store, path, clock=clock,
                                                                      writers=writers))
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
        `Store`) and the arguments are type-checked against it. The methods in `GROUPED` are
        group-committed (`run_grouped`)."""
        if self.before_call is not None:
            await self.before_call()
        if fn in GROUPED:
            return await self.run_grouped(fn, *args, **kwargs)
        return await self._run(fn, self.store, *args, **kwargs)

    async def run_grouped(self, fn: Callable[Concatenate[Store, P], T], *args: P.args,
                          **kwargs: P.kwargs) -> T:
        """Run a writing `Store` method in the next group commit (see the module docstring);
        returns once its transaction is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._queue.append(_Queued(partial(fn, self.store, *args, **kwargs), future, loop))
            submit, self._drain_submitted = not self._drain_submitted, True
        if submit:
            self._executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """On the store thread: one transaction for everything queued until now."""
        with self._lock:
            queued, self._queue = self._queue, []
            self._drain_submitted = False
        if not queued:
            return
        try:
            outcomes = self.store.run_batch([q.call for q in queued])
        except BaseException as exc:  # not one caller may be left waiting
            outcomes = [Outcome(error=_not_saved(exc)) for _ in queued]
        self.batches += 1
        self.batched_calls += len(queued)
        # One wake-up per loop for the whole batch: each `call_soon_threadsafe` writes to the
        # loop's self-pipe, and the store thread then waits for the GIL again, behind a loop
        # busy with the rest of the burst (in-process, 50 creates: the slowest answer ~2 ms
        # sooner).
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for q, outcome in zip(queued, outcomes, strict=True):
            answers.setdefault(q.loop, []).append((q.future, outcome))
        for loop, settled in answers.items():
            with contextlib.suppress(RuntimeError):  # that caller's loop is closed
                loop.call_soon_threadsafe(_settle_all, settled)

    async def close(self) -> None:
        """Close the connection on its thread and stop the worker."""
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)


# What a Slack ack waits for: group-committed (AsyncStore.run_grouped). Each does all its
# writes in one top-level `_tx`, which shares `run_batch`'s savepoint for the call.
GROUPED: frozenset[Callable[..., Any]] = frozenset({Store.create_job})
