"""The whole system on one machine: simulated cloud + Slack emulator + the real bot, wired as in
production (signed Slack requests, Web API calls over HTTP, cloud calls over HTTP with the same
configuration shape as clouds.yaml).

Used by `imagebot sandbox` and by the end-to-end tests. With `loopback=True` every piece listens
on a real 127.0.0.1 port; otherwise the cloud and the bot's request URL are reached in-process
through `httpx.ASGITransport` (same ASGI apps, no sockets), which keeps tests fast. The Slack Web
API always runs on a port because slack_sdk's async client speaks aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.cloud.config import CloudConfig
from bot.config import Settings
from bot.imaging import jobs
from bot.imaging.jobs import PhaseDeadlines
from bot.store import Store
from bot.wiring import Runtime, build_runtime, http_app
from sandbox.cloud.app import create_app as create_cloud_app
from sandbox.cloud.model import World
from sandbox.cloud.serve import running_cloud
from sandbox.net import bind, serving, url_of
from sandbox.slack.deliver import Deliverer
from sandbox.slack.limits import RateLimiter
from sandbox.slack.model import SlackWorkspace
from sandbox.slack.serve import running_slack

SIGNING_SECRET = "sandbox-signing-secret"
BOT_TOKEN = "xoxb-sandbox"


class ShiftableClock:
    """Real UTC time plus an offset that `clock +1d` moves forward (the bot's clock)."""

    def __init__(self, base: Callable[[], datetime] | None = None) -> None:
        self.base = base or (lambda: datetime.now(UTC))
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return self.base() + self.offset

    def epoch(self) -> float:
        """The same moment as seconds since the epoch (the simulators' clock type)."""
        return self().timestamp()

    def shift(self, delta: timedelta) -> None:
        """Move the clock forward (never backward: schedules must not re-fire)."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        self.offset += delta


def sandbox_cloud_config(base_url: str, api: str = "openstack") -> CloudConfig:
    """The clouds.yaml entry `sandbox` of the simulator at `base_url` (what `imagebot
    cloud-sim [--api rackspace-legacy]` prints)."""
    if api == "rackspace-legacy":
        return CloudConfig(name="sandbox", auth_type="rackspace_apikey", auth={
            "auth_url": f"{base_url}/identity/v2.0", "username": "demo",
            "api_key": "demo-api-key"}, region_name="DFW",
            compute_service_name="cloudServersOpenStack", image_service_name="cloudImages",
            source="sandbox")
    return CloudConfig(name="sandbox", auth_type="password", auth={
        "auth_url": f"{base_url}/identity/v3", "username": "demo", "password": "secret",
        "project_name": "demo", "user_domain_name": "Default",
        "project_domain_name": "Default"}, region_name="RegionOne", source="sandbox")


@dataclass
class System:
    """Handles on every running piece."""

    world: World
    workspace: SlackWorkspace
    runtime: Runtime
    deliverer: Deliverer
    clock: ShiftableClock
    slack_url: str
    cloud_url: str
    bot_url: str
    db_path: Path
    extras: dict[str, Any] = field(default_factory=dict)

    async def command(self, user: str, channel: str, text: str) -> httpx.Response:
        """Type `/image text` as `user` in `channel`."""
        return await self.deliverer.slash_command(user, channel, text)

    async def settle(self, within: float = 30.0, *, poll: float = 0.02) -> None:
        """Wait until no job, scheduled run or restore test is in flight and the outbox is empty
        (or raise TimeoutError)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            in_flight = await self.runtime.store.run(Store.in_flight_jobs)
            # A typed create waiting for a click is still to be looked up until announced.
            in_flight += [j for j in await self.runtime.store.run(Store.list_jobs,
                states=[jobs.AWAITING_CONFIRMATION], limit=200) if j.announced_at is None]
            depth = await self.runtime.store.run(Store.outbox_depth)
            # A scheduled run stays open after its job until retention has run.
            runs = [r for r in await self.runtime.store.run(Store.open_runs) if r.result == "running"]
            # A restore test runs after its job is done; its result is still to be posted.
            verifying = await self.runtime.store.run(Store.open_verifications)
            if not in_flight and depth == 0 and not runs and not verifying and \
                    not await self.runtime.background_work():
                return
            self.runtime.poke()
            await asyncio.sleep(poll)
        raise TimeoutError(f"still busy after {within}s: {len(in_flight)} jobs in flight, "
                           f"{len(runs)} scheduled runs open, {len(verifying)} restore tests "
                           f"open, {depth} messages queued")

    async def wait_for(self, predicate: Callable[[], Any], within: float = 30.0,
                       poll: float = 0.02) -> Any:
        """Poll `predicate` (sync or async) until truthy."""
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            self.runtime.poke()
            await asyncio.sleep(poll)


@contextlib.asynccontextmanager
async def running_system(*, speed: float = 100.0, extra_servers: int = 0,
                         db_path: Path | None = None, loopback: bool = False,
                         policy_path: Path | None = None, tick_scale: float | None = None,
                         deadlines: PhaseDeadlines | None = None,
                         world: World | None = None,
                         workspace: SlackWorkspace | None = None,
                         clock: ShiftableClock | None = None,
                         slack_rate_scale: float = 1.0,
                         api: str = "openstack") -> AsyncIterator[System]:
    """Start cloud, Slack emulator and bot; stop them all on exit.

    `slack_rate_scale` multiplies Slack's rate limits in the emulator and the bot's pacing
    alike (tests run many messages through one channel faster than Slack's 1 post/s).
    """
    clock = clock or ShiftableClock()
    # One clock for the whole world: the cloud's timestamps (Glance `created_at`, Nova
    # `updated`, token expiry, Rackspace's scheduled slots) and Slack's message times move with
    # `clock +1d` exactly as the bot's image names, approvals and retention previews do.
    world = world or World(clock=clock.epoch, speed=speed, extra_servers=extra_servers, api=api)
    workspace = workspace or SlackWorkspace(clock=clock.epoch,
                                            rate_limits=RateLimiter(scale=slack_rate_scale))
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if db_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="imagebot-")
        db_path = Path(tmp.name) / "imagebot.db"
    scale = tick_scale if tick_scale is not None else min(1.0, 2.0 / speed)
    async with contextlib.AsyncExitStack() as stack:
        slack_url = await stack.enter_async_context(running_slack(workspace, bot_token=BOT_TOKEN))
        transport: httpx.AsyncBaseTransport | None = None
        if loopback:
            cloud_url = await stack.enter_async_context(running_cloud(world, port=0))
        else:
            cloud_url = "http://cloud.sandbox"
            transport = httpx.ASGITransport(app=create_cloud_app(world))
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET,
                            slack_api_url=f"{slack_url}/api/", db_path=db_path,
                            policy_path=policy_path, cloud_name="sandbox")
        runtime = await build_runtime(settings, cloud_config=sandbox_cloud_config(cloud_url,
                                                                         world.api),
                                      cloud_transport=transport, clock=clock,
                                      deadlines=deadlines, tick_scale=scale,
                                      slack_rate_scale=slack_rate_scale)
        app = http_app(runtime)
        if loopback:
            sock = bind("127.0.0.1", 0)
            await stack.enter_async_context(serving(app, sock, name="bot", lifespan="on"))
            bot_url = f"{url_of(sock)}/slack/events"
            deliverer = Deliverer(workspace, bot_url, SIGNING_SECRET)
        else:
            runtime.start()
            bot_url = "http://bot.sandbox/slack/events"
            deliverer = Deliverer(workspace, bot_url, SIGNING_SECRET,
                                  http=httpx.AsyncClient(transport=httpx.ASGITransport(app=app)),
                                  timeout=None)
        system = System(world=world, workspace=workspace, runtime=runtime, deliverer=deliverer,
                        clock=clock, slack_url=slack_url, cloud_url=cloud_url, bot_url=bot_url,
                        db_path=db_path)
        try:
            yield system
        finally:
            await deliverer.http.aclose()
            if not loopback:  # with loopback the bot server's lifespan stops the runtime
                await runtime.stop()
    if tmp is not None:
        tmp.cleanup()


def job_rows(db_path: Path) -> list[jobs.Job]:
    """Every job in a database file (newest first), read with a fresh connection."""
    store = Store(db_path)
    try:
        return store.list_jobs(limit=10_000)
    finally:
        store.close()
