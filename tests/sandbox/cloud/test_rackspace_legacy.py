"""`World(api="rackspace-legacy")` serves Rackspace's shape, and the default OpenStack shape
refuses what real Keystone refuses. Sources are named in each test."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.cloud.config import load_cloud_config
from sandbox.cloud.model import ManualClock, World
from sandbox.cloud.serve import clouds_yaml

from .conftest import APIKEY_AUTH as APIKEY
from .conftest import START, rackspace_client, sample

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def rax() -> World:
    return World(clock=ManualClock(START), api="rackspace-legacy")


@pytest.fixture
async def rc(rax: World) -> AsyncIterator[httpx.AsyncClient]:
    async with rackspace_client(rax) as c:
        yield c


def compute(c: httpx.AsyncClient, rel: str) -> str:
    return f"/compute/v2.1/{c.headers['X-Tenant']}{rel}"


# ---- stricter Keystone (default --api openstack) -------------------------------------------


def password(user: dict[str, Any], project: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {**user, "password": "secret"}}}}}
    if project is not None:
        body["auth"]["scope"] = {"project": project}
    return body


@pytest.mark.parametrize("body,where", [
    # keystone/auth/core.py _lookup_project: a project by name needs its domain.
    (password({"name": "demo", "domain": {"name": "Default"}}, {"name": "demo"}), "project"),
    # keystone/auth/plugins/core.py UserAuthInfo: a user by name needs its domain.
    (password({"name": "demo"}, {"name": "demo", "domain": {"name": "Default"}}), "user"),
    # the same lookup for an application credential by name (its user by name).
    ({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {
        "name": "demo-app-cred", "secret": "demo-app-secret", "user": {"name": "demo"}}}}},
     "user"),
])
async def test_keystone_refuses_names_without_a_domain(
        client: httpx.AsyncClient, body: dict[str, Any], where: str) -> None:
    resp = await client.post("/identity/v3/auth/tokens", json=body)
    assert resp.status_code == 400
    assert f"Expecting to find domain in {where}" in resp.json()["error"]["message"]


async def test_keystone_still_takes_ids_and_named_domains(client: httpx.AsyncClient,
                                                          world: World) -> None:
    ok = [password({"id": world.user_id}, {"id": world.project_id}),
          password({"name": "demo", "domain": {"id": "default"}},
                   {"name": "demo", "domain": {"id": "default"}}),
          {"auth": {"identity": {"methods": ["application_credential"],
                                 "application_credential": {
                                     "name": "demo-app-cred", "secret": "demo-app-secret",
                                     "user": {"name": "demo", "domain": {"name": "Default"}}}}}}]
    for body in ok:
        assert (await client.post("/identity/v3/auth/tokens", json=body)).status_code == 201


# ---- Rackspace shape ------------------------------------------------------------------------


async def test_identity_is_v2_only_with_the_rackspace_catalog(rc: httpx.AsyncClient) -> None:
    assert (await rc.post("/identity/v3/auth/tokens", json={})).status_code == 404
    resp = await rc.post("/identity/v2.0/tokens", json=APIKEY)
    access = resp.json()["access"]
    expected = sample("rackspace/identity/auth-apikey-resp.json")["access"]
    assert set(expected["token"]) <= set(access["token"])
    names = {s["name"]: s["type"] for s in access["serviceCatalog"]}
    assert names["cloudServersOpenStack"] == "compute" and names["cloudImages"] == "image"
    assert access["user"]["RAX-AUTH:defaultRegion"] == "DFW"


async def test_legacy_nova_ignores_microversions_and_answers_create_with_location(
        rc: httpx.AsyncClient, rax: World) -> None:
    server = rax.find_server("data-1")
    resp = await rc.get(compute(rc, f"/servers/{server.id}"),
                        headers={"OpenStack-API-Version": "compute 2.47"})
    assert resp.status_code == 200 and "OpenStack-API-Version" not in resp.headers
    view = resp.json()["server"]
    expected = sample("rackspace/cloud-servers/server-details-resp.json")["server"]
    assert set(view["flavor"]) == set(expected["flavor"])  # id + links, not embedded
    assert "os-extended-volumes:volumes_attached" not in view
    assert not any(k.startswith("OS-EXT-SRV-ATTR") for k in view)
    resp = await rc.post(compute(rc, f"/servers/{server.id}/action"),
                         json={"createImage": {"name": "snap"}},
                         headers={"OpenStack-API-Version": "compute 2.45"})
    assert resp.status_code == 202 and resp.content == b""
    assert resp.headers["Location"].rsplit("/", 1)[1] in rax.images
    resp = await rc.get(compute(rc, f"/servers/{server.id}/os-volume_attachments"))
    assert [a["volumeId"] for a in resp.json()["volumeAttachments"]] == server.volumes


async def test_cloud_images_has_no_in_operator_no_sort_and_only_attribute_filters(
        rc: httpx.AsyncClient, rax: World) -> None:
    some = next(iter(rax.images))
    listing = "/image/v2/images"
    assert [i["id"] for i in (await rc.get(listing, params={"id": some})).json()["images"]] \
        == [some]
    for params in ({"id": f"in:{some}"}, {"sort": "created_at:desc"},
                   {"os_distro": "ubuntu"}, {"created_at": "gt:2000-01-01T00:00:00Z"}):
        resp = await rc.get(listing, params=params)
        assert resp.status_code == 200 and resp.json()["images"] == [], params
    resp = await rc.get(listing, params={"sort_key": "created_at", "sort_dir": "asc",
                                         "owner": rax.project_id})
    stamps = [i["created_at"] for i in resp.json()["images"]]
    assert stamps == sorted(stamps) and stamps
    assert (await rc.get(listing, params={"sort_key": "os_distro"})).status_code == 400


async def test_limits_publish_and_enforce_changes_since(rc: httpx.AsyncClient) -> None:
    doc = (await rc.get(compute(rc, "/limits"))).json()
    expected = sample("rackspace/cloud-servers/limits-resp.json")
    cs = [r for r in doc["limits"]["rate"] if r["regex"] == "changes-since"]
    want = [r for r in expected["limits"]["rate"] if r["regex"] == "changes-since"]
    assert cs and set(cs[0]["limit"][0]) == set(want[0]["limit"][0])
    value = cs[0]["limit"][0]["value"]
    params = {"changes-since": "2000-01-01T00:00:00Z"}
    codes = [(await rc.get(compute(rc, "/servers/detail"), params=params)).status_code
             for _ in range(value + 1)]
    assert codes == [200] * value + [413]
    refused = await rc.get(compute(rc, "/servers/detail"), params=params)
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await rc.get(compute(rc, "/servers/detail"))).status_code == 200


def test_printed_clouds_yaml_loads_as_a_rackspace_api_key_cloud(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(clouds_yaml("http://127.0.0.1:9", api="rackspace-legacy"))
    config = load_cloud_config("sandbox", env={"OS_CLIENT_CONFIG_FILE": str(path)},
                               cwd=tmp_path)
    assert config.auth_type == "rackspace_apikey" and config.api_key == "demo-api-key"
    assert config.auth_url == "http://127.0.0.1:9/identity/v2.0"
    assert config.region_name == "DFW" and config.compute_service_name == "cloudServersOpenStack"


def test_cli_serves_rackspace_legacy_and_prints_its_clouds_yaml() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "cloud-sim", "--port", "0", "--api",
         "rackspace-legacy"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        lines: list[str] = []
        while "clouds:\n" not in lines or lines[-1] not in ("\n", ""):
            lines.append(proc.stdout.readline())
            assert lines[-1] or "clouds:\n" in lines, "cloud-sim exited"
        assert "api rackspace-legacy" in lines[0]
        block = "".join(lines[lines.index("clouds:\n"):])
        cloud = yaml.safe_load(block)["clouds"]["sandbox"]
        assert cloud["auth_type"] == "rackspace_apikey"
        with httpx.Client(base_url=url, timeout=10) as client:
            resp = client.post("/identity/v2.0/tokens", json={"auth": {
                "RAX-KSKEY:apiKeyCredentials": {"username": cloud["auth"]["username"],
                                                "apiKey": cloud["auth"]["api_key"]}}})
            assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
