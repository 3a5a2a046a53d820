"""The HTTP edge of the cloud client: one `httpx.AsyncClient`, authentication, retries, and
the translation of every answer into `bot.cloud.models` types and `bot.errors` exceptions.

No httpx type and no raw status code leaves `bot.cloud`. `CloudEdge` is the base the API
parts (`nova`, `glance`, `limits`, `rax`) build on; `bot.cloud.client.CloudClient` joins them.

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
  ValueError/KeyError: every public method is wrapped by `reads_cloud`.
- Keystone clouds log in with keystoneauth1 (`bot.cloud.keystone`) off the event loop; its
  requests come back here (`_send`), so identity shares this client's TLS settings and retries.
- Every token a login yields (Keystone's via keystoneauth, Rackspace's) goes to `on_token`
  before first use: the wiring passes the log filter's registry (`bot.logs.LearnedSecrets`),
  so logs mask it by its exact value whatever it looks like.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import functools
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from bot.cloud.auth import Authenticator, Session
from bot.cloud.config import CloudConfig
from bot.cloud.keystone import LOGIN_TIMEOUT, KeystoneLogin
from bot.errors import (
    AuthFailed,
    CloudBadResponse,
    CloudError,
    CloudRejected,
    CloudUnavailable,
    Forbidden,
    NotFound,
    QuotaExceeded,
    RateLimited,
)

log = logging.getLogger("bot.cloud")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

MAX_PAGES = 10_000  # a loop guard against a cloud that keeps sending `next`
# A page of 1000 Nova servers with embedded flavors is ~4 MB; nothing we ask for is bigger.
MAX_BODY = 8 * 1024 * 1024
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
request_counter: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "bot_cloudrequest_counter", default=None)
# Bodies read during the current public call: a parse error is the cloud's only after one.
_bodies_read: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "bot_cloud_bodies_read", default=None)
# What a cloud answer that is not the JSON we expect raises while we take it apart.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError)

E = TypeVar("E", bound="CloudEdge")
P = ParamSpec("P")
R = TypeVar("R")


class _TooBig(Exception):
    """A response body grew past `max_body`."""


def reads_cloud(fn: Callable[Concatenate[E, P], Coroutine[Any, Any, R]]
                ) -> Callable[Concatenate[E, P], Coroutine[Any, Any, R]]:
    """Translate a parse error of a cloud answer (a 200 that is not JSON, or JSON of the
    wrong shape) into `CloudBadResponse`. An error raised before any answer was read (our
    own argument checks) passes unchanged."""

    @functools.wraps(fn)
    async def wrapper(self: E, *args: P.args, **kwargs: P.kwargs) -> R:
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


def utcnow() -> datetime:
    return datetime.now(UTC)


async def _real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def next_marker(href: str | None) -> str | None:
    """The `marker` of a next link; we re-issue it against our own endpoint (Nova and Glance
    behind proxies are known to build next links with the wrong host or scheme)."""
    if not href:
        return None
    values = parse_qs(urlsplit(href).query).get("marker")
    return values[-1] if values else None


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


def request_id_of(resp: httpx.Response) -> str:
    """The cloud's request id of an answer, else the one we sent."""
    return (resp.headers.get("x-openstack-request-id")
            or resp.headers.get("x-compute-request-id")
            or resp.request.headers.get("x-openstack-request-id", ""))


def error_for(resp: httpx.Response, kind: str, name: str) -> CloudError:
    """Translate an unexpected response into the error tree."""
    status = resp.status_code
    message = fault_message(resp)
    rid = request_id_of(resp)
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
        after = retry_after(resp.headers.get("retry-after"), utcnow())
        if after is not None or status == 429:
            return RateLimited(f"rate limited ({message})", retry_after=after, request_id=rid)
        return QuotaExceeded(f"quota exceeded: {message}", request_id=rid)
    if status >= 500:
        return CloudUnavailable(f"HTTP {status} from the cloud: {message}", request_id=rid)
    return CloudRejected(f"HTTP {status} for {kind} {name}: {message}", request_id=rid)


class CloudEdge:
    """One cloud's HTTP connection pool and session: authenticated requests with retries.

    The API parts (`NovaCalls`, `GlanceCalls`, `RateLimits`, `RaxSchedules`) derive from it
    and set up their own state in `_init_state`."""

    def __init__(self, config: CloudConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Clock | None = None, sleep: Sleep | None = None, timeout: float = 30.0,
                 max_tries: int = 4, max_backoff: float = 30.0, max_retry_after: float = 60.0,
                 rng: Callable[[], float] | None = None, max_body: int = MAX_BODY,
                 on_token: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._clock: Clock = clock or utcnow
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
                                   keystone=keystone, on_token=on_token)
        self._init_state()

    def _init_state(self) -> None:
        """What each API part learns of its cloud (set up empty); each part extends this."""

    async def __aenter__(self) -> Self:
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
            counter = request_counter.get()
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
                                   retry_after=wait, request_id=request_id_of(resp))
                if wait > self._max_retry_after or attempt == self._max_tries:
                    raise last
                await self._sleep(wait)
                continue
            if status >= 500 and status != 501:
                last = CloudUnavailable(f"HTTP {status} on {method} {path}: "
                                        f"{fault_message(resp)}", request_id=request_id_of(resp))
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
                                   "token document", request_id=request_id_of(resp))
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
                         request_id=request_id_of(resp))

    async def _refresh(self, stale: Session) -> Session:
        return await self._auth.refresh(stale)

    async def _pages(self, fetch: Callable[[dict[str, str]], Awaitable[httpx.Response]],
                     params: Mapping[str, str], next_href: Callable[[Any], str | None],
                     kind: str) -> AsyncIterator[Any]:
        """The pages of a Nova or Glance listing (the JSON documents), `fetch`ed with the
        marker of each `next_href` until it ends or repeats; the caller may stop early."""
        params = dict(params)
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            resp = await fetch(params)
            if resp.status_code != 200:
                raise error_for(resp, kind, "list")
            doc = resp.json()
            yield doc
            marker = next_marker(next_href(doc))
            if marker is None or marker in seen:
                return
            seen.add(marker)
            params["marker"] = marker
