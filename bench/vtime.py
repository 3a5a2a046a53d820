"""Virtual time for threads: `sleep()` returns when simulated time reaches the wake-up moment.

The peer (openstacksdk) polls with `time.sleep(2)`. Replaying that in real time would take the
images' full durations; scaling the sleep would make 100 threads hammer a 2-core machine and
lag. Here simulated time jumps to the next wake-up as soon as every waiting thread sleeps, so
the peer makes exactly the requests its fixed 2 s polling makes, as fast as the CPU allows.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from sandbox.cloud.model import ManualClock


class VirtualTime:
    """Discrete-event time shared by `parties` threads and a `ManualClock` world."""

    def __init__(self, clock: ManualClock, parties: int) -> None:
        self.clock = clock
        self.alive = parties
        self.sleeping = 0
        self._wakeups: list[float] = []
        self._cond = threading.Condition()

    def time(self) -> float:
        """Simulated now (epoch seconds)."""
        return self.clock()

    def sleep(self, seconds: float) -> None:
        """Block until simulated time has advanced by `seconds`."""
        with self._cond:
            wake = self.clock() + max(seconds, 0.0)
            heapq.heappush(self._wakeups, wake)
            self.sleeping += 1
            self._maybe_advance()
            while self.clock() < wake:
                self._cond.wait()

    def done(self) -> None:
        """The calling thread will not sleep any more."""
        with self._cond:
            self.alive -= 1
            self._maybe_advance()

    def _maybe_advance(self) -> None:
        # Everyone still running is asleep: jump to the earliest wake-up.
        # Woken sleepers stop counting at once, before they run, so nobody jumps ahead of them.
        if self.alive > 0 and self.sleeping >= self.alive and self._wakeups:
            wake = self._wakeups[0]
            if wake > self.clock():
                self.clock.advance(wake - self.clock())
            while self._wakeups and self._wakeups[0] <= self.clock():
                heapq.heappop(self._wakeups)
                self.sleeping -= 1
            self._cond.notify_all()


class TimeShim:
    """Stands in for the `time` module inside a library: virtual sleep and time."""

    def __init__(self, vt: VirtualTime) -> None:
        self.sleep: Callable[[float], None] = vt.sleep
        self.time: Callable[[], float] = vt.time
        self.monotonic = time.monotonic
        self.perf_counter = time.perf_counter
