"""openstacksdk, an independent client, drives the simulator over real loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openstack
import openstack.config
import openstack.connection
import openstack.exceptions
import pytest

from sandbox.cloud.model import OPENSTACK_NETWORKS, ManualClock, World
from sandbox.cloud.serve import cloud_in_thread


@pytest.fixture
def sim() -> Iterator[tuple[World, ManualClock, str]]:
    # Start at wall time so keystoneauth's own expiry checks agree with the simulator's.
    clock = ManualClock(time.time())
    world = World(clock=clock)
    with cloud_in_thread(world) as url:
        yield world, clock, url


def connect(url: str, auth_type: str, auth: dict[str, Any]) -> openstack.connection.Connection:
    region = openstack.config.get_cloud_region(
        load_yaml_config=False, load_envvars=False, auth_type=auth_type,
        auth={"auth_url": f"{url}/identity/v3", **auth}, region_name="RegionOne",
        interface="public")
    return openstack.connection.Connection(config=region)


PASSWORD = {"username": "demo", "password": "secret", "project_name": "demo",
            "user_domain_name": "Default", "project_domain_name": "Default"}
APP_CRED = {"application_credential_id": "demo-app-cred",
            "application_credential_secret": "demo-app-secret"}


def exercise(conn: openstack.connection.Connection, clock: ManualClock) -> None:
    """List, snapshot, watch task states, conflict, wait for active, filter images."""
    names = sorted(s.name for s in conn.compute.servers())
    assert names == ["app", "app", "data-1", "db-1", "web-1", "web-2"]
    web1 = conn.compute.find_server("web-1", ignore_missing=False)
    image = conn.compute.create_server_image(web1, "sdk-snap", wait=False)
    assert image.status == "queued"
    states: list[str | None] = []
    for _ in range(60):
        server = conn.compute.get_server(web1.id)
        assert server.status == "ACTIVE"
        if not states or states[-1] != server.task_state:
            states.append(server.task_state)
        if server.task_state == "image_snapshot":
            with pytest.raises(openstack.exceptions.ConflictException):
                conn.compute.create_server_image(web1, "second", wait=False)
        if server.task_state is None:
            break
        clock.advance(2)
    assert states == ["image_snapshot_pending", "image_snapshot", "image_pending_upload",
                      "image_uploading", None]
    assert conn.image.get_image(image.id).status == "active"
    active = conn.compute.create_server_image(web1, "sdk-snap-2", wait=False)
    clock.advance(120)
    fetched = conn.get_image(active.id)
    assert fetched is not None and fetched.status == "active"
    listing = conn.image.get("/images", params={"instance_uuid": web1.id}).json()["images"]
    assert sorted(im["name"] for im in listing) == ["sdk-snap", "sdk-snap-2"]
    assert all(im["image_type"] == "snapshot" for im in listing)
    assert {im.id for im in conn.image.images(status="active")} >= {image.id, active.id}


def test_password_auth_end_to_end(sim) -> None:
    world, clock, url = sim
    conn = connect(url, "password", PASSWORD)
    try:
        exercise(conn, clock)
        stats = world.stats_snapshot()["routes"]
        assert stats["POST /identity/v3/auth/tokens"] >= 1
        assert stats["POST /compute/v2.1/servers/{server_id}/action"] == 3
    finally:
        conn.close()


def test_application_credential_end_to_end(sim) -> None:
    world, clock, url = sim
    conn = connect(url, "v3applicationcredential", APP_CRED)
    try:
        exercise(conn, clock)
    finally:
        conn.close()


def test_sdk_reauthenticates_after_token_revocation(sim) -> None:
    world, clock, url = sim
    conn = connect(url, "password", PASSWORD)
    try:
        assert len(list(conn.compute.servers())) == 6
        world.inject("revoke_tokens")
        assert len(list(conn.compute.servers())) == 6  # keystoneauth re-auths on 401
    finally:
        conn.close()


def test_sdk_boots_waits_reads_the_console_and_deletes(sim) -> None:
    """The restore-test path through openstacksdk: create_server, wait_for_server, console
    output, delete_server and wait_for_delete (each wait ticks the manual clock)."""
    world, clock, url = sim
    conn = connect(url, "password", PASSWORD)
    try:
        def tick(progress: int) -> None:
            clock.advance(2)  # one SDK poll: 2 s of simulated time

        flavor = min((f for f in conn.compute.flavors() if f.disk >= 20), key=lambda f: f.disk)
        image = conn.image.find_image("Ubuntu 22.04 (Jammy)", ignore_missing=False)
        network = OPENSTACK_NETWORKS["private"]
        server = conn.compute.create_server(name="imagebot-verify-1", image_id=image.id,
                                            flavor_id=flavor.id, networks=[{"uuid": network}],
                                            metadata={"imagebot-verify": "1"})
        assert conn.compute.get_server(server.id).status == "BUILD"
        booted = conn.compute.wait_for_server(server, interval=0.01, wait=30, callback=tick)
        assert booted.status == "ACTIVE" and booted.metadata == {"imagebot-verify": "1"}
        output = conn.compute.get_server_console_output(server, length=5)["output"]
        assert output.endswith("imagebot-verify-1 login: ")
        assert len(output.splitlines()) <= 5
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.01, wait=30, callback=tick)
        with pytest.raises(openstack.exceptions.NotFoundException):
            conn.compute.get_server(server.id)
    finally:
        conn.close()


def test_sdk_sees_a_failed_boot_as_a_resource_failure(sim) -> None:
    world, clock, url = sim
    world.inject("boot_fail", name="doomed")
    conn = connect(url, "password", PASSWORD)
    try:
        image = conn.image.find_image("Debian 12 (Bookworm)", ignore_missing=False)
        server = conn.compute.create_server(name="doomed", image_id=image.id, flavor_id="1",
                                            networks="auto")
        with pytest.raises(openstack.exceptions.ResourceFailure):
            conn.compute.wait_for_server(server, interval=0.01, wait=30,
                                         callback=lambda progress: clock.advance(2))
        fault = conn.compute.get_server(server.id).fault
        assert "Exhausted all hosts" in fault["message"]
        # The flavor check is the API's, synchronous: the SDK raises BadRequest.
        snap = world.create_image(world.find_server("app").id, "app-snap")
        clock.advance(400)
        with pytest.raises(openstack.exceptions.BadRequestException, match="minimum size"):
            conn.compute.create_server(name="small", image_id=snap.id, flavor_id="1",
                                       networks="auto")
    finally:
        conn.close()


def test_sdk_reads_and_merges_server_metadata_and_keeps_a_protected_image(sim) -> None:
    """What fleet targets (`meta:role=web`) and `/image protect` rely on, through openstacksdk:
    `POST /servers/{id}/metadata` merges (Nova API reference, "Create or Update Metadata Items"),
    and Glance refuses to delete a protected image with 403 until `protected` is patched off
    (Glance v2 API reference, "Delete image": "403 Forbidden ... the image is protected")."""
    world, clock, url = sim
    conn = connect(url, "password", PASSWORD)
    try:
        web1 = conn.compute.find_server("web-1", ignore_missing=False)
        before = dict(conn.compute.get_server_metadata(web1).metadata or {})
        conn.compute.set_server_metadata(web1, role="web", tier="front")
        merged = conn.compute.get_server_metadata(web1).metadata
        assert merged == {**before, "role": "web", "tier": "front"}
        conn.compute.set_server_metadata(web1, tier="back")
        assert conn.compute.get_server_metadata(web1).metadata == {**before, "role": "web",
                                                                    "tier": "back"}

        image = conn.compute.create_server_image(web1, "keep-me", wait=False)
        clock.advance(120)
        conn.image.update_image(image.id, is_protected=True)
        assert conn.image.get_image(image.id).is_protected is True
        with pytest.raises(openstack.exceptions.ForbiddenException):
            conn.image.delete_image(image.id)
        assert conn.image.get_image(image.id).status == "active"
        conn.image.update_image(image.id, is_protected=False)
        conn.image.delete_image(image.id)
        with pytest.raises(openstack.exceptions.NotFoundException):
            conn.image.get_image(image.id)
    finally:
        conn.close()
