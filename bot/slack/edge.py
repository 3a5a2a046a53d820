"""The HTTP edge: what a request from the internet must get past before Bolt sees it.

- `EdgeGuard` (ASGI middleware): on Slack's request URL, malformed or missing signature headers
  are a 401 before the body is read; bodies are capped (413 without reading the rest: by
  Content-Length, and while streaming for chunked bodies); the whole body must arrive within a
  deadline (408); the signature is checked with slack_sdk's verifier before Bolt parses anything,
  so nothing from an unverified request (its `response_url` above all) is ever used or logged.
- `guarded_protocol` (a uvicorn protocol, httptools' or h11's): a connection must finish its
  request headers within the same deadline and within 16 KB, and connections beyond a bound are
  closed at once, so slow sockets cannot hold descriptors for ever. uvicorn has neither (its
  keep-alive timeout covers idle connections only). A reverse proxy in front remains the real
  defence (README).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from slack_sdk.signature import SignatureVerifier
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Slack's payloads are small (a block_actions payload with a 50-block message is tens of KB).
MAX_BODY = 256 * 1024
RECEIVE_TIMEOUT = 10.0
MAX_CONNECTIONS = 256
MAX_HEADER_BYTES = 16 * 1024  # a request line and headers; Slack's are well under 2 KB
# ASGI scope key: this request's Slack signature and timestamp were checked here (the app's
# request handler tells Bolt, which then does not check them a second time).
EDGE_CHECKED = "imagebot.signature_checked"

# Slack's headers: a Unix time in decimal and `v0=` + hex HMAC-SHA256
# (https://docs.slack.dev/authentication/verifying-requests-from-slack/).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"ok": False, "error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


class EdgeGuard:
    """ASGI middleware in front of the Starlette app (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, signing_secret: str | None,
                 slack_path: str = "/slack/events", max_body: int = MAX_BODY,
                 receive_timeout: float = RECEIVE_TIMEOUT,
                 serving: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self.app = app
        # Around each admitted request's answer (wiring: `AcksFirst.serving`, so background
        # work waits while acks are in flight). Only after the signature check: a slow or
        # forged body must not hold the background back.
        self.serving = serving
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.slack_path = slack_path
        self.max_body = max_body
        self.receive_timeout = receive_timeout
        self.refused: dict[int, int] = {}  # status -> count, for tests and the metrics port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._admit(scope, receive)
        except _Refused as refused:
            self.refused[refused.status] = self.refused.get(refused.status, 0) + 1
            # One short line; never the body, never a header value.
            log.info("refused a request to %s: %d %s", scope.get("path", "")[:100],
                     refused.status, refused.error)
            await _answer(send, refused.status, refused.error)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if self.serving is None:
            await self.app(scope, replay, send)
            return
        with self.serving():
            await self.app(scope, replay, send)

    async def _admit(self, scope: Scope, receive: Receive) -> bytes:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        slack = scope.get("path") == self.slack_path and self.verifier is not None
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if slack and not (_TIMESTAMP.fullmatch(timestamp) and _SIGNATURE.fullmatch(signature)):
            raise _Refused(401, "invalid_signature_headers")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise _Refused(400, "invalid_content_length")
            if int(length) > self.max_body:
                raise _Refused(413, "body_too_large")
        try:
            async with asyncio.timeout(self.receive_timeout):
                body = await self._read(receive)
        except TimeoutError:
            raise _Refused(408, "request_timeout") from None
        if slack:
            assert self.verifier is not None
            try:
                valid = self.verifier.is_valid(body, timestamp, signature)
            except (ValueError, UnicodeDecodeError):
                valid = False
            if not valid:
                raise _Refused(401, "invalid_signature")
            scope[EDGE_CHECKED] = True
        return body

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "client_disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _Refused(413, "body_too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Guard:
    """A deadline for request headers, a bound on their size and on connections, for a uvicorn
    HTTP protocol: h11's or httptools'. Both keep `connections` (the server's), `loop`,
    `transport` and `cycle` (the request in progress, None before the first) and call
    `on_response_complete`; this is mixed in before either (`guarded_protocol`).

    Configured through class attributes (uvicorn builds one protocol per connection from the
    class it is given)."""

    header_timeout: float = RECEIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    max_header_bytes: int = MAX_HEADER_BYTES
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting_for_headers()
        super().data_received(data)  # type: ignore[misc]
        # Bytes that have not completed a request's headers yet are counted; h11 has its own
        # bound (h11_max_incomplete_event_size), httptools keeps every header it is sent.
        if waiting and self._waiting_for_headers():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self.transport.close()
        else:
            self._header_bytes = 0

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        # A request in progress (headers complete) is the app's to time out (EdgeGuard).
        if self._waiting_for_headers():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._header_bytes = 0
        if not self.transport.is_closing():
            self._arm()  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_header_timer", None) is not None:
            assert self._header_timer is not None
            self._header_timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


def http_protocol_base(parser: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol for `parser`: 'httptools' (the C parser of uvicorn[standard],
    several times less CPU per request), 'h11' (pure Python), or 'auto': httptools when it is
    installed, else h11, as uvicorn's own "auto" chooses."""
    if parser in ("auto", "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:
            if parser == "httptools":
                raise
        else:
            return HttpToolsProtocol
    return H11Protocol


def guarded_protocol(header_timeout: float, max_connections: int, *,
                     parser: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's protocol for `parser` (`http_protocol_base`) with the guard's bounds, for
    `uvicorn.Config(http=...)`."""
    base = http_protocol_base(parser)
    return type(f"Guarded{base.__name__}", (_Guard, base),
                {"header_timeout": header_timeout, "max_connections": max_connections})
