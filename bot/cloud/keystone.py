"""Keystone authentication with keystoneauth1, the plugin the cloud's config names.

keystoneauth1 is synchronous (requests), so a login runs in a worker thread
(`asyncio.to_thread`) under a timeout. Its HTTP goes through a requests adapter that hands each
request back to the event loop and the client's own async httpx path (`CloudClient._send`), so
identity requests get the same TLS settings, request ids, retries and logging as Nova/Glance.
Every keystoneauth exception is translated into `bot.errors` here, at this one edge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import requests
import requests.adapters
import requests.structures
from keystoneauth1 import access as ks_access
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session

from bot.cloud.auth import Session, no_endpoint, session_endpoints
from bot.cloud.config import CloudConfig
from bot.errors import AuthFailed, CloudError, CloudRejected, CloudUnavailable, ConfigError

LOGIN_TIMEOUT = 60.0
_HOP_HEADERS = frozenset({"content-length", "host", "connection", "accept-encoding"})

# (method, url, headers, body) -> response; the client's `_send`, run on the event loop.
Send = Callable[[str, str, Mapping[str, str], bytes | None],
               Coroutine[Any, Any, httpx.Response]]


class LoopAdapter(requests.adapters.BaseAdapter):
    """A requests transport adapter that sends through an async function on `loop`."""

    def __init__(self, send: Send, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        super().__init__()
        self._send_async = send
        self._loop = loop
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        """Run the request on the event loop and wait for it (called from a worker thread)."""
        body = request.body
        content = body.encode() if isinstance(body, str) else body
        headers = {k: v for k, v in request.headers.items() if isinstance(v, str)
                   and k.lower() not in _HOP_HEADERS}
        future: concurrent.futures.Future[httpx.Response] = asyncio.run_coroutine_threadsafe(
            self._send_async(str(request.method), str(request.url), headers,
                             content if isinstance(content, bytes) else None), self._loop)
        try:
            resp = future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise requests.exceptions.Timeout(f"no answer within {self._timeout:.0f}s",
                                              request=request) from None
        out = requests.Response()
        out.status_code = resp.status_code
        out.headers = requests.structures.CaseInsensitiveDict(resp.headers)
        out._content = resp.content
        out.url = str(request.url)
        out.request = request
        out.reason = resp.reason_phrase
        out.encoding = resp.encoding
        return out

    def close(self) -> None:
        """Nothing to close: the httpx client owns the connections."""


def session_from_access(config: CloudConfig, access: Any) -> Session:
    """Our Session from keystoneauth's AccessInfo: the token and the endpoints chosen from its
    catalog by service type, interface and region (or the configured overrides)."""
    catalog = access.service_catalog

    def pick(service_type: str, name: str | None) -> str:
        try:
            url = catalog.url_for(service_type=service_type, interface=config.interface,
                                  region_name=config.region_name, service_name=name)
        except ks_exc.EndpointNotFound:
            regions = {str(ep.get("region_id") or ep.get("region"))
                       for svc in catalog.catalog if svc.get("type") == service_type
                       for ep in svc.get("endpoints") or []}
            raise no_endpoint(service_type, name, region=config.region_name,
                              interface=config.interface, regions=regions or None) from None
        return str(url)

    compute_url, image_url = session_endpoints(config, pick)
    expires = access.expires
    issued = access.issued
    return Session(
        token=str(access.auth_token),
        expires_at=expires.astimezone(UTC) if expires.tzinfo else expires.replace(tzinfo=UTC),
        compute_url=compute_url, image_url=image_url, project_id=access.project_id,
        issued_at=(issued.astimezone(UTC) if issued.tzinfo else issued.replace(tzinfo=UTC))
        if issued else None)


def session_from_body(config: CloudConfig, token: str, body: Mapping[str, Any]) -> Session:
    """A Session from a Keystone token response body (tests, samples)."""
    return session_from_access(config, ks_access.create(body=dict(body), auth_token=token))


def translate(config: CloudConfig, exc: BaseException) -> CloudError | ConfigError:
    """The one place keystoneauth exceptions become imagebot errors."""
    where = config.auth_url
    if isinstance(exc, CloudError | ConfigError):
        return exc
    if isinstance(exc, ks_exc.Unauthorized):
        return AuthFailed(f"identity service at {where} refused the credentials of "
                          f"{config.name}")
    if isinstance(exc, ks_exc.Forbidden):
        return AuthFailed(f"identity service at {where} forbids this login")
    if isinstance(exc, ks_exc.EndpointNotFound | ks_exc.EmptyCatalog):
        return ConfigError(f"identity service at {where}: {exc}", key="region_name")
    if isinstance(exc, ks_exc.ConnectionError | ks_exc.RequestTimeout):
        return CloudUnavailable(f"cannot reach the identity service at {where} "
                                f"({type(exc).__name__})")
    if isinstance(exc, ks_exc.HttpError):
        status = exc.http_status or 0
        if status >= 500:
            return CloudUnavailable(f"identity service answered HTTP {status}")
        return CloudRejected(f"identity service answered HTTP {status}")
    if isinstance(exc, ks_exc.DiscoveryFailure):
        return CloudRejected(f"identity service at {where}: {exc}")
    if isinstance(exc, ks_exc.AuthPluginException | ks_exc.OptionError):
        return ConfigError(f"auth type {config.auth_type}: {exc}", path=config.source or None,
                           key=f"clouds.{config.name}.auth")
    if isinstance(exc, ks_exc.ClientException):
        return CloudRejected(f"identity service at {where}: {exc}")
    if isinstance(exc, TimeoutError):
        return CloudUnavailable(f"the identity service at {where} did not answer in time")
    raise exc


class KeystoneLogin:
    """The keystoneauth1 plugin of one cloud and the keystoneauth Session it logs in with."""

    def __init__(self, config: CloudConfig, send: Send, timeout: float = LOGIN_TIMEOUT) -> None:
        self._config = config
        self._send = send
        self._timeout = timeout
        self._plugin: Any = None
        self._session: ks_session.Session | None = None

    def _ks_session(self, loop: asyncio.AbstractEventLoop) -> ks_session.Session:
        if self._session is None:
            http = requests.Session()
            http.trust_env = False  # the httpx client below has the settings
            adapter = LoopAdapter(self._send, loop, self._timeout)
            http.mount("http://", adapter)
            http.mount("https://", adapter)
            self._plugin = self._config.keystone_plugin()
            self._session = ks_session.Session(auth=self._plugin, session=http,
                                               timeout=self._timeout)
        return self._session

    def _login(self, loop: asyncio.AbstractEventLoop) -> Any:
        session = self._ks_session(loop)
        # We decide when to re-authenticate (before expiry, after a 401): always a new token.
        self._plugin.invalidate()
        return self._plugin.get_access(session)

    async def __call__(self) -> Session:
        """Authenticate (off the event loop, under the timeout) and pick the endpoints."""
        loop = asyncio.get_running_loop()
        try:
            access = await asyncio.wait_for(asyncio.to_thread(self._login, loop),
                                            self._timeout)
            session = session_from_access(self._config, access)
        except TimeoutError:
            # The worker thread may be stuck for good inside keystoneauth holding its plugin's
            # lock (a 401 on the unauthenticated discovery GET re-enters it): start afresh
            # next time, so one hung login never blocks the later ones.
            self._session = None
            self._plugin = None
            raise translate(self._config, TimeoutError()) from None
        except Exception as exc:  # noqa: BLE001 - translated, never swallowed
            raise translate(self._config, exc) from None
        if session.issued_at is None:
            session = dataclasses.replace(session, issued_at=datetime.now(UTC))
        return session
