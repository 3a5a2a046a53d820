"""Fixtures for the Slack emulator tests: a manual clock, a workspace, an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.slack.app import create_app
from sandbox.slack.model import SlackWorkspace

TOKEN = "xoxb-test"


class ManualClock:
    """Time that moves only when told to."""

    def __init__(self, start: float = 1_764_370_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ws(clock: ManualClock) -> SlackWorkspace:
    return SlackWorkspace(clock=clock)


@pytest.fixture
async def api(ws: SlackWorkspace) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the emulator (in-process), authenticated as the bot."""
    ws.base_url = "http://slack.test"
    transport = httpx.ASGITransport(app=create_app(ws, bot_token=TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://slack.test",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def bolt_http(app: AsyncApp) -> httpx.AsyncClient:
    """An httpx client whose requests reach `app` as Slack's do (`/slack/events`, in-process)."""
    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    bot = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=bot))
