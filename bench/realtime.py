"""Figure 2 from outside: "writes may resume" in real time, with the bot, the cloud and the
Slack emulator each in its own process (`bench.procs`: `imagebot run --http`, `imagebot
cloud-sim`, the emulator), as in production, nothing scaled.

The creates arrive from this process as a Poisson stream. A watcher polls the cloud's own state
(`GET /_sim/state`) every `POLL_S` for each server's task state, and the Slack emulator's
message `ts` says when each "Writes may resume" reached Slack. A copy ended after the last poll
that did not show its server in `image_pending_upload` began, and before the first poll that
did show it ended: each delay is a range, and the row reports its upper end (conservative)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.procs import World, command_body, post_signed, slack_messages, start_bot, stop, world
from sandbox.slack.model import SlackWorkspace

POLL_S = 0.1
CHANNELS = 10  # the emulator's #load-0 … #load-9 (`SlackWorkspace.add_load_channels`)
WRITES = "image_pending_upload"


@dataclass
class CopyWatch:
    """For each server, when its copy ended at the latest and at the earliest (wall time)."""

    before: dict[str, float] = field(default_factory=dict)  # last poll start not showing it
    after: dict[str, float] = field(default_factory=dict)  # first poll end showing it

    def saw(self, servers: list[dict[str, Any]], started: float, ended: float) -> None:
        """One poll's server list, sent at `started`, answered at `ended`."""
        for server in servers:
            name = str(server["name"])
            if name in self.after:
                continue
            if server["task_state"] == WRITES:
                self.after[name] = ended
            else:
                self.before[name] = started


async def watch(cloud_url: str, copies: CopyWatch, stop_watching: asyncio.Event) -> None:
    """Poll the cloud's state every `POLL_S` until `stop_watching` is set."""
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop_watching.is_set():
            started = time.time()
            state = (await client.get(f"{cloud_url}/_sim/state")).json()
            copies.saw(state["servers"], started, time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_watching.wait(), POLL_S)


async def writes_posted(w: World) -> dict[tuple[str, str], float]:
    """{(channel id, thread ts): Slack ts of the thread's first "Writes may resume"}."""
    found: dict[tuple[str, str], float] = {}
    for channel in (f"C0LOAD{i}" for i in range(CHANNELS)):
        for message in (await slack_messages(w, channel))["messages"]:
            thread = message.get("thread_ts")
            if thread and "Writes may resume" in (message.get("text") or ""):
                found.setdefault((channel, thread), float(message["ts"]))
    return found


def threads(db: Any) -> list[tuple[str, str, str]]:
    """(server ref, channel, thread ts) of every job, read as another process reads it."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return [(str(a), str(b), str(c)) for a, b, c in conn.execute(
            "SELECT server_ref, channel, thread_ts FROM jobs WHERE thread_ts IS NOT NULL")]


async def measure(n: int, gap: float, seed: int, *, within: float = 180.0) -> dict[str, Any]:
    """`n` `--now` creates over `CHANNELS` channels, one every `gap` s on average;
    each "writes may resume" delay as (upper, lower) seconds, once every copy was posted or
    `within` seconds after the last create."""
    rng = random.Random(seed)
    waits = [rng.expovariate(1.0 / gap) for _ in range(n)]
    names = [f"#load-{i}" for i in range(CHANNELS)]
    async with world(n + 10, 1.0, load_channels=CHANNELS) as w:
        bot = await start_bot(w)
        copies, stop_watching = CopyWatch(), asyncio.Event()
        watcher = asyncio.create_task(watch(w.cloud_url, copies, stop_watching))
        try:
            workspace = SlackWorkspace()  # the emulator's twin: request bodies name its channels
            workspace.base_url = w.slack_url
            workspace.add_load_channels(CHANNELS)
            statuses = []
            async with httpx.AsyncClient(timeout=10) as client:
                for i, wait in enumerate(waits):
                    await asyncio.sleep(wait)
                    statuses.append(await post_signed(client, w.events_url, command_body(
                        workspace, "alice", names[i % len(names)], f"create load-{i + 1} --now")))
            deadline = time.monotonic() + within
            while True:
                posted = await writes_posted(w)
                if len(posted) >= n or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
        finally:
            stop_watching.set()
            await asyncio.gather(watcher, return_exceptions=True)
            await stop(bot)
        jobs = threads(w.db)
    upper, lower = [], []
    for server, channel, thread in jobs:
        ts = posted.get((channel, thread))
        if ts is not None and server in copies.after and server in copies.before:
            upper.append(ts - copies.before[server])
            lower.append(ts - copies.after[server])
    return {"upper": upper, "lower": lower, "jobs": n, "acked": statuses.count(200),
            "posted": len(posted), "last_create_s": sum(waits), "channels": len(names)}
