"""Figure 1: ack latency of `/image create` under 50 concurrent signed requests.

The bot runs under real uvicorn on loopback (`running_system(loopback=True)`); the requests come
from a separate process (`bench.loadgen`) so the client's work is not charged to the bot.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlencode

from bench.common import Row, percentile
from sandbox.slack.deliver import VERIFICATION_TOKEN
from sandbox.slack.model import APP_ID, TEAM_DOMAIN, TEAM_ID
from sandbox.system import SIGNING_SECRET, System, running_system

SLACK_DEADLINE_MS = 3000.0
GOAL_P99_MS = 50.0


def command_body(system: System, user: str, channel: str, text: str) -> str:
    """The form Slack posts for `/image text`, with a live response_url and trigger_id."""
    ws = system.workspace
    u, ch = ws.user(user), ws.channel(channel)
    ru = ws.new_response_url(ch.id, u.id, "command")
    form = {"token": VERIFICATION_TOKEN, "team_id": TEAM_ID, "team_domain": TEAM_DOMAIN,
            "channel_id": ch.id, "channel_name": ch.name, "user_id": u.id, "user_name": u.name,
            "command": "/image", "text": text, "api_app_id": APP_ID,
            "is_enterprise_install": "false", "response_url": ws.response_url(ru),
            "trigger_id": ws.new_trigger_id()}
    return urlencode(form)


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
    async with running_system(speed=50, extra_servers=n * (rounds + 1), loopback=True) as system:
        alone = [command_body(system, "alice", "#ops", "help") for _ in range(20)]
        await fire(system.bot_url, alone[:5], sequential=True)
        single = [seconds * 1000 for _, seconds, _ in await fire(system.bot_url, alone[5:],
                                                                 sequential=True)]
        # Warm-up burst (imports, first Bolt dispatch, SQLite page cache): not counted.
        warm = [command_body(system, "alice", "#ops", f"create load-{i} --now")
                for i in range(1, n + 1)]
        await fire(system.bot_url, warm)
        for r in range(1, rounds + 1):
            bodies = [command_body(system, "alice", "#ops", f"create load-{r * n + i} --now")
                      for i in range(1, n + 1)]
            for status, seconds, text in await fire(system.bot_url, bodies):
                if status != 200 or not text:
                    bad += 1
                latencies.append(seconds * 1000)
            await asyncio.sleep(0.5)
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
