"""ASGI app of the simulated cloud: Keystone, Nova and Glance on one port, devstack-style.

Layout: `/identity` (v3 and Rackspace v2.0), `/compute` (`/compute/v2.1[/{project_id}]/...`),
`/image` (`/image/v2/...`), and the control plane under `/_sim/` (state, stats, faults, clock).
Every response carries `X-Openstack-Request-Id` and `X-Compute-Request-Id`. Statistics count
every non-`/_sim/` request by `METHOD route-template`, with the project-id segment dropped so
both compute URL forms count as one route (`GET /compute/v2.1/servers/{server_id}`).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.cloud.model import (
    DEMO_APP_CRED_ID,
    DEMO_APP_CRED_SECRET,
    DEMO_DOMAIN,
    DEMO_PASSWORD,
    DEMO_PROJECT,
    DEMO_USER,
    FLAVORS,
    MAX_MICROVERSION,
    MIN_MICROVERSION,
    RAX_API_KEY,
    RAX_USER,
    Flavor,
    Image,
    ManualClock,
    Server,
    SimError,
    Token,
    World,
    iso,
    parse_iso,
)

Sleep = Callable[[float], Awaitable[None]]
Handler = Callable[[Request], Awaitable[Response]]

MAX_SERVER_LIMIT = 1000
GLANCE_DEFAULT_LIMIT = 25
GLANCE_MAX_LIMIT = 1000
_FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
                405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
                429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable"}
_VERSION_HEADERS = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"



def page_limit(query: Mapping[str, str], default: int, maximum: int) -> int:
    """The `limit` query parameter as Nova and Glance read it: an integer ≥ 0, capped."""
    if "limit" not in query:
        return default
    try:
        limit = int(query["limit"])
    except ValueError:
        raise SimError(400, "badRequest", "limit param must be an integer") from None
    if limit < 0:
        raise SimError(400, "badRequest", "limit param must be positive")
    return min(limit, maximum)

_SENT = Response()  # marker: a fault already sent the whole response itself


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised by the `drop` fault after the response started, so the connection is cut."""


def _mv_text(mv: tuple[int, int]) -> str:
    return f"{mv[0]}.{mv[1]}"


