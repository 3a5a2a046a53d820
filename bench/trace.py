"""Where the time goes between a task-state change in the simulated cloud and the Slack post.

`Tracer.attach(system)` wraps, on the running instances only (the bot's code is unchanged), the
engine's observe, the notifier's read of new outbox rows, its send and the Web API post, and
records wall times (`time.time()`, the clock the simulator and the Slack emulator stamp with).
`breakdown(...)` then splits each "writes may resume" / final reply into stages:

    change -> observe   the engine's next look at the cloud after the change (tick, poll floor)
    observe -> commit   the observe call and the store commit of the change + its outbox rows
    commit -> read      the notifier waking and reading the new rows
    read -> send        waiting in the lanes (other items first, pacing tokens, busy lane)
    send -> post        inside the send: store reads/writes and the pacer's sleep
    post -> slack       the Web API call itself (Slack's `ts` is stamped on arrival)

Run it with `python -m bench.fig_cloud --scenario 10x10 --trace`.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import percentile

STAGES = ("change→observe", "observe→commit", "commit→read", "read→send", "send→post",
          "post→slack")


@dataclass
class Tracer:
    """Wall times of the engine's observes and of each outbox item's way through the notifier."""

    observes: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    ticks: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, next
    read: dict[int, float] = field(default_factory=dict)  # outbox id -> first read
    send: dict[int, float] = field(default_factory=dict)  # outbox id -> first send start
    post: dict[int, tuple[float, float]] = field(default_factory=dict)  # id -> post call

    def attach(self, system: Any) -> None:
        """Wrap the running instances' methods (instance attributes shadow the class's)."""
        engine, notifier = system.runtime.engine, system.runtime.notifier
        observe = engine._observe
        tick = engine.tick
        refresh = notifier._refresh
        send = notifier._send
        post = notifier.web.post

        async def traced_observe(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return await observe(*args, **kwargs)
            finally:
                self.observes.append((start, time.time()))

        async def traced_tick() -> float:
            start = time.time()
            interval = await tick()
            self.ticks.append((start, time.time(), interval))
            return float(interval)

        async def traced_refresh(*args: Any, **kwargs: Any) -> Any:
            result = await refresh(*args, **kwargs)
            now = time.time()
            lanes = notifier.lanes
            for queue in lanes.threads.values():
                for item in queue:
                    self.read.setdefault(item.id, now)
            for item in lanes.edits.values():
                self.read.setdefault(item.id, now)
            return result

        async def traced_send(item: Any) -> Any:
            self.send.setdefault(item.id, time.time())
            return await send(item)

        async def traced_post(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            result = await post(*args, **kwargs)
            outbox_id = kwargs.get("outbox_id")
            if outbox_id is not None:
                self.post.setdefault(int(outbox_id), (start, time.time()))
            return result

        engine._observe = traced_observe
        engine.tick = traced_tick
        notifier._refresh = traced_refresh
        notifier._send = traced_send
        notifier.web.post = traced_post

    def next_observe(self, after: float) -> float | None:
        """The start of the first observe that began after `after`."""
        starts = sorted(s for s, _ in self.observes)
        index = bisect.bisect_right(starts, after)
        return starts[index] if index < len(starts) else None


def split(tracer: Tracer, changed: float, committed: float, outbox_id: int,
          slack_ts: float) -> dict[str, float] | None:
    """One item's stages in wall seconds, or None when a stamp is missing."""
    observed = tracer.next_observe(changed)
    read, send = tracer.read.get(outbox_id), tracer.send.get(outbox_id)
    post = tracer.post.get(outbox_id)
    if observed is None or read is None or send is None or post is None:
        return None
    marks = [changed, min(observed, committed), committed, read, send, post[0], slack_ts]
    return {stage: marks[i + 1] - marks[i] for i, stage in enumerate(STAGES)}


def summary(parts: list[dict[str, float]], speed: float) -> dict[str, dict[str, float]]:
    """Median and p95 per stage, in unscaled seconds (wall × speed)."""
    out: dict[str, dict[str, float]] = {}
    for stage in (*STAGES, "total"):
        values = [(sum(p.values()) if stage == "total" else p[stage]) * speed for p in parts]
        if values:
            out[stage] = {"p50": round(percentile(values, 50), 2),
                          "p95": round(percentile(values, 95), 2)}
    return out


