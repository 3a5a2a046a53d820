"""Per-method Web API rate limits, as token buckets driven by an injected clock.

Numbers follow Slack's published tiers (docs.slack.dev/apis/web-api/rate-limits): tier 2 20/min,
tier 3 50/min, tier 4 100/min, and `chat.postMessage` about 1 per second per channel with short
bursts. Buckets are keyed per method, and per channel for `chat.postMessage`.

chat.postMessage also has a workspace-wide limit ("one message per second per channel, while
also maintaining a workspace-wide limit", same page) whose size Slack does not publish: it is
off unless a test sets `workspace_posts` (a post then needs a token from both buckets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    """`rate` calls per second on average, with up to `burst` calls at once."""

    rate: float
    burst: float


TIER2 = Limit(rate=20 / 60, burst=5)
TIER3 = Limit(rate=50 / 60, burst=10)
TIER4 = Limit(rate=100 / 60, burst=20)
POST_MESSAGE = Limit(rate=1.0, burst=3)

DEFAULT_LIMITS: dict[str, Limit] = {
    "auth.test": TIER4,
    "bots.info": TIER3,  # "Tier 3: 50+ per minute" (bots.info reference)
    "chat.postMessage": POST_MESSAGE,
    "chat.update": TIER3,
    "chat.postEphemeral": TIER4,
    "conversations.info": TIER3,
    "conversations.members": TIER4,
    "conversations.history": TIER3,
    "conversations.replies": TIER3,
    "users.info": TIER4,
    "views.open": TIER4,
    "views.publish": TIER4,  # "Tier 4: 100+ per minute" (views.publish reference)
    "conversations.open": TIER3,  # "Tier 3: 50+ per minute" (conversations.open reference)
    "users.list": TIER2,
    "usergroups.list": TIER2,
    "usergroups.users.list": TIER2,
}

# Methods whose bucket is per channel rather than per workspace.
PER_CHANNEL = frozenset({"chat.postMessage"})
WORKSPACE = "*workspace*"  # the key of chat.postMessage's workspace-wide bucket


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token buckets per (method, key).

    `scale` multiplies every rate (2.0 allows twice as many calls per second, 0.1 a tenth);
    bursts stay as documented. `enabled=False` lets every call through.
    """

    enabled: bool = True
    scale: float = 1.0
    limits: dict[str, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    # chat.postMessage's workspace-wide limit, across channels; None = not modelled.
    workspace_posts: Limit | None = None
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def key(self, method: str, channel: str | None) -> tuple[str, str]:
        """The bucket a call counts against."""
        return (method, channel or "") if method in PER_CHANNEL else (method, "")

    def take(self, method: str, channel: str | None, now: float) -> float | None:
        """Count one call at `now`; None if allowed, else seconds until one would be."""
        limit = self.limits.get(method)
        if not self.enabled or limit is None:
            return None
        checks = [(self.key(method, channel), limit)]
        if method == "chat.postMessage" and self.workspace_posts is not None:
            checks.append(((method, WORKSPACE), self.workspace_posts))
        waits = [self._refilled(key, each, now) for key, each in checks]
        if any(wait > 0 for wait in waits):
            return max(waits)  # refused: no bucket spends a token
        for key, _ in checks:
            self._buckets[key].tokens -= 1.0
        return None

    def _refilled(self, key: tuple[str, str], limit: Limit, now: float) -> float:
        """Refill `key`'s bucket up to `now`; seconds until it holds a token (0: it does)."""
        rate = limit.rate * self.scale
        if rate <= 0:
            raise ValueError("rate limit scale must be positive")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=limit.burst, updated=now)
        # Refill for the time that passed (a clock going backwards refills nothing).
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(limit.burst, bucket.tokens + elapsed * rate)
        bucket.updated = max(bucket.updated, now)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / rate

    def reset(self) -> None:
        """Forget all counts (full buckets again)."""
        self._buckets.clear()


def retry_after_header(wait: float) -> str:
    """Whole seconds, at least 1, as Slack sends (slack_sdk parses it with int())."""
    return str(max(1, math.ceil(wait)))
