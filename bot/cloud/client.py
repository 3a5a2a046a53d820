"""The async cloud client: Nova and Glance (and Rackspace rax-si) over one `httpx.AsyncClient`.

Callers see `bot.cloud.models` types and `bot.errors` exceptions only; no httpx type and no raw
status code leaves this module.

Resilience rules:
- Every request gets our own `X-Openstack-Request-Id: req-<uuid4>`, logged together with the
  cloud's request id. Bodies and headers are never logged, so tokens and passwords are not.
- 413/429 with `Retry-After` (seconds or HTTP date): sleep that long and retry (also for
  createImage, a rate-limited request was not processed), unless the wait exceeds
  `max_retry_after`; then `RateLimited`. 413 without `Retry-After` is a quota: `QuotaExceeded`.
- 5xx, connect errors and timeouts: exponential backoff with jitter, `max_tries` in all, then
  `CloudUnavailable`. createImage is not idempotent, so it is retried only when the request
  provably never left (connect errors); a 5xx or a read timeout on it is `CloudUnavailable`
  at once and the caller reconciles by image metadata.
- 401: re-authenticate once and repeat the request; a second 401 is `AuthFailed`.
- Every response is read at one edge (`_fetch`): at most `max_body` bytes (a bigger body is
  `CloudBadResponse` at once, read no further) within `timeout` seconds in total (httpx's own
  timeout is per read, so a body dripping a byte at a time would hold us for ever). An answer
  we cannot parse (not JSON, the wrong shape) is `CloudBadResponse` too, never a bare
  ValueError/KeyError: every public method is wrapped by `_reads_cloud`.
- Keystone clouds log in with keystoneauth1 (`bot.cloud.keystone`) off the event loop; its
  requests come back here (`_send`), so identity shares this client's TLS settings and retries.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import difflib
import email.utils
import functools
import logging
import random
import re
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from bot.cloud.auth import Authenticator, Session, parse_time
from bot.cloud.config import CloudConfig
from bot.cloud.keystone import LOGIN_TIMEOUT, KeystoneLogin
from bot.cloud.models import Image, Observation, Server
from bot.cloud.rax import RaxSchedule, parse_schedule
from bot.errors import (
    Ambiguous,
    AuthFailed,
    CloudBadResponse,
    CloudError,
    CloudRejected,
    CloudUnavailable,
    Forbidden,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServerBusy,
)

log = logging.getLogger("bot.cloud")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

CREATE_IMAGE_MICROVERSION = "2.45"  # createImage answers {"image_id": ...}
READ_MICROVERSION = "2.47"  # server views embed the flavor (ephemeral size)
SERVER_PAGE = 1000  # Nova's default max_limit
IMAGE_PAGE = 200
MAX_URL = 8000  # stay under the common 8 KB request-line limit (eventlet, Apache, nginx)
CURSOR_SKEW = timedelta(seconds=10)
MAX_PAGES = 10_000  # a loop guard against a cloud that keeps sending `next`
PER_IMAGE_GETS = 8  # without `in:`, up to this many images are looked at one GET each
PER_SERVER_GETS = 5  # under a strict changes-since limit, up to this many servers one GET each
_CHANGES_SINCE = "/servers/detail?changes-since=2000-01-01T00:00:00Z"
_ONE_SERVER = "/servers/00000000-0000-0000-0000-000000000000"
LIMIT_UNITS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
# Both Glance v2 spellings of "newest first": `sort_key`/`sort_dir` works on every Glance v2
# (Rackspace Cloud Images documents only these); `sort=created_at:desc` is newer and an older
# Glance reads an unknown parameter as a filter (docs-cloud-images get-list-images-images.rst).
NEWEST_FIRST = {"sort_key": "created_at", "sort_dir": "desc"}
# A page of 1000 Nova servers with embedded flavors is ~4 MB; nothing we ask for is bigger.
MAX_BODY = 8 * 1024 * 1024
_GLANCE_CORE = frozenset({
    "id", "name", "status", "size", "created_at", "updated_at", "protected", "visibility",
    "tags", "checksum", "container_format", "disk_format", "min_disk", "min_ram", "owner",
    "self", "file", "schema", "virtual_size", "os_hash_algo", "os_hash_value", "os_hidden",
    "locations", "direct_url", "stores"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_request_counter: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "bot_cloud_request_counter", default=None)
# Bodies read during the current public call: a parse error is the cloud's only after one.
_bodies_read: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "bot_cloud_bodies_read", default=None)
# What a cloud answer that is not the JSON we expect raises while we take it apart.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError)

P = ParamSpec("P")
R = TypeVar("R")


class _TooBig(Exception):
    """A response body grew past `max_body`."""


def _reads_cloud(fn: Callable[Concatenate[CloudClient, P], Coroutine[Any, Any, R]]
                 ) -> Callable[Concatenate[CloudClient, P], Coroutine[Any, Any, R]]:
    """Translate a parse error of a cloud answer (a 200 that is not JSON, or JSON of the
    wrong shape) into `CloudBadResponse`. An error raised before any answer was read (our
    own argument checks) passes unchanged."""

    @functools.wraps(fn)
    async def wrapper(self: CloudClient, *args: P.args, **kwargs: P.kwargs) -> R:
        bodies = _bodies_read.get()
        token = None
        if bodies is None:
            bodies = [0]
            token = _bodies_read.set(bodies)
        try:
            return await fn(self, *args, **kwargs)
        except _PARSE_ERRORS as exc:
            if not bodies[0]:
                raise
            detail = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("cloud %s: unreadable answer to %s (%s)", self.config.name,
                        fn.__name__, detail)
            raise CloudBadResponse(f"unexpected answer to {fn.__name__} ({detail})") from None
        finally:
            if token is not None:
                _bodies_read.reset(token)

    return wrapper


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _real_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _mv_headers(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}",
            "X-OpenStack-Nova-API-Version": version}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _marker(href: str | None) -> str | None:
    """The `marker` of a next link; we re-issue it against our own endpoint (Nova and Glance
    behind proxies are known to build next links with the wrong host or scheme)."""
    if not href:
        return None
    values = parse_qs(urlsplit(href).query).get("marker")
    return values[-1] if values else None


def _iso(value: datetime) -> str:
    """Second-resolution UTC timestamp (Nova stores updated_at to the second)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- parsing (pure) -------------------------------------------------------------------------


