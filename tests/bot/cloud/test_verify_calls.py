"""The cloud calls of restore tests and protection against the simulated cloud (in-process):
boot, console output, os-interface, delete, flavors, and Glance's JSON-patch update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bot.cloud.client import CloudClient
from bot.errors import CloudRejected, Forbidden, ImageProtected, NotFound
from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World

from .conftest import Sleeps
from .test_flows import sim_config
from .test_rackspace import RAX


@pytest.fixture
def mclock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture(params=["openstack", "rackspace-legacy"])
def world(request: pytest.FixtureRequest, mclock: ManualClock) -> World:
    return World(clock=mclock, api=request.param)


@pytest.fixture
async def cloud(world: World, mclock: ManualClock) -> AsyncIterator[CloudClient]:
    config = RAX if world.legacy else sim_config()
    async with CloudClient(config, transport=httpx.ASGITransport(app=create_app(world)),
                           clock=lambda: datetime.fromtimestamp(mclock(), UTC),
                           sleep=Sleeps()) as client:
        yield client


def a_snapshot(world: World, mclock: ManualClock) -> str:
    """An active snapshot of web-1."""
    image = world.create_image(world.find_server("web-1").id, "web-1-snap", {})
    mclock.advance(3600)
    world.advance()
    assert world.images[image.id].status == "active"
    return image.id


async def test_boot_from_an_image_then_console_then_delete(cloud: CloudClient, world: World,
                                                           mclock: ManualClock) -> None:
    image_id = a_snapshot(world, mclock)
    flavors = await cloud.list_flavors()
    assert {f.name for f in flavors} >= {"m1.small", "m1.medium"}
    networks = await cloud.server_networks(world.find_server("web-1").id)
    # Nova's os-interface names the network; Rackspace has no such extension (None).
    assert (networks is None) == world.legacy
    server_id = await cloud.boot_server("imagebot-verify-J1", image_id, "1",
                                        networks=networks, metadata={"imagebot_verify_id": "V1"})
    seen = await cloud.get_server(server_id)
    assert seen.status == "BUILD" and seen.metadata == {"imagebot_verify_id": "V1"}
    mclock.advance(60)
    assert (await cloud.get_server(server_id)).status == "ACTIVE"
    console = await cloud.console_output(server_id)
    if world.legacy:  # Rackspace answers 501: no console log on that cloud
        assert console is None
    else:
        assert console is not None and "login:" in console
    await cloud.delete_server(server_id)
    mclock.advance(10)
    with pytest.raises(NotFound):
        await cloud.get_server(server_id)
    with pytest.raises(NotFound):
        await cloud.delete_server(server_id)


async def test_a_flavor_too_small_for_the_image_is_refused_by_nova(
        cloud: CloudClient, world: World, mclock: ManualClock) -> None:
    image_id = a_snapshot(world, mclock)
    world.images[image_id].min_disk = 60
    with pytest.raises(CloudRejected, match="smaller than the minimum size"):
        await cloud.boot_server("imagebot-verify-J1", image_id, "1", networks=None,
                                metadata={})
    assert (await cloud.get_image(image_id)).min_disk == 60


async def test_protect_refuses_deletes_until_unprotected(cloud: CloudClient, world: World,
                                                         mclock: ManualClock) -> None:
    image_id = a_snapshot(world, mclock)
    assert (await cloud.set_protected(image_id, True)).protected
    world.reset_stats()
    with pytest.raises(ImageProtected, match="protected"):
        await cloud.delete_image(image_id)
    # Refused before Glance was asked to delete (only the GET that read the flag).
    assert "DELETE /image/v2/images/{image_id}" not in world.stats_snapshot()["routes"]
    # Glance refuses too (403, "Delete image": a protected image cannot be deleted).
    resp = await cloud._call("image", "DELETE", f"/images/{image_id}")
    assert resp.status_code == 403 and image_id in world.images
    assert not (await cloud.set_protected(image_id, False)).protected
    await cloud.delete_image(image_id)
    assert image_id not in world.images


async def test_image_properties_are_added_and_replaced(cloud: CloudClient, world: World,
                                                       mclock: ManualClock) -> None:
    image_id = a_snapshot(world, mclock)
    await cloud.set_image_property(image_id, "imagebot_verified", "failed")
    image = await cloud.set_image_property(image_id, "imagebot_verified", "passed")
    assert image.properties["imagebot_verified"] == "passed"
    assert (await cloud.find_image("web-1-snap")).id == image_id


async def test_glance_patch_is_as_strict_as_glance(cloud: CloudClient, world: World,
                                                   mclock: ManualClock) -> None:
    image_id = a_snapshot(world, mclock)
    # glance/api/v2/images.py: read-only attributes 403, replace of a missing property 409,
    # a non-boolean `protected` 400; any other media type than the JSON-patch ones 415.
    with pytest.raises(Forbidden, match="read-only"):
        await cloud.patch_image(image_id, [{"op": "replace", "path": "/status",
                                            "value": "active"}])
    with pytest.raises(CloudRejected, match="does not exist"):
        await cloud.patch_image(image_id, [{"op": "replace", "path": "/nope", "value": "x"}])
    with pytest.raises(CloudRejected, match="boolean"):
        await cloud.patch_image(image_id, [{"op": "replace", "path": "/protected",
                                            "value": "yes"}])
    resp = await cloud._call("image", "PATCH", f"/images/{image_id}",
                             json=[{"op": "replace", "path": "/protected", "value": True}])
    assert resp.status_code == 415
    assert not world.images[image_id].protected
