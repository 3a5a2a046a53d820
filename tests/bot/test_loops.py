"""The shared loop shape: a failing pass is survived, `wake` cuts the sleep, `stop` ends it."""

from __future__ import annotations

import asyncio

from bot.loops import run_until


async def test_a_failing_pass_is_logged_and_the_loop_goes_on(caplog) -> None:
    stop, wake, second = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    async def step() -> float:
        calls.append(len(calls))
        if len(calls) == 2:
            second.set()
        if len(calls) == 1:
            raise RuntimeError("boom")
        if len(calls) == 3:
            stop.set()
        return 3600.0  # a long sleep that only `wake` can cut short

    loop = asyncio.create_task(run_until(stop, wake, step, name="test", fallback=0.0))
    await asyncio.wait_for(second.wait(), 5)
    wake.set()
    await asyncio.wait_for(loop, 5)
    assert calls == [0, 1, 2]
    assert "test pass failed" in caplog.text
