"""Every fault kind, injected through `/_sim/faults` or `world.inject`."""

from __future__ import annotations

import httpx
import pytest

from sandbox.cloud.model import ManualClock, World, stable_id
from tests.sandbox.cloud.conftest import Sleeps

WEB1 = stable_id("server", "web-1")
MV = {"OpenStack-API-Version": "compute 2.45"}


async def _create(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    r = await client.post(f"/compute/v2.1/servers/{WEB1}/action",
                          json={"createImage": {"name": "snap"}}, headers={**auth, **MV})
    assert r.status_code == 202
    return str(r.json()["image_id"])


async def _state(client: httpx.AsyncClient, auth: dict[str, str],
                 image_id: str) -> tuple[str | None, int, str | None]:
    server = (await client.get(f"/compute/v2.1/servers/{WEB1}", headers=auth)).json()["server"]
    image = await client.get(f"/image/v2/images/{image_id}", headers=auth)
    status = image.json()["status"] if image.status_code == 200 else None
    return server["OS-EXT-STS:task_state"], image.status_code, status


async def test_upload_fail_kills_image_and_clears_task(client: httpx.AsyncClient, auth,
                                                       clock: ManualClock) -> None:
    r = await client.post("/_sim/faults", json={"kind": "upload_fail", "server": "web-1"})
    assert r.status_code == 201 and r.json()["applies_to"] == "armed"
    image_id = await _create(client, auth)
    clock.advance(30)
    assert await _state(client, auth, image_id) == ("image_uploading", 200, "saving")
    clock.advance(100)
    assert await _state(client, auth, image_id) == (None, 200, "killed")
    # The fault was used up: the next snapshot succeeds.
    second = await _create(client, auth)
    clock.advance(200)
    assert await _state(client, auth, second) == (None, 200, "active")


async def test_image_deleted_on_running_job_gives_404_later(client: httpx.AsyncClient, auth,
                                                            clock: ManualClock,
                                                            world: World) -> None:
    image_id = await _create(client, auth)
    clock.advance(5)
    info = world.inject("image_deleted", server=WEB1, during="image_pending_upload")
    assert info["applies_to"] == "running"
    assert (await _state(client, auth, image_id))[1] == 200
    clock.advance(20)
    assert await _state(client, auth, image_id) == (None, 404, None)
    actions = (await client.get(f"/compute/v2.1/servers/{WEB1}/os-instance-actions/"
                                f"{world.servers[WEB1].actions[-1].request_id}",
                                headers=auth)).json()["instanceAction"]
    assert actions["events"][0]["result"] == "Error"


async def test_stuck_task_state_never_advances(client: httpx.AsyncClient, auth,
                                               clock: ManualClock) -> None:
    await client.post("/_sim/faults", json={"kind": "stuck", "server": "web-1",
                                            "task_state": "image_pending_upload"})
    image_id = await _create(client, auth)
    clock.advance(3000)  # far past the 98 s a snapshot takes, inside the token lifetime
    assert await _state(client, auth, image_id) == ("image_pending_upload", 200, "queued")
    r = await client.post(f"/compute/v2.1/servers/{WEB1}/action",
                          json={"createImage": {"name": "again"}}, headers=auth)
    assert r.status_code == 409


async def test_stuck_applied_in_the_current_phase(world: World, clock: ManualClock) -> None:
    image = world.create_image(WEB1, "snap")
    clock.advance(30)
    world.inject("stuck", server="web-1", task_state="image_uploading")
    clock.advance(10_000)
    assert world.get_server(WEB1).task_state == "image_uploading"
    assert world.get_image(image.id).status == "saving"


async def test_orphan_clears_task_and_leaves_image_saving(world: World,
                                                          clock: ManualClock) -> None:
    image = world.create_image(WEB1, "snap")
    clock.advance(30)
    world.inject("orphan", server="web-1")
    clock.advance(10_000)
    assert world.get_server(WEB1).task_state is None
    assert world.get_image(image.id).status == "saving"
    with pytest.raises(ValueError):
        world.inject("orphan", server="web-1")  # nothing running any more


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_http_status_fault_for_n_requests(client: httpx.AsyncClient, auth,
                                                status: int) -> None:
    r = await client.post("/_sim/faults", json={
        "kind": "http", "path": r"/servers/detail$", "status": status, "count": 2,
        "retry_after": 7})
    assert r.status_code == 201
    codes = []
    for _ in range(3):
        resp = await client.get("/compute/v2.1/servers/detail", headers=auth)
        codes.append(resp.status_code)
    assert codes == [status, status, 200]
    ok = await client.get("/compute/v2.1/servers", headers=auth)
    assert ok.status_code == 200  # other paths untouched


async def test_http_fault_body_and_retry_after(client: httpx.AsyncClient, auth,
                                               world: World) -> None:
    world.inject("http", path="^/image/", method="GET", status=503, count=1, retry_after=3)
    r = await client.get("/image/v2/images", headers=auth)
    assert r.status_code == 503 and r.headers["Retry-After"] == "3"
    world.inject("http", path="/action$", status=429, retry_after=5)
    r = await client.post(f"/compute/v2.1/servers/{WEB1}/action",
                          json={"createImage": {"name": "x"}}, headers=auth)
    assert r.status_code == 429 and r.json()["overLimit"]["retryAfter"] == "5"
    assert world.get_server(WEB1).task_state is None  # the request never reached Nova


async def test_slow_fault_sleeps_then_answers(client: httpx.AsyncClient, auth,
                                              sleeps: Sleeps) -> None:
    await client.post("/_sim/faults", json={"kind": "slow", "path": "/servers", "delay": 12.5})
    r = await client.get("/compute/v2.1/servers", headers=auth)
    assert r.status_code == 200 and sleeps.calls == [12.5]
    await client.get("/compute/v2.1/servers", headers=auth)
    assert sleeps.calls == [12.5]


async def test_drop_fault_cuts_the_connection(client: httpx.AsyncClient, auth,
                                              sleeps: Sleeps) -> None:
    await client.post("/_sim/faults", json={"kind": "drop", "path": "/servers$"})
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get("/compute/v2.1/servers", headers=auth)
    assert sleeps.calls == [60.0]
    assert (await client.get("/compute/v2.1/servers", headers=auth)).status_code == 200


async def test_revoked_tokens_give_401_until_reauth(client: httpx.AsyncClient, auth) -> None:
    r = await client.post("/_sim/faults", json={"kind": "revoke_tokens"})
    assert r.json()["revoked"] >= 1
    assert (await client.get("/compute/v2.1/servers", headers=auth)).status_code == 401


async def test_fault_listing_clearing_and_validation(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/faults", json={"kind": "http", "path": "x", "count": None})
    await client.post("/_sim/faults", json={"kind": "stuck", "server": "web-2"})
    faults = (await client.get("/_sim/faults")).json()
    assert len(faults["http"]) == 1 and faults["armed"]
    assert (await client.delete("/_sim/faults")).status_code == 204
    assert (await client.get("/_sim/faults")).json() == {"http": [], "armed": {}, "boot": []}
    for bad in ({"kind": "meteor"}, {"kind": "stuck"}, {"kind": "stuck", "server": "nope"},
                {"kind": "stuck", "server": "web-1", "task_state": "image_dancing"},
                {"kind": "http", "path": "("}, {}):
        assert (await client.post("/_sim/faults", json=bad)).status_code == 400, bad


async def test_garbage_and_wrong_shape_answer_200_with_what_no_client_expects(
        client: httpx.AsyncClient, auth) -> None:
    await client.post("/_sim/faults", json={"kind": "garbage", "path": "/servers"})
    page = await client.get("/compute/v2.1/servers/detail", headers=auth)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    await client.post("/_sim/faults", json={"kind": "wrong_shape", "path": "/images"})
    odd = await client.get("/image/v2/images", headers=auth)
    assert odd.status_code == 200 and "images" not in odd.json()
    assert "servers" in (await client.get("/compute/v2.1/servers/detail", headers=auth)).json()


async def test_huge_and_drip_stream_their_bodies(client: httpx.AsyncClient, auth,
                                                 sleeps: Sleeps) -> None:
    await client.post("/_sim/faults", json={"kind": "huge", "path": "/servers",
                                            "size": 300_000})
    big = await client.get("/compute/v2.1/servers/detail", headers=auth)
    assert big.status_code == 200 and len(big.content) == 300_000
    assert big.content.startswith(b'{"servers": [')
    await client.post("/_sim/faults", json={"kind": "drip", "path": "/images", "size": 5,
                                            "delay": 2})
    slow = await client.get("/image/v2/images", headers=auth)
    assert len(slow.content) == 5 and sleeps.calls == [2.0] * 5
