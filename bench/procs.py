"""The sandbox's pieces as separate processes, as in production: `imagebot cloud-sim`, the
Slack emulator, and `imagebot run --http`, for benchmarks and crash tests that must not share
an event loop (or a fate) with what they measure.

Also what those cases do to the processes and read back from them, from outside: signed
`/image` commands posted to the bot, SIGKILL and a bounded stop, the database read as another
process reads it, and the end state the cloud and the Slack emulator hold."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from sandbox.cloud.serve import clouds_yaml
from sandbox.slack.deliver import VERIFICATION_TOKEN, sign
from sandbox.slack.model import APP_ID, TEAM_DOMAIN, TEAM_ID, SlackWorkspace
from sandbox.system import BOT_TOKEN, SIGNING_SECRET

FINAL = ("succeeded", "failed", "cancelled")


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

    @property
    def events_url(self) -> str:
        """Where the bot takes Slack's requests."""
        return f"http://127.0.0.1:{self.port}/slack/events"

    def workspace(self) -> SlackWorkspace:
        """The seeded workspace, to build request bodies with; its response URLs point at the
        emulator process."""
        ws = SlackWorkspace()
        ws.base_url = self.slack_url
        return ws


@contextlib.asynccontextmanager
async def world(servers: int, speed: float, *, bot_speed: float | None = None,
                api: str = "openstack", load_channels: int = 0) -> AsyncIterator[World]:
    """Cloud and Slack emulator processes, a clouds.yaml, a DB path and the bot's environment.

    The cloud runs `speed` times faster than real time; the bot's tick and Slack pacing (and the
    emulator's limits with them) `bot_speed` times, by default the same. `api` is the shape the
    cloud serves (`cloud-sim --api`); the clouds.yaml is the one `cloud-sim` prints for it.
    `load_channels`: the emulator has that many #load-<i> channels more, the bot in them."""
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
                 f"serve(port=0, rate_scale={bot_speed}, load_channels={load_channels})"],
                r"listening on (http://\S+)")
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


def command_body(ws: SlackWorkspace, user: str, channel: str, text: str) -> str:
    """The form Slack posts for `/image text`, with a response_url and a fresh trigger_id."""
    u, ch = ws.user(user), ws.channel(channel)
    ru = ws.new_response_url(ch.id, u.id, "command")
    form = {"token": VERIFICATION_TOKEN, "team_id": TEAM_ID, "team_domain": TEAM_DOMAIN,
            "channel_id": ch.id, "channel_name": ch.name, "user_id": u.id, "user_name": u.name,
            "command": "/image", "text": text, "api_app_id": APP_ID,
            "is_enterprise_install": "false", "response_url": ws.response_url(ru),
            "trigger_id": ws.new_trigger_id()}
    return urlencode(form)


async def post_signed(client: httpx.AsyncClient, url: str, body: str) -> int:
    """POST a form body signed as Slack signs it now; the HTTP status of the answer."""
    stamp = str(int(time.time()))
    response = await client.post(url, content=body.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body)})
    return response.status_code


async def post_commands(w: World, ws: SlackWorkspace, texts: list[str],
                        user: str = "alice", channel: str = "#ops") -> list[int]:
    """Type every `/image text` at once, as `user` in `channel`; the ack statuses, in order."""
    bodies = [command_body(ws, user, channel, text) for text in texts]
    async with httpx.AsyncClient(timeout=30) as client:
        return list(await asyncio.gather(*(post_signed(client, w.events_url, b)
                                           for b in bodies)))


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL, and reap it."""
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def stop(proc: asyncio.subprocess.Process, within: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended `within` seconds: nothing outlives its case."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def db_state(db: Path) -> tuple[list[tuple[str, str]], int]:
    """(job id, state) of every job, and unsent outbox items still to try, read read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT id, state FROM jobs ORDER BY seq").fetchall()
        depth = conn.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL "
                             "AND next_attempt_at IS NOT NULL").fetchone()[0]
    return [(str(r[0]), str(r[1])) for r in rows], int(depth)


async def wait_settled(db: Path, within: float, *, at_least: int = 0
                       ) -> tuple[list[tuple[str, str]], int, bool]:
    """Poll `db_state` until there are `at_least` jobs, all final, and nothing left to send.

    Returns the last rows and outbox depth, and whether that happened within `within` s."""
    deadline = time.monotonic() + within
    while True:
        rows, depth = db_state(db)
        if len(rows) >= at_least and all(state in FINAL for _, state in rows) and depth == 0:
            return rows, depth, True
        if time.monotonic() > deadline:
            return rows, depth, False
        await asyncio.sleep(0.5)


async def cloud_state(w: World) -> dict[str, Any]:
    """The simulated cloud's whole state (`GET /_sim/state`)."""
    async with httpx.AsyncClient(timeout=30) as client:
        state: dict[str, Any] = (await client.get(f"{w.cloud_url}/_sim/state")).json()
    return state


async def slack_messages(w: World, channel: str = "C0OPS") -> Any:
    """What the Slack emulator holds for `channel` (`GET /_emu/messages`)."""
    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(f"{w.slack_url}/_emu/messages",
                                 params={"channel": channel})).json()


def images_by_job(cloud: dict[str, Any]) -> dict[str, int]:
    """How many of the cloud's images carry each job id."""
    found: dict[str, int] = {}
    for image in cloud.get("images", []):
        owner = (image.get("properties") or {}).get("imagebot_job_id")
        if owner:
            found[owner] = found.get(owner, 0) + 1
    return found
