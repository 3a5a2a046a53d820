"""Acks first: while Slack requests are being answered, background work waits its turn.

Slack gives an ack 3 seconds and the issue's goal a few milliseconds over a do-nothing server
(bench figure 1). The engine, the notifier and the scheduler share the one event loop (and the
GIL) with the listeners, and a burst of `/image create`s wakes them all: measured under a burst
of 50 creates, the notifier's lane choice and the engine's createImage calls took more of the
loop than the 50 acks themselves. So the background loops pass through `AcksFirst.turn()`
before each store, cloud or Slack call they make (wiring puts it in front of the background
store connection, the cloud transport and the Web API calls): while a request is in flight the
call waits until none is, at most `max_wait` seconds, then goes on. Work already running is
not interrupted, and nothing is dropped or reordered: each loop only starts its next step a
little later.

A call made while answering a request (the ack's own store read, a directory lookup, and the
work spawned after the ack, which inherits the request's context) never waits: it is the
request being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator

import httpx

MAX_WAIT = 0.2  # seconds a background call waits for the requests in flight, at most


class AcksFirst:
    """Counts the Slack requests being answered; `turn()` is the background side's wait."""

    def __init__(self, max_wait: float = MAX_WAIT) -> None:
        self.max_wait = max_wait
        self.in_flight = 0
        self.waits = 0  # background calls that waited (tests, metrics)
        self._quiet = asyncio.Event()
        self._quiet.set()
        # Set inside `serving()`; copied into tasks started there (contextvars semantics).
        self._serving: contextvars.ContextVar[bool] = contextvars.ContextVar(
            "imagebot_serving", default=False)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around one request's answer (the HTTP edge, after the signature check)."""
        token = self._serving.set(True)
        self.in_flight += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._quiet.set()
            self._serving.reset(token)

    async def turn(self) -> None:
        """Return at once when no request is in flight or when called while serving one;
        otherwise once the last one is answered, or after `max_wait` seconds."""
        if self.in_flight == 0 or self._serving.get():
            return
        self.waits += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait):
                await self._quiet.wait()


class TakingTurns(httpx.AsyncBaseTransport):
    """An httpx transport that waits for `turn()` before each request (the cloud's)."""

    def __init__(self, inner: httpx.AsyncBaseTransport,
                 turn: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.turn = turn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Wait for the turn, then send through the wrapped transport."""
        await self.turn()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()
