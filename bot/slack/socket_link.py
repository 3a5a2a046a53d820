"""The Socket Mode link, patient when Slack is unreachable: one log line per attempt, back-off.

slack_sdk's aiohttp `SocketModeClient.connect` logs a full traceback (`logger.exception`) on
every failed attempt and retries every `ping_interval` seconds (10 s under Bolt), reusing a
`wss://` URL that may be stale. `PatientSocketModeClient` keeps the SDK's session handling and
changes only the attempt loop: each attempt asks `apps.connections.open` for a fresh URL, a
failure is one WARNING line naming the attempt and the wait, and waits double up to a cap.
(Source read: slack_sdk/socket_mode/aiohttp/__init__.py `connect`, async_client.py
`connect_to_new_endpoint`, slack_sdk 3.48.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 60.0


def backoff(first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> Iterator[float]:
    """Waits between attempts: `first`, doubling, never above `cap` (pure)."""
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * 2, cap)


def describe(exc: BaseException) -> str:
    """One line for a failed attempt: the exception's type and first line, or Slack's error."""
    data = getattr(getattr(exc, "response", None), "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    if error:
        return f"Slack said {error}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class PatientSocketModeClient(SocketModeClient):
    """`SocketModeClient` whose (re)connect loop backs off and logs one line per attempt."""

    def __init__(self, *args: Any, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sleep = sleep
        self.first_delay, self.max_delay = first_delay, max_delay
        self.attempts = 0  # failed attempts since the last established session

    async def connect(self) -> None:
        """Connect, retrying with back-off until a session is up or the client is closed."""
        delays = backoff(self.first_delay, self.max_delay)
        while not self.closed:
            try:
                await self._attempt()
            except Exception as exc:  # every failure is worth another try; the line says which
                if self.closed:
                    return
                self.attempts += 1
                delay = next(delays)
                log.warning("Slack Socket Mode: cannot connect (%s); attempt %d failed, "
                            "retrying in %.0f s", describe(exc), self.attempts, delay)
                await self.sleep(delay)
                continue
            if self.attempts:
                log.info("Slack Socket Mode: connected after %d failed attempts", self.attempts)
            self.attempts = 0
            return

    async def _attempt(self) -> None:
        """One connection attempt, as the body of the SDK's `connect` loop; raises on failure."""
        old = self.current_session
        self.auto_reconnect_enabled = False  # the SDK's monitor must not reconnect meanwhile
        if old is not None:
            with contextlib.suppress(Exception):  # a broken session may fail to close
                await old.close()
        if self.aiohttp_client_session.closed and not self.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        # A fresh URL per attempt: one that failed once is not tried again.
        self.wss_uri = await self.issue_new_wss_url()
        ssl = self.web_client.ssl if self.web_client.ssl is not None else True
        self.current_session = await self.aiohttp_client_session.ws_connect(
            self.wss_uri, autoping=False, heartbeat=self.ping_interval, proxy=self.proxy,
            ssl=ssl)
        self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        self.stale = False
        self.logger.info(f"A new session ({await self.session_id()}) has been established")
        await self.current_session.ping(f"sdk-ping-pong:{time.time()}".encode())
        if self.current_session_monitor is not None:
            self.current_session_monitor.cancel()
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        if self.message_receiver is not None:
            self.message_receiver.cancel()
        self.message_receiver = asyncio.ensure_future(self.receive_messages())

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Reconnect (the SDK's monitor calls this when the session went stale): our loop
        fetches the URL itself, so this only takes the SDK's lock and delegates."""
        acquired = False
        try:
            try:
                acquired = await asyncio.wait_for(self.connect_operation_lock.acquire(), 5)
            except TimeoutError:
                acquired = False
            if force or (acquired and not await self.is_connected()):
                await self.connect()
        finally:
            if acquired:
                self.connect_operation_lock.release()


class PatientSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler for `app`, on a `PatientSocketModeClient`: the handler's
    `__init__` (slack_bolt/adapter/socket_mode/aiohttp) with that one class changed."""

    def __init__(self, app: AsyncApp, app_token: str, *, ping_interval: float = 10,
                 **client_options: Any) -> None:  # not super().__init__: it builds the stock client
        self.app = app
        self.app_token = app_token
        self.client = PatientSocketModeClient(
            app_token=app_token, logger=app.logger, web_client=link_web_client(app.client),
            ping_interval=ping_interval, **client_options)
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]


def link_web_client(client: AsyncWebClient) -> AsyncWebClient:
    """A Web API client like `client` (same base URL, TLS, proxy) for apps.connections.open,
    without slack_sdk's connection-error retry handler: the link's loop is the one retry (the
    handler would add an INFO line and a second attempt to each of ours)."""
    return AsyncWebClient(base_url=client.base_url, timeout=client.timeout, ssl=client.ssl,
                          proxy=client.proxy, logger=client.logger, retry_handlers=[])