def nova_fault(status: int, message: str, name: str | None = None,
               headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Nova's fault body `{"name": {"code", "message"}}`."""
    name = name or _FAULT_NAMES.get(status, "computeFault")
    body: dict[str, Any] = {"code": status, "message": message}
    if status in (413, 429) and headers and "Retry-After" in headers:
        body["retryAfter"] = headers["Retry-After"]
    return JSONResponse({name: body}, status_code=status, headers=dict(headers or {}))


def glance_fault(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Glance (webob) style plain-text error."""
    reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              409: "Conflict", 413: "Request Entity Too Large", 429: "Too Many Requests",
              500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    return PlainTextResponse(f"{status} {reason}\n\n{message}\n\n   ", status_code=status,
                             headers=dict(headers or {}))


def _unauthorized(base: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": 401, "title": "Unauthorized",
                   "message": "The request you have made requires authentication."}},
        status_code=401, headers={"WWW-Authenticate": f'Keystone uri="{base}/identity"'})


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise SimError(400, "badRequest", "Malformed request body") from None


# ---- middleware -----------------------------------------------------------------------------


class SimMiddleware:
    """Request ids, statistics, injected HTTP faults and Rackspace rate limits."""

    def __init__(self, app: ASGIApp, world: World, sleep: Sleep,
                 templates: list[tuple[Route, str]]) -> None:
        self.app = app
        self.world = world
        self.sleep = sleep
        self.templates = templates

    def _template(self, scope: Scope) -> str:
        found = scope.get("sim.route")
        if isinstance(found, str):
            return found
        partial = None
        for route, template in self.templates:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return template
            if match is Match.PARTIAL and partial is None:
                partial = template
        return partial or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        request_id = f"req-{uuid.uuid4()}"
        scope["sim.request_id"] = request_id
        status = [500]

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Openstack-Request-Id"] = request_id
                headers["X-Compute-Request-Id"] = request_id
                status[0] = message["status"]
            await send(message)

        if path.startswith("/_sim"):
            await self.app(scope, receive, send_with_ids)
            return
        try:
            early = await self._intercept(scope, method, path, send_with_ids)
            if early is _SENT:
                return
            if early is not None:
                await early(scope, receive, send_with_ids)
            else:
                await self.app(scope, receive, send_with_ids)
        finally:
            self.world.record(method, self._template(scope), status[0])

    async def _stream(self, send: Send, kind: str, size: int, delay: float) -> None:
        """A 200 JSON answer of `size` bytes: in 64 KB chunks (`huge`) or one byte every
        `delay` seconds (`drip`). Neither is a valid document if read to the end."""
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        step = 65536 if kind == "huge" else 1
        sent = 0
        while sent < size:
            n = min(step, size - sent)
            chunk = (b'{"servers": [' + b" " * max(0, n - 13))[:n] if sent == 0 else b" " * n
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += n
            if kind == "drip":
                await self.sleep(delay)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _intercept(self, scope: Scope, method: str, path: str,
                         send: Send) -> Response | None:
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        fault = self.world.take_http_fault(method, path, host)
        if fault is not None:
            if fault.kind == "slow":
                await self.sleep(fault.delay)
            elif fault.kind == "drop":
                await self.sleep(fault.delay)
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"1024"),
                                        (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b"{", "more_body": True})
                raise ConnectionDropped("Server disconnected without completing the response")
            elif fault.kind == "garbage":
                return Response("<html><body><h1>502 Bad Gateway</h1></body></html>",
                                status_code=200, media_type="text/html")
            elif fault.kind == "wrong_shape":
                return JSONResponse({"error": "not what you asked for", "items": "none"})
            elif fault.kind in ("huge", "drip"):
                await self._stream(send, fault.kind, fault.size, fault.delay)
                return _SENT
            else:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(int(fault.retry_after))
                if path.startswith("/image"):
                    return glance_fault(fault.status, "Injected fault", headers)
                return nova_fault(fault.status, "Injected fault", headers=headers)
        if path.startswith("/compute/v"):
            query = scope.get("query_string", b"").decode("latin-1")
            wait = self.world.check_rate(method, query)
            if wait is not None:
                return nova_fault(413, "This request was rate-limited.",
                                  headers={"Retry-After": str(int(wait))}, name="overLimit")
        return None


# ---- the API --------------------------------------------------------------------------------


class _Api:
    """Request handlers over one `World`."""

    def __init__(self, world: World) -> None:
        self.world = world

    # -- helpers --

    def _token(self, request: Request) -> Token | None:
        return self.world.check_token(request.headers.get("x-auth-token"))

    def _microversion(self, request: Request) -> tuple[int, int]:
        raw: str | None = None
        header = request.headers.get("openstack-api-version")
        if header:
            for part in header.split(","):
                service, _, value = part.strip().partition(" ")
                if service.lower() == "compute":
                    raw = value.strip()
        if raw is None:
            raw = request.headers.get("x-openstack-nova-api-version")
        if raw is None:
            return MIN_MICROVERSION
        if raw.lower() == "latest":
            return MAX_MICROVERSION
        m = re.fullmatch(r"(\d+)\.(\d+)", raw.strip())
        if not m:
            raise SimError(400, "badRequest", f"API Version String {raw} is of invalid format. "
                           "Must be of format MajorNum.MinorNum.")
        mv = (int(m.group(1)), int(m.group(2)))
        if not MIN_MICROVERSION <= mv <= MAX_MICROVERSION:
            raise SimError(406, "computeFault",
                           f"Version {raw} is not supported by the API. Minimum is "
                           f"{_mv_text(MIN_MICROVERSION)} and maximum is "
                           f"{_mv_text(MAX_MICROVERSION)}.")
        return mv

    def compute(self, handler: Callable[[Request, tuple[int, int]], Awaitable[Response]]
                ) -> Handler:
        """Wrap a Nova handler: auth, project check, microversion, faults, version headers."""

        legacy = self.world.legacy

        async def wrapped(request: Request) -> Response:
            mv = MIN_MICROVERSION
            try:
                # Rackspace Cloud Servers predates microversions: it ignores the headers.
                mv = MIN_MICROVERSION if legacy else self._microversion(request)
                if self._token(request) is None:
                    response: Response = _unauthorized(_base(request))
                else:
                    project = request.path_params.get("project_id")
                    if project is not None and project != self.world.project_id:
                        raise SimError(400, "badRequest",
                                       f"Malformed request URL: URL's project_id '{project}' "
                                       "doesn't match Context's project_id "
                                       f"'{self.world.project_id}'")
                    response = await handler(request, mv)
            except SimError as err:
                response = nova_fault(err.status, err.message, err.name, err.headers)
            if legacy:
                return response
            response.headers["OpenStack-API-Version"] = f"compute {_mv_text(mv)}"
            response.headers["X-OpenStack-Nova-API-Version"] = _mv_text(mv)
            response.headers["Vary"] = _VERSION_HEADERS
            return response

        return wrapped

    def image(self, handler: Handler) -> Handler:
        """Wrap a Glance handler: auth and plain-text faults."""

        async def wrapped(request: Request) -> Response:
            try:
                if self._token(request) is None:
                    return _unauthorized(_base(request))
                return await handler(request)
            except SimError as err:
                return glance_fault(err.status, err.message, err.headers)

        return wrapped

    # -- identity --

    def _catalog(self, base: str) -> list[dict[str, Any]]:
        def entry(kind: str, name: str, url: str) -> dict[str, Any]:
            return {"type": kind, "name": name, "id": uuid.uuid5(uuid.NAMESPACE_URL, name).hex,
                    "endpoints": [
                        {"id": uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}").hex,
                         "interface": i, "region": self.world.region,
                         "region_id": self.world.region, "url": url}
                        for i in ("public", "internal", "admin")]}

        return [entry("identity", "keystone", f"{base}/identity"),
                entry("compute", "nova", f"{base}/compute/v2.1"),
                entry("image", "glance", f"{base}/image")]

    async def identity_versions(self, request: Request) -> Response:
        base = _base(request)
        if self.world.legacy:  # Rackspace Identity: v2.0 only
            return JSONResponse({"versions": {"values": [_identity_v2(base)]}}, status_code=300)
        return JSONResponse({"versions": {"values": [
            _identity_v3(base), _identity_v2(base)]}}, status_code=300)

    async def identity_v3(self, request: Request) -> Response:
        return JSONResponse({"version": _identity_v3(_base(request))})

    async def identity_v2(self, request: Request) -> Response:
        return JSONResponse({"version": _identity_v2(_base(request))})

    async def tokens_v3(self, request: Request) -> Response:
        if self.world.legacy:
            return JSONResponse({"itemNotFound": {"code": 404, "message": "Resource not found"}},
                                status_code=404)
        try:
            body = await _json_body(request)
        except SimError:
            body = None
        identity = (body or {}).get("auth", {}).get("identity") if isinstance(body, dict) else None
        if not isinstance(identity, dict):
            return JSONResponse({"error": {"code": 400, "title": "Bad Request",
                                           "message": "Expecting to find identity in auth."}},
                                status_code=400)
        methods = identity.get("methods") or []
        missing = _missing_domain(identity, (body.get("auth") or {}).get("scope"))
        if missing:
            return JSONResponse({"error": {
                "code": 400, "title": "Bad Request",
                "message": f"Expecting to find domain in {missing}. The server could not comply "
                           "with the request since it is either malformed or otherwise "
                           "incorrect. The client is assumed to be in error."}}, status_code=400)
        ok, app_cred = False, None
        if "password" in methods:
            user = (identity.get("password") or {}).get("user") or {}
            domain = user.get("domain") or {}
            name_ok = (user.get("name") == DEMO_USER
                       and (domain.get("name") == DEMO_DOMAIN or domain.get("id") == "default"))
            ok = (name_ok or user.get("id") == self.world.user_id) and \
                user.get("password") == DEMO_PASSWORD
        elif "application_credential" in methods:
            cred = identity.get("application_credential") or {}
            who = cred.get("user") or {}
            by_id = cred.get("id") == DEMO_APP_CRED_ID
            by_name = (cred.get("name") == DEMO_APP_CRED_ID
                       and (who.get("name") == DEMO_USER or who.get("id") == self.world.user_id))
            ok = (by_id or by_name) and cred.get("secret") == DEMO_APP_CRED_SECRET
            app_cred = {"id": DEMO_APP_CRED_ID, "name": DEMO_APP_CRED_ID, "restricted": True}
        if not ok:
            return _unauthorized(_base(request))
        scope = (body.get("auth") or {}).get("scope")
        scoped = app_cred is not None or bool(scope)
        if isinstance(scope, dict) and "project" in scope:
            proj = scope["project"] or {}
            if not (proj.get("id") == self.world.project_id or proj.get("name") == DEMO_PROJECT):
                return _unauthorized(_base(request))
        token = self.world.issue_token(list(methods))
        domain_doc = {"id": "default", "name": DEMO_DOMAIN}
        doc: dict[str, Any] = {
            "audit_ids": [uuid.uuid4().hex[:22]],
            "expires_at": iso(token.expires, micro=True),
            "issued_at": iso(token.issued, micro=True),
            "methods": list(methods),
            "is_domain": False,
            "user": {"domain": domain_doc, "id": self.world.user_id, "name": DEMO_USER,
                     "password_expires_at": None},
        }
        if scoped:
            doc["project"] = {"domain": domain_doc, "id": self.world.project_id,
                              "name": DEMO_PROJECT}
            doc["roles"] = [{"id": uuid.uuid5(uuid.NAMESPACE_URL, "member").hex,
                             "name": "member"},
                            {"id": uuid.uuid5(uuid.NAMESPACE_URL, "reader").hex,
                             "name": "reader"}]
            doc["catalog"] = self._catalog(_base(request))
        if app_cred is not None:
            doc["application_credential"] = app_cred
        return JSONResponse({"token": doc}, status_code=201,
                            headers={"X-Subject-Token": token.id})

    async def tokens_v2(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except SimError:
            body = None
        auth = body.get("auth") if isinstance(body, dict) else None
        if not isinstance(auth, dict):
            return JSONResponse({"badRequest": {"code": 400, "message": "Invalid json request"}},
                                status_code=400)
        ok, by = False, "PASSWORD"
        if "RAX-KSKEY:apiKeyCredentials" in auth:
            cred = auth["RAX-KSKEY:apiKeyCredentials"] or {}
            ok = cred.get("username") == RAX_USER and cred.get("apiKey") == RAX_API_KEY
            by = "APIKEY"
        elif "passwordCredentials" in auth:
            cred = auth["passwordCredentials"] or {}
            ok = cred.get("username") == RAX_USER and cred.get("password") == DEMO_PASSWORD
        tenant = auth.get("tenantId") or auth.get("tenantName")
        if tenant is not None and tenant not in (self.world.project_id, DEMO_PROJECT):
            ok = False
        if not ok:
            return JSONResponse({"unauthorized": {"code": 401, "message":
                                 "Username or api key is invalid."}}, status_code=401)
        token = self.world.issue_token(["rax-v2"])
        base, tid = _base(request), self.world.project_id

        def ep(url: str, **extra: str) -> dict[str, str]:
            return {"region": self.world.region, "tenantId": tid, "publicURL": url,
                    "internalURL": url, **extra}

        catalog = [
            {"name": "cloudServers", "type": "compute",
             "endpoints": [{"tenantId": tid, "publicURL": f"{base}/compute/v1.0/{tid}",
                            "versionInfo": f"{base}/compute/v1.0",
                            "versionList": f"{base}/compute/", "versionId": "1.0"}]},
            {"name": "cloudServersOpenStack", "type": "compute",
             "endpoints": [ep(f"{base}/compute/v2.1/{tid}", versionInfo=f"{base}/compute/v2.1",
                              versionList=f"{base}/compute/", versionId="2")]},
            {"name": "cloudImages", "type": "image", "endpoints": [ep(f"{base}/image/v2")]},
        ]
        return JSONResponse({"access": {
            "token": {"id": token.id, "expires": iso(token.expires, micro=True)[:-4] + "Z",
                      "tenant": {"id": tid, "name": tid},
                      "RAX-AUTH:authenticatedBy": [by]},
            "serviceCatalog": catalog,
            "user": {"id": self.world.user_id, "name": RAX_USER,
                     "RAX-AUTH:defaultRegion": self.world.region,
                     "roles": [{"id": "6", "name": "compute:default", "tenantId": tid,
                                "description": "A Role that allows a user access to keystone "
                                "Service methods"}]},
        }})

    # -- compute --

    async def compute_versions(self, request: Request) -> Response:
        base = _base(request)
        return JSONResponse({"versions": [_compute_version(base)]})

    async def compute_version(self, request: Request) -> Response:
        return JSONResponse({"version": _compute_version(_base(request))})

    async def servers(self, request: Request, mv: tuple[int, int], *, detail: bool) -> Response:
        q = request.query_params
        since = None
        if "changes-since" in q:
            try:
                since = parse_iso(q["changes-since"])
            except ValueError:
                raise SimError(400, "badRequest", "Invalid input for query parameters "
                               "changes-since.") from None
        if "changes-before" in q:
            if mv < (2, 66):
                raise SimError(400, "badRequest", "Invalid filter changes-before")
            try:
                before = parse_iso(q["changes-before"])
            except ValueError:
                raise SimError(400, "badRequest", "Invalid input for query parameters "
                               "changes-before.") from None
            if since is not None and since > before:
                raise SimError(400, "badRequest", "The value of changes-since must be less "
                               "than or equal to changes-before.")
        limit = page_limit(q, MAX_SERVER_LIMIT, MAX_SERVER_LIMIT)
        try:
            page, more = self.world.list_servers(
                changes_since=since, marker=q.get("marker"), limit=limit,
                name=q.get("name"), status=q.get("status"))
        except re.error:
            raise SimError(400, "badRequest", "Invalid name filter") from None
        base = _base(request)
        if "changes-before" in q:
            before_ts = parse_iso(q["changes-before"])
            page = [s for s in page if s.updated < before_ts + 1]
        if detail:
            items = [self._server_view(s, base, mv) for s in page]
        else:
            items = [{"id": s.id, "name": s.name, "links": self._links(s, base)} for s in page]
        out: dict[str, Any] = {"servers": items}
        if more and page and limit > 0:
            params = [(k, v) for k, v in q.multi_items() if k not in ("marker", "limit")]
            params += [("limit", str(limit)), ("marker", page[-1].id)]
            out["servers_links"] = [{"rel": "next",
                                     "href": f"{base}{request.url.path}?{urlencode(params)}"}]
        return JSONResponse(out)

    async def servers_list(self, request: Request, mv: tuple[int, int]) -> Response:
        return await self.servers(request, mv, detail=False)

    async def servers_detail(self, request: Request, mv: tuple[int, int]) -> Response:
        return await self.servers(request, mv, detail=True)

    async def server_show(self, request: Request, mv: tuple[int, int]) -> Response:
        server = self.world.get_server(request.path_params["server_id"])
        return JSONResponse({"server": self._server_view(server, _base(request), mv)})

    async def server_metadata(self, request: Request, mv: tuple[int, int]) -> Response:
        """`GET /servers/{id}/metadata`: {"metadata": {...}} (Nova api-ref, "Server metadata":
        "Show server metadata"; 404 for an unknown server)."""
        server = self.world.get_server(request.path_params["server_id"])
        return JSONResponse({"metadata": dict(server.metadata)})

    async def server_metadata_update(self, request: Request, mv: tuple[int, int]) -> Response:
        """`POST /servers/{id}/metadata` (Nova api-ref, "Update server metadata items"):
        "Replaces items that match the specified keys and does not modify items not specified
        in the request"; 200 with the whole metadata after the change. `{"metadata": {...}}`
        is required, keys and values strings of 1..255 (keys non-empty), at most 40 items in
        all (403 over quota, as for create)."""
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"metadata"}:
            raise SimError(400, "badRequest", "Invalid input for field/attribute metadata.")
        server = self.world.get_server(request.path_params["server_id"])
        merged = dict(server.metadata) | (body["metadata"] if isinstance(body["metadata"], dict)
                                          else {"": ""})
        _check_name_meta(server.name, merged,
                         quota="Quota exceeded for metadata items: maxServerMeta 40")
        self.world.set_server_metadata(server.id, merged)
        return JSONResponse({"metadata": merged})

    async def server_create(self, request: Request, mv: tuple[int, int]) -> Response:
        """`POST /servers` (Nova api-ref servers.inc; schemas/servers.py): `name` and
        `flavorRef` required, `imageRef` here too (no block_device_mapping_v2), `networks`
        required from 2.37 ("auto", "none" or a list of {"uuid"}); 202 with the id, links and
        adminPass and the server URL in Location (Rackspace: the same body,
        docs-cloud-servers post-create-server-servers.rst)."""
        body = await _json_body(request)
        server = body.get("server") if isinstance(body, dict) and len(body) == 1 else None
        if not isinstance(server, dict):
            raise SimError(400, "badRequest", "Invalid input for field/attribute server.")
        allowed = {"name", "imageRef", "flavorRef", "networks", "metadata", "OS-DCF:diskConfig",
                   "key_name", "config_drive", "user_data", "security_groups",
                   "availability_zone"}
        if mv >= (2, 19) and not self.world.legacy:
            allowed.add("description")
        unknown = set(server) - allowed
        if unknown:
            raise SimError(400, "badRequest", "Invalid input for field/attribute server. "
                           f"Additional properties are not allowed ({', '.join(sorted(unknown))}"
                           " were unexpected)")
        required = ["name", "flavorRef", "imageRef"]
        if mv >= (2, 37) and not self.world.legacy:
            required.append("networks")
        for key in required:
            if key not in server:
                raise SimError(400, "badRequest", "Invalid input for field/attribute server. "
                               f"'{key}' is a required property")
        name, meta = server["name"], server.get("metadata") or {}
        _check_name_meta(name, meta, quota="Quota exceeded for metadata items: maxServerMeta 40")
        for key in ("imageRef", "flavorRef"):
            if not isinstance(server[key], str) or not server[key]:
                raise SimError(400, "badRequest", f"Invalid input for field/attribute {key}.")
        self._check_boot_options(server)
        created = self.world.create_server(
            name, server["imageRef"], server["flavorRef"],
            networks=self._networks(server.get("networks"), mv), metadata=meta,
            request_id=str(request.scope.get("sim.request_id", "")))
        base = _base(request)
        view: dict[str, Any] = {"id": created.id, "links": self._links(created, base),
                                "OS-DCF:diskConfig": "AUTO",
                                "adminPass": uuid.uuid5(uuid.NAMESPACE_OID, created.id).hex[:12]}
        if not self.world.legacy:
            view["security_groups"] = [{"name": "default"}]
        return JSONResponse({"server": view}, status_code=202,
                            headers={"Location": view["links"][0]["href"]})

    def _check_boot_options(self, server: dict[str, Any]) -> None:
        """What the sim's one project has: no key pairs, the `default` security group, zone
        `nova`; anything else is refused with Nova's messages (servers.py create), never
        ignored."""
        if server.get("OS-DCF:diskConfig", "AUTO") not in ("AUTO", "MANUAL"):
            raise SimError(400, "badRequest",
                           "Invalid input for field/attribute OS-DCF:diskConfig.")
        if server.get("key_name") is not None:
            raise SimError(400, "badRequest", "Invalid key_name provided.")
        for group in server.get("security_groups") or []:
            name = group.get("name") if isinstance(group, dict) else None
            if name != "default":
                raise SimError(400, "badRequest", f"Security group {name} not found for "
                               f"project {self.world.project_id}.")
        if server.get("availability_zone") not in (None, "nova"):
            raise SimError(400, "badRequest",
                           "The requested availability zone is not available")

    def _networks(self, raw: Any, mv: tuple[int, int]) -> list[str] | None:
        """Network ids asked for; None for every network (left out before 2.37, or "auto")."""
        if raw is None or raw == "auto":
            if raw is not None and (mv < (2, 37) or self.world.legacy):
                raise SimError(400, "badRequest", "Invalid input for field/attribute networks.")
            return None
        if raw == "none" and mv >= (2, 37) and not self.world.legacy:
            return []
        if not isinstance(raw, list) or any(
                not isinstance(n, dict) or set(n) - {"uuid", "port", "fixed_ip", "tag"}
                for n in raw):
            raise SimError(400, "badRequest", "Invalid input for field/attribute networks.")
        ids: list[str] = []
        for net in raw:
            if net.get("port"):
                raise SimError(400, "badRequest", f"Port id {net['port']} could not be found.")
            if not isinstance(net.get("uuid"), str):
                raise SimError(400, "badRequest", "Invalid input for field/attribute networks.")
            ids.append(net["uuid"])
        return ids

    async def server_delete(self, request: Request, mv: tuple[int, int]) -> Response:
        """`DELETE /servers/{id}`: 204; the server is gone a few seconds later."""
        self.world.request_delete(request.path_params["server_id"])
        return Response(status_code=204)

    def _links(self, s: Server, base: str) -> list[dict[str, str]]:
        pid = self.world.project_id
        return [{"rel": "self", "href": f"{base}/compute/v2.1/{pid}/servers/{s.id}"},
                {"rel": "bookmark", "href": f"{base}/compute/{pid}/servers/{s.id}"}]

    def _server_view(self, s: Server, base: str, mv: tuple[int, int]) -> dict[str, Any]:
        pid = self.world.project_id
        flavor: dict[str, Any]
        if mv >= (2, 47):
            flavor = {"vcpus": s.flavor.vcpus, "ram": s.flavor.ram, "disk": s.flavor.disk,
                      "ephemeral": s.flavor.ephemeral, "swap": s.flavor.swap,
                      "original_name": s.flavor.name, "extra_specs": {}}
        else:
            flavor = {"id": s.flavor.id, "links": [
                {"rel": "bookmark", "href": f"{base}/compute/{pid}/flavors/{s.flavor.id}"}]}
        image: Any = ""
        if s.image_id is not None:
            image = {"id": s.image_id, "links": [
                {"rel": "bookmark", "href": f"{base}/compute/{pid}/images/{s.image_id}"}]}
        volumes: list[dict[str, Any]] = [
            {"id": v, "delete_on_termination": False} if mv >= (2, 3) else {"id": v}
            for v in s.volumes]
        view: dict[str, Any] = {
            "accessIPv4": "", "accessIPv6": "",
            "addresses": {label: [{"addr": _address(s, label), "version": 4,
                                   "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
                                   "OS-EXT-IPS:type": "fixed"}] for label in s.networks},
            "created": iso(s.created),
            "flavor": flavor,
            "hostId": uuid.uuid5(uuid.NAMESPACE_URL, pid + "host").hex * 2 if s.deleted_at is None
            else "",
            "id": s.id,
            "image": image,
            "key_name": None,
            "links": self._links(s, base),
            "metadata": dict(s.metadata),
            "name": s.name,
            "config_drive": "",
            "OS-DCF:diskConfig": "AUTO",
            "OS-EXT-AZ:availability_zone": "nova",
            "OS-EXT-SRV-ATTR:host": "sim-compute-1",
            "OS-EXT-SRV-ATTR:hypervisor_hostname": "sim-compute-1",
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{s.id[:8]}",
            "OS-EXT-STS:power_state": s.power_state,
            "OS-EXT-STS:task_state": s.task_state,
            "OS-EXT-STS:vm_state": s.vm_state,
            "os-extended-volumes:volumes_attached": volumes,
            "OS-SRV-USG:launched_at": iso(s.launched_at, micro=True)[:-1]
            if s.launched_at is not None else None,
            "OS-SRV-USG:terminated_at": iso(s.deleted_at, micro=True)[:-1]
            if s.deleted_at else None,
            "progress": 0,
            "security_groups": [{"name": "default"}],
            "status": s.status,
            "tenant_id": pid,
            "updated": iso(s.updated),
            "user_id": self.world.user_id,
        }
        if s.fault is not None:
            view["fault"] = dict(s.fault)  # Nova shows the fault of an ERROR server
        if self.world.legacy:
            return _rackspace_view(view, s)
        if mv >= (2, 3):
            view.update({
                "OS-EXT-SRV-ATTR:hostname": s.name, "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:launch_index": 0, "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:reservation_id": f"r-{s.id[:8]}",
                "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                "OS-EXT-SRV-ATTR:user_data": None})
        if mv >= (2, 9):
            view["locked"] = False
        if mv >= (2, 16):
            view["host_status"] = "UP"
        if mv >= (2, 19):
            view["description"] = None
        if mv >= (2, 26):
            view["tags"] = []
        if mv >= (2, 63):
            view["trusted_image_certificates"] = None
        if mv >= (2, 71):
            view["server_groups"] = []
        if mv >= (2, 73):
            view["locked_reason"] = None
        if mv >= (2, 96):
            view["pinned_availability_zone"] = None
        return view

    async def server_action(self, request: Request, mv: tuple[int, int]) -> Response:
        body = await _json_body(request)
        server_id = request.path_params["server_id"]
        if not isinstance(body, dict) or len(body) != 1:
            raise SimError(400, "badRequest", "Malformed request body")
        (action, args), = body.items()
        request_id = str(request.scope.get("sim.request_id", ""))
        if action == "createImage":
            if not isinstance(args, dict) or set(args) - {"name", "metadata"}:
                raise SimError(400, "badRequest", "Additional properties are not allowed")
            name, meta = args.get("name"), args.get("metadata") or {}
            _check_name_meta(name, meta)
            image = self.world.create_image(server_id, str(name), meta, request_id=request_id)
        elif action == "createBackup":
            if not isinstance(args, dict) or set(args) - {"name", "backup_type", "rotation",
                                                          "metadata"}:
                raise SimError(400, "badRequest", "Additional properties are not allowed")
            missing = {"name", "backup_type", "rotation"} - set(args)
            if missing:
                raise SimError(400, "badRequest",
                               f"'{sorted(missing)[0]}' is a required property")
            name, meta = args["name"], args.get("metadata") or {}
            _check_name_meta(name, meta)
            rotation = args["rotation"]
            if isinstance(rotation, str) and rotation.isdigit():
                rotation = int(rotation)
            if not isinstance(rotation, int) or isinstance(rotation, bool) or rotation < 0:
                raise SimError(400, "badRequest", "rotation must be an integer >= 0")
            if not isinstance(args["backup_type"], str):
                raise SimError(400, "badRequest", "backup_type must be a string")
            image = self.world.create_image(server_id, name, meta, request_id=request_id,
                                            backup_type=args["backup_type"], rotation=rotation)
        elif action == "os-getConsoleOutput":
            return JSONResponse({"output": self._console(server_id, args)})
        else:
            self.world.get_server(server_id)
            raise SimError(400, "badRequest", f"There is no such action: {action}")
        if mv >= (2, 45):
            return JSONResponse({"image_id": image.id}, status_code=202)
        if self.world.legacy:
            # Rackspace: 202, no body, the compute image URL in Location (docs-cloud-servers
            # api-reference/methods/post-create-image-servers-server-id-action.rst).
            pid = self.world.project_id
            return Response(status_code=202, headers={
                "Location": f"{_base(request)}/compute/v2.1/{pid}/images/{image.id}"})
        return Response(status_code=202,
                        headers={"Location": f"{_base(request)}/image/v2/images/{image.id}"})

    def _console(self, server_id: str, args: Any) -> str:
        """`os-getConsoleOutput` (nova console_output.py, schemas/console_output.py): `length`
        an integer (or digits) >= -1 or null; 409 before the server has a host. Rackspace
        documents only the VNC console (docs-cloud-servers post-get-console-servers-server-id-
        action.rst), so there it is a driver without console logs: 501, as Nova answers
        NotImplementedError."""
        if not isinstance(args, dict) or set(args) - {"length"}:
            raise SimError(400, "badRequest", "Invalid input for field/attribute "
                           "os-getConsoleOutput.")
        length = args.get("length")
        if isinstance(length, str) and re.fullmatch(r"-?[0-9]+", length):
            length = int(length)
        if length is not None and (not isinstance(length, int) or isinstance(length, bool)
                                   or length < -1):
            raise SimError(400, "badRequest", "Invalid input for field/attribute length.")
        self.world.get_server(server_id)
        if self.world.legacy:
            raise SimError(501, "notImplemented",
                           "The requested functionality is not supported.")
        return self.world.console_output(server_id, length)

    async def volume_attachments(self, request: Request, mv: tuple[int, int]) -> Response:
        """`GET /servers/{id}/os-volume_attachments` (Nova api-ref; Rackspace
        ext-volume-attachments): one entry per attached volume, the boot volume first."""
        server = self.world.get_server(request.path_params["server_id"])
        prefix = "/dev/xvd" if self.world.legacy else "/dev/vd"
        first = 0 if server.image_id is None else 1  # a boot volume is the first disk
        items = [{"id": v, "volumeId": v, "serverId": server.id,
                  "device": f"{prefix}{chr(ord('a') + first + i)}"}
                 for i, v in enumerate(server.volumes)]
        return JSONResponse({"volumeAttachments": items})

    async def instance_actions(self, request: Request, mv: tuple[int, int]) -> Response:
        server = self.world.get_server(request.path_params["server_id"])
        items = []
        for act in reversed(server.actions):
            item = _action_view(act, server.id)
            if mv >= (2, 58):
                item["updated_at"] = iso(act.finish_time or act.start_time, micro=True)[:-1]
            items.append(item)
        return JSONResponse({"instanceActions": items})

    async def instance_action(self, request: Request, mv: tuple[int, int]) -> Response:
        server = self.world.get_server(request.path_params["server_id"])
        rid = request.path_params["request_id"]
        for act in server.actions:
            if act.request_id == rid:
                item = _action_view(act, server.id)
                item["events"] = [{
                    "event": act.event,
                    "start_time": iso(act.start_time, micro=True)[:-1],
                    "finish_time": iso(act.finish_time, micro=True)[:-1]
                    if act.finish_time else None,
                    "result": act.result}]
                if mv >= (2, 58):
                    item["updated_at"] = iso(act.finish_time or act.start_time, micro=True)[:-1]
                return JSONResponse({"instanceAction": item})
        raise SimError(404, "itemNotFound", f"Action {rid} on instance {server.id} could not "
                       "be found.")

    async def limits(self, request: Request, mv: tuple[int, int]) -> Response:
        rl = self.world.rate_limits
        rate: list[dict[str, Any]] = []
        if rl is not None:
            rate = [{"uri": "*", "regex": ".*", "limit": [
                {"verb": verb, "value": rl.value(verb), "remaining": rl.value(verb),
                 "unit": "MINUTE", "next-available": iso(self.world.now())}
                for verb in ("GET", "POST", "PUT", "DELETE")]}]
            if rl.changes_since_per_minute is not None:
                # The shape of Rackspace's own limits sample (cloud-servers limits-resp.json).
                rate.append({"uri": "*changes-since*", "regex": "changes-since", "limit": [
                    {"verb": "GET", "value": rl.changes_since_per_minute,
                     "remaining": rl.changes_since_per_minute, "unit": "MINUTE",
                     "next-available": iso(self.world.now())}]})
        with self.world.lock:
            live = [s for s in self.world.servers.values() if s.deleted_at is None]
        return JSONResponse({"limits": {"rate": rate, "absolute": {
            "maxImageMeta": 40, "maxPersonality": 5, "maxPersonalitySize": 1000,
            "maxSecurityGroupRules": -1, "maxSecurityGroups": -1, "maxServerMeta": 40,
            "maxTotalCores": -1, "maxTotalFloatingIps": -1, "maxTotalInstances": 100000,
            "maxTotalKeypairs": 100, "maxTotalRAMSize": -1, "maxServerGroups": 10,
            "maxServerGroupMembers": 10, "totalCoresUsed": sum(s.flavor.vcpus for s in live),
            "totalInstancesUsed": len(live), "totalRAMUsed": sum(s.flavor.ram for s in live),
            "totalSecurityGroupsUsed": 0, "totalFloatingIpsUsed": 0,
            "totalServerGroupsUsed": 0}}})

    async def flavors(self, request: Request, mv: tuple[int, int]) -> Response:
        """`GET /flavors[/detail]` with Nova's `minDisk`/`minRam` filters (flavors.py
        _get_flavors: a non-integer is 400 "Invalid minDisk filter [x]")."""
        detail = request.url.path.endswith("/detail")
        floor: dict[str, int] = {}
        for key in ("minDisk", "minRam"):
            if key in request.query_params:
                raw = request.query_params[key]
                try:
                    floor[key] = int(raw)
                except ValueError:
                    raise SimError(400, "badRequest", f"Invalid {key} filter [{raw}]") from None
        chosen = [f for f in FLAVORS.values()
                  if f.disk >= floor.get("minDisk", 0) and f.ram >= floor.get("minRam", 0)]
        return JSONResponse({"flavors": [_flavor_view(f, _base(request), self.world.project_id,
                                                      detail, self.world.legacy)
                                         for f in chosen]})

    async def extensions(self, request: Request, mv: tuple[int, int]) -> Response:
        """`GET /extensions`: Rackspace lists ScheduledImages (docs-cloud-servers
        get-retrieve-list-of-extensions-extensions.rst); Nova's list has no rax-si."""
        return JSONResponse({"extensions": _extensions(self.world.legacy)})

    async def extension_show(self, request: Request, mv: tuple[int, int]) -> Response:
        alias = request.path_params["alias"]
        for ext in _extensions(self.world.legacy):
            if ext["alias"] == alias:
                return JSONResponse({"extension": ext})
        raise SimError(404, "itemNotFound", f"Extension {alias} could not be found.")

    async def flavor_show(self, request: Request, mv: tuple[int, int]) -> Response:
        flavor = FLAVORS.get(request.path_params["flavor_id"])
        if flavor is None:
            raise SimError(404, "itemNotFound", "Flavor could not be found.")
        return JSONResponse({"flavor": _flavor_view(flavor, _base(request),
                                                    self.world.project_id, True,
                                                    self.world.legacy)})

    async def no_route(self, request: Request, mv: tuple[int, int]) -> Response:
        """What Nova's router answers for a path it has no route for (an extension this cloud
        does not run): webob's plain 404, not a compute fault."""
        return glance_fault(404, "The resource could not be found.")

    async def schedule_get(self, request: Request, mv: tuple[int, int]) -> Response:
        sched = self.world.get_schedule(request.path_params["server_id"])
        return JSONResponse({"image_schedule": sched})

    async def schedule_post(self, request: Request, mv: tuple[int, int]) -> Response:
        body = await _json_body(request)
        sched = self.world.set_schedule(request.path_params["server_id"], body)
        return JSONResponse({"image_schedule": sched})

    async def schedule_delete(self, request: Request, mv: tuple[int, int]) -> Response:
        self.world.delete_schedule(request.path_params["server_id"])
        return Response(status_code=202)

    # -- image --

    async def image_versions(self, request: Request) -> Response:
        base = _base(request)
        if self.world.legacy:  # Rackspace Cloud Images serves v2.0-v2.2 (no `in:` yet)
            return JSONResponse({"versions": [
                {"id": f"v2.{n}", "status": "CURRENT" if n == 2 else "SUPPORTED",
                 "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
                for n in (2, 1, 0)]}, status_code=300)
        values = [{"id": f"v2.{n}", "status": "CURRENT" if n == 16 else "SUPPORTED",
                   "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
                  for n in range(16, -1, -1)]
        return JSONResponse({"versions": values}, status_code=300)

    async def images_list(self, request: Request) -> Response:
        q = request.query_params
        if "changes-since" in q:
            raise SimError(400, "badRequest", "Invalid filter: changes-since")
        limit = page_limit(q, GLANCE_DEFAULT_LIMIT, GLANCE_MAX_LIMIT)
        if self.world.legacy:
            return self._images_list_legacy(request, limit)
        sort: list[tuple[str, str]] = []
        if "sort" in q:
            for part in q["sort"].split(","):
                key, _, direction = part.strip().partition(":")
                direction = direction or "desc"
                if direction not in ("asc", "desc") or not key:
                    raise SimError(400, "badRequest", f"Invalid sort direction: {direction}")
                sort.append((key, direction))
        else:
            keys, dirs = q.getlist("sort_key"), q.getlist("sort_dir")
            for i, key in enumerate(keys):
                sort.append((key, dirs[i] if i < len(dirs) else (dirs[0] if dirs else "desc")))
        if not sort:
            sort = [("created_at", "desc")]
        if not any(k == "id" for k, _ in sort):
            sort.append(("id", sort[-1][1]))
        reserved = {"limit", "marker", "sort", "sort_key", "sort_dir", "member_status"}
        filters = {k: v for k, v in q.items() if k not in reserved}
        if filters.get("visibility") == "all":
            del filters["visibility"]
        page, more = self.world.query_images(filters, sort=sort, marker=q.get("marker"),
                                             limit=limit)
        return _image_page(request, page, more)

    def _images_list_legacy(self, request: Request, limit: int) -> Response:
        """Rackspace Cloud Images (docs-cloud-images get-list-images-images.rst): the documented
        parameters are limit, marker, name, visibility, member_status, owner, tag, status,
        size_min, size_max, sort_key, sort_dir. No `sort=key:dir` (an unknown parameter is a
        filter, so `sort=` matches nothing) and no `in:` operator."""
        q = request.query_params
        key = q.get("sort_key", "created_at")
        direction = q.get("sort_dir", "desc")
        if key not in ("name", "status", "container_format", "disk_format", "size", "id",
                       "created_at", "updated_at"):
            raise SimError(400, "badRequest", f"Invalid sort key: {key}")
        if direction not in ("asc", "desc"):
            raise SimError(400, "badRequest", f"Invalid sort direction: {direction}")
        sort = [(key, direction)] + ([("id", direction)] if key != "id" else [])
        reserved = {"limit", "marker", "sort_key", "sort_dir", "member_status"}
        filters = {k: v for k, v in q.items() if k not in reserved}
        page, more = self.world.query_images(filters, sort=sort, marker=q.get("marker"),
                                             limit=limit, literal=True)
        return _image_page(request, page, more)

    async def image_show(self, request: Request) -> Response:
        return JSONResponse(_image_view(self.world.get_image(request.path_params["image_id"])))

    async def image_update(self, request: Request) -> Response:
        """`PATCH /v2/images/{id}`: only the JSON-patch media types are accepted (415
        otherwise, glance/api/v2/images.py RequestDeserializer._get_change_operation)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind not in ("application/openstack-images-v2.1-json-patch",
                        "application/openstack-images-v2.0-json-patch"):
            raise SimError(415, "unsupportedMediaType", f"Unsupported Content-Type: {kind}")
        image = self.world.update_image(request.path_params["image_id"],
                                        await _json_body(request))
        return JSONResponse(_image_view(image))

    async def server_interfaces(self, request: Request, mv: tuple[int, int]) -> Response:
        items = self.world.server_interfaces(request.path_params["server_id"])
        return JSONResponse({"interfaceAttachments": items})

    async def image_delete(self, request: Request) -> Response:
        self.world.delete_image(request.path_params["image_id"])
        return Response(status_code=204)

    async def image_schema(self, request: Request) -> Response:
        return JSONResponse(_IMAGE_SCHEMA)

    async def images_schema(self, request: Request) -> Response:
        return JSONResponse({"name": "images", "properties": {
            "images": {"type": "array", "items": _IMAGE_SCHEMA},
            "schema": {"type": "string"}, "first": {"type": "string"},
            "next": {"type": "string"}},
            "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]})

    # -- control plane --

    async def sim_state(self, request: Request) -> Response:
        return JSONResponse(self.world.dump())

    async def sim_stats(self, request: Request) -> Response:
        return JSONResponse(self.world.stats_snapshot())

    async def sim_stats_reset(self, request: Request) -> Response:
        self.world.reset_stats()
        return JSONResponse(self.world.stats_snapshot())

    async def sim_faults_get(self, request: Request) -> Response:
        return JSONResponse(self.world.dump()["faults"])

    async def sim_faults_post(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except SimError as err:
            return JSONResponse({"error": err.message}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
            return JSONResponse({"error": "body must be a JSON object with a kind"},
                                status_code=400)
        params = {k: v for k, v in body.items() if k != "kind"}
        try:
            return JSONResponse(self.world.inject(body["kind"], **params), status_code=201)
        except (ValueError, TypeError, re.error) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def sim_faults_clear(self, request: Request) -> Response:
        self.world.inject("clear")
        return Response(status_code=204)

    async def sim_clock(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(self.world.clock, ManualClock):
            return JSONResponse({"error": "the world runs on a real clock"}, status_code=409)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            return JSONResponse({"error": "seconds must be a number >= 0"}, status_code=400)
        self.world.clock.advance(float(seconds))
        return JSONResponse({"now": iso(self.world.advance())})

    async def sim_server_delete(self, request: Request) -> Response:
        try:
            server = self.world.find_server(request.path_params["ref"])
            self.world.delete_server(server.id)
        except (KeyError, SimError):
            return JSONResponse({"error": "no such server"}, status_code=404)
        return Response(status_code=204)


# ---- views and documents --------------------------------------------------------------------


def _check_name_meta(name: Any, meta: Any, *,
                     quota: str = "Quota exceeded for metadata items: maxImageMeta 40") -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise SimError(400, "badRequest", "Invalid input for field/attribute name.")
    if not isinstance(meta, dict) or any(
            not isinstance(k, str) or not isinstance(v, str) or len(k.encode()) > 255
            or len(v.encode()) > 255 or not k for k, v in meta.items()):
        raise SimError(400, "badRequest", "Invalid input for field/attribute metadata.")
    if len(meta) > 40:
        raise SimError(403, "forbidden", quota)


def _action_view(act: Any, server_id: str) -> dict[str, Any]:
    return {"action": act.action, "instance_uuid": server_id, "message": act.message,
            "project_id": act.project_id, "request_id": act.request_id,
            "start_time": iso(act.start_time, micro=True)[:-1], "user_id": act.user_id}


def _flavor_view(f: Flavor, base: str, pid: str, detail: bool,
                 legacy: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {"id": f.id, "name": f.name, "links": [
        {"rel": "self", "href": f"{base}/compute/v2.1/{pid}/flavors/{f.id}"},
        {"rel": "bookmark", "href": f"{base}/compute/{pid}/flavors/{f.id}"}]}
    if detail and legacy:
        # Rackspace flavors (docs-cloud-servers flavors samples): extra specs carry the class,
        # no disabled/is_public extensions.
        view.update({"ram": f.ram, "vcpus": f.vcpus, "disk": f.disk,
                     "OS-FLV-EXT-DATA:ephemeral": f.ephemeral, "swap": f.swap or "",
                     "rxtx_factor": 1.0, "OS-FLV-WITH-EXT-SPECS:extra_specs": {
                         "class": "general1", "policy_class": "general_flavor",
                         "disk_io_index": "40", "number_of_data_disks": "1" if f.ephemeral
                         else "0"}})
    elif detail:
        view.update({"ram": f.ram, "vcpus": f.vcpus, "disk": f.disk,
                     "OS-FLV-EXT-DATA:ephemeral": f.ephemeral, "swap": f.swap or "",
                     "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
                     "rxtx_factor": 1.0})
    return view


def _image_page(request: Request, page: list[Image], more: bool) -> JSONResponse:
    """A Glance listing page: `first`, and `next` (the same query after the last id)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    out: dict[str, Any] = {"images": [_image_view(im) for im in page],
                           "schema": "/v2/schemas/images",
                           "first": "/v2/images" + (f"?{urlencode(params)}" if params else "")}
    if more and page:
        out["next"] = "/v2/images?" + urlencode(params + [("marker", page[-1].id)])
    return JSONResponse(out)


def _image_view(im: Image) -> dict[str, Any]:
    view: dict[str, Any] = dict(im.properties)
    view.update({
        "status": im.status, "name": im.name, "tags": list(im.tags),
        "container_format": im.container_format, "disk_format": im.disk_format,
        "created_at": iso(im.created_at), "updated_at": iso(im.updated_at),
        "visibility": im.visibility, "self": f"/v2/images/{im.id}", "min_disk": im.min_disk,
        "protected": im.protected, "id": im.id, "file": f"/v2/images/{im.id}/file",
        "checksum": im.checksum, "os_hash_algo": "sha512" if im.checksum else None,
        "os_hash_value": (im.checksum * 4) if im.checksum else None, "os_hidden": False,
        "owner": im.owner, "size": im.size, "min_ram": im.min_ram,
        "schema": "/v2/schemas/image", "virtual_size": None,
    })
    if "block_device_mapping" in view:
        view["block_device_mapping"] = json.dumps(view["block_device_mapping"])
    return view


def _missing_domain(identity: Mapping[str, Any], scope: Any) -> str | None:
    """What real Keystone refuses with 400 "Expecting to find domain in ...": a user or a
    project given by name without a domain (keystone/auth/plugins/core.py UserAuthInfo,
    keystone/auth/core.py _lookup_project), for passwords and application credentials."""
    methods = identity.get("methods") or []
    users: list[Any] = []
    if "password" in methods:
        users.append((identity.get("password") or {}).get("user"))
    if "application_credential" in methods:
        cred = identity.get("application_credential") or {}
        if not cred.get("id"):
            users.append(cred.get("user"))
    for user in users:
        if isinstance(user, dict) and user.get("name") and not user.get("id") \
                and "domain" not in user:
            return "user"
    project = scope.get("project") if isinstance(scope, dict) else None
    if isinstance(project, dict) and project.get("name") and not project.get("id") \
            and "domain" not in project:
        return "project"
    return None


def _rackspace_view(view: dict[str, Any], s: Server) -> dict[str, Any]:
    """The Rackspace Cloud Servers server view (docs-cloud-servers server-details-resp.json):
    no os-extended-volumes, no OS-EXT-SRV-ATTR/OS-EXT-AZ/OS-SRV-USG, flavor as id + link."""
    for key in [k for k in view if k.startswith(("os-extended-volumes", "OS-EXT-SRV-ATTR",
                                                 "OS-EXT-AZ", "OS-SRV-USG"))]:
        del view[key]
    for key in ("config_drive", "security_groups", "key_name"):
        view.pop(key, None)
    view["progress"] = 100 if s.task_state is None and s.status != "BUILD" else 0
    return view


def _address(s: Server, label: str) -> str:
    """The server's address on a network: a documentation-range one on Rackspace's public."""
    if label == "public":
        last = s.address.rsplit(".", 1)[-1]
        return f"198.51.100.{last}"
    return s.address


def _identity_v3(base: str) -> dict[str, Any]:
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


def _identity_v2(base: str) -> dict[str, Any]:
    return {"id": "v2.0", "status": "deprecated", "updated": "2016-08-04T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v2.0/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v2.0+json"}]}


def _compute_version(base: str) -> dict[str, Any]:
    return {"id": "v2.1", "status": "CURRENT", "version": _mv_text(MAX_MICROVERSION),
            "min_version": _mv_text(MIN_MICROVERSION), "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "http://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def _extension(name: str, alias: str, namespace: str, description: str,
               updated: str = "2014-12-03T00:00:00Z") -> dict[str, Any]:
    return {"updated": updated, "name": name, "links": [], "namespace": namespace,
            "alias": alias, "description": description}


def _extensions(legacy: bool) -> list[dict[str, Any]]:
    """The extension list: Rackspace's documented sample, or a few of Nova's (v2.1 keeps
    the v2 list for compatibility, api/openstack/compute/extension_info.py)."""
    if legacy:
        return [
            _extension("DiskConfig", "OS-DCF",
                       "http://docs.openstack.org/compute/ext/disk_config/api/v1.1",
                       "Disk Management Extension.", "2011-09-27T00:00:00Z"),
            _extension("OSNetworksV2", "os-networksv2",
                       "http://docs.openstack.org/ext/services/api/v1.1",
                       "Admin-only Network Management Extension.", "2012-03-07T14:46:43Z"),
            _extension("VirtualInterfaces", "os-virtual-interfacesv2",
                       "http://docs.openstack.org/compute/ext/virtual_interfacesv2/api/v1.1",
                       "Virtual interface support.", "2011-08-17T00:00:00Z"),
            _extension("ScheduledImages", "rax-si-image-schedule",
                       "http://docs.openstack.org/servers/api/ext/scheduled_images/v1.0",
                       "Enables automatic scheduled images to be taken of a server.",
                       "2013-03-20T00:00:00Z"),
        ]
    ns = "http://docs.openstack.org/compute/ext/fake_xml"
    return [_extension("DiskConfig", "OS-DCF", ns, "Disk Management Extension."),
            _extension("ConsoleOutput", "os-console-output", ns,
                       "Console log output support, with tailing ability."),
            _extension("CreateBackup", "os-create-backup", ns, "Create a backup of a server."),
            _extension("InstanceActions", "os-instance-actions", ns, "View a log of actions "
                       "and events taken on an instance.")]


_IMAGE_SCHEMA: dict[str, Any] = {
    "name": "image",
    "additionalProperties": {"type": "string"},
    "properties": {
        key: {"type": kind} for key, kind in (
            ("id", "string"), ("name", ["null", "string"]), ("status", "string"),
            ("visibility", "string"), ("protected", "boolean"), ("os_hidden", "boolean"),
            ("checksum", ["null", "string"]), ("os_hash_algo", ["null", "string"]),
            ("os_hash_value", ["null", "string"]), ("owner", ["null", "string"]),
            ("size", ["null", "integer"]), ("virtual_size", ["null", "integer"]),
            ("container_format", ["null", "string"]), ("disk_format", ["null", "string"]),
            ("created_at", "string"), ("updated_at", "string"), ("tags", "array"),
            ("direct_url", "string"), ("min_ram", "integer"), ("min_disk", "integer"),
            ("self", "string"), ("file", "string"), ("schema", "string"),
            ("instance_uuid", "string"), ("kernel_id", ["null", "string"]),
            ("ramdisk_id", ["null", "string"]), ("locations", "array"))
    },
    "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
              {"rel": "describedby", "href": "{schema}"}],
}


