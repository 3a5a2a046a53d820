"""The floor Slack's per-channel post rate sets for the posts a design needs (figures 2, 3).

An ideal notifier, with no latency and pacing exactly at Slack's limit (`POST_MESSAGE`: about
1/s per channel, short bursts), sends the posts each job needs in its thread order, the thread
with an urgent post ready first (the bot's own priority rule). What it achieves is the floor:
no notifier can do better under the same limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Post:
    """One post a job's thread needs: ready at `ready` (seconds), `urgent` if a person waits
    on it ("writes may resume", the result); `thread` keeps order; `label` names it."""

    thread: str
    ready: float
    urgent: bool
    label: str


def ideal_times(posts: Sequence[Post], rate: float, burst: float) -> dict[tuple[str, str], float]:
    """When the ideal notifier delivers each post of one channel: {(thread, label): time}."""
    # Times relative to the first post: epoch seconds (1.7e9) cannot hold the small steps of
    # a refill, and a step that rounds away would never end.
    origin = min((p.ready for p in posts), default=0.0)
    queues: dict[str, list[Post]] = {}
    for post in sorted(posts, key=lambda p: p.ready):
        queues.setdefault(post.thread, []).append(
            Post(post.thread, post.ready - origin, post.urgent, post.label))
    tokens, updated, now = burst, 0.0, 0.0
    sent: dict[tuple[str, str], float] = {}
    while queues:
        ready = [(not any(p.urgent and p.ready <= now for p in q), q[0].ready, key)
                 for key, q in queues.items() if q[0].ready <= now]
        if not ready:
            now = min(q[0].ready for q in queues.values())
            continue
        tokens = min(burst, tokens + (now - updated) * rate)
        updated = now
        if tokens < 1.0 - 1e-9:
            now += (1.0 - tokens) / rate
            continue
        _, _, key = min(ready)
        post = queues[key].pop(0)
        if not queues[key]:
            del queues[key]
        tokens -= 1.0
        sent[(post.thread, post.label)] = origin + now
    return sent
