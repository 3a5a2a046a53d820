"""Fixtures for the cloud client tests: a scriptable MockTransport cloud and recorded sleeps."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.cloud.client import CloudClient
from bot.cloud.config import CloudConfig
from tests.helpers import Clock, Sleeps
from tests.helpers import sample as sample  # the tests here import it from this conftest

PASSWORD = "s3cr3t-Pa55word"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SERVER_ID = "9a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
IMAGE_ID = "0e7761dd-ee98-41f0-ba35-05994e446431"

Responder = httpx.Response | Callable[[httpx.Request], httpx.Response] | Exception


class FakeCloud:
    """A Keystone v3 + Nova + Glance stand-in for httpx.MockTransport.

    `on(method, path_regex, *responses)` scripts a route: each request takes the next response
    (the last one repeats); a response may be a callable or an exception to raise.
    """

    def __init__(self, clock: Clock, ttl: float = 3600) -> None:
        self.clock = clock
        self.ttl = ttl
        self.routes: list[tuple[str, re.Pattern[str], list[Responder]]] = []
        self.requests: list[httpx.Request] = []
        self.tokens: list[str] = []
        self.auth_status = 201

    def on(self, method: str, path: str, *responses: Responder) -> None:
        self.routes.insert(0, (method, re.compile(path), list(responses)))

    def hits(self, method: str, path: str) -> list[httpx.Request]:
        pat = re.compile(path)
        return [r for r in self.requests if r.method == method and pat.search(r.url.path)]

    def _token(self) -> httpx.Response:
        if self.auth_status != 201:
            return httpx.Response(self.auth_status, json={"error": {
                "code": self.auth_status, "message": "The request you have made requires "
                "authentication."}})
        token = f"tok-{len(self.tokens) + 1}-{'x' * 20}"
        self.tokens.append(token)
        now = self.clock()

        def svc(kind: str, url: str) -> dict[str, Any]:
            return {"type": kind, "name": kind, "endpoints": [
                {"interface": i, "region": "RegionOne", "url": url}
                for i in ("public", "internal")]}

        body = {"token": {
            "expires_at": (now + timedelta(seconds=self.ttl)).isoformat().replace("+00:00", "Z"),
            "issued_at": now.isoformat().replace("+00:00", "Z"),
            "project": {"id": "p1", "name": "demo"},
            "catalog": [svc("compute", "http://c.test/compute/v2.1"),
                        svc("image", "http://c.test/image")]}}
        return httpx.Response(201, json=body, headers={"X-Subject-Token": token})

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/identity/v3/auth/tokens":
            return self._token()
        if request.method == "GET" and request.url.path.rstrip("/") == "/identity/v3":
            # Keystone's version document (keystoneauth discovers before it logs in).
            return httpx.Response(200, json={"version": {
                "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": "http://c.test/identity/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}})
        if request.headers.get("x-auth-token") not in self.tokens[-1:]:
            return httpx.Response(401, json={"error": {"code": 401, "message": "no"}})
        for method, pat, responses in self.routes:
            if method == request.method and pat.search(request.url.path):
                item = responses.pop(0) if len(responses) > 1 else responses[0]
                if isinstance(item, Exception):
                    raise item
                if callable(item):
                    return item(request)
                return item
        return httpx.Response(404, json={"itemNotFound": {"code": 404, "message": "no route"}})


_TOP = {f.name for f in dataclasses.fields(CloudConfig)} - {"auth"}


def config(**overrides: Any) -> CloudConfig:
    """A password config for the fake cloud; keywords that are not CloudConfig fields are auth
    fields (None removes one)."""
    values: dict[str, Any] = dict(
        name="test", auth_type="password", auth_url="http://c.test/identity/v3",
        username="demo", password=PASSWORD, project_name="demo", user_domain_name="Default",
        project_domain_name="Default")
    values.update(overrides)
    top = {k: v for k, v in values.items() if k in _TOP}
    auth = {k: v for k, v in values.items() if k not in _TOP and v is not None}
    return CloudConfig(auth=auth, **top)


def server_doc(sid: str = SERVER_ID, name: str = "web-1", task: str | None = None,
               updated: str = "2026-03-01T11:59:00Z", **extra: Any) -> dict[str, Any]:
    """A minimal Nova server view."""
    doc: dict[str, Any] = {"id": sid, "name": name, "status": "ACTIVE", "OS-EXT-STS:vm_state": "active",
           "OS-EXT-STS:task_state": task, "OS-EXT-STS:power_state": 1,
           "image": {"id": "img"}, "flavor": {"original_name": "m1.small", "ephemeral": 0},
           "os-extended-volumes:volumes_attached": [], "updated": updated}
    doc.update(extra)
    return doc


def image_doc(iid: str = IMAGE_ID, status: str = "active", **props: Any) -> dict[str, Any]:
    """A minimal flat Glance image."""
    return {"id": iid, "name": f"snap-{iid[:4]}", "status": status, "size": 10,
            "created_at": "2026-03-01T11:00:00Z", "updated_at": "2026-03-01T11:00:00Z",
            "protected": False, "visibility": "private", "tags": [], **props}


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake(clock: Clock) -> FakeCloud:
    return FakeCloud(clock)


@pytest.fixture
async def cloud(fake: FakeCloud, clock: Clock, sleeps: Sleeps) -> AsyncIterator[CloudClient]:
    client = CloudClient(config(), transport=httpx.MockTransport(fake.handler), clock=clock,
                         sleep=sleeps, rng=lambda: 1.0)
    async with client:
        yield client
