"""CloudClient against httpx.MockTransport: error mapping, retries, auth, microversions, paging."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import pytest

from bot.cloud.client import CloudClient
from bot.cloud.rax import RaxSchedule
from bot.errors import (
    Ambiguous,
    AuthFailed,
    CloudBadResponse,
    CloudError,
    CloudRejected,
    CloudUnavailable,
    Forbidden,
    NoScheduledImages,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServerBusy,
)

from .conftest import (
    IMAGE_ID,
    PASSWORD,
    SERVER_ID,
    Clock,
    FakeCloud,
    Sleeps,
    config,
    image_doc,
    sample,
    server_doc,
)

NOW_MINUS_MIN = datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
SERVER_PATH = rf"/compute/v2\.1/servers/{SERVER_ID}$"
ACTION = rf"/servers/{SERVER_ID}/action$"


def nova_fault(status: int, message: str, name: str = "conflictingRequest",
               headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={name: {"code": status, "message": message}},
                          headers=headers)


def glance_text(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, text=f"{status} Error\n\n{message}\n\n   ")


# ---- error mapping --------------------------------------------------------------------------


async def test_401_reauthenticates_once_then_auth_failed(fake: FakeCloud,
                                                         cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(401, json={"error": {"message": "expired"}}))
    with pytest.raises(AuthFailed):
        await cloud.get_server(SERVER_ID)
    assert len(fake.hits("GET", SERVER_PATH)) == 2
    assert cloud.authentications == 2


async def test_401_once_then_fresh_token_succeeds(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(401, json={}),
            httpx.Response(200, json={"server": server_doc()}))
    server = await cloud.get_server(SERVER_ID)
    assert server.name == "web-1"
    first, second = fake.hits("GET", SERVER_PATH)
    assert first.headers["x-auth-token"] != second.headers["x-auth-token"]
    assert second.headers["x-auth-token"] == fake.tokens[-1]


async def test_credentials_refused_is_auth_failed(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.auth_status = 401
    with pytest.raises(AuthFailed, match="refused the credentials"):
        await cloud.list_servers()


async def test_403_protected_image_is_forbidden(fake: FakeCloud, cloud: CloudClient) -> None:
    # Protected after our look (the client refuses an image it sees protected itself).
    fake.on("GET", rf"/images/{IMAGE_ID}$", httpx.Response(200, json=image_doc()))
    fake.on("DELETE", rf"/images/{IMAGE_ID}$",
            glance_text(403, f"Image {IMAGE_ID} is protected and cannot be deleted."))
    with pytest.raises(Forbidden, match="protected"):
        await cloud.delete_image(IMAGE_ID)


async def test_403_quota_message_is_quota(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("POST", ACTION, nova_fault(403, "Quota exceeded for metadata items", "forbidden"))
    with pytest.raises(QuotaExceeded):
        await cloud.create_image(SERVER_ID, "x", {})


async def test_404_image_is_not_found(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", rf"/images/{IMAGE_ID}$", glance_text(404, "No image found"))
    with pytest.raises(NotFound) as info:
        await cloud.get_image(IMAGE_ID)
    assert (info.value.kind, info.value.name) == ("image", IMAGE_ID)
    assert info.value.request_id


async def test_409_busy_carries_task_state_and_is_not_retried(fake: FakeCloud,
                                                              cloud: CloudClient) -> None:
    fake.on("POST", ACTION, nova_fault(
        409, f"Cannot 'createImage' instance {SERVER_ID} while it is in task_state "
             "image_uploading"))
    with pytest.raises(ServerBusy) as info:
        await cloud.create_image(SERVER_ID, "snap", {"k": "v"})
    assert info.value.task_state == "image_uploading"
    assert info.value.server == SERVER_ID
    assert len(fake.hits("POST", ACTION)) == 1


async def test_413_without_retry_after_is_quota(fake: FakeCloud, cloud: CloudClient,
                                                sleeps: Sleeps) -> None:
    fake.on("POST", ACTION, glance_text(413, "image_count_total quota exceeded"))
    with pytest.raises(QuotaExceeded):
        await cloud.create_image(SERVER_ID, "snap", {})
    assert len(fake.hits("POST", ACTION)) == 1
    assert sleeps.calls == []


async def test_413_with_retry_after_waits_and_retries(fake: FakeCloud, cloud: CloudClient,
                                                      sleeps: Sleeps) -> None:
    limited = nova_fault(413, "This request was rate-limited.", "overLimit",
                         {"Retry-After": "7"})
    fake.on("POST", ACTION, limited, httpx.Response(202, json={"image_id": IMAGE_ID}))
    assert await cloud.create_image(SERVER_ID, "snap", {}) == IMAGE_ID
    assert sleeps.calls == [7.0]


async def test_retry_after_http_date(fake: FakeCloud, cloud: CloudClient, clock: Clock,
                                     sleeps: Sleeps) -> None:
    when = "Sun, 01 Mar 2026 12:00:42 GMT"  # clock is 12:00:00
    fake.on("GET", SERVER_PATH, httpx.Response(429, headers={"Retry-After": when}),
            httpx.Response(200, json={"server": server_doc()}))
    await cloud.get_server(SERVER_ID)
    assert sleeps.calls == [42.0]


async def test_429_persisting_becomes_rate_limited(fake: FakeCloud, cloud: CloudClient,
                                                   sleeps: Sleeps) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(429, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimited) as info:
        await cloud.get_server(SERVER_ID)
    assert info.value.retry_after == 3.0
    assert sleeps.calls == [3.0, 3.0, 3.0]
    assert len(fake.hits("GET", SERVER_PATH)) == 4


async def test_long_retry_after_is_handed_to_the_caller(fake: FakeCloud, cloud: CloudClient,
                                                        sleeps: Sleeps) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(413, headers={"Retry-After": "600"}))
    with pytest.raises(RateLimited) as info:
        await cloud.get_server(SERVER_ID)
    assert info.value.retry_after == 600.0
    assert info.value.retryable
    assert sleeps.calls == []


async def test_5xx_retried_with_backoff_then_unavailable(fake: FakeCloud, cloud: CloudClient,
                                                         sleeps: Sleeps) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(503, text="down"))
    with pytest.raises(CloudUnavailable) as info:
        await cloud.get_server(SERVER_ID)
    assert not isinstance(info.value, RateLimited)
    assert len(fake.hits("GET", SERVER_PATH)) == 4
    assert sleeps.calls == [0.5, 1.0, 2.0]  # rng pinned to 1.0: full exponential delays


async def test_backoff_has_jitter_and_a_cap(fake: FakeCloud, clock: Clock) -> None:
    sleeps = Sleeps()
    client = CloudClient(config(), transport=httpx.MockTransport(fake.handler), clock=clock,
                         sleep=sleeps, rng=lambda: 0.0, max_tries=10, max_backoff=4.0)
    fake.on("GET", SERVER_PATH, httpx.Response(500))
    async with client:
        with pytest.raises(CloudUnavailable):
            await client.get_server(SERVER_ID)
    assert sleeps.calls == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]


async def test_5xx_then_success(fake: FakeCloud, cloud: CloudClient, sleeps: Sleeps) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(502), httpx.Response(
        200, json={"server": server_doc()}))
    assert (await cloud.get_server(SERVER_ID)).id == SERVER_ID
    assert sleeps.calls == [0.5]


async def test_create_image_5xx_is_not_retried(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("POST", ACTION, httpx.Response(503), httpx.Response(202, json={"image_id": "x"}))
    with pytest.raises(CloudUnavailable):
        await cloud.create_image(SERVER_ID, "snap", {})
    assert len(fake.hits("POST", ACTION)) == 1


async def test_connect_error_retried_even_for_create(fake: FakeCloud, cloud: CloudClient,
                                                     sleeps: Sleeps) -> None:
    fake.on("POST", ACTION, httpx.ConnectError("refused"),
            httpx.Response(202, json={"image_id": IMAGE_ID}))
    assert await cloud.create_image(SERVER_ID, "snap", {}) == IMAGE_ID
    assert len(fake.hits("POST", ACTION)) == 2
    assert len(sleeps.calls) == 1


async def test_read_timeout_on_create_is_not_retried(fake: FakeCloud,
                                                     cloud: CloudClient) -> None:
    fake.on("POST", ACTION, httpx.ReadTimeout("slow"),
            httpx.Response(202, json={"image_id": IMAGE_ID}))
    with pytest.raises(CloudUnavailable, match="may or may not"):
        await cloud.create_image(SERVER_ID, "snap", {})
    assert len(fake.hits("POST", ACTION)) == 1


async def test_connect_errors_exhausted(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.ConnectError("refused"))
    with pytest.raises(CloudUnavailable, match="ConnectError"):
        await cloud.get_server(SERVER_ID)
    assert len(fake.hits("GET", SERVER_PATH)) == 4


async def test_read_timeout_on_get_is_retried(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.ReadTimeout("slow"),
            httpx.Response(200, json={"server": server_doc()}))
    assert (await cloud.get_server(SERVER_ID)).id == SERVER_ID


async def test_other_4xx_is_rejected(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("POST", ACTION, nova_fault(400, "Invalid input for field/attribute name.",
                                       "badRequest"))
    with pytest.raises(CloudRejected, match="Invalid input"):
        await cloud.create_image(SERVER_ID, "", {})


# ---- microversions --------------------------------------------------------------------------


async def test_create_image_reads_image_id_at_2_45(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("POST", ACTION, httpx.Response(
        202, json=sample("nova/servers/v2.45/server-action-create-image-resp.json")))
    image_id = await cloud.create_image(SERVER_ID, "snap", {"imagebot_job_id": "J1"})
    assert image_id == sample("nova/servers/v2.45/server-action-create-image-resp.json")[
        "image_id"]
    (req,) = fake.hits("POST", ACTION)
    assert req.headers["openstack-api-version"] == "compute 2.45"
    assert req.headers["x-openstack-nova-api-version"] == "2.45"
    assert json.loads(req.content) == {"createImage": {
        "name": "snap", "metadata": {"imagebot_job_id": "J1"}}}


async def test_create_image_falls_back_to_location(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("POST", ACTION, httpx.Response(
        202, headers={"Location": f"http://glance.example/v2/images/{IMAGE_ID}"}))
    assert await cloud.create_image(SERVER_ID, "snap", {}) == IMAGE_ID


async def test_406_drops_the_microversion_and_remembers(fake: FakeCloud,
                                                        cloud: CloudClient) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "openstack-api-version" in request.headers:
            return nova_fault(406, "Version 2.45 is not supported by the API.", "computeFault")
        return httpx.Response(202, headers={"Location": f"/images/{IMAGE_ID}"})

    fake.on("POST", ACTION, answer)
    assert await cloud.create_image(SERVER_ID, "a", {}) == IMAGE_ID
    assert await cloud.create_image(SERVER_ID, "b", {}) == IMAGE_ID
    versions = [r.headers.get("x-openstack-nova-api-version") for r in fake.hits("POST", ACTION)]
    assert versions == ["2.45", None, None]


async def test_accepted_without_any_image_id(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("POST", ACTION, httpx.Response(202))
    with pytest.raises(CloudUnavailable, match="no image id"):
        await cloud.create_image(SERVER_ID, "snap", {})


# ---- auth lifecycle -------------------------------------------------------------------------


async def test_reauthenticates_before_expiry(fake: FakeCloud, cloud: CloudClient,
                                             clock: Clock) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(200, json={"server": server_doc()}))
    await cloud.get_server(SERVER_ID)
    clock.advance(3600 - 400)  # more than 5 minutes left: same token
    await cloud.get_server(SERVER_ID)
    assert cloud.authentications == 1
    clock.advance(200)  # within the margin: refresh before the call, no 401 round trip
    await cloud.get_server(SERVER_ID)
    assert cloud.authentications == 2
    gets = fake.hits("GET", SERVER_PATH)
    assert len(gets) == 3  # no 401 round trip was needed
    assert gets[-1].headers["x-auth-token"] == fake.tokens[1]


async def test_concurrent_callers_share_one_authentication(fake: FakeCloud,
                                                           cloud: CloudClient) -> None:
    import asyncio

    fake.on("GET", SERVER_PATH, httpx.Response(200, json={"server": server_doc()}))
    await asyncio.gather(*(cloud.get_server(SERVER_ID) for _ in range(10)))
    assert cloud.authentications == 1
    assert len(fake.hits("POST", "/auth/tokens")) == 1


async def test_password_request_body(fake: FakeCloud, cloud: CloudClient) -> None:
    await cloud.endpoints()
    (req,) = fake.hits("POST", "/identity/v3/auth/tokens")
    body = json.loads(req.content)
    assert body == {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}}


# ---- request ids and logging ----------------------------------------------------------------


async def test_every_request_carries_a_fresh_request_id(fake: FakeCloud,
                                                        cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(503), httpx.Response(
        200, json={"server": server_doc()}))
    await cloud.get_server(SERVER_ID)
    ids = [r.headers["x-openstack-request-id"] for r in fake.requests]
    assert all(re.fullmatch(r"req-[0-9a-f-]{36}", i) for i in ids)
    assert len(set(ids)) == len(ids) == 4  # identity discovery and login (keystoneauth), 503, 200


async def test_secrets_never_logged(fake: FakeCloud, cloud: CloudClient,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.on("GET", SERVER_PATH, httpx.Response(401, json={}), httpx.Response(
        200, json={"server": server_doc()}))
    fake.on("GET", rf"/images/{IMAGE_ID}$", httpx.Response(500))
    await cloud.get_server(SERVER_ID)
    with pytest.raises(CloudUnavailable) as info:
        await cloud.get_image(IMAGE_ID)
    text = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "req-" in caplog.text  # we do log, with request ids
    assert fake.tokens and all(tok not in text for tok in fake.tokens)
    assert PASSWORD not in text
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(cloud.config)


# ---- servers --------------------------------------------------------------------------------


async def test_get_server_parses_sample(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(
        200, json=sample("nova/servers/v2.47/server-get-resp.json")))
    server = await cloud.get_server(SERVER_ID)
    assert server.flavor == "m1.tiny.specs"
    assert not server.volume_backed
    assert server.data_disks == ("volume volume_id1", "volume volume_id2")
    assert server.task_state is None and server.vm_state == "active"
    req = fake.hits("GET", SERVER_PATH)[0]
    assert req.headers["x-openstack-nova-api-version"] == "2.47"


async def test_volume_backed_root_volume_is_not_a_data_disk(fake: FakeCloud,
                                                            cloud: CloudClient) -> None:
    doc = server_doc(image="", flavor={"original_name": "m1.eph", "ephemeral": 20})
    doc["os-extended-volumes:volumes_attached"] = [{"id": "root"}, {"id": "d1"}]
    fake.on("GET", SERVER_PATH, httpx.Response(200, json={"server": doc}))
    server = await cloud.get_server(SERVER_ID)
    assert server.volume_backed
    assert server.data_disks == ("volume d1", "ephemeral disk 20 GB")


def _paged_servers(pages: list[list[dict[str, object]]], host: str = "http://elsewhere"):
    def answer(request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("marker")
        index = 0 if marker is None else int(marker.split("-")[1]) + 1
        body: dict[str, object] = {"servers": pages[index]}
        if index + 1 < len(pages):
            body["servers_links"] = [{"rel": "next", "href":
                                      f"{host}/v2.1/servers/detail?limit=2&marker=page-{index}"}]
        return httpx.Response(200, json=body)
    return answer


async def test_servers_follow_next_links(fake: FakeCloud, cloud: CloudClient) -> None:
    pages = [[server_doc(f"id-{i}", f"s{i}") for i in range(p * 2, p * 2 + 2)]
             for p in range(3)]
    fake.on("GET", r"/servers/detail$", _paged_servers(pages))
    servers = await cloud.list_servers()
    assert [s.name for s in servers] == [f"s{i}" for i in range(6)]
    reqs = fake.hits("GET", r"/servers/detail$")
    assert [r.url.params.get("marker") for r in reqs] == [None, "page-0", "page-1"]
    assert all(r.url.host == "c.test" for r in reqs)  # next links re-issued on our endpoint


async def test_list_servers_limit(fake: FakeCloud, cloud: CloudClient) -> None:
    pages = [[server_doc(f"id-{i}", f"s{i}") for i in range(p * 2, p * 2 + 2)]
             for p in range(3)]
    fake.on("GET", r"/servers/detail$", _paged_servers(pages))
    assert len(await cloud.list_servers(limit=3)) == 3
    assert fake.hits("GET", r"/servers/detail$")[0].url.params["limit"] == "3"


async def test_find_server_by_exact_name_not_regex(fake: FakeCloud, cloud: CloudClient) -> None:
    docs = [server_doc("a", "web-10"), server_doc("b", "web-1"), server_doc("c", "xweb-1")]
    fake.on("GET", r"/servers/detail$", httpx.Response(200, json={"servers": docs}))
    assert (await cloud.find_server("web-1")).id == "b"
    assert "name" not in fake.hits("GET", r"/servers/detail$")[0].url.params


async def test_find_server_ambiguous_and_not_found(fake: FakeCloud, cloud: CloudClient) -> None:
    docs = [server_doc("a", "app"), server_doc("b", "app"), server_doc("c", "web-1")]
    fake.on("GET", r"/servers/detail$", httpx.Response(200, json={"servers": docs}))
    with pytest.raises(Ambiguous) as amb:
        await cloud.find_server("app")
    assert amb.value.candidates == (("a", "app"), ("b", "app"))
    with pytest.raises(NotFound) as nf:
        await cloud.find_server("web1")
    assert nf.value.suggestions == ("web-1",)
    assert nf.value.kind == "server"


async def test_find_server_by_uuid_uses_get(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", SERVER_PATH, httpx.Response(200, json={"server": server_doc()}))
    assert (await cloud.find_server(SERVER_ID)).id == SERVER_ID
    assert not fake.hits("GET", r"/servers/detail$")


# ---- images ---------------------------------------------------------------------------------


async def test_list_images_filters_and_follows_next(fake: FakeCloud, cloud: CloudClient) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("marker")
        if marker is None:
            return httpx.Response(200, json={"images": [image_doc("i1", **ours),
                                                        image_doc("i2", **ours)],
                                             "next": "/v2/images?instance_uuid=s&marker=i2"})
        return httpx.Response(200, json={"images": [image_doc("i3", imagebot_job_id="J9",
                                                              **ours)]})

    ours = {"instance_uuid": "s", "image_type": "snapshot"}
    fake.on("GET", r"/image/v2/images$", answer)
    await cloud.discover()  # the one-off `in:` probe lists images too
    images = await cloud.list_images(server_id="s", properties={"image_type": "snapshot"})
    assert [i.id for i in images] == ["i1", "i2", "i3"]
    assert images[2].properties["imagebot_job_id"] == "J9"
    first, second = fake.hits("GET", r"/images$")[-2:]
    # sort_key/sort_dir work on every Glance v2; `sort=` only on newer ones.
    assert (first.url.params["sort_key"], first.url.params["sort_dir"]) == ("created_at", "desc")
    assert "sort" not in first.url.params
    assert first.url.params["instance_uuid"] == "s"
    assert first.url.params["image_type"] == "snapshot"
    assert second.url.params["marker"] == "i2"


async def test_glance_sample_parses(fake: FakeCloud, cloud: CloudClient) -> None:
    doc = sample("glance/v2/image-show-response.json")
    fake.on("GET", r"/images/.+$", httpx.Response(200, json=doc))
    image = await cloud.get_image(doc["id"])
    assert image.status == doc["status"]
    assert "self" not in image.properties and "id" not in image.properties


async def test_find_images_by_metadata(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", r"/images$", httpx.Response(200, json={"images": [
        image_doc(imagebot_job_id="J3")]}))
    assert [i.id for i in await cloud.find_images_by_metadata("imagebot_job_id", "J3")] == [
        IMAGE_ID]
    assert fake.hits("GET", r"/images$")[-1].url.params["imagebot_job_id"] == "J3"


async def test_a_glance_that_ignores_a_property_filter_cannot_adopt_another_image(
        fake: FakeCloud, cloud: CloudClient) -> None:
    """Glance reads unknown keys as property filters (glance/db/sqlalchemy/api.py), but a
    Glance that ignores them answers with every image: we check the property ourselves, so a
    crash reconcile never adopts someone else's image (nor a second createImage follow from
    trusting an empty answer)."""
    fake.on("GET", r"/images$", httpx.Response(200, json={"images": [
        image_doc("other", imagebot_job_id="J4"), image_doc("plain")]}))
    assert await cloud.find_images_by_metadata("imagebot_job_id", "J3") == []
    assert [i.id for i in await cloud.find_images_by_metadata("imagebot_job_id", "J4")] == [
        "other"]


# ---- observe --------------------------------------------------------------------------------


async def test_observe_batches_and_separates_vanished_from_killed(
        fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", r"/servers/detail$", httpx.Response(200, json={"servers": [
        server_doc("s1", task="image_uploading", updated="2026-03-01T11:59:30Z"),
        server_doc("other", updated="2026-03-01T11:59:50Z")]}))
    fake.on("GET", r"/images$", httpx.Response(200, json={"images": [
        image_doc("i1", "saving"), image_doc("i2", "killed")]}))
    await cloud.discover()  # authenticate and probe first: those would count too
    probes = len(fake.hits("GET", r"/images$"))
    seen = await cloud.observe({"s1", "s2"}, {"i1", "i2", "i3"}, NOW_MINUS_MIN)
    assert set(seen.servers) == {"s1"}
    assert seen.servers["s1"].task_state == "image_uploading"
    assert {k: v.status for k, v in seen.images.items()} == {"i1": "saving", "i2": "killed"}
    assert seen.vanished_images == frozenset({"i3"})
    assert seen.requests == 2
    (servers_req,) = fake.hits("GET", r"/servers/detail$")
    assert servers_req.url.params["changes-since"] == "2026-03-01T11:59:00Z"
    (images_req,) = fake.hits("GET", r"/images$")[probes:]
    assert images_req.url.params["id"] == "in:i1,i2,i3"
    # newest server update (11:59:50) minus the skew margin
    assert seen.cursor.isoformat() == "2026-03-01T11:59:40+00:00"


async def test_observe_cursor_never_goes_back(fake: FakeCloud, cloud: CloudClient) -> None:
    fake.on("GET", r"/servers/detail$", httpx.Response(200, json={"servers": [
        server_doc("s1", updated="2026-03-01T11:59:02Z")]}))
    seen = await cloud.observe({"s1"}, set(), NOW_MINUS_MIN)
    assert seen.cursor == NOW_MINUS_MIN
    fake.on("GET", r"/servers/detail$", httpx.Response(200, json={"servers": []}))
    assert (await cloud.observe({"s1"}, set(), NOW_MINUS_MIN)).cursor == NOW_MINUS_MIN


async def test_observe_chunks_image_ids_under_8kb(fake: FakeCloud, cloud: CloudClient) -> None:
    import uuid

    ids = [str(uuid.UUID(int=i)) for i in range(500)]

    def answer(request: httpx.Request) -> httpx.Response:
        asked = request.url.params.get("id", "in:" + ids[0])[3:].split(",")
        return httpx.Response(200, json={"images": [image_doc(i, "saving") for i in asked]})

    fake.on("GET", r"/images$", answer)
    await cloud.discover()
    probes = len(fake.hits("GET", r"/images$"))
    seen = await cloud.observe(set(), ids, None)
    reqs = fake.hits("GET", r"/images$")[probes:]
    assert all(len(str(r.url)) < 8000 for r in reqs)
    assert sorted(x for r in reqs for x in r.url.params["id"][3:].split(",")) == sorted(ids)
    assert len(reqs) == 3
    assert seen.requests == 3 and not seen.vanished_images and len(seen.images) == 500


async def test_observe_pages_changed_servers(fake: FakeCloud, cloud: CloudClient) -> None:
    pages = [[server_doc("id-0", "s0", task="image_snapshot")], [server_doc("id-1", "s1")]]
    fake.on("GET", r"/servers/detail$", _paged_servers(pages))
    seen = await cloud.observe({"id-0", "id-1"}, set(), None)
    assert set(seen.servers) == {"id-0", "id-1"}
    assert seen.requests == 4  # the first call also authenticates (discovery + login)
    assert parse_qs(fake.hits("GET", r"/servers/detail$")[1].url.query.decode())[
        "marker"] == ["page-0"]


# ---- Rackspace scheduled images -------------------------------------------------------------
# rackerlabs/docs-cloud-servers api-docs/api-operations/methods/*rax-si-scheduled-image.rst and
# get-retrieve-details-for-the-specified-extension-extensions-alias.rst.

SI = "rackspace/cloud-servers/scheduled-images"
EXTENSION = {"extension": {"name": "ScheduledImages", "alias": "rax-si-image-schedule",
                           "namespace": "http://docs.openstack.org/servers/api/ext/"
                                        "scheduled_images/v1.0",
                           "updated": "2013-01-01T00:00:00Z", "links": [],
                           "description": "Enables automatic scheduled images."}}


def with_extension(fake: FakeCloud) -> None:
    fake.on("GET", r"/extensions/rax-si-image-schedule$", httpx.Response(200, json=EXTENSION))


async def test_rax_schedule_lifecycle_in_the_documented_shapes(fake: FakeCloud,
                                                               cloud: CloudClient) -> None:
    with_extension(fake)
    path = rf"/servers/{SERVER_ID}/rax-si-image-schedule$"
    fake.on("GET", path, httpx.Response(404, json=sample(
        f"{SI}/show-scheduled-images-not-found-resp.json")))
    assert await cloud.get_rax_schedule(SERVER_ID) is None
    fake.on("POST", path, httpx.Response(200, json=sample(
        f"{SI}/enable-scheduled-images-weekly-resp.json")))
    weekly = await cloud.set_rax_schedule(SERVER_ID, 5, "saturday")
    assert weekly == RaxSchedule(5, "SATURDAY")
    assert json.loads(fake.hits("POST", path)[0].content) == sample(
        f"{SI}/enable-scheduled-images-weekly-req.json")
    fake.on("GET", path, httpx.Response(200, json=sample(
        f"{SI}/show-scheduled-images-daily-resp.json")))
    daily = await cloud.get_rax_schedule(SERVER_ID)
    assert daily == RaxSchedule(7)
    fake.on("GET", path, httpx.Response(203, json=sample(  # "200 203 Success"
        f"{SI}/show-scheduled-images-weekly-resp.json")))
    assert await cloud.get_rax_schedule(SERVER_ID) == RaxSchedule(5, "SATURDAY")
    fake.on("DELETE", path, httpx.Response(202))  # "202 Delete Successful", no body
    await cloud.delete_rax_schedule(SERVER_ID)
    with pytest.raises(ValueError):
        await cloud.set_rax_schedule(SERVER_ID, 0)
    # The extension is asked about once per client.
    assert len(fake.hits("GET", r"/extensions/rax-si-image-schedule$")) == 1


async def test_rax_disable_when_already_disabled_is_fine(fake: FakeCloud,
                                                         cloud: CloudClient) -> None:
    with_extension(fake)
    fake.on("DELETE", r"/servers/.+/rax-si-image-schedule$", httpx.Response(404, json=sample(
        f"{SI}/show-scheduled-images-not-found-resp.json")))
    await cloud.delete_rax_schedule(SERVER_ID)


@pytest.mark.parametrize("body", [
    {"image_schedule": {"retention": "7"}},  # docs: retention is an Int
    {"image_schedule": {"retention": 7, "day_of_week": "saturday"}},  # docs: SUNDAY..SATURDAY
    {"image_schedule": {"retention": 0}}, {"image_schedule": {}}, {"retention": 7}])
async def test_rax_answers_unlike_the_docs_are_bad_responses(fake: FakeCloud,
                                                             cloud: CloudClient,
                                                             body: object) -> None:
    with_extension(fake)
    fake.on("GET", r"/servers/.+/rax-si-image-schedule$", httpx.Response(200, json=body))
    with pytest.raises(CloudBadResponse):
        await cloud.get_rax_schedule(SERVER_ID)


async def test_rax_enable_is_200_and_echoes_what_was_asked(fake: FakeCloud,
                                                           cloud: CloudClient) -> None:
    with_extension(fake)
    fake.on("POST", r"/servers/.+/rax-si-image-schedule$", httpx.Response(202))  # docs: 200 with a body
    with pytest.raises(CloudError):
        await cloud.set_rax_schedule(SERVER_ID, 7)
    fake.on("POST", r"/servers/.+/rax-si-image-schedule$", httpx.Response(200, json=sample(
        f"{SI}/enable-scheduled-images-daily-resp.json")))
    with pytest.raises(CloudBadResponse):  # asked for 3, the cloud says 7
        await cloud.set_rax_schedule(SERVER_ID, 3)


async def test_rax_schedule_missing_server_is_not_found(fake: FakeCloud,
                                                        cloud: CloudClient) -> None:
    with_extension(fake)
    fake.on("GET", r"/servers/.+/rax-si-image-schedule$", nova_fault(
        404, "Instance could not be found.", "itemNotFound"))
    with pytest.raises(NotFound):
        await cloud.get_rax_schedule(SERVER_ID)


async def test_a_cloud_without_the_extension_is_told_apart(fake: FakeCloud,
                                                           cloud: CloudClient) -> None:
    # "An unavailable extension issues an itemNotFound (404) response."
    fake.on("GET", r"/extensions/rax-si-image-schedule$", nova_fault(
        404, "Extension rax-si-image-schedule could not be found.", "itemNotFound"))
    assert await cloud.has_rax_schedules() is False
    for call in (cloud.get_rax_schedule(SERVER_ID), cloud.set_rax_schedule(SERVER_ID, 7),
                 cloud.delete_rax_schedule(SERVER_ID)):
        with pytest.raises(NoScheduledImages) as caught:
            await call
        assert "--native" in caught.value.user_message()
    assert not fake.hits("GET", r"/servers/.*/rax-si-image-schedule$")


def test_the_package_face_names_the_objects_of_the_modules() -> None:
    """`bot.cloud` re-exports the public names; deep imports keep working beside it."""
    import bot.cloud as face
    from bot.cloud.config import CloudConfig, load_cloud_config
    from bot.cloud.models import Image, Observation, Server
    from bot.cloud.pool import CloudPool

    assert (face.CloudClient, face.CloudPool, face.CloudConfig, face.load_cloud_config,
            face.Image, face.Server, face.Observation, face.RaxSchedule) == (
        CloudClient, CloudPool, CloudConfig, load_cloud_config, Image, Server, Observation,
        RaxSchedule)
    assert all(getattr(face, name) is not None for name in face.__all__)
