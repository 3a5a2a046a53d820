"""The async cloud client: Nova and Glance (and Rackspace rax-si) over one `httpx.AsyncClient`.

Callers see `bot.cloud.models` types and `bot.errors` exceptions only; no httpx type and no raw
status code leaves `bot.cloud`. `CloudClient` joins the parts, one module each:

- `bot.cloud.edge`: the HTTP edge (`_fetch`: size cap and total deadline; `_send`: retries,
  Retry-After, backoff; `_call`: the token and one re-auth on 401; the one paging loop;
  `error_for`: status codes into the error tree). Its docstring has the resilience rules.
- `bot.cloud.nova`: server views and the compute calls, createImage included.
- `bot.cloud.glance`: image documents and the image calls (`in:` probing, the fallback
  without it).
- `bot.cloud.limits`: Nova's published rate limits and the pacing they imply.
- `bot.cloud.rax`: Rackspace scheduled images.

Here: what needs all of them, `observe` (one batched look at many jobs) and `discover`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from bot.cloud.auth import parse_time
from bot.cloud.edge import (
    MAX_BODY,
    CloudEdge,
    error_for,
    fault_message,
    reads_cloud,
    request_counter,
    retry_after,
)
from bot.cloud.glance import NEWEST_FIRST, GlanceCalls, parse_image
from bot.cloud.limits import RateLimit, RateLimits, parse_limits
from bot.cloud.models import Image, Observation, Server
from bot.cloud.nova import NovaCalls, busy_state, match_server, parse_server, with_attachments
from bot.cloud.rax import RaxSchedules
from bot.errors import NotFound

__all__ = [
    "CURSOR_SKEW", "MAX_BODY", "NEWEST_FIRST", "CloudClient", "CloudEdge", "RateLimit",
    "busy_state", "error_for", "fault_message", "match_server", "parse_image", "parse_limits",
    "parse_server", "retry_after", "with_attachments",
]

CURSOR_SKEW = timedelta(seconds=10)


def _iso(value: datetime) -> str:
    """Second-resolution UTC timestamp (Nova stores updated_at to the second)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CloudClient(NovaCalls, GlanceCalls, RateLimits, RaxSchedules):
    """Async client for one cloud; use as `async with CloudClient(config) as cloud:`."""

    @reads_cloud
    async def endpoints(self) -> tuple[str, str]:
        """Authenticate if needed; the (compute, image) endpoints in use."""
        session = await self._auth.session()
        return session.compute_url, session.image_url

    @reads_cloud
    async def discover(self) -> None:
        """Learn this cloud once: authenticate, probe Glance for `in:`, read Nova's published
        rate limits. Everything also happens lazily on first use (the engine reads the
        limits before its first observation of each cloud); tests and tools call this to
        learn the cloud up front."""
        await self._auth.session()
        await self._supports_in()
        await self.rate_limits()

    @reads_cloud
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
        token = request_counter.set(counter)
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
            request_counter.reset(token)
