"""Client-side pacing so we stay under Slack's limits instead of collecting 429s.

chat.postMessage allows about one message per second per channel with short bursts;
chat.update is tier 3 (50+/min per workspace). A token bucket per key models both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EPSILON = 1e-9


@dataclass
class TokenBucket:
    """`rate` tokens per second, up to `burst` saved; time is passed in, never read."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def delay(self, now: float) -> float:
        """Seconds to wait before one more call would be within the limit."""
        self._refill(now)
        # A rounding error short of a token is a token: a wait of 1e-15 s would never end on a
        # clock that cannot advance by that little.
        return 0.0 if self.tokens >= 1.0 - EPSILON else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        """Record one call made at `now`."""
        self._refill(now)
        self.tokens -= 1.0

    def _refill(self, now: float) -> None:
        if self.tokens < 0 and self.updated == 0.0:
            self.tokens, self.updated = self.burst, now
            return
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now


@dataclass
class SlackPacer:
    """One bucket per (method, channel) for posts and one per method for workspace-wide tiers."""

    # A tenth below Slack's documented rates, with smaller bursts: clocks and queues jitter,
    # and pacing exactly at the limit still earns the odd 429.
    post_rate: float = 0.9
    post_burst: float = 2.0
    update_rate: float = 0.9 * 50 / 60
    update_burst: float = 5.0
    ephemeral_rate: float = 0.9 * 100 / 60
    scale: float = 1.0  # multiplies every rate (the sandbox runs Slack's clock faster)
    _buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)

    def _bucket(self, method: str, channel: str) -> TokenBucket:
        if method == "chat.postMessage":
            key, rate, burst = (method, channel), self.post_rate, self.post_burst
        elif method in ("chat.update", "conversations.open"):  # both tier 3 (50+/min)
            key, rate, burst = (method, ""), self.update_rate, self.update_burst
        else:
            key, rate, burst = (method, ""), self.ephemeral_rate, 5.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=rate * self.scale, burst=burst)
        return bucket

    def delay(self, method: str, channel: str, now: float) -> float:
        """How long to wait before calling `method` on `channel`."""
        return self._bucket(method, channel).delay(now)

    def interval(self, method: str, channel: str) -> float:
        """Seconds between two calls of `method` on `channel` once the burst is spent."""
        return 1.0 / self._bucket(method, channel).rate

    def take(self, method: str, channel: str, now: float) -> None:
        """Record a call."""
        self._bucket(method, channel).take(now)
