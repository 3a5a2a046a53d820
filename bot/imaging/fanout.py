"""Work on many jobs of one tick side by side, yet in order where order matters.

A tick that submitted or applied its jobs one after another waited, per job, for a few store
round trips and a cloud call in turn: with 100 jobs the next observation came a dozen ticks
late, and the "writes may resume" of a copy that ended meanwhile with it (issue #17). The store
thread and the cloud serve concurrent callers back to back, so the jobs go side by side, a few
at a time; jobs that share a key (the server they image) still go one after another, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")

PARALLEL = 16  # calls in flight at once: the cloud sees short bursts, never a flood


def grouped(items: Iterable[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """`items` split by `key`, each group in its original order, groups by first appearance."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


async def fan_out(groups: Iterable[list[T]], work: Callable[[T], Awaitable[None]],
                  limit: int = PARALLEL) -> None:
    """Run `work` on every item: the items of one group in turn, groups side by side, at most
    `limit` at once. Every item is worked on even if another failed; the first error is raised
    afterwards (a bug shows, and the other jobs were not held back by it)."""
    gate = asyncio.Semaphore(limit)

    async def one_group(group: list[T]) -> None:
        for item in group:
            async with gate:
                await work(item)

    results = await asyncio.gather(*(one_group(g) for g in groups), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def meanwhile(task: asyncio.Future[T], period: float,
                    step: Callable[[], Awaitable[object]]) -> T:
    """`task`'s result, running `step` every `period` seconds (from each step's start) while
    it goes on (issue #17: a copy that ends during a long burst of submits is told at the next
    look, not after the last submit). On an error or a cancel the task is still awaited (or
    cancelled): nothing is left running unawaited."""
    loop = asyncio.get_running_loop()
    due = loop.time() + period
    try:
        while not task.done():
            await asyncio.wait([task], timeout=max(due - loop.time(), 0.0))
            if not task.done():
                due = loop.time() + period
                await step()
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    except BaseException:
        await asyncio.gather(task, return_exceptions=True)
        raise
    return task.result()