def create_app(world: World, *, sleep: Sleep = asyncio.sleep) -> Starlette:
    """Build the ASGI app serving `world` (`sleep` is used by the slow and drop faults)."""
    api = _Api(world)
    table: list[tuple[str, str, Handler, str]] = []  # method, path, handler, stats template

    def add(method: str, path: str, handler: Handler, template: str | None = None) -> None:
        table.append((method, path, handler, template or path))

    for p in ("/identity", "/identity/"):
        add("GET", p, api.identity_versions, "/identity")
    for p in ("/identity/v3", "/identity/v3/"):
        add("GET", p, api.identity_v3, "/identity/v3")
    for p in ("/identity/v2.0", "/identity/v2.0/"):
        add("GET", p, api.identity_v2, "/identity/v2.0")
    add("POST", "/identity/v3/auth/tokens", api.tokens_v3)
    add("POST", "/identity/v2.0/tokens", api.tokens_v2)
    for p in ("/compute", "/compute/"):
        add("GET", p, api.compute_versions, "/compute")
    for p in ("/compute/v2.1", "/compute/v2.1/"):
        add("GET", p, api.compute_version, "/compute/v2.1")
    nova: list[tuple[str, str, Callable[[Request, tuple[int, int]], Awaitable[Response]]]] = [
        ("GET", "/servers", api.servers_list),
        ("GET", "/servers/detail", api.servers_detail),
        ("GET", "/servers/{server_id}", api.server_show),
        ("POST", "/servers/{server_id}/action", api.server_action),
        ("GET", "/servers/{server_id}/os-instance-actions", api.instance_actions),
        ("GET", "/servers/{server_id}/os-instance-actions/{request_id}", api.instance_action),
        ("POST", "/servers", api.server_create),
        ("DELETE", "/servers/{server_id}", api.server_delete),
        ("GET", "/servers/{server_id}/os-volume_attachments", api.volume_attachments),
        ("GET", "/servers/{server_id}/metadata", api.server_metadata),
        ("POST", "/servers/{server_id}/metadata", api.server_metadata_update),
        # Neutron ports: Rackspace's Cloud Servers has os-virtual-interfacesv2 instead.
        ("GET", "/servers/{server_id}/os-interface",
         api.no_route if world.legacy else api.server_interfaces),
        ("GET", "/limits", api.limits),
        ("GET", "/flavors", api.flavors),
        ("GET", "/flavors/detail", api.flavors),
        ("GET", "/flavors/{flavor_id}", api.flavor_show),
        ("GET", "/extensions", api.extensions),
        ("GET", "/extensions/{alias}", api.extension_show),
    ]
    # Scheduled images are Rackspace's extension; real Nova has no such route.
    nova += [(method, "/servers/{server_id}/rax-si-image-schedule",
              handler if world.legacy else api.no_route)
             for method, handler in (("GET", api.schedule_get), ("POST", api.schedule_post),
                                     ("DELETE", api.schedule_delete))]
    # Routes without a project id first, so `/servers/detail` never reads as a project id.
    for prefix in ("/compute/v2.1", "/compute/v2.1/{project_id}"):
        for method, rel, nova_handler in nova:
            add(method, prefix + rel, api.compute(nova_handler), "/compute/v2.1" + rel)
    for p in ("/image", "/image/", "/image/v2", "/image/v2/"):
        add("GET", p, api.image_versions, "/image")
    add("GET", "/image/v2/images", api.image(api.images_list))
    add("GET", "/image/v2/images/{image_id}", api.image(api.image_show))
    add("DELETE", "/image/v2/images/{image_id}", api.image(api.image_delete))
    add("PATCH", "/image/v2/images/{image_id}", api.image(api.image_update))
    add("GET", "/image/v2/schemas/image", api.image(api.image_schema))
    add("GET", "/image/v2/schemas/images", api.image(api.images_schema))
    add("GET", "/_sim/state", api.sim_state)
    add("GET", "/_sim/stats", api.sim_stats)
    add("POST", "/_sim/stats/reset", api.sim_stats_reset)
    add("GET", "/_sim/faults", api.sim_faults_get)
    add("POST", "/_sim/faults", api.sim_faults_post)
    add("DELETE", "/_sim/faults", api.sim_faults_clear)
    add("POST", "/_sim/clock/advance", api.sim_clock)
    add("DELETE", "/_sim/servers/{ref}", api.sim_server_delete)

    routes: list[Route] = []
    templates: list[tuple[Route, str]] = []
    for method, path, handler, template in table:
        route = Route(path, endpoint=_tagged(handler, f"{method} {template}"), methods=[method])
        routes.append(route)
        templates.append((route, template))
    return Starlette(routes=routes, middleware=[
        Middleware(SimMiddleware, world=world, sleep=sleep, templates=templates)])


def _tagged(handler: Handler, label: str) -> Handler:
    """Record the route template in the scope for the statistics middleware."""
    template = label.split(" ", 1)[1]

    async def endpoint(request: Request) -> Response:
        request.scope["sim.route"] = template
        return await handler(request)

    return endpoint
