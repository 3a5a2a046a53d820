"""Socket Mode for the Slack emulator: `apps.connections.open` hands out a `ws://` URL; the
emulator sends `hello`, then envelopes (slash commands, interactions, events), and waits for the app's
ack (`{"envelope_id": …, "payload": …}`) as Slack does.

Only the app-level token (`xapp-…`) may open a connection. An envelope that is not acked within
3 s is redelivered once with `retry_attempt`/`retry_reason`, like Slack's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from sandbox.slack.model import APP_ID

ACK_TIMEOUT = 3.0


class NotConnected(RuntimeError):
    """No app is connected over Socket Mode."""


@dataclass
class SocketHub:
    """Open Socket Mode connections and the acks they owe."""

    app_token: str = "xapp-sandbox"
    connections: dict[str, WebSocket] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def open_url(self, base_url: str) -> str:
        """A new single-use connection URL (what `apps.connections.open` returns)."""
        ticket = f"{next(self._seq)}-{uuid.uuid4().hex[:12]}"
        self.issued.add(ticket)
        return base_url.replace("http://", "ws://", 1) + f"/socket/{ticket}"

    async def serve(self, websocket: WebSocket, ticket: str) -> None:
        """One app connection: hello, then acks until it closes."""
        if ticket not in self.issued:
            await websocket.close(code=4001)
            return
        self.issued.discard(ticket)
        await websocket.accept()
        self.connections[ticket] = websocket
        self.connected.set()
        await websocket.send_text(json.dumps({
            "type": "hello", "num_connections": len(self.connections),
            "debug_info": {"host": "sandbox", "approximate_connection_time": 3600},
            "connection_info": {"app_id": APP_ID}}))
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                future = self.pending.pop(str(message.get("envelope_id", "")), None)
                if future is not None and not future.done():
                    future.set_result(message.get("payload") or {})
        except (WebSocketDisconnect, ValueError):
            pass
        finally:
            self.connections.pop(ticket, None)
            if not self.connections:
                self.connected.clear()

    async def deliver(self, kind: str, payload: dict[str, Any], *,
                      ack_within: float = ACK_TIMEOUT) -> dict[str, Any]:
        """Send an envelope (`slash_commands`, `interactive`, `events_api`); returns the ack's
        payload.
        Not acked in time: redelivered once, as Slack retries; TimeoutError after that."""
        if not self.connections:
            raise NotConnected("no app is connected over Socket Mode")
        envelope_id = str(uuid.uuid4())
        # Events take a bare ack; commands and interactions may answer in it.
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": kind,
                                    "payload": payload,
                                    "accepts_response_payload": kind != "events_api"}
        for attempt in range(2):
            if attempt:
                envelope |= {"retry_attempt": attempt, "retry_reason": "timeout"}
            future: asyncio.Future[dict[str, Any]] = \
                asyncio.get_running_loop().create_future()
            self.pending[envelope_id] = future
            socket = next(iter(self.connections.values()))
            await socket.send_text(json.dumps(envelope))
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(future, ack_within)
        raise TimeoutError(f"envelope {envelope_id} was not acknowledged")
