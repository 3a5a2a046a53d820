"""`Store`, the synchronous API of the job database composed from its table groups, and
`AsyncStore`, which runs that API on one dedicated worker thread so the event loop never blocks
on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from bot.errors import StoreError
from bot.store.scheduling import ScheduleTables
from bot.store.verify import VerifyTables

P = ParamSpec("P")
T = TypeVar("T")


class Store(ScheduleTables, VerifyTables):
    """Synchronous SQLite store; one connection, used from one thread.

    Its table groups: the connection, ids, meta and health (`db.StoreBase`), the outbox and
    delivery dedupe (`outbox`), jobs and their events (`jobs`), schedules, change requests,
    runs and audit (`scheduling`), restore tests (`verify`)."""


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
