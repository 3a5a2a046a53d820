"""CloudClient against Rackspace as it really is: `World(api="rackspace-legacy")`, in-process.

What the simulator serves there, and why (sources):
- identity v2.0 with `RAX-KSKEY:apiKeyCredentials`, catalog `cloudServersOpenStack`/`cloudImages`
  (tests/samples/rackspace/identity/auth-apikey-resp.json);
- legacy Nova: no microversions, createImage 202 + `Location`, a server view without
  `os-extended-volumes` (tests/samples/rackspace/cloud-servers/server-details-resp.json);
- Cloud Images, an older Glance v2 that documents only limit, marker, name, visibility,
  member_status, owner, tag, status, size_min, size_max, sort_key, sort_dir, and compares
  anything else directly (rackerlabs/docs-cloud-images api-reference get-list-images-images.rst);
- `GET /limits` with `GET *changes-since*` 3 a minute (cloud-servers/limits-resp.json).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bot.cloud.client import CloudClient, parse_limits
from bot.cloud.config import CloudConfig
from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World

from .conftest import Sleeps, sample

RAX = CloudConfig(name="rax", auth_type="rackspace_apikey",
                  auth={"auth_url": "http://cloud.test/identity/v2.0", "username": "demo",
                        "api_key": "demo-api-key"}, region_name="DFW",
                  compute_service_name="cloudServersOpenStack", image_service_name="cloudImages")


@pytest.fixture
def mclock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def world(mclock: ManualClock) -> World:
    return World(clock=mclock, api="rackspace-legacy")


@pytest.fixture
async def cloud(world: World, mclock: ManualClock) -> AsyncIterator[CloudClient]:
    async with CloudClient(RAX, transport=httpx.ASGITransport(app=create_app(world)),
                           clock=lambda: datetime.fromtimestamp(mclock(), UTC),
                           sleep=Sleeps()) as client:
        yield client


def glance_lists(world: World) -> list[str]:
    return [k for k in world.stats_snapshot()["routes"] if k == "GET /image/v2/images"]


async def test_api_key_auth_picks_the_rackspace_catalog_entries(cloud: CloudClient) -> None:
    compute, image = await cloud.endpoints()
    assert "/compute/v2.1/" in compute and image.endswith("/image/v2")


async def test_the_in_probe_says_no_on_rackspace_and_yes_on_openstack(
        cloud: CloudClient, mclock: ManualClock) -> None:
    await cloud.discover()
    assert cloud._glance_in is False
    openstack = World(clock=mclock)
    async with CloudClient(
            CloudConfig(name="os", auth_type="password",
                        auth={"auth_url": "http://cloud.test/identity/v3", "username": "demo",
                              "password": "secret", "project_name": "demo",
                              "user_domain_name": "Default",
                              "project_domain_name": "Default"}),
            transport=httpx.ASGITransport(app=create_app(openstack)), sleep=Sleeps(),
            clock=lambda: datetime.fromtimestamp(mclock(), UTC)) as other:
        await other.discover()
        assert other._glance_in is True


async def test_create_answers_with_location_and_reconcile_finds_the_image(
        cloud: CloudClient, world: World) -> None:
    """The crash case: after createImage the bot looks its image up by metadata. Rackspace's
    Glance matches nothing for a property filter (and `sort=`), so a client that trusted the
    filter would see [] and create a second image."""
    server = await cloud.find_server("web-1")
    image_id = await cloud.create_image(server.id, "web-1-snap", {"imagebot_job_id": "J7"})
    assert image_id in world.images  # parsed from the Location header (no microversions)
    other = await cloud.find_server("web-2")
    await cloud.create_image(other.id, "web-2-snap", {"imagebot_job_id": "J8"})
    found = await cloud.find_images_by_metadata("imagebot_job_id", "J7")
    assert [im.id for im in found] == [image_id]
    assert await cloud.find_images_by_metadata("imagebot_job_id", "J99") == []
    mine = await cloud.list_images(server_id=server.id)
    assert [im.id for im in mine] == [image_id]


async def test_observe_without_in_never_calls_a_live_image_vanished(
        cloud: CloudClient, world: World, mclock: ManualClock) -> None:
    servers = [world.add_server(f"n-{i}") for i in range(12)]
    images = [world.create_image(s.id, f"snap-{s.name}").id for s in servers]
    gone = images[-1]
    world.delete_image(gone)
    for few in (images[:3], images):  # GETs by id, then one owner listing
        seen = await cloud.observe((), few, None)
        assert set(seen.images) == set(few) - {gone}
        assert seen.vanished_images == (frozenset({gone}) & set(few))
        assert all(world.images[i].status == im.status for i, im in seen.images.items())


async def test_data_disks_come_from_os_volume_attachments(cloud: CloudClient) -> None:
    data = await cloud.find_server("data-1")
    assert len([d for d in data.data_disks if d.startswith("volume ")]) == 2
    # The flavor (id only in this view) has a 100 GB ephemeral disk: named too.
    assert "ephemeral disk 100 GB" in data.data_disks
    db = await cloud.find_server("db-1")  # boot from volume: its root is not a data disk
    assert db.volume_backed and db.data_disks == ()
    found = await cloud.find_servers(["data-1"])
    assert found["data-1"] == data


async def test_published_limits_pace_changes_since_polls(cloud: CloudClient) -> None:
    limits = await cloud.rate_limits()
    assert any(lim.regex == "changes-since" and lim.value == 3 for lim in limits)
    floor = cloud.poll_floor()
    assert 20 <= floor <= 25  # 3 a minute, 10% to spare
    # A few servers are asked one by one (GET * is 1000 a minute): much less waiting.
    assert cloud.poll_floor(2) < 1


async def test_a_few_servers_are_observed_by_id_not_by_changes_since(
        cloud: CloudClient, world: World, mclock: ManualClock) -> None:
    await cloud.discover()
    server = await cloud.find_server("web-1")
    await cloud.create_image(server.id, "snap", {})
    world.reset_stats()
    since = datetime.fromtimestamp(mclock() - 60, UTC)
    for _ in range(5):  # more than 3 a minute: changes-since would be refused with 413
        seen = await cloud.observe({server.id}, (), since)
        assert seen.servers[server.id].task_state is not None
    routes = world.stats_snapshot()["routes"]
    assert "GET /compute/v2.1/servers/detail" not in routes
    assert "413" not in world.status_stats


def test_rackspace_limits_sample_parses() -> None:
    limits = parse_limits(sample("rackspace/cloud-servers/limits-resp.json"))
    by = {(lim.verb, lim.regex): lim for lim in limits}
    assert by[("GET", "changes-since")].interval == 20.0
    assert by[("POST", "^/servers")].period == 86400.0
    assert by[("GET", "changes-since")].matches("GET", "/servers/detail?changes-since=x")
    assert not by[("POST", "^/servers")].matches("GET", "/servers")
    assert parse_limits(sample("nova/limits/limit-get-resp.json")) == []


async def test_scheduled_images_are_discovered_from_the_extension(
        cloud: CloudClient, mclock: ManualClock) -> None:
    # get-retrieve-details-for-the-specified-extension-extensions-alias.rst: 200 where the
    # extension runs, itemNotFound (404) where it does not.
    assert cloud.may_have_rax_schedules()  # a Rackspace login: worth asking
    assert await cloud.has_rax_schedules() is True
    openstack = World(clock=mclock)
    async with CloudClient(
            CloudConfig(name="os", auth_type="password",
                        auth={"auth_url": "http://cloud.test/identity/v3", "username": "demo",
                              "password": "secret", "project_name": "demo",
                              "user_domain_name": "Default",
                              "project_domain_name": "Default"}),
            transport=httpx.ASGITransport(app=create_app(openstack)), sleep=Sleeps(),
            clock=lambda: datetime.fromtimestamp(mclock(), UTC)) as other:
        assert not other.may_have_rax_schedules()
        assert await other.has_rax_schedules() is False
