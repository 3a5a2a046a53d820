"""A local web view of the emulated workspace: read the channels, type `/image`, press buttons.

Routes (JSON in and out; the page polls `/api/view` every second):
- `GET /` — the page (`index.html`, plain HTML and a little JavaScript, no build step).
- `GET /api/view?user=alice&channel=ops` — `sandbox.web.view.channel_view`.
- `POST /api/command` `{"user", "channel", "text"}` — a signed `/image` slash command.
- `POST /api/click` `{"user", "channel", "ts", "action_id", "value", "block_id"}` — a button
  (`"view": "home"` instead of channel/ts: a button on the user's Home tab).
- `GET /api/home?user=alice` — `sandbox.web.view.home_view`, the Home tab last published.
- `POST /api/home/open` `{"user"}` — open the app's Home tab: Slack's `app_home_opened` event.

The POST routes take only `application/json`, so a page on another origin cannot fire them with a
plain form (it would need a CORS preflight, which this app never grants).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sandbox.net import bind, serving, url_of
from sandbox.slack.model import ApiError
from sandbox.system import System
from sandbox.web.view import channel_view, home_view

PAGE = Path(__file__).with_name("index.html")


class BadRequest(Exception):
    """A request the web view cannot act on; `str()` is the reason."""


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadRequest("send application/json")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise BadRequest(f"`{name}` must be a non-empty string")
    return value


def create_web_app(system: System) -> Starlette:
    """The Starlette app of the web view over a running system."""
    ws = system.workspace

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy":
                                         "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                         "style-src 'self' 'unsafe-inline'; img-src 'none'"})

    def shown(make: Callable[[], dict[str, Any]]) -> Response:
        try:
            return JSONResponse(make(), headers={"Cache-Control": "no-store"})
        except ApiError as exc:
            return JSONResponse({"ok": False, "error": exc.code}, status_code=404)

    async def view(request: Request) -> Response:
        user = request.query_params.get("user", "alice")
        channel = request.query_params.get("channel", "ops")
        return shown(lambda: channel_view(ws, channel, user))

    async def command(request: Request) -> Response:
        try:
            body = await _json_body(request)
            user, channel = _field(body, "user"), _field(body, "channel")
            text = _field(body, "text", optional=True) or ""
            text = text.strip()
            if text.startswith("/image"):
                text = text[len("/image"):].strip()
            assert user is not None and channel is not None
            ws.user(user), ws.channel(channel)
        except BadRequest as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        except ApiError as exc:
            return JSONResponse({"ok": False, "error": exc.code}, status_code=404)
        response = await system.command(user, channel, text)
        return JSONResponse({"ok": response.status_code == 200, "status": response.status_code})

    async def click(request: Request) -> Response:
        try:
            body = await _json_body(request)
            on_home = body.get("view") == "home"
            user, action_id = _field(body, "user"), _field(body, "action_id")
            channel = _field(body, "channel", optional=on_home)
            ts = _field(body, "ts", optional=on_home)
            value = _field(body, "value", optional=True)
            block_id = _field(body, "block_id", optional=True)
            assert user and action_id and (on_home or (channel and ts))
            ws.user(user)
        except BadRequest as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        except ApiError as exc:
            return JSONResponse({"ok": False, "error": exc.code}, status_code=404)
        try:
            if on_home:
                response = await system.deliverer.click_home(user, action_id, value, block_id)
            else:
                assert channel and ts
                response = await system.deliverer.click(user, channel, ts, action_id, value,
                                                        block_id)
        except (LookupError, ApiError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=404)
        return JSONResponse({"ok": response.status_code == 200, "status": response.status_code})

    async def home(request: Request) -> Response:
        return shown(lambda: home_view(ws, request.query_params.get("user", "alice")))

    async def open_home(request: Request) -> Response:
        try:
            body = await _json_body(request)
            user = _field(body, "user")
            assert user is not None
            ws.user(user)
        except BadRequest as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        except ApiError as exc:
            return JSONResponse({"ok": False, "error": exc.code}, status_code=404)
        # What the bot answered to the event (a bot without an app_home_opened listener: 404).
        response = await system.deliverer.open_home(user)
        return JSONResponse({"ok": response.status_code == 200, "status": response.status_code})

    return Starlette(routes=[
        Route("/", page, methods=["GET"]),
        Route("/api/view", view, methods=["GET"]),
        Route("/api/command", command, methods=["POST"]),
        Route("/api/click", click, methods=["POST"]),
        Route("/api/home", home, methods=["GET"]),
        Route("/api/home/open", open_home, methods=["POST"]),
    ])


@contextlib.asynccontextmanager
async def running_web(system: System, *, host: str = "127.0.0.1", port: int = 0,
                      fallback_to_free: bool = False) -> AsyncIterator[str]:
    """Serve the web view on the current loop; yields `http://127.0.0.1:PORT/`. With
    `fallback_to_free`, a busy `port` is replaced by any free one."""
    try:
        sock = bind(host, port)
    except OSError:
        if not fallback_to_free:
            raise
        sock = bind(host, 0)
    async with serving(create_web_app(system), sock, name="web view"):
        yield url_of(sock) + "/"
