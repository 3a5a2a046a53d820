"""Booting servers from images: `POST /servers`, BUILD -> ACTIVE, console output, delete, and
the boot faults. Each test names the Nova (or Rackspace) source of the behaviour it checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.cloud.model import OPENSTACK_NETWORKS, RAX_NETWORKS, ManualClock, World, stable_id

from .conftest import START, rackspace_client

UBUNTU = stable_id("image", "Ubuntu 22.04 (Jammy)")
WEB1 = stable_id("server", "web-1")
NET = OPENSTACK_NETWORKS["private"]
MV = {"OpenStack-API-Version": "compute 2.96"}
SERVERS = "/compute/v2.1/servers"


def boot_body(**over: Any) -> dict[str, Any]:
    server: dict[str, Any] = {"name": "verify-1", "imageRef": UBUNTU, "flavorRef": "1",
                              "networks": [{"uuid": NET}]}
    server.update(over)
    return {"server": {k: v for k, v in server.items() if v is not None}}


async def boot(client: httpx.AsyncClient, auth: dict[str, str], **over: Any) -> httpx.Response:
    return await client.post(SERVERS, json=boot_body(**over), headers={**auth, **MV})


async def show(client: httpx.AsyncClient, auth: dict[str, str], sid: str) -> httpx.Response:
    return await client.get(f"{SERVERS}/{sid}", headers={**auth, **MV})


async def console(client: httpx.AsyncClient, auth: dict[str, str], sid: str,
                  args: dict[str, Any] | None = None) -> httpx.Response:
    return await client.post(f"{SERVERS}/{sid}/action",
                             json={"os-getConsoleOutput": args or {}}, headers=auth)


async def run_build(client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock,
                    sid: str, steps: int = 40) -> list[tuple[str, str | None]]:
    """(status, task_state) as seen every second until the server leaves BUILD."""
    seen: list[tuple[str, str | None]] = []
    for _ in range(steps):
        view = (await show(client, auth, sid)).json()["server"]
        now = (view["status"], view["OS-EXT-STS:task_state"])
        if not seen or seen[-1] != now:
            seen.append(now)
        if view["status"] != "BUILD":
            break
        clock.advance(1)
    return seen


async def test_boot_goes_through_novas_build_task_states_to_active(
        client: httpx.AsyncClient, auth, clock: ManualClock, world: World) -> None:
    # nova/compute/task_states.py + api-ref servers.inc "Create Server": 202, BUILD -> ACTIVE.
    resp = await boot(client, auth, metadata={"imagebot": "verify"})
    assert resp.status_code == 202
    created = resp.json()["server"]
    assert set(created) >= {"id", "links", "adminPass", "OS-DCF:diskConfig", "security_groups"}
    assert resp.headers["Location"] == created["links"][0]["href"]
    sid = created["id"]
    assert await run_build(client, auth, clock, sid) == [
        ("BUILD", "scheduling"), ("BUILD", "networking"), ("BUILD", "block_device_mapping"),
        ("BUILD", "spawning"), ("ACTIVE", None)]
    view = (await show(client, auth, sid)).json()["server"]
    assert view["metadata"] == {"imagebot": "verify"} and view["image"]["id"] == UBUNTU
    assert view["OS-EXT-STS:vm_state"] == "active" and view["OS-EXT-STS:power_state"] == 1
    assert view["OS-SRV-USG:launched_at"] is not None and "fault" not in view
    assert list(view["addresses"]) == ["private"]
    names = [s["name"] for s in (await client.get(SERVERS, headers=auth)).json()["servers"]]
    assert names[0] == "verify-1"  # newest first
    actions = (await client.get(f"{SERVERS}/{sid}/os-instance-actions",
                                headers=auth)).json()["instanceActions"]
    assert [a["action"] for a in actions] == ["create"]


@pytest.mark.parametrize("over,message", [
    # api/openstack/compute/servers.py create: FlavorNotFound / ImageNotFound -> 400.
    ({"flavorRef": "42"}, "Invalid flavorRef provided."),
    ({"imageRef": stable_id("image", "nope")}, "Can not find requested image"),
    # schemas/servers.py: name and flavorRef required; networks required from 2.37.
    ({"name": None}, "'name' is a required property"),
    ({"networks": None}, "'networks' is a required property"),
    # Neutron NetworkNotFound through Nova: 400.
    ({"networks": [{"uuid": stable_id("network", "elsewhere")}]}, "could not be found."),
    ({"networks": "everywhere"}, "Invalid input for field/attribute networks."),
])
async def test_boot_is_refused_as_nova_refuses_it(client: httpx.AsyncClient, auth,
                                                  over: dict[str, Any], message: str) -> None:
    resp = await boot(client, auth, **over)
    assert resp.status_code == 400
    assert message in resp.json()["badRequest"]["message"]


async def test_image_not_active_and_flavor_too_small_for_the_image(
        client: httpx.AsyncClient, auth, clock: ManualClock, world: World) -> None:
    # compute/api.py _check_requested_image + nova/exception.py ImageNotActive,
    # FlavorMemoryTooSmall, FlavorDiskSmallerThanMinDisk: all 400 from the API.
    app = world.find_server("app")  # m1.medium: its snapshot needs a 40 GB disk
    image = world.create_image(app.id, "app-snap")
    resp = await boot(client, auth, imageRef=image.id, flavorRef="2")
    assert resp.status_code == 400
    assert resp.json()["badRequest"]["message"] == f"Image {image.id} is not active."
    clock.advance(400)
    assert world.get_image(image.id).status == "active"
    resp = await boot(client, auth, imageRef=image.id, flavorRef="1")
    assert resp.json()["badRequest"]["message"] == (
        "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor "
        f"disk is {20 * 1024**3} bytes, minimum size is {40 * 1024**3} bytes.")
    world.images[image.id].min_ram = 4096
    resp = await boot(client, auth, imageRef=image.id, flavorRef="1")
    assert resp.json()["badRequest"]["message"] == \
        "Flavor's memory is too small for requested image."
    assert (await boot(client, auth, imageRef=image.id, flavorRef="2")).status_code == 202


async def test_flavors_detail_filters_by_min_disk_and_ram(client: httpx.AsyncClient,
                                                          auth) -> None:
    # api/openstack/compute/flavors.py _get_flavors: minDisk/minRam, a bad value is 400.
    flavors = (await client.get("/compute/v2.1/flavors/detail", params={"minDisk": 40,
                                "minRam": 8192}, headers=auth)).json()["flavors"]
    assert [f["name"] for f in flavors] == ["m1.large", "m1.xlarge", "m1.large.eph"]
    assert all(f["disk"] >= 40 and f["ram"] >= 8192 for f in flavors)
    bad = await client.get("/compute/v2.1/flavors/detail", params={"minDisk": "big"},
                           headers=auth)
    assert bad.status_code == 400 and "Invalid minDisk filter [big]" in bad.text


async def test_console_output_ends_with_a_login_prompt_once_active(
        client: httpx.AsyncClient, auth, clock: ManualClock) -> None:
    # nova console_output.py: 409 InstanceNotReady before a host; {"output": text}, `length`
    # tails that many lines (schemas/console_output.py: integer or digits >= -1, or null).
    sid = (await boot(client, auth)).json()["server"]["id"]
    assert (await console(client, auth, sid)).status_code == 409
    clock.advance(12)  # spawning
    early = (await console(client, auth, sid)).json()["output"]
    assert early and "login:" not in early
    clock.advance(30)
    full = (await console(client, auth, sid)).json()["output"]
    assert full.endswith("verify-1 login: ") and "Ubuntu 22.04 verify-1 ttyS0" in full
    tail = (await console(client, auth, sid, {"length": "2"})).json()["output"]
    assert tail == "\nverify-1 login: "
    assert (await console(client, auth, sid, {"length": -1})).json()["output"] == full
    for bad in ({"length": -2}, {"length": "ten"}, {"lines": 3}):
        assert (await console(client, auth, sid, bad)).status_code == 400, bad
    # A seeded server is long up: its console ends with the prompt too.
    assert (await console(client, auth, WEB1)).json()["output"].endswith("web-1 login: ")


async def test_delete_shows_deleting_then_404_and_deleted_to_changes_since(
        client: httpx.AsyncClient, auth, clock: ManualClock) -> None:
    # api-ref servers.inc "Delete Server": 204; the server is gone asynchronously.
    sid = (await boot(client, auth)).json()["server"]["id"]
    clock.advance(60)
    resp = await client.delete(f"{SERVERS}/{sid}", headers=auth)
    assert resp.status_code == 204
    view = (await show(client, auth, sid)).json()["server"]
    assert view["OS-EXT-STS:task_state"] == "deleting"
    assert (await client.delete(f"{SERVERS}/{sid}", headers=auth)).status_code == 204
    clock.advance(5)
    assert (await show(client, auth, sid)).status_code == 404
    assert (await client.delete(f"{SERVERS}/{sid}", headers=auth)).status_code == 404
    listed = (await client.get(f"{SERVERS}/detail", params={
        "changes-since": "2000-01-01T00:00:00Z"}, headers=auth)).json()["servers"]
    assert {s["id"]: s["status"] for s in listed}[sid] == "DELETED"


async def test_boot_fail_fault_ends_in_error_with_novas_fault(
        client: httpx.AsyncClient, auth, clock: ManualClock) -> None:
    r = await client.post("/_sim/faults", json={"kind": "boot_fail", "name": "verify-*",
                                                "during": "scheduling"})
    assert r.status_code == 201 and r.json()["applies_to"] == "armed"
    other = (await boot(client, auth, name="other")).json()["server"]["id"]
    sid = (await boot(client, auth)).json()["server"]["id"]
    seen = await run_build(client, auth, clock, sid)
    assert seen[-1] == ("ERROR", None)
    view = (await show(client, auth, sid)).json()["server"]
    # nova/exception.py NoValidHost; the view carries `fault` {code, created, message}.
    assert view["fault"]["code"] == 500
    assert "No valid host was found" in view["fault"]["message"]
    assert (await console(client, auth, sid)).status_code == 409  # never had a host
    clock.advance(60)
    assert (await show(client, auth, other)).json()["server"]["status"] == "ACTIVE"
    snap = await client.post(f"{SERVERS}/{sid}/action", json={"createImage": {"name": "x"}},
                             headers=auth)
    assert snap.status_code == 409  # vm_state error (compute/api.py check_instance_state)
    assert (await client.delete(f"{SERVERS}/{sid}", headers=auth)).status_code == 204


async def test_boot_hang_keeps_the_server_in_build(client: httpx.AsyncClient, auth,
                                                   clock: ManualClock) -> None:
    sid = (await boot(client, auth)).json()["server"]["id"]
    r = await client.post("/_sim/faults", json={"kind": "boot_hang", "server": sid})
    assert r.json()["applies_to"] == "running"
    clock.advance(3000)  # (within the token's hour)
    view = (await show(client, auth, sid)).json()["server"]
    assert (view["status"], view["OS-EXT-STS:task_state"]) == ("BUILD", "spawning")
    assert "login:" not in (await console(client, auth, sid)).json()["output"]
    for bad in ({"kind": "boot_hang", "server": "web-1"},
                {"kind": "boot_fail", "during": "dancing"}):
        assert (await client.post("/_sim/faults", json=bad)).status_code == 400, bad


async def test_booting_a_volume_backed_snapshot_gives_a_volume_backed_server(
        world: World, clock: ManualClock) -> None:
    db = world.find_server("db-1")
    image = world.create_image(db.id, "db-snap")  # zero-size, block_device_mapping
    server = world.create_server("db-copy", image.id, "1", networks=[NET])
    clock.advance(60)
    assert world.get_server(server.id).status == "ACTIVE"
    assert server.image_id is None and len(server.volumes) == 1


# ---- Rackspace shape ------------------------------------------------------------------------


@pytest.fixture
async def rc() -> AsyncIterator[httpx.AsyncClient]:
    async with rackspace_client(World(clock=ManualClock(START), api="rackspace-legacy")) as c:
        yield c


async def test_rackspace_boot_defaults_to_public_and_servicenet_without_console_log(
        rc: httpx.AsyncClient) -> None:
    # docs-cloud-servers post-create-server-servers.rst: networks optional (PublicNet
    # 0000... and ServiceNet 1111...), 202 {id, links, adminPass, OS-DCF:diskConfig};
    # no microversions, so `networks` is never required.
    body = boot_body(networks=None)
    resp = await rc.post(SERVERS, json=body, headers=MV)
    assert resp.status_code == 202
    created = resp.json()["server"]
    assert set(created) == {"id", "links", "adminPass", "OS-DCF:diskConfig"}
    view = (await rc.get(f"{SERVERS}/{created['id']}")).json()["server"]
    assert view["status"] == "BUILD" and view["progress"] == 0
    assert sorted(view["addresses"]) == ["private", "public"]
    only = boot_body(name="private-only", networks=[{"uuid": RAX_NETWORKS["private"]}])
    sid = (await rc.post(SERVERS, json=only)).json()["server"]["id"]
    assert list((await rc.get(f"{SERVERS}/{sid}")).json()["server"]["addresses"]) == \
        ["private"]
    # Only the VNC console is documented (post-get-console-servers-server-id-action.rst).
    out = await rc.post(f"{SERVERS}/{sid}/action", json={"os-getConsoleOutput": {}})
    assert out.status_code == 501


@pytest.mark.parametrize("over,message", [
    # The sim's project has no key pairs, only the `default` group and zone `nova`: Nova
    # refuses the rest (api/openstack/compute/servers.py create), it never ignores them.
    ({"key_name": "mykey"}, "Invalid key_name provided."),
    ({"security_groups": [{"name": "web"}]}, "Security group web not found for project"),
    ({"availability_zone": "az-9"}, "The requested availability zone is not available"),
    ({"OS-DCF:diskConfig": "SIDEWAYS"}, "OS-DCF:diskConfig"),
    ({"personality": []}, "Additional properties are not allowed"),
])
async def test_boot_options_the_sim_does_not_have_are_refused(
        client: httpx.AsyncClient, auth, over: dict[str, Any], message: str) -> None:
    resp = await boot(client, auth, **over)
    assert resp.status_code == 400 and message in resp.json()["badRequest"]["message"]


async def test_description_needs_microversion_2_19(client: httpx.AsyncClient, auth) -> None:
    # schemas/servers.py base_create_v219 adds `description`.
    old = await client.post(SERVERS, json=boot_body(description="x", networks=None),
                            headers={**auth, "OpenStack-API-Version": "compute 2.18"})
    assert old.status_code == 400
    assert (await boot(client, auth, description="x")).status_code == 202
