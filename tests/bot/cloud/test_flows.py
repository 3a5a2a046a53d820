"""Multi-step flows of CloudClient against the simulated cloud (sandbox/cloud, in-process)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bot.cloud.check import check
from bot.cloud.client import CloudClient
from bot.cloud.config import CloudConfig
from bot.cloud.models import Observation, Server
from bot.errors import Ambiguous, NotFound, ServerBusy
from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World

from .conftest import Sleeps, config

AUTH_URL = "http://cloud.test/identity/v3"


def sim_config(**kw: object) -> CloudConfig:
    return config(auth_url=AUTH_URL, username="demo", password="secret", project_name="demo",
                  **kw)


def make_client(world: World, mclock: ManualClock) -> CloudClient:
    return CloudClient(sim_config(), transport=httpx.ASGITransport(app=create_app(world)),
                       clock=lambda: datetime.fromtimestamp(mclock(), UTC), sleep=Sleeps())


@pytest.fixture
def mclock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def world(mclock: ManualClock) -> World:
    return World(clock=mclock)


@pytest.fixture
async def cloud(world: World, mclock: ManualClock) -> AsyncIterator[CloudClient]:
    async with make_client(world, mclock) as client:
        yield client


async def run_until(cloud: CloudClient, mclock: ManualClock, server_id: str, image_id: str,
                    done: set[str], step: float = 5.0, limit: int = 400
                    ) -> tuple[list[str | None], Observation]:
    """Tick observe() until the image reaches `done` or vanishes; task states seen in order."""
    states: list[str | None] = []
    since = None
    for _ in range(limit):
        seen = await cloud.observe({server_id}, {image_id}, since)
        since = seen.cursor
        if server_id in seen.servers:
            state = seen.servers[server_id].task_state
            if not states or states[-1] != state:
                states.append(state)
        if image_id in seen.vanished_images or (
                image_id in seen.images and seen.images[image_id].status in done):
            return states, seen
        mclock.advance(step)
    raise AssertionError("never finished")


async def test_create_then_observe_until_active(cloud: CloudClient, mclock: ManualClock) -> None:
    server = await cloud.find_server("web-1")
    image_id = await cloud.create_image(server.id, "web-1-snap", {"imagebot_job_id": "J1"})
    states, seen = await run_until(cloud, mclock, server.id, image_id, {"active"})
    assert states[0] == "image_snapshot_pending"
    assert "image_uploading" in states and states[-1] is None
    assert seen.images[image_id].status == "active"
    assert (await cloud.get_image(image_id)).properties["imagebot_job_id"] == "J1"
    found = await cloud.find_images_by_metadata("imagebot_job_id", "J1")
    assert [im.id for im in found] == [image_id]
    assert [im.id for im in await cloud.list_images(server_id=server.id)] == [image_id]


async def test_upload_failure_is_killed_not_vanished(cloud: CloudClient, world: World,
                                                     mclock: ManualClock) -> None:
    server = await cloud.find_server("web-2")
    world.inject("upload_fail", server=server.id)
    image_id = await cloud.create_image(server.id, "snap", {})
    _, seen = await run_until(cloud, mclock, server.id, image_id, {"killed", "active"})
    assert seen.images[image_id].status == "killed"
    assert image_id not in seen.vanished_images


async def test_image_deleted_after_create_vanishes(cloud: CloudClient, world: World,
                                                   mclock: ManualClock) -> None:
    server = await cloud.find_server("web-2")
    world.inject("image_deleted", server=server.id)
    image_id = await cloud.create_image(server.id, "snap", {})
    _, seen = await run_until(cloud, mclock, server.id, image_id, {"active", "killed"})
    assert seen.vanished_images == frozenset({image_id})
    assert image_id not in seen.images


async def test_second_create_is_busy_with_task_state(cloud: CloudClient, world: World) -> None:
    server = await cloud.find_server("web-1")
    await cloud.create_image(server.id, "one", {})
    before = world.stats_snapshot()["routes"].get("POST /compute/v2.1/servers/{server_id}/action")
    with pytest.raises(ServerBusy) as info:
        await cloud.create_image(server.id, "two", {})
    assert info.value.task_state == "image_snapshot_pending"
    after = world.stats_snapshot()["routes"]["POST /compute/v2.1/servers/{server_id}/action"]
    assert after == (before or 0) + 1  # no blind retry


async def test_ambiguous_name(cloud: CloudClient) -> None:
    with pytest.raises(Ambiguous) as info:
        await cloud.find_server("app")
    assert len(info.value.candidates) == 2
    assert {name for _, name in info.value.candidates} == {"app"}


async def test_find_servers_resolves_many_refs_with_one_listing(cloud: CloudClient,
                                                                 world: World) -> None:
    web1 = world.find_server("web-1")
    world.reset_stats()
    found = await cloud.find_servers(["web-1", web1.id, "app", "web-9"])
    assert isinstance(found["web-1"], Server) and found["web-1"].id == web1.id
    assert isinstance(found[web1.id], Server) and found[web1.id].name == "web-1"
    assert isinstance(found["app"], Ambiguous) and len(found["app"].candidates) == 2
    assert isinstance(found["web-9"], NotFound) and "web-1" in found["web-9"].suggestions
    listed = sum(n for route, n in world.stats_snapshot()["routes"].items()
                 if "servers" in route)
    assert listed == 1


async def test_volume_backed_and_data_disks(cloud: CloudClient) -> None:
    db = await cloud.find_server("db-1")
    assert db.volume_backed and db.data_disks == ()
    data = await cloud.find_server("data-1")
    assert not data.volume_backed
    assert len([d for d in data.data_disks if d.startswith("volume ")]) == 2


async def test_observe_cost_does_not_grow_with_jobs(mclock: ManualClock) -> None:
    """1 job and 150 jobs cost the same 2 requests per tick (servers + one Glance list);
    500 jobs add only the Glance chunks that 500 UUIDs need to stay under 8 KB URLs."""
    world = World(clock=mclock, extra_servers=700)
    costs: dict[int, list[int]] = {}
    async with make_client(world, mclock) as cloud:
        await cloud.discover()  # authentication, the `in:` probe and /limits happen once
        for n in (1, 150, 500):
            servers = [s for s in world.servers.values() if s.name.startswith("load-")
                       and s.job is None][:n]
            images = [world.create_image(s.id, f"snap-{s.name}").id for s in servers]
            ids = {s.id for s in servers}
            since = None
            costs[n] = []
            for _ in range(3):
                seen = await cloud.observe(ids, images, since)
                since = seen.cursor
                costs[n].append(seen.requests)
                assert set(seen.servers) <= ids and len(seen.images) == n
                mclock.advance(5)
    assert costs[1] == costs[150] == [2, 2, 2]
    assert costs[500] == [4, 4, 4]


async def test_token_expiry_and_revocation(world: World, mclock: ManualClock,
                                           cloud: CloudClient) -> None:
    await cloud.list_servers(limit=1)
    world.inject("revoke_tokens")
    assert len(await cloud.list_servers(limit=2)) == 2  # 401 -> one re-auth -> success
    assert cloud.authentications == 2
    mclock.advance(3600)
    await cloud.list_servers(limit=1)
    assert cloud.authentications == 3


async def test_injected_503_is_retried(world: World, cloud: CloudClient) -> None:
    world.inject("http", path="/image/v2/images", status=503, count=2)
    assert await cloud.list_images() != []


async def test_rackspace_against_sim(mclock: ManualClock) -> None:
    world = World(clock=mclock, api="rackspace-legacy")  # rax-si is Rackspace's extension
    cfg = config(auth_type="rackspace_apikey", auth_url="http://cloud.test/identity/v2.0",
                 username="demo", password=None, api_key="demo-api-key", project_name=None,
                 compute_service_name="cloudServersOpenStack", image_service_name="cloudImages")
    async with CloudClient(cfg, transport=httpx.ASGITransport(app=create_app(world)),
                           clock=lambda: datetime.fromtimestamp(mclock(), UTC),
                           sleep=Sleeps()) as cloud:
        compute, image = await cloud.endpoints()
        assert "/compute/v2.1/" in compute and image.endswith("/image/v2")
        server = await cloud.find_server("web-1")
        assert await cloud.get_rax_schedule(server.id) is None
        await cloud.set_rax_schedule(server.id, 7)
        assert (await cloud.get_rax_schedule(server.id)).retention == 7  # type: ignore[union-attr]
        await cloud.delete_rax_schedule(server.id)
        assert await cloud.get_rax_schedule(server.id) is None


def test_cloud_check_prints_endpoints_and_servers(world: World) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = check(None, config=sim_config(), transport=httpx.ASGITransport(app=create_app(world)),
                 out=out, err=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "compute: http://cloud.test/compute/v2.1 (catalog, interface public, region " \
        "any)" in text
    assert "image:   http://cloud.test/image/v2 (catalog" in text
    assert "web-1" in text and "task=-" in text
    assert "secret" not in text


def test_cloud_check_bad_password_is_one_line(world: World) -> None:
    out, err = io.StringIO(), io.StringIO()
    cfg = config(auth_url=AUTH_URL, username="demo", password="wrong", project_name="demo")
    code = check(None, config=cfg, transport=httpx.ASGITransport(app=create_app(world)),
                 out=out, err=err)
    assert code == 1
    assert len(err.getvalue().strip().splitlines()) == 1
    assert "refused the credentials" in err.getvalue() and "wrong" not in err.getvalue()


async def test_a_300_mb_answer_over_a_real_socket_is_cut_off(mclock: ManualClock) -> None:
    from bot.errors import CloudBadResponse
    from sandbox.cloud.serve import running_cloud

    world = World(clock=mclock)
    world.inject("huge", path="/servers/detail", count=None)  # 300 MB, streamed
    async with running_cloud(world) as base:
        client = CloudClient(config(auth_url=f"{base}/identity/v3", username="demo",
                                    password="secret", project_name="demo"),
                             clock=lambda: datetime.fromtimestamp(mclock(), UTC),
                             sleep=Sleeps(), max_body=2 * 1024 * 1024)
        async with client:
            with pytest.raises(CloudBadResponse, match="larger than 2 MB"):
                await client.list_servers()
            world.inject("clear")
            assert await client.list_servers()  # the connection pool is still usable
