"""HTTP surface of the simulator, in-process through httpx.ASGITransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.cloud.model import ManualClock, World, stable_id
from tests.sandbox.cloud.conftest import PASSWORD_AUTH, sample

WEB1 = stable_id("server", "web-1")
DB1 = stable_id("server", "db-1")
MV = {"OpenStack-API-Version": "compute 2.96"}


def keys_missing(expected: dict[str, Any], actual: dict[str, Any]) -> set[str]:
    """Keys of a sample object our response lacks."""
    return set(expected) - set(actual)


# ---- identity ----------------------------------------------------------------------------


async def test_password_token_matches_sample_and_catalog_points_here(
        client: httpx.AsyncClient) -> None:
    resp = await client.post("/identity/v3/auth/tokens", json=PASSWORD_AUTH)
    assert resp.status_code == 201
    assert resp.headers["X-Subject-Token"]
    token = resp.json()["token"]
    expected = sample("keystone/auth/responses/project-scoped-password.json")["token"]
    assert keys_missing(expected, token) == set()
    assert keys_missing(expected["user"], token["user"]) == set()
    assert token["project"]["name"] == "demo" and token["methods"] == ["password"]
    by_type = {e["type"]: e for e in token["catalog"]}
    assert set(by_type) >= {"identity", "compute", "image"}
    compute = {ep["interface"]: ep for ep in by_type["compute"]["endpoints"]}
    assert set(compute) == {"public", "internal", "admin"}
    assert compute["public"]["url"] == "http://sim/compute/v2.1"
    assert compute["public"]["region"] == "RegionOne"
    assert by_type["image"]["endpoints"][0]["url"] == "http://sim/image"


async def test_application_credential_token(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["application_credential"],
                                  "application_credential": {"id": "demo-app-cred",
                                                              "secret": "demo-app-secret"}}}}
    resp = await client.post("/identity/v3/auth/tokens", json=body)
    assert resp.status_code == 201
    token = resp.json()["token"]
    expected = sample("keystone/admin/auth-application-credential-response.json")["token"]
    assert keys_missing(expected, token) == set()
    assert token["application_credential"]["id"] == "demo-app-cred"
    body["auth"]["identity"]["application_credential"]["secret"] = "wrong"
    assert (await client.post("/identity/v3/auth/tokens", json=body)).status_code == 401


@pytest.mark.parametrize("field,value", [("password", "nope"), ("name", "mallory")])
async def test_bad_password_is_401(client: httpx.AsyncClient, field: str, value: str) -> None:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "demo", "domain": {"name": "Default"}, "password": "secret"}}}}}
    body["auth"]["identity"]["password"]["user"][field] = value
    assert (await client.post("/identity/v3/auth/tokens", json=body)).status_code == 401


async def test_rackspace_v2_token_has_both_compute_services_and_images(
        client: httpx.AsyncClient, world: World) -> None:
    body = {"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": "demo",
                                                     "apiKey": "demo-api-key"}}}
    resp = await client.post("/identity/v2.0/tokens", json=body)
    assert resp.status_code == 200
    access = resp.json()["access"]
    expected = sample("rackspace/identity/auth-apikey-resp.json")["access"]
    assert keys_missing(expected["token"], access["token"]) == set()
    assert access["user"]["RAX-AUTH:defaultRegion"]
    services = {(s["name"], s["type"]): s for s in access["serviceCatalog"]}
    assert {("cloudServers", "compute"), ("cloudServersOpenStack", "compute"),
            ("cloudImages", "image")} <= set(services)
    v2 = services[("cloudServersOpenStack", "compute")]["endpoints"][0]
    assert v2["tenantId"] == world.project_id and v2["publicURL"].startswith("http://sim/")
    # The catalog URLs work with the token.
    headers = {"X-Auth-Token": access["token"]["id"]}
    r = await client.get(v2["publicURL"] + "/servers", headers=headers)
    assert r.status_code == 200 and len(r.json()["servers"]) == 6
    img = services[("cloudImages", "image")]["endpoints"][0]["publicURL"]
    assert (await client.get(img + "/images", headers=headers)).status_code == 200
    body["auth"]["RAX-KSKEY:apiKeyCredentials"]["apiKey"] = "bad"
    assert (await client.post("/identity/v2.0/tokens", json=body)).status_code == 401
    pw = {"auth": {"passwordCredentials": {"username": "demo", "password": "secret"}}}
    assert (await client.post("/identity/v2.0/tokens", json=pw)).status_code == 200


async def test_unknown_and_expired_tokens_are_401(client: httpx.AsyncClient, auth,
                                                  clock: ManualClock) -> None:
    r = await client.get("/compute/v2.1/servers", headers={"X-Auth-Token": "bogus"})
    assert r.status_code == 401
    assert (await client.get("/image/v2/images")).status_code == 401
    assert (await client.get("/compute/v2.1/servers", headers=auth)).status_code == 200
    clock.advance(3601)
    assert (await client.get("/compute/v2.1/servers", headers=auth)).status_code == 401


async def test_version_documents(client: httpx.AsyncClient) -> None:
    versions = (await client.get("/compute")).json()["versions"]
    v21 = next(v for v in versions if v["id"] == "v2.1")
    assert v21["min_version"] == "2.1" and v21["version"] == "2.96"
    version = (await client.get("/compute/v2.1/")).json()["version"]
    expected = sample("nova/versions/v21-version-get-resp.json")["version"]
    assert keys_missing(expected, version) == set()
    assert (await client.get("/identity")).json()["versions"]["values"][0]["id"] == "v3.14"
    assert (await client.get("/identity/v3")).json()["version"]["status"] == "stable"
    assert (await client.get("/image")).json()["versions"][0]["status"] == "CURRENT"


# ---- compute -----------------------------------------------------------------------------


async def test_every_response_has_request_ids(client: httpx.AsyncClient, auth) -> None:
    for path in ("/compute/v2.1/servers", "/image/v2/images", "/identity", "/nowhere",
                 f"/compute/v2.1/servers/{stable_id('server', 'gone')}"):
        resp = await client.get(path, headers=auth)
        assert resp.headers["X-Openstack-Request-Id"].startswith("req-")
        assert resp.headers["X-Compute-Request-Id"] == resp.headers["X-Openstack-Request-Id"]


async def test_microversion_negotiation(client: httpx.AsyncClient, auth) -> None:
    r = await client.get("/compute/v2.1/servers", headers=auth)
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    assert "OpenStack-API-Version" in r.headers["Vary"]
    r = await client.get("/compute/v2.1/servers", headers={**auth,
                                                          "X-OpenStack-Nova-API-Version": "2.45"})
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.45"
    r = await client.get("/compute/v2.1/servers", headers={
        **auth, "OpenStack-API-Version": "compute 2.60", "X-OpenStack-Nova-API-Version": "2.3"})
    assert r.headers["OpenStack-API-Version"] == "compute 2.60"  # the new header wins
    r = await client.get("/compute/v2.1/servers", headers={
        **auth, "OpenStack-API-Version": "compute latest"})
    assert r.headers["OpenStack-API-Version"] == "compute 2.96"
    for bad in ("2.200", "3.0", "2.0"):
        r = await client.get("/compute/v2.1/servers",
                             headers={**auth, "OpenStack-API-Version": f"compute {bad}"})
        assert r.status_code == 406
        assert r.json()["computeFault"]["code"] == 406
    r = await client.get("/compute/v2.1/servers",
                         headers={**auth, "OpenStack-API-Version": "compute two"})
    assert r.status_code == 400


async def test_server_show_matches_samples(client: httpx.AsyncClient, auth,
                                           world: World) -> None:
    r = await client.get(f"/compute/v2.1/servers/{WEB1}", headers=auth)
    server = r.json()["server"]
    expected = sample("nova/servers/server-get-resp.json")["server"]
    assert keys_missing(expected, server) == set()
    assert server["flavor"]["id"] == "1" and server["image"]["id"]
    assert server["OS-EXT-STS:task_state"] is None and server["status"] == "ACTIVE"
    r = await client.get(f"/compute/v2.1/{world.project_id}/servers/{WEB1}",
                         headers={**auth, **MV})
    server = r.json()["server"]
    expected = sample("nova/servers/v2.47/server-get-resp.json")["server"]
    assert keys_missing(expected, server) == set()
    assert server["flavor"]["original_name"] == "m1.small"
    db = (await client.get(f"/compute/v2.1/servers/{DB1}", headers=auth)).json()["server"]
    assert db["image"] == "" and db["os-extended-volumes:volumes_attached"]
    r = await client.get("/compute/v2.1/servers/" + stable_id("server", "nope"), headers=auth)
    assert r.status_code == 404 and r.json()["itemNotFound"]["code"] == 404
    r = await client.get("/compute/v2.1/0123/servers/" + WEB1, headers=auth)
    assert r.status_code == 400


async def test_servers_detail_matches_sample_and_pages(client: httpx.AsyncClient,
                                                       auth) -> None:
    r = await client.get("/compute/v2.1/servers/detail", params={"limit": 4}, headers=auth)
    body = r.json()
    expected = sample("nova/servers/servers-details-resp.json")
    assert keys_missing(expected["servers"][0], body["servers"][0]) == set()
    assert len(body["servers"]) == 4 and body["servers_links"][0]["rel"] == "next"
    seen = [s["id"] for s in body["servers"]]
    r = await client.get(body["servers_links"][0]["href"], headers=auth)
    rest = r.json()
    seen += [s["id"] for s in rest["servers"]]
    assert "servers_links" not in rest
    assert len(seen) == len(set(seen)) == 6
    listing = (await client.get("/compute/v2.1/servers", headers=auth)).json()["servers"]
    assert set(listing[0]) == {"id", "name", "links"}
    named = await client.get("/compute/v2.1/servers", params={"name": "^app$"}, headers=auth)
    assert [s["name"] for s in named.json()["servers"]] == ["app", "app"]


async def test_create_image_location_and_image_id(client: httpx.AsyncClient, auth,
                                                  clock: ManualClock) -> None:
    url = f"/compute/v2.1/servers/{WEB1}/action"
    r = await client.post(url, json={"createImage": {"name": "a"}}, headers=auth)
    assert r.status_code == 202 and not r.content
    image_id = r.headers["Location"].rsplit("/", 1)[1]
    assert (await client.get(r.headers["Location"], headers=auth)).json()["id"] == image_id
    server = (await client.get(f"/compute/v2.1/servers/{WEB1}", headers=auth)).json()["server"]
    assert server["OS-EXT-STS:task_state"] == "image_snapshot_pending"
    assert server["status"] == "ACTIVE"
    clock.advance(2)
    r = await client.post(url, json={"createImage": {"name": "b"}}, headers=auth)
    assert r.status_code == 409
    assert r.json() == {"conflictingRequest": {"code": 409, "message":
                        f"Cannot 'createImage' instance {WEB1} while it is in task_state "
                        "image_snapshot"}}
    clock.advance(200)
    r = await client.post(url, json={"createImage": {"name": "b", "metadata": {"k": "v"}}},
                          headers={**auth, "OpenStack-API-Version": "compute 2.45"})
    assert r.status_code == 202 and "Location" not in r.headers
    new_id = r.json()["image_id"]
    image = (await client.get(f"/image/v2/images/{new_id}", headers=auth)).json()
    assert image["k"] == "v" and image["instance_uuid"] == WEB1
    bad = await client.post(url, json={"createImage": {"name": "x", "extra": 1}}, headers=auth)
    assert bad.status_code == 400 and "badRequest" in bad.json()


async def test_create_backup_and_instance_actions(client: httpx.AsyncClient, auth,
                                                  clock: ManualClock) -> None:
    url = f"/compute/v2.1/servers/{WEB1}/action"
    body = sample("nova/os-create-backup/v2.45/create-backup-req.json")
    r = await client.post(url, json=body, headers={**auth, **MV})
    assert r.status_code == 202
    assert set(r.json()) == set(sample("nova/os-create-backup/v2.45/create-backup-resp.json"))
    request_id = r.headers["X-Openstack-Request-Id"]
    server = (await client.get(f"/compute/v2.1/servers/{WEB1}", headers=auth)).json()["server"]
    assert server["OS-EXT-STS:task_state"] == "image_backup"
    r = await client.post(url, json={"createBackup": {"name": "x"}}, headers=auth)
    assert r.status_code == 400
    r = await client.post(f"/compute/v2.1/servers/{DB1}/action", json=body, headers=auth)
    assert r.status_code == 400
    actions = (await client.get(f"/compute/v2.1/servers/{WEB1}/os-instance-actions",
                                headers={**auth, **MV})).json()["instanceActions"]
    expected = sample("nova/os-instance-actions/v2.84/instance-actions-list-resp.json")
    assert keys_missing(expected["instanceActions"][0], actions[0]) == set()
    assert actions[0]["action"] == "createBackup" and actions[0]["request_id"] == request_id
    detail_url = f"/compute/v2.1/servers/{WEB1}/os-instance-actions/{request_id}"
    detail = (await client.get(detail_url, headers={**auth, **MV})).json()["instanceAction"]
    assert detail["events"][0]["result"] is None
    clock.advance(500)
    detail = (await client.get(detail_url, headers={**auth, **MV})).json()["instanceAction"]
    assert detail["events"][0]["result"] == "Success"


async def test_changes_since_filter(client: httpx.AsyncClient, auth, clock: ManualClock,
                                    world: World) -> None:
    since = "2023-11-14T22:13:20Z"  # == START
    r = await client.get("/compute/v2.1/servers/detail", params={"changes-since": since},
                         headers=auth)
    assert r.json()["servers"] == []
    clock.advance(10)
    await client.post(f"/compute/v2.1/servers/{WEB1}/action",
                      json={"createImage": {"name": "a"}}, headers=auth)
    r = await client.get("/compute/v2.1/servers/detail", params={"changes-since": since},
                         headers=auth)
    assert [s["id"] for s in r.json()["servers"]] == [WEB1]
    world.delete_server(stable_id("server", "web-2"))
    r = await client.get("/compute/v2.1/servers/detail", params={"changes-since": since},
                         headers=auth)
    statuses = {s["name"]: s["status"] for s in r.json()["servers"]}
    assert statuses == {"web-1": "ACTIVE", "web-2": "DELETED"}
    plain = (await client.get("/compute/v2.1/servers", headers=auth)).json()["servers"]
    assert "web-2" not in {s["name"] for s in plain}
    bad = await client.get("/compute/v2.1/servers/detail", params={"changes-since": "soon"},
                           headers=auth)
    assert bad.status_code == 400


async def test_openstack_nova_has_no_rax_si_route_and_no_such_extension(
        client: httpx.AsyncClient, auth) -> None:
    # rax-si-image-schedule is Rackspace's extension (docs-cloud-servers
    # ext-scheduled-images.rst); real Nova routes no such path: webob's plain 404.
    url = f"/compute/v2.1/servers/{WEB1}/rax-si-image-schedule"
    for method in ("GET", "POST", "DELETE"):
        r = await client.request(method, url, headers=auth,
                                 json={"image_schedule": {"retention": 7}})
        assert r.status_code == 404 and "The resource could not be found." in r.text, method
        assert "schedule" not in r.text.lower()
    aliases = [e["alias"] for e in (await client.get("/compute/v2.1/extensions",
                                                     headers=auth)).json()["extensions"]]
    assert "os-console-output" in aliases and "rax-si-image-schedule" not in aliases
    missing = await client.get("/compute/v2.1/extensions/rax-si-image-schedule", headers=auth)
    assert missing.status_code == 404


async def test_limits(client: httpx.AsyncClient, auth) -> None:
    body = (await client.get("/compute/v2.1/limits", headers=auth)).json()
    expected = sample("nova/limits/limit-get-resp.json")["limits"]
    assert keys_missing(expected["absolute"], body["limits"]["absolute"]) == set()
    assert body["limits"]["rate"] == []


async def test_rate_limit_gives_413_with_retry_after(clock: ManualClock) -> None:
    from sandbox.cloud.app import create_app
    from sandbox.cloud.model import RateLimits

    world = World(clock=clock, rate_limits=RateLimits(get_per_minute=3))
    transport = httpx.ASGITransport(app=create_app(world))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        tok = (await c.post("/identity/v3/auth/tokens", json=PASSWORD_AUTH)).headers[
            "X-Subject-Token"]
        codes = [(await c.get("/compute/v2.1/servers", headers={"X-Auth-Token": tok}))
                 for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 200, 413]
        assert int(codes[-1].headers["Retry-After"]) >= 1
        assert codes[-1].json()["overLimit"]["retryAfter"] == codes[-1].headers["Retry-After"]
        rate = (await c.get("/compute/v2.1/limits", headers={"X-Auth-Token": tok}))
        assert rate.status_code == 413  # the limits call itself counts
        clock.advance(61)
        rate = (await c.get("/compute/v2.1/limits", headers={"X-Auth-Token": tok}))
        assert rate.json()["limits"]["rate"][0]["limit"][0]["verb"] == "GET"


# ---- image -------------------------------------------------------------------------------


async def _snapshots(client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock,
                     n: int, server: str = WEB1, step: float = 100) -> list[str]:
    ids = []
    for i in range(n):
        r = await client.post(f"/compute/v2.1/servers/{server}/action",
                              json={"createImage": {"name": f"snap-{i}"}},
                              headers={**auth, **MV})
        ids.append(r.json()["image_id"])
        clock.advance(step)  # a 20 GB snapshot takes 98 s
    return ids


async def test_image_show_matches_sample(client: httpx.AsyncClient, auth,
                                         clock: ManualClock) -> None:
    (image_id,) = await _snapshots(client, auth, clock, 1)
    image = (await client.get(f"/image/v2/images/{image_id}", headers=auth)).json()
    expected = sample("glance/v2/image-show-response.json")
    assert keys_missing(expected, image) == set()
    assert image["status"] == "active" and image["image_type"] == "snapshot"
    listing = (await client.get("/image/v2/images", headers=auth)).json()
    expected_list = sample("glance/v2/images-list-response.json")
    assert keys_missing(expected_list, listing) == set()


async def test_glance_filters_sort_and_paging(client: httpx.AsyncClient, auth,
                                              clock: ManualClock) -> None:
    web = await _snapshots(client, auth, clock, 30)
    app1 = stable_id("server", "app#1")
    other = await _snapshots(client, auth, clock, 2, server=app1, step=200)
    r = await client.get("/image/v2/images", params={"instance_uuid": WEB1}, headers=auth)
    body = r.json()
    assert len(body["images"]) == 25 and body["next"].startswith("/v2/images?")
    got = [im["id"] for im in body["images"]]
    r = await client.get("/image" + body["next"], headers=auth)
    got += [im["id"] for im in r.json()["images"]]
    assert "next" not in r.json()
    assert got == list(reversed(web))  # default sort: newest first
    r = await client.get("/image/v2/images", headers=auth, params={
        "instance_uuid": app1, "image_type": "snapshot", "sort": "created_at:asc"})
    assert [im["id"] for im in r.json()["images"]] == other
    r = await client.get("/image/v2/images", headers=auth,
                         params={"id": "in:" + ",".join([web[0], other[1], "missing"])})
    assert {im["id"] for im in r.json()["images"]} == {web[0], other[1]}
    r = await client.get("/image/v2/images", headers=auth,
                         params={"status": "in:queued,saving", "limit": 1000})
    assert r.json()["images"] == []
    r = await client.get("/image/v2/images", headers=auth, params={"name": "snap-3"})
    assert [im["id"] for im in r.json()["images"]] == [web[3]]
    r = await client.get("/image/v2/images", headers=auth, params={"changes-since": "2024"})
    assert r.status_code == 400


async def test_image_delete_and_protected(client: httpx.AsyncClient, auth, clock: ManualClock,
                                          world: World) -> None:
    a, b = await _snapshots(client, auth, clock, 2)
    assert (await client.delete(f"/image/v2/images/{a}", headers=auth)).status_code == 204
    assert (await client.get(f"/image/v2/images/{a}", headers=auth)).status_code == 404
    world.images[b].protected = True
    assert (await client.delete(f"/image/v2/images/{b}", headers=auth)).status_code == 403
    assert (await client.get("/image/v2/schemas/image", headers=auth)).json()["name"] == "image"


async def test_stats_count_routes_and_statuses(client: httpx.AsyncClient, auth) -> None:
    await client.post("/_sim/stats/reset")
    await client.get("/compute/v2.1/servers/detail", headers=auth)
    await client.get("/compute/v2.1/servers/detail", headers=auth)
    await client.get(f"/compute/v2.1/servers/{WEB1}", headers=auth)
    await client.get(f"/image/v2/images/{stable_id('image', 'none')}", headers=auth)
    await client.get("/nowhere")
    stats = (await client.get("/_sim/stats")).json()
    assert stats["routes"] == {
        "GET /compute/v2.1/servers/detail": 2,
        "GET /compute/v2.1/servers/{server_id}": 1,
        "GET /image/v2/images/{image_id}": 1,
        "GET unmatched": 1,
    }
    assert stats["statuses"] == {"200": 3, "404": 2}
    assert stats["total"] == 5
    await client.post("/_sim/stats/reset")
    assert (await client.get("/_sim/stats")).json()["total"] == 0


async def test_sim_state_and_clock(client: httpx.AsyncClient, auth) -> None:
    state = (await client.get("/_sim/state")).json()
    assert {s["name"] for s in state["servers"]} >= {"web-1", "db-1"}
    before = state["now"]
    r = await client.post("/_sim/clock/advance", json={"seconds": 60})
    assert r.status_code == 200 and r.json()["now"] > before
