"""Loopback sockets for the sandbox's servers (cloud, Slack emulator, web view, bot)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (`port` 0 picks a free one), so the URL is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it each
    # keep-alive request waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """`http://host:port` for a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@asynccontextmanager
async def serving(app: Any, sock: socket.socket, *, name: str,
                  lifespan: Literal["auto", "on", "off"] = "off",
                  log_level: str = "warning", keep_alive: int = 5) -> AsyncIterator[None]:
    """Serve the ASGI `app` on `sock` on the running loop for the duration of the block
    (`keep_alive`: seconds an idle connection is kept open, uvicorn's default 5)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan=lifespan,
                                           access_log=False,
                                           timeout_keep_alive=keep_alive))
    # _serve skips uvicorn's signal capture, which would steal the caller's Ctrl-C.
    run = getattr(server, "_serve", server.serve)
    task = asyncio.create_task(run(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"{name} stopped during startup")
            await asyncio.sleep(0.005)
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()
