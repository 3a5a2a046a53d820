"""Client-side pacing so we stay under Slack's limits instead of collecting 429s.

chat.postMessage allows about one message per second per channel with short bursts;
chat.update is tier 3 (50+/min per workspace). A token bucket per key models both.

chat.postMessage also has a workspace-wide limit whose size Slack does not publish
(docs.slack.dev/apis/web-api/rate-limits: "one message per second per channel, while also
maintaining a workspace-wide limit"). The pacer learns it, as TCP learns a path's capacity: the
first post refused with a 429 while posts were going to more than one channel sets a workspace
bucket at a tenth under the rate of the posts of the second before it; each later refusal of a
post made under that bucket cuts it by 30%, each quiet minute raises it by a quarter, and ten
quiet minutes forget it. Without it every channel keeps its own pace, and once the workspace
limit binds each collects 429s of its own.

A 429 does not say which limit refused the post, so each refusal gets the smallest change that
explains it. A post that followed another post to its channel within a second (a burst, which
Slack allows "short" ones of and no more) may be that channel's own limit: the channel posts
without bursts until ten quiet minutes pass, and the workspace learns nothing, unless a burst
of another channel was refused within the same second (each channel's limit is its own). A
refusal in the first second of posting teaches nothing either: a restart cannot know what the
process before it posted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

EPSILON = 1e-9
POST = "chat.postMessage"
LEARN_WINDOW = 1.0  # seconds of posts before a refusal the first learnt rate counts
LEARN_SHARE = 0.9  # the first learnt limit: this share of that rate
OWN_WINDOW = 1.0  # seconds: Slack's per-channel limit is one post per second
CUT = 0.7  # a later refusal: the learnt limit times this
RECOVER_AFTER = 60.0  # seconds without a refused post, per step up of the learnt limit
RECOVER_STEP = 1.25
FORGET_AFTER = 600.0  # seconds without a refused post before the learnt limit is dropped
# Token waits per call at most: lanes share the learnt workspace bucket, so a call may lose a
# token to another lane's and wait again.
PACE_WAITS = 20


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
    # Learnt from 429s (module docstring): posts in every channel share this bucket.
    workspace_posts: TokenBucket | None = None
    _learnt_rate: float = 0.0
    _refused_at: float = 0.0
    _posts: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=4096))
    _first_post: float | None = None
    # Refused posts of channels' bursts, (sent_at, channel), for `_burst_refused_elsewhere`.
    _bursts_refused: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=256))
    _calmed: dict[str, float] = field(default_factory=dict)  # channel -> its last refused burst
    lessons: int = 0  # lessons learnt (or recalled) so far: `bot.slack.lessons` keeps the last

    def _bucket(self, method: str, channel: str) -> TokenBucket:
        if method == POST:
            key, rate, burst = (method, channel), self.post_rate, self.post_burst
        elif method in ("chat.update", "conversations.open"):  # both tier 3 (50+/min)
            key, rate, burst = (method, ""), self.update_rate, self.update_burst
        else:
            key, rate, burst = (method, ""), self.ephemeral_rate, 5.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=rate * self.scale, burst=burst)
        return bucket

    def _shared(self, method: str) -> TokenBucket | None:
        """The bucket every channel's calls of `method` share now: the learnt workspace post
        bucket for posts, once learnt; None otherwise."""
        return self.workspace_posts if method == POST else None

    def _workspace(self, method: str, now: float) -> TokenBucket | None:
        """`_shared`, its rate raised for the quiet time since the last refusal; None once
        forgotten."""
        bucket = self._shared(method)
        if bucket is None:
            return None
        if self._forgotten(self._refused_at, now):
            self.workspace_posts = None
            return None
        quiet = max(0.0, now - self._refused_at)
        bucket.rate = self._learnt_rate * RECOVER_STEP ** int(quiet // (RECOVER_AFTER / self.scale))
        return bucket

    def _current(self, method: str, channel: str, now: float) -> TokenBucket:
        """`_bucket`; a calmed channel's post bucket without its burst until ten quiet
        minutes pass."""
        bucket = self._bucket(method, channel)
        calmed = self._calmed.get(channel) if method == POST else None
        if calmed is not None and self._forgotten(calmed, now):
            del self._calmed[channel]
            bucket.burst = self.post_burst
        return bucket

    def delay(self, method: str, channel: str, now: float) -> float:
        """How long to wait before calling `method` on `channel`."""
        delay = self._current(method, channel, now).delay(now)
        workspace = self._workspace(method, now)
        return delay if workspace is None else max(delay, workspace.delay(now))

    def interval(self, method: str, channel: str) -> float:
        """Seconds between two calls of `method` on `channel` once the burst is spent."""
        rate = self._bucket(method, channel).rate
        workspace = self._shared(method)
        return 1.0 / (rate if workspace is None else min(rate, workspace.rate))

    def shares_tokens(self, method: str) -> bool:
        """Whether calls of `method` in different channels take tokens from one bucket now
        (posts under a learnt workspace-wide limit)."""
        return self._shared(method) is not None

    def take(self, method: str, channel: str, now: float) -> None:
        """Record a call."""
        self._current(method, channel, now).take(now)
        if method == POST:
            if self._first_post is None:
                self._first_post = now
            self._posts.append((now, channel))
            workspace = self._workspace(method, now)
            if workspace is not None:
                workspace.take(now)

    def refused(self, method: str, channel: str, sent_at: float, now: float) -> None:
        """Slack answered a call of `method` on `channel` that took its token at `sent_at`
        with a 429 at `now`. A refused post learns the workspace-wide limit (module
        docstring) unless it went before the last lesson, or in the first second of posting,
        or posts went to its channel alone, or it was a burst its channel's own limit may have
        refused (the channel is calmed); Retry-After covers those."""
        if method != POST:
            return
        current = self._workspace(method, now)
        if current is not None and sent_at < self._refused_at:
            return  # sent before the bucket it would cut existed
        own = OWN_WINDOW / self.scale
        if self._first_post is None or sent_at - self._first_post < own:
            return  # a restart cannot know what the process before it posted
        burst = sum(1 for t, c in self._posts if c == channel and sent_at - own < t <= sent_at)
        if burst > 1 and not self._burst_refused_elsewhere(channel, sent_at):
            self._calm(channel, now)  # may be the channel's own limit: no bursts for a while
            return
        window = LEARN_WINDOW / self.scale
        recent = [c for t, c in self._posts if sent_at - window < t <= sent_at]
        if len(set(recent) | {channel}) < 2:
            return
        rate = (LEARN_SHARE * len(recent) / window if current is None
                else CUT * current.rate)
        self._learn(rate, now, now)

    def _learn(self, rate: float, refused_at: float, now: float) -> None:
        self._learnt_rate = max(rate, self.post_rate * self.scale)
        self._refused_at = refused_at
        self.workspace_posts = TokenBucket(rate=self._learnt_rate, burst=self.post_burst,
                                           tokens=0.0, updated=now)
        self.lessons += 1

    def lesson(self, now: float) -> tuple[float, float] | None:
        """The learnt workspace post limit as learnt (posts per second of Slack's time, before
        the quiet minutes' raises) and the time of its last refusal; None when there is none
        (never learnt, or forgotten)."""
        if self._workspace(POST, now) is None:
            return None
        return self._learnt_rate / self.scale, self._refused_at

    def recall(self, rate: float, refused_at: float, now: float) -> None:
        """Take up a `lesson` learnt before (by the process before a restart): its bucket
        starts empty, and it is raised and forgotten as if this pacer had learnt it at
        `refused_at`. A lesson older than FORGET_AFTER is none."""
        if not self._forgotten(refused_at, now):
            self._learn(rate * self.scale, refused_at, now)

    def workspace_post_limit(self, now: float) -> float:
        """The workspace post limit the pacer holds to now, in posts per second of Slack's
        time; 0.0 when none is learnt."""
        bucket = self._workspace(POST, now)
        return 0.0 if bucket is None else bucket.rate / self.scale

    def calmed_channels(self, now: float) -> int:
        """How many channels post without bursts now (a burst of theirs was refused)."""
        return sum(1 for at in self._calmed.values() if not self._forgotten(at, now))

    def _forgotten(self, since: float, now: float) -> bool:
        """Whether ten quiet minutes (FORGET_AFTER, on Slack's clock) passed since `since`."""
        return now - since >= FORGET_AFTER / self.scale

    def _burst_refused_elsewhere(self, channel: str, sent_at: float) -> bool:
        """Record a refused burst post of `channel` that went at `sent_at`; whether a burst of
        another channel that went within a second of it was refused too (then it is the
        workspace's limit: each channel's own is its own)."""
        own = OWN_WINDOW / self.scale
        while self._bursts_refused and self._bursts_refused[0][0] <= sent_at - 2 * own:
            self._bursts_refused.popleft()
        elsewhere = any(c != channel and abs(t - sent_at) < own for t, c in self._bursts_refused)
        self._bursts_refused.append((sent_at, channel))
        return elsewhere

    def _calm(self, channel: str, now: float) -> None:
        """`channel` posts without bursts until ten quiet minutes pass (`_current`)."""
        self._calmed[channel] = now
        bucket = self._bucket(POST, channel)
        bucket.burst = 1.0
        bucket.tokens = min(bucket.tokens, 0.0)  # the refused post spent what there was


async def take_turn(pacer: SlackPacer, method: str, channel: str, clock: Callable[[], float],
                    sleep: Callable[[float], Awaitable[None]],
                    defer: Callable[[float], bool] | None = None) -> float:
    """Sleep until `pacer` lets a call of `method` on `channel` go, take its token and
    return the time it was taken; while `defer(now)` says a more urgent call may take the
    token first, wait a quarter interval more. Bounded: at most PACE_WAITS sleeps, and a
    clock that did not move across one ends the wait (a frozen test clock cannot spin it)."""
    waited_at: float | None = None
    for _ in range(PACE_WAITS):
        now = clock()
        delay = pacer.delay(method, channel, now)
        if delay <= 0 and defer is not None and defer(now):
            delay = pacer.interval(method, channel) / 4
        if delay <= 0 or now == waited_at:
            break
        waited_at = now
        await sleep(delay)
    now = clock()
    pacer.take(method, channel, now)
    return now


@dataclass
class Turns:
    """The calls waiting for a token, by urgency rank (0 most urgent). Where channels share
    a bucket (`SlackPacer.shares_tokens`: posts under a learnt workspace limit) a call lets
    the more urgent calls that may go now take the next tokens first."""

    waiting: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    _next: int = 0

    async def take(self, pacer: SlackPacer, method: str, channel: str, rank: int,
                   clock: Callable[[], float],
                   sleep: Callable[[float], Awaitable[None]]) -> float:
        """`take_turn` for a call of urgency `rank`; the time its token was taken."""
        me = self._next = self._next + 1

        def defer(now: float) -> bool:
            return pacer.shares_tokens(method) and any(
                other != me and m == method and r < rank and pacer.delay(m, c, now) <= 0
                for other, (m, c, r) in self.waiting.items())

        self.waiting[me] = (method, channel, rank)
        try:
            return await take_turn(pacer, method, channel, clock, sleep, defer)
        finally:
            del self.waiting[me]