def parse_server(doc: Mapping[str, Any]) -> Server:
    """A Server from a Nova server view (any microversion)."""
    image = doc.get("image")
    volume_backed = not image  # "" (or missing) when booted from a volume
    volumes = [str(v["id"]) for v in doc.get("os-extended-volumes:volumes_attached") or []
               if isinstance(v, Mapping) and v.get("id")]
    # For a volume-backed server the first attached volume is its root disk.
    data = volumes[1:] if volume_backed else volumes
    disks = [f"volume {v}" for v in data]
    flavor = doc.get("flavor") or {}
    ephemeral = flavor.get("ephemeral") if isinstance(flavor, Mapping) else None
    if isinstance(ephemeral, int) and not isinstance(ephemeral, bool) and ephemeral > 0:
        disks.append(f"ephemeral disk {ephemeral} GB")
    power = doc.get("OS-EXT-STS:power_state")
    return Server(
        id=str(doc["id"]), name=str(doc.get("name") or ""), status=str(doc.get("status") or ""),
        vm_state=doc.get("OS-EXT-STS:vm_state"), task_state=doc.get("OS-EXT-STS:task_state"),
        power_state=power if isinstance(power, int) else None,
        volume_backed=volume_backed, data_disks=tuple(disks),
        flavor=str(flavor.get("original_name") or flavor.get("id") or "")
        if isinstance(flavor, Mapping) else "",
        updated=str(doc.get("updated") or ""))


def reports_volumes(doc: Mapping[str, Any]) -> bool:
    """Whether a server view lists its volumes (`os-extended-volumes`); Rackspace's does not,
    so its data disks come from `os-volume_attachments`."""
    return "os-extended-volumes:volumes_attached" in doc


def with_attachments(server: Server, doc: Any, flavor_disks: Sequence[str] = ()) -> Server:
    """`server` with the volumes of an `os-volume_attachments` answer as data disks (the boot
    volume of a volume-backed server, device `/dev/[x]vda`, is not a data disk)."""
    items = doc.get("volumeAttachments") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        return server
    volumes = [(str(a.get("device") or ""), str(a.get("volumeId") or a.get("id")))
               for a in items if isinstance(a, Mapping) and (a.get("volumeId") or a.get("id"))]
    if server.volume_backed and volumes:
        roots = [v for v in volumes if re.fullmatch(r"/dev/(x?v|s)da", v[0])]
        volumes.remove(roots[0] if roots else volumes[0])
    disks = [f"volume {vid}" for _, vid in volumes]
    disks += [d for d in server.data_disks if not d.startswith("volume ")]
    return dataclasses.replace(server, data_disks=tuple(disks))


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """One published rate limit of Nova's `GET /limits` (Rackspace fills these in)."""

    verb: str
    regex: str
    value: int
    period: float  # seconds

    def matches(self, verb: str, target: str) -> bool:
        """Whether a request `verb target` (path after the tenant root, with query) counts."""
        if verb != self.verb:
            return False
        try:
            return re.search(self.regex, target) is not None
        except re.error:
            return False

    @property
    def interval(self) -> float:
        """The spacing that stays under the limit."""
        return self.period / self.value


def parse_limits(doc: Any) -> list[RateLimit]:
    """The rate limits of a Nova `/limits` document (`limits.rate[{uri, regex, limit[{verb,
    value, unit}]}]`, Rackspace docs-cloud-servers limits.rst); [] when none are published."""
    rate = (doc.get("limits") or {}).get("rate") if isinstance(doc, Mapping) else None
    out: list[RateLimit] = []
    for entry in rate if isinstance(rate, list) else []:
        if not isinstance(entry, Mapping):
            continue
        regex = str(entry.get("regex") or ".*")
        for lim in entry.get("limit") or []:
            if not isinstance(lim, Mapping):
                continue
            value, unit = lim.get("value"), str(lim.get("unit") or "").upper()
            if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
                    and unit in LIMIT_UNITS:
                out.append(RateLimit(str(lim.get("verb") or "").upper(), regex, value,
                                     LIMIT_UNITS[unit]))
    return out


