"""A separate process that fires signed Slack requests at the bot and times each round trip.

Run as `python -m bench.loadgen URL SECRET` with a JSON list of form bodies on stdin; prints a
JSON list of `[status, seconds, body]`. Living in its own process keeps the client's CPU time
out of the bot's measured latency.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from sandbox.slack.deliver import sign


async def fire(url: str, secret: str, bodies: list[str],
               sequential: bool = False) -> list[list[object]]:
    """Send every body at once (or one after another); returns (status, seconds, text)."""
    limits = httpx.Limits(max_connections=len(bodies) + 1, max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        async def one(body: str) -> list[object]:
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Slack-Request-Timestamp": stamp,
                       "X-Slack-Signature": sign(secret, stamp, body)}
            start = time.perf_counter()
            response = await client.post(url, content=body.encode(), headers=headers)
            return [response.status_code, time.perf_counter() - start, response.text]

        # Open the connections first so the figure is the request, not the TCP handshake.
        await asyncio.gather(*(client.get(url.replace("/slack/events", "/healthz"))
                               for _ in bodies))
        if sequential:
            return [await one(b) for b in bodies]
        return list(await asyncio.gather(*(one(b) for b in bodies)))


def main() -> int:
    """Entry point."""
    url, secret = sys.argv[1], sys.argv[2]
    sequential = "--sequential" in sys.argv[3:]
    bodies = json.load(sys.stdin)
    print(json.dumps(asyncio.run(fire(url, secret, bodies, sequential))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
