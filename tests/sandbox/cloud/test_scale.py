"""Issue 10: the simulator at 2000 servers stays cheap and exact."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World, iso
from tests.sandbox.cloud.conftest import PASSWORD_AUTH

N = 2000
MV = {"OpenStack-API-Version": "compute 2.45"}


@pytest.fixture
async def big(clock: ManualClock) -> AsyncIterator[tuple[World, httpx.AsyncClient, dict[str, str]]]:
    world = World(clock=clock, extra_servers=N, token_ttl=10**9)
    transport = httpx.ASGITransport(app=create_app(world))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        r = await c.post("/identity/v3/auth/tokens", json=PASSWORD_AUTH)
        yield world, c, {"X-Auth-Token": r.headers["X-Subject-Token"], **MV}


async def test_paging_with_changes_since_returns_each_changed_server_once(big,
                                                                          clock) -> None:
    world, client, auth = big
    load = sorted((s for s in world.servers.values() if s.name.startswith("load-")),
                  key=lambda s: s.name)
    changed = {s.id for s in load[::7]}  # 286 servers spread over the whole listing
    clock.advance(60)
    since = iso(clock())
    for sid in changed:
        world.create_image(sid, "snap")
    clock.advance(5)
    seen: list[str] = []
    url: str | None = "/compute/v2.1/servers/detail"
    params: dict[str, str] | None = {"changes-since": since, "limit": "50"}
    pages = 0
    while url:
        r = await client.get(url, params=params, headers=auth)
        assert r.status_code == 200
        body = r.json()
        seen += [s["id"] for s in body["servers"]]
        links = body.get("servers_links") or []
        url, params = (links[0]["href"], None) if links else (None, None)
        pages += 1
        clock.advance(3)  # transitions during paging must not duplicate or lose servers
    assert len(seen) == len(set(seen))
    assert set(seen) == changed
    assert pages == len(changed) // 50 + 1


async def test_full_listing_pages_over_2006_servers(big) -> None:
    world, client, auth = big
    r = await client.get("/compute/v2.1/servers/detail", params={"limit": 5000}, headers=auth)
    first = r.json()
    assert len(first["servers"]) == 1000  # clamped to max_limit
    r = await client.get(first["servers_links"][0]["href"], headers=auth)
    second = r.json()
    r = await client.get(second["servers_links"][0]["href"], headers=auth)
    third = r.json()
    ids = [s["id"] for page in (first, second, third) for s in page["servers"]]
    assert len(ids) == len(set(ids)) == N + 6


async def test_200_concurrent_snapshots_reach_active(big, clock) -> None:
    world, client, auth = big
    targets = [s.id for s in world.servers.values() if s.name.startswith("load-")][:200]
    image_ids = []
    for sid in targets:
        r = await client.post(f"/compute/v2.1/servers/{sid}/action",
                              json={"createImage": {"name": f"img-{sid[:8]}"}}, headers=auth)
        assert r.status_code == 202
        image_ids.append(r.json()["image_id"])
    clock.advance(30)
    mid = await client.get("/image/v2/images", headers=auth,
                           params={"id": "in:" + ",".join(image_ids), "limit": 1000})
    statuses = {im["status"] for im in mid.json()["images"]}
    assert statuses <= {"queued", "saving", "active"} and statuses != {"active"}
    clock.advance(24 * 3600)
    r = await client.get("/image/v2/images", headers=auth,
                         params={"id": "in:" + ",".join(image_ids), "limit": 1000})
    images = r.json()["images"]
    assert len(images) == 200 and {im["status"] for im in images} == {"active"}
    r = await client.get("/compute/v2.1/servers/detail", headers=auth,
                         params={"changes-since": iso(clock() - 86400)})
    assert {s["id"] for s in r.json()["servers"]} == set(targets)
    assert all(s["OS-EXT-STS:task_state"] is None for s in r.json()["servers"])
