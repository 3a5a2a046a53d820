"""ASGI app of the Slack emulator: Web API, response_urls and a control plane.

- `/api/<method>`: form-encoded, JSON or query-string parameters, `Authorization: Bearer` (or a
  `token` parameter). Answers Slack-shaped JSON. Faults apply in this order: outage (503),
  rate-limit storm (429), scripted faults, the method's bot scope (`missing_scope`), per-method
  rate limits (429 + `Retry-After`), then the method itself.
- `/response/<id>`: JSON posts to a response_url (5 uses, 30 minutes).
- `/_emu/state`, `/_emu/messages?channel=`, `POST /_emu/outage {"seconds": N}`,
  `POST /_emu/ratelimit-storm {"calls": N, "retry_after": S}`,
  `POST /_emu/ratelimits {"enabled": bool, "scale": float, "workspace_posts_per_minute": N
  | null, "workspace_burst": B}` (the last two: chat.postMessage's workspace-wide cap, off
  by default since Slack does not publish it),
  `POST /_emu/faults {"method", "error", "status", "count", "retry_after", "body": "json"|"html"}`
  (scripted ok:false or non-JSON answers to the next calls of one method, any method including
  `auth.test` and `apps.connections.open`, or of every method without `method`; `"method":
  "response_url"` answers the next response_url posts instead; an unknown method name is
  refused), `DELETE /_emu/faults`,
  `POST /_emu/slow-responses {"seconds": S, "count": N}` (the next N response_url posts are
  shown and answered S seconds late).

Limits follow docs.slack.dev (text 40 000 / chat.update 4 000, 50 blocks, section 3 000).
`views.publish` (the Home tab) and `conversations.open` (DMs) are checked in
`sandbox.slack.views`; each method's bot scope (`missing_scope`) in `sandbox.slack.scopes`.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from sandbox.slack.limits import Limit, retry_after_header
from sandbox.slack.model import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    ApiError,
    ApiFault,
    Channel,
    SlackWorkspace,
)
from sandbox.slack.scopes import needed_scope
from sandbox.slack.socket import SocketHub
from sandbox.slack.views import open_conversation, publish_home

Params = dict[str, Any]
Method = Callable[[SlackWorkspace, Params], dict[str, Any]]

SOCKET_OPEN = "apps.connections.open"  # the app-level token's one method (Socket Mode)
# Faults scripted for this name answer response_url posts (only those scripted by name: a
# fault for every method is for the Web API).
RESPONSE_URL = "response_url"

# Parameters Slack accepts as JSON-encoded strings in form posts.
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")


def _require(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ApiError("invalid_arguments", detail=f"missing {name}")
    return str(value)


def _auth_test(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    return {"url": f"https://{TEAM_DOMAIN}.slack.com/", "team": TEAM_NAME, "user": BOT_NAME,
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
            "is_enterprise_install": False}


def _bots_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    # docs.slack.dev/reference/methods/bots.info: `bot` is a bot id; unknown -> bot_not_found.
    # Slack's auth.test documents no app_id, so the bot learns its app from here.
    if params.get("bot") != BOT_ID:
        raise ApiError("bot_not_found")
    return {"bot": {"id": BOT_ID, "deleted": False, "name": BOT_NAME, "updated": 1700000000,
                    "app_id": APP_ID, "user_id": BOT_USER_ID, "icons": {}}}


def _post_message(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    if not params.get("channel"):
        raise ApiError("channel_not_found")
    msg = ws.post_message(str(params["channel"]), text=params.get("text"),
                          blocks=params.get("blocks"), thread_ts=params.get("thread_ts") or None,
                          reply_broadcast=params.get("reply_broadcast", False),
                          metadata=params.get("metadata"))
    return {"channel": msg.channel, "ts": msg.ts, "message": msg.to_api()}


def _flag(params: Params, name: str) -> bool:
    return str(params.get(name, "")).lower() in ("1", "true")


def _conversations_history(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    try:
        oldest = float(params.get("oldest") or 0)
        latest = float(params["latest"]) if params.get("latest") else None
        limit = int(params.get("limit") or 100)
    except (TypeError, ValueError):
        raise ApiError("invalid_arguments") from None
    messages = ws.history(_require(params, "channel"), oldest=oldest, latest=latest,
                          limit=limit, with_metadata=_flag(params, "include_all_metadata"))
    return {"messages": messages, "has_more": False,
            "response_metadata": {"next_cursor": ""}}


def _conversations_replies(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    try:
        limit = int(params.get("limit") or 1000)
    except (TypeError, ValueError):
        raise ApiError("invalid_arguments") from None
    messages = ws.replies(_require(params, "channel"), _require(params, "ts"), limit=limit,
                          with_metadata=_flag(params, "include_all_metadata"))
    return {"messages": messages, "has_more": False,
            "response_metadata": {"next_cursor": ""}}


def _update(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    if not params.get("channel"):
        raise ApiError("channel_not_found")
    if not params.get("ts"):
        raise ApiError("message_not_found")
    msg = ws.update_message(str(params["channel"]), str(params["ts"]), text=params.get("text"),
                            blocks=params.get("blocks"))
    return {"channel": msg.channel, "ts": msg.ts, "text": msg.text, "message": msg.to_api()}


def _post_ephemeral(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    if not params.get("channel"):
        raise ApiError("channel_not_found")
    if not params.get("user"):
        raise ApiError("user_not_found")
    eph = ws.post_ephemeral(str(params["channel"]), str(params["user"]),
                            text=params.get("text"), blocks=params.get("blocks"),
                            thread_ts=params.get("thread_ts") or None)
    return {"message_ts": eph.ts}


def _views_open(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    view = ws.open_view(_require(params, "trigger_id"), params.get("view"))
    return {"view": {k: v for k, v in view.items() if k not in ("trigger_id", "user")}}


def _views_publish(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    return {"view": publish_home(ws, params.get("user_id"), params.get("view"),
                                 params.get("hash"))}


def _conversations_open(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    channel, was_open = open_conversation(ws, params.get("users"), params.get("channel"))
    if _flag(params, "return_im"):
        body: dict[str, Any] = {"channel": channel.to_api()}
    else:
        body = {"channel": {"id": channel.id}}
    if was_open:
        body |= {"no_op": True, "already_open": True}
    return body


def _conversations_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    channel = ws.channel(_require(params, "channel"))
    # A private channel the bot is not in is invisible to it.
    if (channel.is_private or channel.is_im) and BOT_USER_ID not in channel.members:
        raise ApiError("channel_not_found")
    return {"channel": channel.to_api()}


def _conversations_members(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """Paginated as Slack does (docs.slack.dev/reference/methods/conversations.members): `limit`
    (default 100, at most 1000, else invalid_limit), `cursor` = a previous page's
    `response_metadata.next_cursor` (opaque; anything else is invalid_cursor), "" at the end."""
    channel = ws.channel(_require(params, "channel"))
    if (channel.is_private or channel.is_im) and BOT_USER_ID not in channel.members:
        raise ApiError("channel_not_found")
    raw_limit = params.get("limit", 100)
    try:
        limit = int(raw_limit)
    except (TypeError, ValueError):
        raise ApiError("invalid_limit") from None
    if not 1 <= limit <= 1000:
        raise ApiError("invalid_limit")
    members = sorted(channel.members)
    start = 0
    cursor = params.get("cursor")
    if cursor:
        try:
            after = base64.b64decode(str(cursor), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise ApiError("invalid_cursor") from None
        if not after.startswith("user:"):
            raise ApiError("invalid_cursor")
        start = bisect.bisect_left(members, after[5:])
    page = members[start:start + limit]
    rest = members[start + limit:]
    next_cursor = base64.b64encode(f"user:{rest[0]}".encode()).decode() if rest else ""
    return {"members": page, "response_metadata": {"next_cursor": next_cursor}}


def _users_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    uid = _require(params, "user")
    if uid not in ws.users:
        raise ApiError("user_not_found")
    return {"user": ws.users[uid].to_api()}


def _users_list(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    return {"members": [u.to_api() for u in ws.users.values()],
            "response_metadata": {"next_cursor": ""}}


def _usergroups_list(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    with_users = str(params.get("include_users", "")).lower() in ("1", "true")
    groups = []
    for g in ws.usergroups.values():
        item: dict[str, Any] = {"id": g.id, "team_id": TEAM_ID, "handle": g.handle,
                                "name": g.name, "user_count": len(g.users)}
        if with_users:
            item["users"] = list(g.users)
        groups.append(item)
    return {"usergroups": groups}


def _usergroups_users_list(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    gid = _require(params, "usergroup")
    group = ws.usergroups.get(gid)
    if group is None:
        raise ApiError("no_such_subteam")
    return {"users": list(group.users)}


METHODS: dict[str, Method] = {
    "auth.test": _auth_test,
    "bots.info": _bots_info,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "views.open": _views_open,
    "views.publish": _views_publish,
    "conversations.open": _conversations_open,
    "conversations.info": _conversations_info,
    "conversations.members": _conversations_members,
    "conversations.history": _conversations_history,
    "conversations.replies": _conversations_replies,
    "users.info": _users_info,
    "users.list": _users_list,
    "usergroups.list": _usergroups_list,
    "usergroups.users.list": _usergroups_users_list,
}


async def _read_params(request: Request) -> Params:
    """Query string, then form or JSON body; JSON-encoded block fields decoded."""
    params: Params = dict(request.query_params)
    body = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body:
        if ctype == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError:
                raise ApiError("invalid_json") from None
            if not isinstance(decoded, dict):
                raise ApiError("invalid_json")
            params.update(decoded)
        else:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    for name in _JSON_FIELDS:
        if isinstance(params.get(name), str):
            try:
                params[name] = json.loads(params[name]) if params[name] else None
            except ValueError:
                raise ApiError("invalid_blocks" if name == "blocks" else "invalid_arguments",
                               detail=f"{name} is not JSON") from None
    return params


def _channel_key(ws: SlackWorkspace, ref: Any) -> str | None:
    """The channel id a call counts against (names and ids share one bucket)."""
    if not ref:
        return None
    try:
        return ws.channel(str(ref)).id
    except ApiError:
        return str(ref)


def _known_channel(ws: SlackWorkspace, ref: Any) -> Channel | None:
    """The channel a call names, if it exists (a user id opens no DM here)."""
    if not ref or str(ref) in ws.users:
        return None
    try:
        return ws.channel(str(ref))
    except ApiError:
        return None


def _token(request: Request, params: Params) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    token = params.pop("token", None)
    return str(token) if token else None


def _ok(data: Mapping[str, Any], status: int = 200,
        headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"ok": True, **data}, status_code=status, headers=dict(headers or {}))


def _error(code: str, status: int = 200, headers: Mapping[str, str] | None = None,
           detail: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error": code}
    if detail:
        body["response_metadata"] = {"messages": [detail]}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def create_app(workspace: SlackWorkspace, *, bot_token: str = "xoxb-sandbox",
               app_token: str = "xapp-sandbox") -> Starlette:
    """The emulator for `workspace`; only `bot_token` authenticates Web API calls, and only
    `app_token` opens Socket Mode connections (`workspace.socket_hub` delivers over them)."""
    ws = workspace
    hub = SocketHub(app_token=app_token)
    ws.socket_hub = hub

    def _scripted(method: str, logged: Params) -> Response | None:
        """A scripted fault's answer for this call (any method, auth.test and Socket Mode's
        apps.connections.open included, and response_url posts), or None."""
        fault = ws.take_fault(method, exact=method == RESPONSE_URL)
        if fault is None:
            return None
        ws.record(method, logged, fault.status, fault.error)
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
        if fault.body == "html":  # a proxy's error page: not JSON at all
            return Response("<html><body>upstream error</body></html>",
                            status_code=fault.status, media_type="text/html", headers=extra)
        return _error(fault.error, fault.status, extra)

    async def api(request: Request) -> Response:
        method = request.path_params["method"]
        try:
            params = await _read_params(request)
        except ApiError as exc:
            ws.record(method, {}, 200, exc.code)
            return _error(exc.code, detail=exc.detail)
        token = _token(request, params)
        logged = {k: v for k, v in params.items() if k != "token"}
        now = ws.clock()
        if now < ws.outage_until:
            ws.record(method, logged, 503, "service_unavailable")
            return _error("service_unavailable", 503,
                          {"Retry-After": retry_after_header(ws.outage_until - now)})
        if ws.storm_remaining > 0:
            ws.storm_remaining -= 1
            ws.record(method, logged, 429, "ratelimited")
            return _error("ratelimited", 429, {"Retry-After": str(ws.storm_retry_after)})
        if token is None:
            ws.record(method, logged, 200, "not_authed")
            return _error("not_authed")
        if method == SOCKET_OPEN:
            if token != app_token:  # Socket Mode takes the app-level token, not the bot's
                ws.record(method, logged, 200, "invalid_auth")
                return _error("invalid_auth")
            scripted = _scripted(method, logged)
            if scripted is not None:
                return scripted
            ws.record(method, logged, 200)
            return _ok({"url": hub.open_url(str(request.base_url).rstrip("/"))})
        if token != bot_token:
            ws.record(method, logged, 200, "invalid_auth")
            return _error("invalid_auth")
        handler = METHODS.get(method)
        if handler is None:
            ws.record(method, logged, 200, "unknown_method")
            return _error("unknown_method")
        scripted = _scripted(method, logged)
        if scripted is not None:
            return scripted
        needed = needed_scope(method, _known_channel(ws, params.get("channel")))
        if needed and needed not in ws.bot_scopes:
            ws.record(method, logged, 200, "missing_scope")
            return JSONResponse({"ok": False, "error": "missing_scope", "needed": needed,
                                 "provided": ",".join(sorted(ws.bot_scopes))})
        wait = ws.limits.take(method, _channel_key(ws, params.get("channel")), now)
        if wait is not None:
            ws.record(method, logged, 429, "ratelimited")
            return _error("ratelimited", 429, {"Retry-After": retry_after_header(wait)})
        try:
            data = handler(ws, params)
        except ApiError as exc:
            ws.record(method, logged, exc.status, exc.code)
            return _error(exc.code, exc.status, detail=exc.detail)
        ws.record(method, logged, 200)
        return _ok(data)

    async def response_url(request: Request) -> Response:
        rid = request.path_params["rid"]
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error("invalid_payload", 400)
        delay = ws.take_response_delay()
        if delay:
            await asyncio.sleep(delay)
        # Slack answers a rate-limited post to its HTTP APIs, incoming webhooks included, with
        # HTTP 429 and Retry-After (slackhq/slack-api-docs page_rate_limits.md); nothing shown,
        # no use of the URL spent.
        scripted = _scripted(RESPONSE_URL, {"url": rid})
        if scripted is not None:
            return scripted
        try:
            ws.respond(rid, payload)
        except ApiError as exc:
            return _error(exc.code, exc.status, detail=exc.detail)
        return _ok({})

    async def emu_state(request: Request) -> Response:
        return JSONResponse(ws.state())

    async def emu_messages(request: Request) -> Response:
        ref = request.query_params.get("channel", "")
        try:
            channel = ws.channel(ref)
        except ApiError as exc:
            return _error(exc.code, 404)
        messages = []
        for msg in ws.all_messages(channel.id):
            item = msg.to_api()
            item["edits"] = len(msg.edits)
            item["via"] = msg.via
            messages.append(item)
        ephemerals = [{**e.to_api(), "for": e.user, "via": e.via}
                      for e in ws.ephemeral_messages if e.channel == channel.id and not e.deleted]
        return _ok({"channel": channel.id, "messages": messages, "ephemerals": ephemerals})

    async def _json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    async def _control(request: Request,
                       apply: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        """A control call: `apply` its JSON body; a bad value is a 400 invalid_arguments."""
        try:
            return _ok(apply(await _json_body(request)))
        except (ValueError, TypeError) as exc:
            return _error("invalid_arguments", 400, detail=str(exc))

    def _outage(body: dict[str, Any]) -> dict[str, Any]:
        return {"until": ws.start_outage(float(body.get("seconds", 60)))}

    def _storm(body: dict[str, Any]) -> dict[str, Any]:
        ws.start_storm(int(body.get("calls", 1)), int(body.get("retry_after", 1)))
        return {"calls": ws.storm_remaining, "retry_after": ws.storm_retry_after}

    async def emu_outage(request: Request) -> Response:
        return await _control(request, _outage)

    async def emu_storm(request: Request) -> Response:
        return await _control(request, _storm)

    def _ratelimits(body: dict[str, Any]) -> dict[str, Any]:
        if "enabled" in body:
            ws.limits.enabled = bool(body["enabled"])
        if "scale" in body:
            scale = float(body["scale"])
            if scale <= 0:
                raise ValueError("scale must be positive")
            ws.limits.scale = scale
        if "workspace_posts_per_minute" in body:  # chat.postMessage across channels
            per_minute = body["workspace_posts_per_minute"]
            burst = float(body.get("workspace_burst", 3))
            if per_minute is not None and (float(per_minute) <= 0 or burst < 1):
                # (a burst under one token would refuse every post for ever)
                raise ValueError("workspace_posts_per_minute must be positive (or null) "
                                 "and workspace_burst at least 1")
            ws.limits.workspace_posts = None if per_minute is None else Limit(
                rate=float(per_minute) / 60, burst=burst)
        if body.get("reset"):
            ws.limits.reset()
        cap = ws.limits.workspace_posts
        return {"enabled": ws.limits.enabled, "scale": ws.limits.scale,
                "workspace_posts_per_minute": cap.rate * 60 if cap else None}

    async def emu_ratelimits(request: Request) -> Response:
        return await _control(request, _ratelimits)

    def _fault(body: dict[str, Any]) -> dict[str, Any]:
        method = body.get("method")
        if method and method not in METHODS and method not in (SOCKET_OPEN, RESPONSE_URL):
            # A typo would script nothing and the test would pass for the wrong reason.
            raise ValueError(f"unknown method {method!r}")
        after = body.get("retry_after")
        ws.add_fault(ApiFault(method=str(method) if method else None,
                              error=str(body.get("error", "internal_error")),
                              status=int(body.get("status", 200)),
                              remaining=int(body.get("count", 1)),
                              retry_after=int(after) if after is not None else None,
                              body=str(body.get("body", "json"))))
        return {"scripted": sum(f.remaining for f in ws.api_faults)}

    async def emu_faults(request: Request) -> Response:
        if request.method == "DELETE":
            ws.api_faults.clear()
            return _ok({})
        return await _control(request, _fault)

    def _slow_responses(body: dict[str, Any]) -> dict[str, Any]:
        ws.slow_responses(float(body.get("seconds", 1.0)), int(body.get("count", 1)))
        return {"slow_responses": ws.slow_responses_left}

    async def emu_slow_responses(request: Request) -> Response:
        return await _control(request, _slow_responses)

    async def socket_endpoint(websocket: WebSocket) -> None:
        await hub.serve(websocket, websocket.path_params["ticket"])

    routes = [
        Route("/api/{method}", api, methods=["GET", "POST"]),
        Route("/response/{rid:path}", response_url, methods=["POST"]),
        Route("/_emu/state", emu_state, methods=["GET"]),
        Route("/_emu/messages", emu_messages, methods=["GET"]),
        Route("/_emu/outage", emu_outage, methods=["POST"]),
        Route("/_emu/ratelimit-storm", emu_storm, methods=["POST"]),
        Route("/_emu/ratelimits", emu_ratelimits, methods=["POST"]),
        Route("/_emu/faults", emu_faults, methods=["POST", "DELETE"]),
        Route("/_emu/slow-responses", emu_slow_responses, methods=["POST"]),
        WebSocketRoute("/socket/{ticket}", socket_endpoint),
    ]
    return Starlette(routes=routes)
