"""Identity: Rackspace v2.0 tokens and catalogs, and the `Authenticator` every cloud uses.

Keystone clouds log in with keystoneauth1 (`bot.cloud.keystone`, injected as `keystone`);
Rackspace API-key and password logins are imagebot's own (below): the request matches the
unmaintained rackspaceauth plugin. The parsing and endpoint selection are pure functions;
`Authenticator` is the thin shell that holds the current token, re-authenticates before expiry,
and makes concurrent callers share one authentication in flight.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.cloud.config import CloudConfig
from bot.errors import AuthFailed, CloudRejected, ConfigError

REFRESH_MARGIN = timedelta(minutes=5)

# (method, url, json body) -> (status, headers, parsed json or None). Supplied by the client so
# identity calls get the same timeouts, retries and logging as everything else.
Post = Callable[[str, Mapping[str, Any]], Awaitable[tuple[int, Mapping[str, str], Any]]]


@dataclass(frozen=True)
class Session:
    """One token and the endpoints chosen from its catalog. The token never shows in repr."""

    token: str = field(repr=False)
    expires_at: datetime
    compute_url: str
    image_url: str
    project_id: str | None = None
    issued_at: datetime | None = None


def rackspace_request(config: CloudConfig) -> dict[str, Any]:
    """The Rackspace v2.0 `POST /tokens` body (API key or password)."""
    if config.auth_type == "rackspace_apikey":
        return {"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": config.username,
                                                         "apiKey": config.api_key}}}
    return {"auth": {"passwordCredentials": {"username": config.username,
                                             "password": config.password}}}


def tokens_url(config: CloudConfig) -> str:
    """Where to POST credentials, from an auth URL with or without a version suffix."""
    base = config.auth_url.rstrip("/")
    if config.is_rackspace:
        return base + "/tokens" if base.endswith("/v2.0") else base + "/v2.0/tokens"
    base = re.sub(r"/v2\.0$", "", base)
    return base + "/auth/tokens" if base.endswith("/v3") else base + "/v3/auth/tokens"


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp from an identity service as an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def image_v2(url: str) -> str:
    """Glance catalogs list the unversioned root; Rackspace lists `/v2`. Normalise to `/v2`."""
    url = url.rstrip("/")
    return url if re.search(r"/v2(\.\d+)?$", url) else url + "/v2"


def select_endpoint(catalog: Sequence[Mapping[str, Any]], service_type: str, *,
                    region: str | None, interface: str, name: str | None = None) -> str:
    """The URL of `service_type` (and service `name` if given) for region and interface.

    Handles Keystone v3 (`endpoints[{interface, region, url}]`) and v2.0/Rackspace
    (`endpoints[{region, publicURL, internalURL}]`) catalogs. An endpoint without a region is a
    global one and is used when no regional endpoint matches.
    """
    services = [s for s in catalog if s.get("type") == service_type
                and (name is None or s.get("name") == name)]
    if not services:
        raise no_endpoint(service_type, name, region=region, interface=interface, regions=None)
    seen: set[str] = set()
    for global_pass in (False, True):
        for service in services:
            for ep in service.get("endpoints") or []:
                ep_region = ep.get("region") or ep.get("region_id")
                if ep_region:
                    seen.add(str(ep_region))
                if global_pass:
                    if ep_region:
                        continue
                elif region is not None and ep_region != region:
                    continue
                url = _endpoint_url(ep, interface)
                if url:
                    return url
    raise no_endpoint(service_type, name, region=region, interface=interface, regions=seen)


def no_endpoint(service_type: str, name: str | None, *, region: str | None, interface: str,
                regions: Collection[str] | None) -> ConfigError:
    """The error for a catalog without the wanted service (`regions` None) or without an
    endpoint of it for this region and interface (`regions`: those it has)."""
    what = f"{service_type} service" + (f" named {name!r}" if name else "")
    if regions is None:
        return ConfigError(f"the service catalog has no {what}")
    where = f"region {region!r}, " if region else ""
    return ConfigError(f"no {where}{interface} endpoint for {what} in the catalog "
                       f"(regions: {', '.join(sorted(regions)) or 'none'})", key="region_name")


def session_endpoints(config: CloudConfig, pick: Callable[[str, str | None], str]
                      ) -> tuple[str, str]:
    """The (compute, image) URLs of a session: the configured override, else
    `pick(service_type, service_name)` from the catalog; compute without a trailing slash,
    image normalised to `/v2`. Rackspace (`select_endpoint`) and Keystone (keystoneauth's
    catalog) logins both choose here."""
    compute = config.compute_endpoint_override or pick("compute", config.compute_service_name)
    image = config.image_endpoint_override or pick("image", config.image_service_name)
    return compute.rstrip("/"), image_v2(image)


def _endpoint_url(ep: Mapping[str, Any], interface: str) -> str | None:
    if "url" in ep:
        return str(ep["url"]) if ep.get("interface", "public") == interface else None
    value = ep.get(f"{interface}URL")
    return str(value) if value else None


def parse_rackspace(config: CloudConfig, body: Any) -> Session:
    """A Session from a Rackspace v2.0 `access` document; compute is chosen by service name."""
    access = body.get("access") if isinstance(body, dict) else None
    token = access.get("token") if isinstance(access, dict) else None
    if not isinstance(token, dict) or "id" not in token or "expires" not in token:
        raise CloudRejected("identity answered without a token")
    assert isinstance(access, dict)
    region = config.region_name or (access.get("user") or {}).get("RAX-AUTH:defaultRegion")
    catalog = access.get("serviceCatalog") or []
    compute_url, image_url = session_endpoints(config, lambda kind, name: select_endpoint(
        catalog, kind, region=region, interface=config.interface, name=name))
    return Session(token=str(token["id"]), expires_at=parse_time(str(token["expires"])),
                   compute_url=compute_url, image_url=image_url,
                   project_id=(token.get("tenant") or {}).get("id"))


class Authenticator:
    """Holds the current Session; refreshes it before expiry and after a 401."""

    def __init__(self, config: CloudConfig, post: Post, clock: Callable[[], datetime],
                 margin: timedelta = REFRESH_MARGIN,
                 keystone: Callable[[], Awaitable[Session]] | None = None,
                 on_token: Callable[[str], None] | None = None) -> None:
        self._config = config
        self._post = post
        self._keystone = keystone
        self._on_token = on_token
        self._clock = clock
        self._margin = margin
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self.count = 0  # authentications performed (for tests and metrics)

    def _fresh(self, session: Session) -> bool:
        margin = self._margin
        if session.issued_at is not None:
            # A short-lived token (tests, odd clouds) must not be refreshed on every call.
            margin = min(margin, (session.expires_at - session.issued_at) / 4)
        return self._clock() < session.expires_at - margin

    async def session(self) -> Session:
        """A valid session; concurrent callers wait for the same authentication."""
        current = self._session
        if current is not None and self._fresh(current):
            return current
        async with self._lock:
            current = self._session
            if current is not None and self._fresh(current):
                return current
            self._session = await self._authenticate()
            return self._session

    async def refresh(self, stale: Session) -> Session:
        """Re-authenticate after `stale` was refused, unless another caller already did."""
        async with self._lock:
            if self._session is not None and self._session is not stale \
                    and self._fresh(self._session):
                return self._session
            self._session = await self._authenticate()
            return self._session

    async def _authenticate(self) -> Session:
        """Log in; the new token is told to `on_token` (the log filter learns it) before
        anything can use, and so log, it."""
        if self._config.is_rackspace:
            session = await self._rackspace()
        elif self._keystone is None:
            raise ConfigError(f"no Keystone login for cloud {self._config.name}")
        else:
            self.count += 1
            session = await self._keystone()
        if self._on_token is not None:
            self._on_token(session.token)
        return session

    async def _rackspace(self) -> Session:
        config = self._config
        body = rackspace_request(config)
        issued = self._clock()
        status, headers, doc = await self._post(tokens_url(config), body)
        self.count += 1
        if status == 401:
            raise AuthFailed(f"identity service at {config.auth_url} refused the credentials "
                             f"of {config.name}")
        if status == 403:
            raise AuthFailed(f"identity service at {config.auth_url} forbids this login")
        if status not in (200, 201):
            raise CloudRejected(f"identity service answered HTTP {status}")
        session = parse_rackspace(config, doc)
        return session if session.issued_at is not None else replace(session, issued_at=issued)
