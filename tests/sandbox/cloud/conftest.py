"""Fixtures for the simulated cloud: a manual clock, a world and an in-process HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World
from tests.helpers import Sleeps
from tests.helpers import sample as sample  # the tests here import it from this conftest

START = 1_700_000_000.0

PASSWORD_AUTH = {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"name": "Default"}, "password": "secret"}}},
    "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}}


APIKEY_AUTH = {"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": "demo",
                                                        "apiKey": "demo-api-key"}}}


@asynccontextmanager
async def rackspace_client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client logged in with the Rackspace API key (`X-Tenant` holds the
    tenant id for URLs that carry it)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(world)),
                                 base_url="http://sim") as c:
        resp = await c.post("/identity/v2.0/tokens", json=APIKEY_AUTH)
        assert resp.status_code == 200
        access = resp.json()["access"]
        c.headers["X-Auth-Token"] = access["token"]["id"]
        c.headers["X-Tenant"] = access["token"]["tenant"]["id"]
        yield c


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def world(clock: ManualClock) -> World:
    return World(clock=clock)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(world: World, sleeps: Sleeps) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(world, sleep=sleeps))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        yield c


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    resp = await client.post("/identity/v3/auth/tokens", json=PASSWORD_AUTH)
    assert resp.status_code == 201
    return resp.headers["X-Subject-Token"]


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}
