"""Two simulated clouds in separate worlds ("main" and "lab") on one manual clock, each reached
by the real `CloudClient` over ASGI, pooled as a channel policy would name them. The engine's and
the schedule loop's "one cloud fails, the other goes on" tests share it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bot.cloud.client import CloudClient
from bot.cloud.pool import CloudPool
from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World
from tests.bot.cloud.conftest import Sleeps, config

START = 1_700_000_000.0  # 2023-11-14 22:13 UTC


@dataclass
class TwoClouds:
    mclock: ManualClock
    worlds: dict[str, World]
    pool: CloudPool

    def now(self) -> datetime:
        """The worlds' clock as the bot reads it."""
        return datetime.fromtimestamp(self.mclock(), UTC)


def two_clouds(timeouts: Mapping[str, float], start: float = START) -> TwoClouds:
    """Worlds "main" (the default cloud) and "lab"; `timeouts` is each client's total deadline
    per request (seconds), so a dripping cloud costs seconds, not minutes."""
    mclock = ManualClock(start)
    worlds = {"main": World(clock=mclock), "lab": World(clock=mclock)}

    def now() -> datetime:
        return datetime.fromtimestamp(mclock(), UTC)

    def client(name: str) -> CloudClient:
        return CloudClient(config(auth_url="http://cloud.test/identity/v3", username="demo",
                                  password="secret", project_name="demo", name=name),
                           transport=httpx.ASGITransport(app=create_app(worlds[name])),
                           clock=now, sleep=Sleeps(), timeout=timeouts[name])

    return TwoClouds(mclock, worlds, CloudPool(client("main"), client, default_name="main"))
