"""The client's response-reading edge: garbage, wrongly shaped, huge and dripping answers all
become errors of the one tree (CloudBadResponse, a CloudUnavailable), never a bare
ValueError/KeyError, a 300 MB buffer or an engine held for minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.cloud.client import CloudClient
from bot.cloud.rax import RaxSchedule
from bot.errors import CloudBadResponse, CloudUnavailable

from .conftest import IMAGE_ID, SERVER_ID, Clock, FakeCloud, Sleeps, config, server_doc

HTML = httpx.Response(200, text="<html>Bad gateway, sort of</html>",
                      headers={"content-type": "text/html"})


@pytest.mark.parametrize("call", ["get_server", "list_servers", "find_server", "get_image",
                                  "list_images", "observe", "get_rax_schedule"])
async def test_a_200_that_is_not_json_is_a_bad_response(fake: FakeCloud, cloud: CloudClient,
                                                         call: str) -> None:
    fake.on("GET", r"/servers", HTML)
    fake.on("GET", r"/images", HTML)
    fake.on("GET", r"/extensions/", httpx.Response(200, json={"extension": {
        "alias": "rax-si-image-schedule", "name": "ScheduledImages"}}))
    args: dict[str, tuple[object, ...]] = {
        "get_server": (SERVER_ID,), "list_servers": (), "find_server": ("web-1",),
        "get_image": (IMAGE_ID,), "list_images": (), "observe": ({SERVER_ID}, {IMAGE_ID}, None),
        "get_rax_schedule": (SERVER_ID,)}
    with pytest.raises(CloudBadResponse) as caught:
        await getattr(cloud, call)(*args[call])
    assert isinstance(caught.value, CloudUnavailable)  # retryable: the engine tries again
    assert "unexpected answer to" in str(caught.value)


@pytest.mark.parametrize("body", [
    {}, {"server": None}, {"server": {"name": "no id"}}, {"server": "text"}, [], "x", 7])
async def test_a_wrongly_shaped_server_is_a_bad_response(fake: FakeCloud, cloud: CloudClient,
                                                         body: object) -> None:
    fake.on("GET", r"/servers/", httpx.Response(200, json=body))
    with pytest.raises(CloudBadResponse):
        await cloud.get_server(SERVER_ID)


@pytest.mark.parametrize("body", [
    {"servers": "oops"}, {"servers": [1, 2]}, {"servers": [{"id": SERVER_ID}],
                                              "servers_links": "next"}])
async def test_a_wrongly_shaped_listing_is_a_bad_response(fake: FakeCloud, cloud: CloudClient,
                                                          body: object) -> None:
    fake.on("GET", r"/servers/detail", httpx.Response(200, json=body))
    with pytest.raises(CloudBadResponse):
        await cloud.find_servers({"web-1"})


async def test_a_garbled_token_answer_is_a_bad_response(fake: FakeCloud, cloud: CloudClient,
                                                        ) -> None:
    def garbled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"token": {"expires_at": "soon", "catalog": "?"}},
                              headers={"X-Subject-Token": "t"})

    fake._token = lambda: garbled(httpx.Request("POST", "http://x"))  # type: ignore[method-assign]
    with pytest.raises(CloudBadResponse):
        await cloud.get_server(SERVER_ID)


async def test_our_own_argument_errors_pass_unchanged(cloud: CloudClient) -> None:
    with pytest.raises(ValueError, match="retention"):
        await cloud.set_rax_schedule(SERVER_ID, 0)
    with pytest.raises(ValueError):
        RaxSchedule(0)


async def test_a_huge_answer_is_cut_off_not_buffered(fake: FakeCloud, clock: Clock,
                                                     sleeps: Sleeps) -> None:
    sent = [0]

    async def flood() -> AsyncIterator[bytes]:
        yield b'{"servers": ['
        chunk = b'{"id": "x", "name": "' + b"a" * 65_000 + b'"},'
        while True:  # 300 MB and more if we kept reading
            sent[0] += len(chunk)
            yield chunk

    fake.on("GET", r"/servers/detail", lambda request: httpx.Response(200, content=flood()))
    client = CloudClient(config(), transport=httpx.MockTransport(fake.handler), clock=clock,
                         sleep=sleeps, max_body=1024 * 1024)
    async with client:
        with pytest.raises(CloudBadResponse, match="larger than"):
            await client.list_servers()
    assert sent[0] < 2 * 1024 * 1024  # stopped right past the cap
    assert len(fake.hits("GET", r"/servers/detail")) == 1  # and not fetched again


async def test_a_declared_huge_answer_is_not_read_at_all(fake: FakeCloud, clock: Clock,
                                                         sleeps: Sleeps) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    fake.on("GET", r"/images", lambda request: httpx.Response(
        200, content=never(), headers={"content-length": str(300 * 1024 * 1024)}))
    client = CloudClient(config(), transport=httpx.MockTransport(fake.handler), clock=clock,
                         sleep=sleeps)
    async with client:
        with pytest.raises(CloudBadResponse, match="larger than 8 MB"):
            await client.list_images()


async def test_a_dripping_answer_meets_a_total_deadline(fake: FakeCloud, clock: Clock,
                                                        sleeps: Sleeps) -> None:
    never = asyncio.Event()

    async def drip() -> AsyncIterator[bytes]:
        yield b"{"
        await never.wait()  # the next byte never comes (each read would be within httpx's
        yield b"}"          # per-read timeout if it did, one every 2 s)

    fake.on("GET", r"/servers/detail", lambda request: httpx.Response(200, content=drip()))
    client = CloudClient(config(), transport=httpx.MockTransport(fake.handler), clock=clock,
                         sleep=sleeps, timeout=0.2)
    async with client:
        with pytest.raises(CloudBadResponse, match="no complete answer"):
            await client.list_servers()
        fake.on("POST", r"/action", lambda request: httpx.Response(202, content=drip()))
        with pytest.raises(CloudUnavailable, match="may or may not"):
            await client.create_image(SERVER_ID, "snap", {})
    assert len(fake.hits("GET", r"/servers/detail")) == 1


async def test_a_gzipped_answer_still_reads(fake: FakeCloud, cloud: CloudClient) -> None:
    import gzip
    import json

    body = gzip.compress(json.dumps({"server": server_doc()}).encode())
    fake.on("GET", r"/servers/", httpx.Response(200, content=body,
                                                headers={"content-encoding": "gzip"}))
    assert (await cloud.get_server(SERVER_ID)).name == "web-1"
