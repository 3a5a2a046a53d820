"""The bot's Web API client keeps its connections: one aiohttp session for every call
(`bot.slack.web.web_session`). slack_sdk given no session opens and closes one per call
(slack_sdk/web/async_internal_utils.py `_request_with_session`), which against Slack is a new
TCP and TLS handshake before every post.

The server here is uvicorn on a real socket, answering with the client's port: the same port
means the same TCP connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.slack.web import SlackWeb, make_web_client, web_session
from sandbox.net import bind, serving, url_of
from sandbox.system import running_system

KEEP_ALIVE = 1  # the server closes a connection idle this long (uvicorn's default is 5 s)


async def answer(request: Request) -> JSONResponse:
    assert request.client is not None
    port = request.client.port
    ports: list[int] = request.app.state.ports
    ports.append(port)
    return JSONResponse({"ok": True, "channel": "C1", "ts": f"{len(ports)}.000"})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[int]]]:
    app = Starlette(routes=[Route("/api/{method}", answer, methods=["POST"]),
                            Route("/hook", answer, methods=["POST"])])
    app.state.ports = []
    sock = bind("127.0.0.1", 0)
    async with serving(app, sock, name="web", keep_alive=KEEP_ALIVE):
        yield url_of(sock), app.state.ports


async def test_successive_posts_and_a_response_url_answer_share_one_connection(
        server: tuple[str, list[int]]) -> None:
    url, ports = server
    session = web_session()
    web = SlackWeb(make_web_client("xoxb-test", f"{url}/api/", session=session))
    try:
        for i in range(3):
            await web.post("C1", f"message {i}")
        await web.update_message("C1", "1.000", "edited")
        await web.respond(f"{url}/hook", "answer")
    finally:
        await session.close()
    assert len(ports) == 5
    assert len(set(ports)) == 1, ports


async def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(
        server: tuple[str, list[int]]) -> None:
    url, ports = server
    session = web_session()
    web = SlackWeb(make_web_client("xoxb-test", f"{url}/api/", session=session,
                                   rate_limit_retries=0))
    try:
        await web.post("C1", "before")
        await asyncio.sleep(KEEP_ALIVE * 2.5)  # the server has closed the idle connection
        await web.post("C1", "after")
    finally:
        await session.close()
    assert len(ports) == 2
    assert ports[0] != ports[1]


async def test_the_runtime_posts_through_one_session_and_closes_it_on_stop() -> None:
    async with running_system(speed=100) as system:
        session = system.runtime.web.client.session
        assert session is not None and not session.closed
    assert session.closed
