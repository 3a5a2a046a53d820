"""The sandbox's pieces as separate processes, as in production: `imagebot cloud-sim`, the
Slack emulator, and `imagebot run --http`, for benchmarks and crash tests that must not share
an event loop (or a fate) with what they measure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from sandbox.cloud.serve import clouds_yaml
from sandbox.system import BOT_TOKEN, SIGNING_SECRET


async def spawn(args: list[str], ready: str, env: dict[str, str] | None = None
                 ) -> tuple[asyncio.subprocess.Process, str]:
    """Start a process and wait for the line announcing its URL."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            raise RuntimeError(f"{args[0]} exited before it was ready")
        found = re.search(ready, line)
        if found:
            return proc, found.group(1)


@dataclass
class World:
    """The long-lived processes and files the bot is restarted against."""

    cloud_url: str
    slack_url: str
    db: Path
    env: dict[str, str]
    port: int


@contextlib.asynccontextmanager
async def world(servers: int, speed: float, *, bot_speed: float | None = None,
                api: str = "openstack") -> AsyncIterator[World]:
    """Cloud and Slack emulator processes, a clouds.yaml, a DB path and the bot's environment.

    The cloud runs `speed` times faster than real time; the bot's tick and Slack pacing (and the
    emulator's limits with them) `bot_speed` times, by default the same. `api` is the shape the
    cloud serves (`cloud-sim --api`); the clouds.yaml is the one `cloud-sim` prints for it."""
    bot_speed = speed if bot_speed is None else bot_speed
    imagebot = str(Path(sys.executable).with_name("imagebot"))
    started: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory(prefix="imagebot-procs-") as tmp:
        try:
            cloud, cloud_url = await spawn(
                [imagebot, "cloud-sim", "--port", "0", "--speed", str(speed), "--servers",
                 str(servers), "--api", api], r"listening on (http://\S+)")
            started.append(cloud)
            slack, slack_url = await spawn(
                [sys.executable, "-c", "from sandbox.slack.serve import serve; "
                 f"serve(port=0, rate_scale={bot_speed})"], r"listening on (http://\S+)")
            started.append(slack)
            clouds = Path(tmp) / "clouds.yaml"
            clouds.write_text(clouds_yaml(cloud_url, api=api))
            env = dict(os.environ, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                       SLACK_API_URL=f"{slack_url}/api/", IMAGEBOT_DB=f"{tmp}/bot.db",
                       OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="sandbox",
                       IMAGEBOT_TICK_SCALE=str(min(1.0, 2.0 / bot_speed)),
                       IMAGEBOT_SLACK_RATE_SCALE=str(bot_speed))
            env.pop("SLACK_APP_TOKEN", None)
            yield World(cloud_url, slack_url, Path(f"{tmp}/bot.db"), env, free_port())
        finally:
            for proc in started:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            for proc in started:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 10)


async def start_bot(w: World) -> asyncio.subprocess.Process:
    """`imagebot run --http` on the world's port; returns once it listens."""
    imagebot = str(Path(sys.executable).with_name("imagebot"))
    proc, _ = await spawn([imagebot, "run", "--http", "--port", str(w.port)],
                          r"listening on (http://\S+)", w.env)
    # uvicorn prints after binding; wait until it answers.
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                await client.get(f"http://127.0.0.1:{w.port}/healthz", timeout=2)
                return proc
            await asyncio.sleep(0.05)
    return proc


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
