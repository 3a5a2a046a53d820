"""Nova's published rate limits (`GET /limits`, Rackspace fills them in) and the pacing they
imply: how often changes-since may be polled, and when a few GETs by id cost less."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from bot.cloud.edge import CloudEdge, reads_cloud

log = logging.getLogger("bot.cloud")

PER_SERVER_GETS = 5  # under a strict changes-since limit, up to this many servers one GET each
_CHANGES_SINCE = "/servers/detail?changes-since=2000-01-01T00:00:00Z"
_ONE_SERVER = "/servers/00000000-0000-0000-0000-000000000000"
LIMIT_UNITS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


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


class RateLimits(CloudEdge):
    """The pacing part of `CloudClient`."""

    def _init_state(self) -> None:
        super()._init_state()
        self._limits: list[RateLimit] | None = None  # Nova's published rate limits

    @reads_cloud
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
