"""Nova server metadata in the simulator, as the compute API reference describes it ("Server
metadata": `GET /servers/{id}/metadata` shows it, `POST` "replaces items that match the
specified keys and does not modify items not specified in the request"; `metadata` is in every
server view). Fleet schedules select servers by it (`meta:role=web`)."""

from __future__ import annotations

import httpx

from sandbox.cloud.model import World


async def test_metadata_is_served_updated_by_key_and_validated(
        client: httpx.AsyncClient, auth: dict[str, str], world: World) -> None:
    server = world.add_server("web-7", metadata={"role": "web"})
    base = f"/compute/v2.1/servers/{server.id}"
    got = await client.get(base + "/metadata", headers=auth)
    assert got.status_code == 200 and got.json() == {"metadata": {"role": "web"}}
    # POST merges by key: `role` is kept, `tier` added, an existing key replaced.
    posted = await client.post(base + "/metadata", headers=auth,
                               json={"metadata": {"tier": "front", "role": "web2"}})
    assert posted.status_code == 200
    assert posted.json() == {"metadata": {"role": "web2", "tier": "front"}}
    view = (await client.get(base, headers=auth)).json()["server"]
    assert view["metadata"] == {"role": "web2", "tier": "front"}
    listed = (await client.get("/compute/v2.1/servers/detail", headers=auth)).json()["servers"]
    assert [s["metadata"] for s in listed if s["id"] == server.id] == [
        {"role": "web2", "tier": "front"}]
    # Strict like Nova: the body must be {"metadata": {str: str}}; at most 40 items (403).
    for bad in ({"meta": {}}, {"metadata": {"k": 1}}, {"metadata": {"": "x"}},
                {"metadata": {"k": "v" * 256}}):
        r = await client.post(base + "/metadata", headers=auth, json=bad)
        assert r.status_code == 400, bad
    many = {f"k{i}": "v" for i in range(40)}
    r = await client.post(base + "/metadata", headers=auth, json={"metadata": many})
    assert r.status_code == 403
    missing = await client.get("/compute/v2.1/servers/no-such/metadata", headers=auth)
    assert missing.status_code == 404
