"""`bot.imaging.fanout`: a tick's jobs side by side, in turn where they share a server."""

from __future__ import annotations

import asyncio

import pytest

from bot.imaging.fanout import fan_out, grouped, meanwhile


def test_grouped_keeps_the_order_within_each_key() -> None:
    items = ["a1", "b1", "a2", "c1", "b2"]
    assert grouped(items, lambda s: s[0]) == [["a1", "a2"], ["b1", "b2"], ["c1"]]


async def test_groups_go_side_by_side_and_a_group_in_turn() -> None:
    log: list[str] = []

    async def work(name: str) -> None:
        log.append(f"start {name}")
        for _ in range(3):  # yield to the others (no time passes)
            await asyncio.sleep(0)
        log.append(f"end {name}")

    await fan_out([["a1", "a2"], ["b1"]], work)
    assert log.index("start b1") < log.index("end a1")  # side by side
    assert log.index("end a1") < log.index("start a2")  # one server's jobs in turn


async def test_at_most_limit_at_once() -> None:
    running, peak = 0, 0

    async def work(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1

    await fan_out([[i] for i in range(10)], work, limit=3)
    assert peak == 3


async def test_a_failing_job_does_not_hold_back_the_others_and_still_shows() -> None:
    done: list[int] = []

    async def work(i: int) -> None:
        if i == 1:
            raise RuntimeError("bug")
        done.append(i)

    with pytest.raises(RuntimeError, match="bug"):
        await fan_out([[1], [2], [3]], work)
    assert sorted(done) == [2, 3]


async def test_meanwhile_runs_the_step_while_the_task_goes_on_and_returns_its_result() -> None:
    release = asyncio.Event()
    looks: list[int] = []

    async def task() -> str:
        await release.wait()
        return "submitted"

    async def look() -> None:
        looks.append(len(looks))
        if len(looks) == 3:
            release.set()

    assert await meanwhile(asyncio.ensure_future(task()), 0.001, look) == "submitted"
    assert looks == [0, 1, 2]  # three looks, none after the task ended


async def test_meanwhile_runs_no_step_for_a_task_that_ends_within_the_period() -> None:
    looks: list[int] = []

    async def look() -> None:
        looks.append(1)

    assert await meanwhile(asyncio.ensure_future(asyncio.sleep(0, "quick")), 60, look) == "quick"
    assert looks == []


async def test_meanwhile_a_failing_step_still_awaits_the_task_and_a_cancel_cancels_it() -> None:
    finished: list[str] = []

    async def task() -> None:
        await asyncio.sleep(0.05)
        finished.append("task")

    async def bad() -> None:
        raise RuntimeError("cloud down")

    with pytest.raises(RuntimeError, match="cloud down"):
        await meanwhile(asyncio.ensure_future(task()), 0.001, bad)
    assert finished == ["task"]  # not left running unawaited

    slow = asyncio.ensure_future(asyncio.sleep(60))
    waiting = asyncio.ensure_future(meanwhile(slow, 60, bad))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slow.cancelled()
