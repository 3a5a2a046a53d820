"""Figure 1: ack latency of `/image create` under 50 concurrent signed requests.

Every piece runs in its own process, as in production: the simulated cloud (`imagebot
cloud-sim`), the Slack emulator, the bot (`imagebot run --http`, real uvicorn on loopback), and
the load generator (`bench.loadgen`). Only the bot's own work is in the measured round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from bench.common import Row, percentile
from bench.procs import command_body, start_bot, world
from sandbox.slack.model import SlackWorkspace
from sandbox.system import SIGNING_SECRET

SLACK_DEADLINE_MS = 3000.0
GOAL_P99_MS = 50.0


@contextlib.asynccontextmanager
async def processes(servers: int) -> AsyncIterator[tuple[str, SlackWorkspace]]:
    """Cloud (x50), Slack emulator and a real-time bot, each in its own process; yields the bot's
    request URL and a workspace to build request bodies with."""
    async with world(servers, 50.0, bot_speed=1.0) as w:
        bot = await start_bot(w)
        try:
            workspace = SlackWorkspace()
            workspace.base_url = w.slack_url
            yield f"http://127.0.0.1:{w.port}/slack/events", workspace
        finally:
            bot.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bot.wait(), 10)


async def fire(url: str, bodies: list[str], *, sequential: bool = False) -> list[list[Any]]:
    """Run the load generator process and collect its timings."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", url, SIGNING_SECRET,
        *(["--sequential"] if sequential else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(json.dumps(bodies).encode())
    if proc.returncode != 0:
        raise RuntimeError("load generator failed")
    result: list[list[Any]] = json.loads(out)
    return result


async def measure(n: int = 50, rounds: int = 3) -> list[Row]:
    """p50/p99 of the HTTP round trip over `rounds` bursts of `n` concurrent creates."""
    latencies: list[float] = []
    bad = 0
    async with processes(n * (rounds + 1)) as (bot_url, ws):
        alone = [command_body(ws, "alice", "#ops", "help") for _ in range(20)]
        await fire(bot_url, alone[:5], sequential=True)
        single = [seconds * 1000 for _, seconds, _ in await fire(bot_url, alone[5:],
                                                                 sequential=True)]
        # Warm-up burst (imports, first Bolt dispatch, SQLite page cache): not counted.
        warm = [command_body(ws, "alice", "#ops", f"create load-{i} --now")
                for i in range(1, n + 1)]
        await fire(bot_url, warm)
        await asyncio.sleep(1.0)
        for r in range(1, rounds + 1):
            bodies = [command_body(ws, "alice", "#ops", f"create load-{r * n + i} --now")
                      for i in range(1, n + 1)]
            for status, seconds, text in await fire(bot_url, bodies):
                if status != 200 or not text:
                    bad += 1
                latencies.append(seconds * 1000)
            await asyncio.sleep(1.0)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    note = f"{rounds} bursts of {n} concurrent requests; {bad} not answered 200 with a body"
    return [
        Row("1. one request at a time, p50 (ms)", percentile(single, 50), SLACK_DEADLINE_MS,
            "ms", "—", None, "Slack's 3 s deadline", "15 sequential `/image help`, idle bot"),
        Row("1. ack latency p50 (ms)", p50, SLACK_DEADLINE_MS, "ms", "—", None,
            "Slack's 3 s deadline", note),
        Row("1. ack latency p99 (ms)", p99, SLACK_DEADLINE_MS, "ms",
            f"p99 < {GOAL_P99_MS:.0f} ms", p99 < GOAL_P99_MS and bad == 0,
            "Slack's 3 s deadline", note, {"max_ms": max(latencies), "bad": bad}),
    ]


if __name__ == "__main__":
    for row in asyncio.run(measure()):
        print(row)