def parse_image(doc: Mapping[str, Any]) -> Image:
    """An Image from a flat Glance v2 image document; extra keys become `properties`."""
    props: dict[str, str] = {}
    for key, value in doc.items():
        if key in _GLANCE_CORE or value is None or isinstance(value, dict | list):
            continue
        props[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    size = doc.get("size")
    return Image(id=str(doc["id"]), name=str(doc.get("name") or ""),
                 status=str(doc.get("status") or "").lower(),
                 size=size if isinstance(size, int) else None,
                 created_at=str(doc.get("created_at") or ""),
                 updated_at=str(doc.get("updated_at") or ""),
                 protected=bool(doc.get("protected")),
                 visibility=str(doc.get("visibility") or "private"), properties=props)


def match_server(ref: str, servers: Sequence[Server]) -> Server:
    """The one server named exactly `ref`; `Ambiguous` or `NotFound` with close names."""
    exact = [s for s in servers if s.name == ref]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise Ambiguous("server", ref, [(s.id, s.name) for s in exact])
    names = sorted({s.name for s in servers})
    folded = [n for n in names if n.lower() == ref.lower()]
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    suggestions = folded + [n for n in close if n not in folded]
    raise NotFound("server", ref, suggestions[:3])


def fault_message(resp: httpx.Response) -> str:
    """The human part of a Nova (`{name: {message}}`), Keystone or Glance (text) error."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for inner in doc.values():
            if isinstance(inner, dict) and inner.get("message"):
                return str(inner["message"])[:300]
        if doc.get("message"):
            return str(doc["message"])[:300]
    lines = [ln.strip() for ln in resp.text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not re.match(r"^\d{3} ", ln)] or lines
    return " ".join(lines)[:300] or f"HTTP {resp.status_code}"


def busy_state(message: str) -> str | None:
    """The task state in Nova's 409 message (`... while it is in task_state image_uploading`)."""
    m = re.search(r"task_state (\w+)", message)
    return m.group(1) if m else None


def retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _request_id(resp: httpx.Response) -> str:
    return (resp.headers.get("x-openstack-request-id")
            or resp.headers.get("x-compute-request-id")
            or resp.request.headers.get("x-openstack-request-id", ""))


def error_for(resp: httpx.Response, kind: str, name: str) -> CloudError:
    """Translate an unexpected response into the error tree."""
    status = resp.status_code
    message = fault_message(resp)
    rid = _request_id(resp)
    if status == 401:
        return AuthFailed(f"the cloud refused the token: {message}", request_id=rid)
    if status == 403:
        if "quota" in message.lower():
            return QuotaExceeded(message, request_id=rid)
        return Forbidden(f"{kind} {name}: {message}", request_id=rid)
    if status == 404:
        return NotFound(kind, name, request_id=rid)
    if status == 409:
        return CloudRejected(f"{kind} {name} is in a conflicting state: {message}",
                             request_id=rid)
    if status in (413, 429):
        after = retry_after(resp.headers.get("retry-after"), _utcnow())
        if after is not None or status == 429:
            return RateLimited(f"rate limited ({message})", retry_after=after, request_id=rid)
        return QuotaExceeded(f"quota exceeded: {message}", request_id=rid)
    if status >= 500:
        return CloudUnavailable(f"HTTP {status} from the cloud: {message}", request_id=rid)
    return CloudRejected(f"HTTP {status} for {kind} {name}: {message}", request_id=rid)


# ---- the client -----------------------------------------------------------------------------


class CloudClient:
    """Async client for one cloud; use as `async with CloudClient(config) as cloud:`."""

    def __init__(self, config: CloudConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Clock | None = None, sleep: Sleep | None = None, timeout: float = 30.0,
                 max_tries: int = 4, max_backoff: float = 30.0, max_retry_after: float = 60.0,
                 rng: Callable[[], float] | None = None, max_body: int = MAX_BODY) -> None:
        self.config = config
        self._clock: Clock = clock or _utcnow
        self._sleep: Sleep = sleep or _real_sleep
        self._rng = rng or random.random
        self._max_tries = max(1, max_tries)
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._timeout = timeout  # total, per request: headers and the whole body
        self._max_body = max_body
        # The resolved TLS settings (cacert / verify / insecure / cert+key). httpx uses them
        # for the transport it builds; a caller passing its own transport builds it with
        # `config.ssl_verify()` too (bot.wiring does).
        self.tls = config.ssl_verify()
        self._http = httpx.AsyncClient(
            transport=transport, follow_redirects=False, verify=self.tls,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Accept": "application/json", "User-Agent": "imagebot"})
        keystone = None if config.is_rackspace else KeystoneLogin(
            config, self._identity_send, timeout=max(LOGIN_TIMEOUT, timeout))
        self._auth = Authenticator(config, self._identity_post, self._clock,
                                   keystone=keystone)
        self._mv_refused: set[str] = set()  # microversions this cloud answered 406 to
        self._glance_in: bool | None = None  # does this Glance know `id=in:`? (probed once)
        self._limits: list[RateLimit] | None = None  # Nova's published rate limits
        self._flavors: dict[str, int] = {}  # flavor id -> ephemeral GB (views without it)

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    @property
    def authentications(self) -> int:
        """How many times we authenticated (tests, metrics)."""
        return self._auth.count

    @_reads_cloud
    async def endpoints(self) -> tuple[str, str]:
        """Authenticate if needed; the (compute, image) endpoints in use."""
        session = await self._auth.session()
        return session.compute_url, session.image_url

    @_reads_cloud
    async def discover(self) -> None:
        """Learn this cloud once: authenticate, probe Glance for `in:`, read Nova's published
        rate limits. Everything also happens lazily on first use (the engine reads the
        limits before its first observation of each cloud); tests and tools call this to
        learn the cloud up front."""
        await self._auth.session()
        await self._supports_in()
        await self.rate_limits()

    # -- transport ------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        base = min(self._max_backoff, 0.5 * 2 ** (attempt - 1))
        return base * (0.5 + self._rng() / 2)  # jitter: half to full

    async def _fetch(self, method: str, url: str, *, params: Mapping[str, str] | None,
                     json: Any, headers: Mapping[str, str],
                     content: bytes | None = None) -> httpx.Response:
        """The response-reading edge: one request, its body streamed and read completely,
        at most `max_body` bytes (`_TooBig`, the rest unread) and within `timeout` seconds
        from start to the last byte (`TimeoutError`)."""
        request = self._http.build_request(method, url, params=params, json=json,
                                           content=content, headers=headers)
        async with asyncio.timeout(self._timeout):
            resp = await self._http.send(request, stream=True)
            try:
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self._max_body:
                    raise _TooBig(declared)
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():  # decoded: a gzip bomb counts in full
                    size += len(chunk)
                    if size > self._max_body:
                        raise _TooBig(str(size))
                    chunks.append(chunk)
            finally:
                await resp.aclose()
        bodies = _bodies_read.get()
        if bodies is not None:
            bodies[0] += 1
        # The body is decoded already: drop the encoding headers that described the wire form.
        kept = [(k, v) for k, v in resp.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(resp.status_code, headers=kept, content=b"".join(chunks),
                              request=request, extensions=resp.extensions)

    async def _send(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
                    json: Any = None, headers: Mapping[str, str] | None = None,
                    idempotent: bool = True, content: bytes | None = None) -> httpx.Response:
        """One logical request with retries; returns any response the caller must judge."""
        last: CloudError | None = None
        for attempt in range(1, self._max_tries + 1):
            rid = f"req-{uuid.uuid4()}"
            hdrs = {**(headers or {}), "X-Openstack-Request-Id": rid}
            counter = _request_counter.get()
            if counter is not None:
                counter[0] += 1
            started = time.monotonic()
            path = urlsplit(url).path
            try:
                resp = await self._fetch(method, url, params=params, json=json,
                                          content=content, headers=hdrs)
            except _TooBig as exc:
                # Retrying would fetch the same flood again.
                log.warning("cloud %s %s %s: answer over %d bytes (%s), not read further",
                            method, path, rid, self._max_body, exc)
                raise CloudBadResponse(f"the answer to {method} {path} was larger than "
                                       f"{self._max_body // (1024 * 1024)} MB",
                                       request_id=rid) from None
            except TimeoutError:
                # A dripping or stalled answer: it will drip again, so no retry.
                log.warning("cloud %s %s %s: no complete answer within %.0f s", method,
                            path, rid, self._timeout)
                if not idempotent:
                    raise CloudUnavailable(
                        f"{method} {path} may or may not have been applied (no complete "
                        f"answer within {self._timeout:.0f} s)", request_id=rid) from None
                raise CloudBadResponse(f"no complete answer to {method} {path} within "
                                       f"{self._timeout:.0f} s", request_id=rid) from None
            except httpx.HTTPError as exc:
                sent = not isinstance(exc, _NOT_SENT)
                # INFO, not WARNING: a retry is routine; the final failure is raised.
                log.info("cloud %s %s %s failed (try %d/%d): %s", method, path, rid,
                         attempt, self._max_tries, type(exc).__name__)
                host = urlsplit(url).netloc
                last = CloudUnavailable(f"cannot reach {host} ({type(exc).__name__} on "
                                        f"{method} {path}, {attempt} tries)", request_id=rid)
                if sent and not idempotent:
                    raise CloudUnavailable(
                        f"{method} {path} may or may not have been applied "
                        f"({type(exc).__name__})", request_id=rid) from None
                if attempt < self._max_tries:
                    await self._sleep(self._backoff(attempt))
                continue
            status = resp.status_code
            log.debug("cloud %s %s -> %d %s (cloud id %s) %.0f ms", method, path, status, rid,
                     resp.headers.get("x-openstack-request-id")
                     or resp.headers.get("x-compute-request-id") or "-",
                     (time.monotonic() - started) * 1000)
            if status in (413, 429):
                wait = retry_after(resp.headers.get("retry-after"), self._clock())
                if wait is None and status == 413:
                    return resp  # a quota, not a rate limit
                if wait is None:
                    wait = self._backoff(attempt)
                last = RateLimited(f"{method} {path} rate limited: {fault_message(resp)}",
                                   retry_after=wait, request_id=_request_id(resp))
                if wait > self._max_retry_after or attempt == self._max_tries:
                    raise last
                await self._sleep(wait)
                continue
            if status >= 500 and status != 501:
                last = CloudUnavailable(f"HTTP {status} on {method} {path}: "
                                        f"{fault_message(resp)}", request_id=_request_id(resp))
                if not idempotent:
                    raise last
                if attempt < self._max_tries:
                    await self._sleep(self._backoff(attempt))
                continue
            return resp
        assert last is not None
        raise last

    async def _identity_send(self, method: str, url: str, headers: Mapping[str, str],
                             content: bytes | None) -> httpx.Response:
        """keystoneauth's requests, sent from its worker thread through this loop."""
        return await self._send(method, url, headers=headers, content=content)

    async def _identity_post(self, url: str, body: Mapping[str, Any]
                             ) -> tuple[int, Mapping[str, str], Any]:
        resp = await self._send("POST", url, json=body)
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if 200 <= resp.status_code < 300 and not isinstance(doc, dict):
            raise CloudBadResponse("the identity service answered something that is not a "
                                   "token document", request_id=_request_id(resp))
        return resp.status_code, resp.headers, doc

    async def _call(self, service: str, method: str, path: str, *,
                    params: Mapping[str, str] | None = None, json: Any = None,
                    headers: Mapping[str, str] | None = None,
                    idempotent: bool = True) -> httpx.Response:
        """An authenticated request to `service` ("compute" or "image"); one re-auth on 401."""
        session = await self._auth.session()
        for attempt in (1, 2):
            base = session.compute_url if service == "compute" else session.image_url
            resp = await self._send(method, base + path, params=params, json=json,
                                    headers={**(headers or {}), "X-Auth-Token": session.token},
                                    idempotent=idempotent)
            if resp.status_code != 401:
                return resp
            if attempt == 1:
                log.info("cloud answered 401, re-authenticating once")
                session = await self._refresh(session)
        raise AuthFailed("the cloud refused a freshly issued token",
                         request_id=_request_id(resp))

    async def _refresh(self, stale: Session) -> Session:
        return await self._auth.refresh(stale)

    async def _compute(self, method: str, path: str, *, version: str,
                       params: Mapping[str, str] | None = None, json: Any = None,
                       idempotent: bool = True) -> httpx.Response:
        """A Nova call at `version`, falling back to no microversion after a 406."""
        if version not in self._mv_refused:
            resp = await self._call("compute", method, path, params=params, json=json,
                                    headers=_mv_headers(version), idempotent=idempotent)
            if resp.status_code != 406:
                return resp
            log.info("compute refused microversion %s; continuing without", version)
            self._mv_refused.add(version)
        return await self._call("compute", method, path, params=params, json=json,
                                idempotent=idempotent)

    # -- servers --------------------------------------------------------------------------

    @_reads_cloud
    async def get_server(self, server_id: str, *, disks: bool = True) -> Server:
        """One server by id (`NotFound` if absent); `disks=False` skips the extra look-ups of
        data disks a Rackspace view needs (observation wants task states only)."""
        resp = await self._compute("GET", f"/servers/{quote(server_id, safe='')}",
                                   version=READ_MICROVERSION)
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        doc = resp.json()["server"]
        server = parse_server(doc)
        return server if reports_volumes(doc) or not disks else await self._attached(server)

    async def _attached(self, server: Server) -> Server:
        """Data disks from `os-volume_attachments` (Nova api-ref "List volume attachments for
        an instance"; Rackspace Cloud Servers ext-volume-attachments), for server views that
        do not list volumes. Without the extension the server stays as it is."""
        resp = await self._call("compute", "GET",
                                f"/servers/{quote(server.id, safe='')}/os-volume_attachments")
        if resp.status_code != 200:
            log.info("no os-volume_attachments for server %s (HTTP %d)", server.id,
                     resp.status_code)
        else:
            server = with_attachments(server, resp.json())
        if server.flavor and not any(d.startswith("ephemeral ") for d in server.data_disks):
            # Such a view names the flavor by id only; its ephemeral disk (Rackspace's "data
            # disks" of I/O flavors) is in the flavor (`OS-FLV-EXT-DATA:ephemeral`).
            ephemeral = await self._flavor_ephemeral(server.flavor)
            if ephemeral:
                server = dataclasses.replace(server, data_disks=server.data_disks + (
                    f"ephemeral disk {ephemeral} GB",))
        return server

    async def _flavor_ephemeral(self, flavor_id: str) -> int:
        """The ephemeral disk size (GB) of a flavor, 0 when none or unknown; cached."""
        if flavor_id not in self._flavors:
            resp = await self._call("compute", "GET", f"/flavors/{quote(flavor_id, safe='')}")
            doc = resp.json().get("flavor") if resp.status_code == 200 else None
            value = doc.get("OS-FLV-EXT-DATA:ephemeral") if isinstance(doc, dict) else None
            self._flavors[flavor_id] = value if isinstance(value, int) and \
                not isinstance(value, bool) and value > 0 else 0
        return self._flavors[flavor_id]

    async def _server_pages(self, params: dict[str, str], limit: int | None
                            ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = SERVER_PAGE if limit is None else max(1, min(limit, SERVER_PAGE))
        params = {**params, "limit": str(page)}
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            resp = await self._compute("GET", "/servers/detail", version=READ_MICROVERSION,
                                       params=params)
            if resp.status_code != 200:
                raise error_for(resp, "server", "list")
            doc = resp.json()
            out.extend(doc["servers"])  # always there; a listing without it is garbage
            if limit is not None and len(out) >= limit:
                return out[:limit]
            nxt = next((ln.get("href") for ln in doc.get("servers_links") or []
                        if ln.get("rel") == "next"), None)
            marker = _marker(nxt)
            if marker is None or marker in seen:
                break
            seen.add(marker)
            params["marker"] = marker
        return out

    @_reads_cloud
    async def list_servers(self, limit: int | None = None) -> list[Server]:
        """Servers, newest first, following `servers_links` (at most `limit`)."""
        return [parse_server(d) for d in await self._server_pages({}, limit)]

    async def _list_servers_marking(self) -> tuple[list[Server], set[str]]:
        """All servers, and the ids whose view did not list volumes."""
        docs = await self._server_pages({}, None)
        return [parse_server(d) for d in docs], {str(d["id"]) for d in docs
                                                 if not reports_volumes(d)}

    @_reads_cloud
    async def find_server(self, ref: str) -> Server:
        """A server by UUID or exact name; `Ambiguous` or `NotFound` with close names."""
        ref = ref.strip()
        if _is_uuid(ref):
            try:
                return await self.get_server(ref)
            except NotFound:
                pass  # a server may be named like a UUID; try names below
        # Nova's `name` filter is a regex: list and compare exactly on our side.
        servers, bare = await self._list_servers_marking()
        found = match_server(ref, servers)
        return await self._attached(found) if found.id in bare else found

    @_reads_cloud
    async def find_servers(self, refs: Collection[str]) -> dict[str, Server | CloudRejected]:
        """Many servers by UUID or exact name with one (paged) listing: for each ref the
        server, or the `Ambiguous`/`NotFound` that `find_server` would raise."""
        servers, bare = await self._list_servers_marking()
        by_id = {s.id: s for s in servers}
        found: dict[str, Server | CloudRejected] = {}
        for ref in refs:
            key = ref.strip()
            if _is_uuid(key) and key.lower() in by_id:
                found[ref] = by_id[key.lower()]
                continue
            try:
                found[ref] = match_server(key, servers)
            except CloudRejected as exc:
                found[ref] = exc
        # Only the few servers asked for cost one more request each (Rackspace views).
        attached: dict[str, Server] = {}
        for ref, server in list(found.items()):
            if isinstance(server, Server) and server.id in bare:
                if server.id not in attached:
                    attached[server.id] = await self._attached(server)
                found[ref] = attached[server.id]
        return found

    # -- images ---------------------------------------------------------------------------

    @_reads_cloud
    async def create_image(self, server_id: str, name: str, metadata: Mapping[str, str]) -> str:
        """Start a snapshot; the new image id. 409 is `ServerBusy` (never retried)."""
        body = {"createImage": {"name": name, "metadata": dict(metadata)}}
        path = f"/servers/{quote(server_id, safe='')}/action"
        resp = await self._compute("POST", path, version=CREATE_IMAGE_MICROVERSION, json=body,
                                   idempotent=False)
        rid = _request_id(resp)
        if resp.status_code == 409:
            message = fault_message(resp)
            raise ServerBusy(server_id, busy_state(message), message, request_id=rid)
        if resp.status_code not in (200, 202):
            raise error_for(resp, "server", server_id)
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("image_id"):
            return str(doc["image_id"])
        location = resp.headers.get("location")
        if location:
            image_id = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
            if image_id:
                return image_id
        raise CloudUnavailable("createImage was accepted but named no image id",
                               request_id=rid)

    @_reads_cloud
    async def get_image(self, image_id: str) -> Image:
        """One image by id (`NotFound` if absent)."""
        resp = await self._call("image", "GET", f"/images/{quote(image_id, safe='')}")
        if resp.status_code != 200:
            raise error_for(resp, "image", image_id)
        return parse_image(resp.json())

    async def _image_docs(self, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Glance listing pages (the JSON documents), following `next` until it ends or
        repeats; the caller may stop early."""
        params = dict(params)
        params.setdefault("limit", str(IMAGE_PAGE))
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            resp = await self._call("image", "GET", "/images", params=params)
            if resp.status_code != 200:
                raise error_for(resp, "image", "list")
            doc = resp.json()
            yield doc
            marker = _marker(doc.get("next"))
            if marker is None or marker in seen:
                return
            seen.add(marker)
            params["marker"] = marker

    async def _image_pages(self, params: dict[str, str]) -> list[Image]:
        out: list[Image] = []
        async for doc in self._image_docs(params):
            out.extend(parse_image(d) for d in doc["images"])  # (as for servers)
        return out

    @_reads_cloud
    async def list_images(self, server_id: str | None = None,
                          properties: Mapping[str, str] | None = None) -> list[Image]:
        """Images, newest first, of `server_id` (instance_uuid) and with these properties.

        The properties are checked on every answer, so a Glance that ignores a property filter
        (and lists everything) cannot make us act on another image. An older Glance (no `in:`,
        like Rackspace Cloud Images) documents filters on image attributes only: there we list
        the project's own images (`owner`) and filter here, so a property filter it does not
        honour cannot hide an image either."""
        wanted = {str(k): str(v) for k, v in (properties or {}).items()}
        if server_id is not None:
            wanted["instance_uuid"] = server_id
        params: dict[str, str] = dict(NEWEST_FIRST)
        if await self._supports_in():
            params.update(wanted)
        else:
            owner = (await self._auth.session()).project_id
            if owner:
                params["owner"] = owner
        found = await self._image_pages(params)
        return [im for im in found
                if all(im.properties.get(k) == v for k, v in wanted.items())]

    @_reads_cloud
    async def find_images_by_metadata(self, key: str, value: str) -> list[Image]:
        """Images carrying property `key` = `value` (reconciling a job after a crash); checked
        on our side, see `list_images`."""
        return await self.list_images(properties={key: value})

    async def _supports_in(self) -> bool:
        """Whether this Glance knows the `in:` operator (Images API 2.5+; Rackspace Cloud
        Images does not and compares `id=in:X` literally, answering nothing). Probed once per
        cloud with an id we just saw listed; undecided (False, not remembered) while no image
        is visible at all."""
        if self._glance_in is not None:
            return self._glance_in
        resp = await self._call("image", "GET", "/images", params={**NEWEST_FIRST, "limit": "1"})
        if resp.status_code != 200:
            raise error_for(resp, "image", "list")
        first = [d.get("id") for d in resp.json().get("images") or [] if isinstance(d, dict)]
        if not first or not first[0]:
            return False
        known = str(first[0])
        resp = await self._call("image", "GET", "/images",
                                params={"id": f"in:{known}", "limit": "2"})
        if resp.status_code == 400:  # a Glance that validates filters and refuses `in:`
            self._glance_in = False
        elif resp.status_code != 200:
            raise error_for(resp, "image", "list")
        else:
            self._glance_in = any(isinstance(d, dict) and d.get("id") == known
                                  for d in resp.json().get("images") or [])
        log.info("Glance %s the in: operator", "supports" if self._glance_in else "lacks")
        return self._glance_in

    async def _images_without_in(self, asked: list[str]) -> dict[str, Image]:
        """The asked-for images that exist, without `in:`: one GET each for a few, else the
        project's images newest first until all are seen; an id the listing did not show is
        looked up by GET before anyone calls it vanished (only a 404 is)."""
        images: dict[str, Image] = {}
        missing = set(asked)
        if len(asked) > PER_IMAGE_GETS:
            owner = (await self._auth.session()).project_id
            params = {**NEWEST_FIRST, "limit": "1000", **({"owner": owner} if owner else {})}
            async for doc in self._image_docs(params):
                for d in doc.get("images") or []:
                    if isinstance(d, dict) and d.get("id") in missing:
                        image = parse_image(d)
                        images[image.id] = image
                        missing.discard(image.id)
                if not missing:
                    break
        for image_id in sorted(missing):
            try:
                images[image_id] = await self.get_image(image_id)
            except NotFound:
                pass  # a real 404: vanished
        return images

    @_reads_cloud
    async def delete_image(self, image_id: str) -> None:
        """Delete an image; a protected one is `Forbidden`, a missing one `NotFound`."""
        resp = await self._call("image", "DELETE", f"/images/{quote(image_id, safe='')}")
        if resp.status_code not in (200, 204):
            raise error_for(resp, "image", image_id)

    # -- batched observation --------------------------------------------------------------

    def _chunks(self, ids: list[str], base_len: int) -> list[list[str]]:
        budget = MAX_URL - base_len - 200  # room for the path and the other parameters
        chunks: list[list[str]] = []
        current: list[str] = []
        used = 0
        for image_id in ids:
            cost = len(quote(image_id, safe="")) + 3  # plus an encoded comma
            if current and used + cost > budget:
                chunks.append(current)
                current, used = [], 0
            current.append(image_id)
            used += cost
        if current:
            chunks.append(current)
        return chunks

    @_reads_cloud
    async def observe(self, server_ids: Collection[str], image_ids: Collection[str],
                      since: datetime | None) -> Observation:
        """Task states and image statuses for many jobs in O(1) requests.

        One `GET /servers/detail?changes-since=` (paged at 1000) and one Glance list with
        `id=in:...` per ~8 KB of ids (about 190 UUIDs). Cursor choice: the newest server
        `updated` in the answer minus CURSOR_SKEW, never earlier than `since`. It is the
        cloud's own clock, so client clock skew cannot lose changes; the margin covers
        updates committed late with an earlier timestamp; `changes-since` is inclusive, so a
        change may be reported twice, never missed. With no server in the answer the cursor
        stays at `since` (or, on the first call, the request start minus the margin).
        """
        counter = [0]
        token = _request_counter.set(counter)
        try:
            start = self._clock()
            wanted = set(server_ids)
            servers: dict[str, Server] = {}
            newest: datetime | None = None
            if wanted and since is not None and self._direct(len(wanted)):
                # Rackspace limits changes-since to a few a minute but GET * to 1000: a few
                # servers are cheaper asked one by one, and the quiesce window stays exact.
                for server_id in sorted(wanted):
                    try:
                        servers[server_id] = await self.get_server(server_id, disks=False)
                    except NotFound:
                        pass  # deleted: its image's status tells the job the rest
            elif wanted:
                params = {"changes-since": _iso(since)} if since is not None else {}
                for doc in await self._server_pages(params, None):
                    if doc.get("updated"):
                        try:
                            stamp = parse_time(str(doc["updated"]))
                        except ValueError:
                            stamp = None
                        if stamp is not None and (newest is None or stamp > newest):
                            newest = stamp
                    if doc.get("id") in wanted:
                        servers[str(doc["id"])] = parse_server(doc)
            images: dict[str, Image] = {}
            asked = sorted(set(image_ids))
            if asked and not await self._supports_in():
                images = await self._images_without_in(asked)
            elif asked:
                session = await self._auth.session()
                for chunk in self._chunks(asked, len(session.image_url) + len("/images?")):
                    found = await self._image_pages({"id": "in:" + ",".join(chunk),
                                                     "limit": str(len(chunk) + 1)})
                    images.update((im.id, im) for im in found if im.id in chunk)
            if newest is not None:
                cursor = newest - CURSOR_SKEW
                if since is not None and cursor < since:
                    cursor = since
            else:
                cursor = since if since is not None else start - CURSOR_SKEW
            return Observation(servers=servers, images=images,
                               vanished_images=frozenset(asked) - frozenset(images),
                               cursor=cursor, requests=counter[0])
        finally:
            _request_counter.reset(token)

    # -- published rate limits ------------------------------------------------------------

    @_reads_cloud
    async def rate_limits(self) -> list[RateLimit]:
        """Nova's published rate limits (`GET /limits`), read once; [] when the cloud
        publishes none or cannot say (a later call asks again)."""
        if self._limits is not None:
            return self._limits
        resp = await self._call("compute", "GET", "/limits")
        if resp.status_code != 200:
            log.info("compute /limits answered HTTP %d; polling unpaced", resp.status_code)
            if resp.status_code < 500:
                self._limits = []  # no such document here: do not ask every tick
            return []
        self._limits = parse_limits(resp.json())
        if self._limits:
            log.info("cloud publishes %d rate limits; changes-since polls at most every "
                     "%.1f s", len(self._limits), self.poll_floor())
        return self._limits

    def _interval(self, target: str) -> float:
        """The spacing a `GET target` needs under every published limit that counts it."""
        return max((lim.interval for lim in self._limits or () if lim.matches("GET", target)),
                   default=0.0)

    def _direct(self, servers: int) -> bool:
        """Whether `servers` GETs by id cost less of the published limits than one
        changes-since listing (never without a published limit: one listing is O(1))."""
        if servers > PER_SERVER_GETS:
            return False
        listing = self._interval(_CHANGES_SINCE)
        return listing > 0 and servers * self._interval(_ONE_SERVER) < listing

    def poll_floor(self, servers: int = PER_SERVER_GETS + 1) -> float:
        """Seconds between two observations of `servers` servers that keep under every
        published limit that counts them (10% to spare); 0 when none is known."""
        if self._direct(servers):
            return servers * self._interval(_ONE_SERVER) * 1.1
        return self._interval(_CHANGES_SINCE) * 1.1

    # -- Rackspace scheduled images -------------------------------------------------------

    def _schedule_path(self, server_id: str) -> str:
        return f"/servers/{quote(server_id, safe='')}/rax-si-image-schedule"

    @_reads_cloud
    async def get_rax_schedule(self, server_id: str) -> RaxSchedule | None:
        """The server's schedule, or None when scheduled images are disabled (404)."""
        resp = await self._call("compute", "GET", self._schedule_path(server_id))
        if resp.status_code == 404:
            if "schedule" in fault_message(resp).lower():
                return None
            raise error_for(resp, "server", server_id)
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        return parse_schedule(resp.json())

    @_reads_cloud
    async def set_rax_schedule(self, server_id: str, retention: int,
                               day_of_week: str | None = None) -> RaxSchedule:
        """Enable (or switch) daily, or weekly when `day_of_week` is given, images."""
        wanted = RaxSchedule(retention, day_of_week.upper() if day_of_week else None)
        resp = await self._call("compute", "POST", self._schedule_path(server_id),
                                json=wanted.to_body())
        if resp.status_code not in (200, 201, 202):
            raise error_for(resp, "server", server_id)
        try:
            return parse_schedule(resp.json())
        except (ValueError, KeyError):
            return wanted

    @_reads_cloud
    async def delete_rax_schedule(self, server_id: str) -> None:
        """Disable scheduled images; already disabled is fine."""
        resp = await self._call("compute", "DELETE", self._schedule_path(server_id))
        if resp.status_code == 404 and "schedule" in fault_message(resp).lower():
            return
        if resp.status_code not in (200, 202, 204):
            raise error_for(resp, "server", server_id)
