"""The connection guard (bot/slack/edge.py `guarded_protocol`) on both of uvicorn's HTTP
protocols, h11 and httptools (uvicorn[standard], what `imagebot run --http` serves with):
headers have a deadline and a size bound, connections a bound, and a request that keeps to them
is answered, twice on one keep-alive connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from bot.slack.edge import guarded_protocol, http_protocol_base

PARSERS = ["h11", "httptools"]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def server(parser: str, *, header_timeout: float = 0.5,
                 max_connections: int = 8) -> AsyncIterator[int]:
    protocol = guarded_protocol(header_timeout, max_connections, parser=parser)
    config = uvicorn.Config(hello, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off", http=protocol)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(1000):  # uvicorn sets `started` once it listens
        if srv.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield srv.servers[0].sockets[0].getsockname()[1]
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closed the connection (EOF, or a reset) within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("parser", PARSERS)
def test_the_protocol_asked_for_is_the_one_guarded(parser: str) -> None:
    protocol = guarded_protocol(1.0, 4, parser=parser)
    assert issubclass(protocol, http_protocol_base(parser))
    assert protocol.__mro__[2].__module__.endswith(f"{parser}_impl")


@pytest.mark.parametrize("parser", PARSERS)
async def test_keep_alive_requests_are_answered(parser: str) -> None:
    async with server(parser) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ok"
        writer.close()


@pytest.mark.parametrize("parser", PARSERS)
async def test_slow_headers_are_cut_off(parser: str) -> None:
    async with server(parser, header_timeout=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert await closed_within(reader, 3)
        # After a complete answer, the next request's headers get the same deadline.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        assert await closed_within(reader, 3)
        writer.close()


@pytest.mark.parametrize("parser", PARSERS)
async def test_endless_headers_are_cut_off(parser: str) -> None:
    async with server(parser, header_timeout=5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(40):  # 40 KB of headers, faster than the deadline
                writer.write(f"X-Filler-{i}: {'a' * 1000}\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.01)
        assert await closed_within(reader, 2)


@pytest.mark.parametrize("parser", PARSERS)
async def test_connections_beyond_the_bound_are_closed_at_once(parser: str) -> None:
    async with server(parser, header_timeout=5, max_connections=3) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_within(reader, 1)
        assert not await closed_within(held[0][0], 0.2)  # those within the bound stay
        for _, writer in held:
            writer.close()
