"""The one shape of every background loop: work, then sleep until woken or the interval ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_until(stop: asyncio.Event, wake: asyncio.Event, step: Callable[[], Awaitable[float]],
                    *, name: str, fallback: float, scale: float = 1.0) -> None:
    """Call `step` until `stop` is set. `step` returns the seconds to sleep (times `scale`);
    setting `wake` ends the sleep early. A failing step is logged and retried after `fallback`
    seconds: state lives in SQLite, so one bad pass must not end the loop. `stop` also ends
    a sleep."""
    while not stop.is_set():
        interval = fallback
        try:
            interval = await step()
        except Exception:
            log.exception("%s pass failed", name)
        wake.clear()
        if stop.is_set():
            return
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=max(interval, 0.0) * scale,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
