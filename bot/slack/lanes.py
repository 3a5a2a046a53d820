"""What the notifier sends next: the unsent outbox in memory, as queues, decided purely.

Posts (card, replies, channel posts, private answers) queue per thread: within one thread they
go in the order they were written. Card edits are a queue of their own with at most one edit
per card: the card is re-rendered from the job's row when it goes, so an older edit waiting
behind a newer one says nothing new and is dropped (superseded). Every item goes through a
lane (a Slack method and, for posts, a channel) with its own pacing: a channel waiting for its
token holds back only itself. Among the items that can go now, the most urgent thread wins
("writes may resume", the result), then the oldest item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bot.store import OutboxMessage
from bot.vocabulary import OutboxKind

Lane = tuple[str, str]  # (Slack method, channel or "" for workspace-wide limits)
EVERY_CHANNEL = "*"  # a hold on (method, EVERY_CHANNEL) holds that method in every channel
EDIT = OutboxKind.UPDATE_PARENT


def order_key(item: OutboxMessage) -> str:
    """Items with the same key are delivered in the order they were written."""
    if item.job_id or item.thread_key:
        return f"job:{item.job_id or item.thread_key}"
    return f"channel:{item.channel}"


LEAST_URGENT = 3  # the rank of a card edit, the lowest `urgency` gives


def urgency(item: OutboxMessage) -> int:
    """0 is most urgent: what a person waits on to act (writes may resume, the result)."""
    if item.kind == OutboxKind.REPLY and (item.payload.get("final")
                                          or item.payload.get("must_reach")):
        return 0
    if item.kind in (OutboxKind.POST_PARENT, OutboxKind.EPHEMERAL, OutboxKind.RESPOND):
        return 1
    if item.kind == OutboxKind.REPLY and item.payload.get("on_card") == "copy":
        # "Copying the disk now" is news of the moment, like a card: it goes in turn with
        # the cards. Ranked below them, it waited while a channel's other cards went out,
        # and its thread's "writes may resume" waited behind it (issue 17).
        return 1
    if item.kind in (OutboxKind.REPLY, OutboxKind.CHANNEL_POST, OutboxKind.DM_COPY):
        return 2
    return LEAST_URGENT  # a card edit: the card shows the state it had when it was last sent


def lane(item: OutboxMessage) -> Lane:
    """The Slack limit an item is paced by (Slack counts per method; posts also per channel)."""
    if item.kind == EDIT:
        return ("chat.update", "")
    if item.kind == OutboxKind.EPHEMERAL:
        return ("chat.postEphemeral", "")
    if item.kind == OutboxKind.RESPOND:
        return ("respond", "")  # response_url: counted per message (5 uses), not paced
    return ("chat.postMessage", item.channel)


@dataclass
class Choice:
    """The item to send now (if any), else how long until one may go: `pace` seconds of
    Slack's clock (a token refills), `due` seconds of the business clock (a retry time)."""

    item: OutboxMessage | None = None
    pace: float | None = None
    due: float | None = None


@dataclass
class OutboxLanes:
    """The unsent outbox, fed by `add` in id order; `choose` says what goes next."""

    threads: dict[str, deque[OutboxMessage]] = field(default_factory=dict)
    edits: dict[str, OutboxMessage] = field(default_factory=dict)  # card key -> newest edit
    held: dict[Lane, datetime] = field(default_factory=dict)  # Retry-After per lane
    cursor: int = 0  # the highest outbox id seen
    # Per thread: the most urgent rank in its queue, kept as the queue changes. `choose` runs
    # on every commit and every answered call; taking the minimum over each queue each time
    # cost ~0.5 ms per choice with 200 jobs queued, beside the acks of a burst.
    ranks: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(q) for q in self.threads.values()) + len(self.edits)

    def add(self, items: Iterable[OutboxMessage]) -> list[int]:
        """Take in newly read items; returns the ids of edits superseded by a newer one."""
        superseded: list[int] = []
        for item in sorted(items, key=lambda i: i.id):
            if item.id <= self.cursor:
                continue  # already known
            self.cursor = item.id
            if item.kind != EDIT:
                key = order_key(item)
                self.threads.setdefault(key, deque()).append(item)
                rank = urgency(item)
                self.ranks[key] = min(self.ranks.get(key, rank), rank)
                continue
            older = self.edits.get(order_key(item))
            if older is not None:
                superseded.append(older.id)
            self.edits[order_key(item)] = item
        return superseded

    def done(self, item: OutboxMessage) -> None:
        """The item was delivered or given up: it leaves its queue."""
        key = order_key(item)
        if item.kind == EDIT:
            if key in self.edits and self.edits[key].id == item.id:
                del self.edits[key]
            return
        queue = self.threads.get(key)
        if queue and queue[0].id == item.id:
            queue.popleft()
            self._reranked(key)

    def drop(self, ids: Collection[int]) -> None:
        """Items closed without a call (a reply the card already said): out of their queues."""
        if not ids:
            return
        for key, queue in list(self.threads.items()):
            if any(i.id in ids for i in queue):  # the other threads keep queue and rank
                self.threads[key] = deque(i for i in queue if i.id not in ids)
                self._reranked(key)

    def _reranked(self, key: str) -> None:
        """After `key`'s queue lost or replaced items: its rank again, or the thread is gone."""
        queue = self.threads[key]
        if queue:
            self.ranks[key] = min(urgency(i) for i in queue)
        else:
            del self.threads[key]
            del self.ranks[key]

    def retry(self, item: OutboxMessage) -> None:
        """The item failed for now: `item` is its row as stored after the failure (its retry
        time, and whether a post was attempted); it, and the rest of its thread, wait."""
        key = order_key(item)
        if item.kind == EDIT:
            if key in self.edits and self.edits[key].id == item.id:
                self.edits[key] = item
            return
        queue = self.threads.get(key)
        if queue and queue[0].id == item.id:
            queue[0] = item
            self._reranked(key)

    def hold_for(self, item: OutboxMessage, until: datetime, *, told: bool) -> None:
        """Slack refused `item`'s call for now: its lane takes no call before `until`
        (`told`: Slack said when, with Retry-After; else a probe while Slack is away, not one
        failing call per thread). The notifier holds it before it writes the failure down,
        so no call is chosen for the lane meanwhile.

        A post's Retry-After holds posts in every channel: Slack's 429 does not say which
        limit it is, per channel or the workspace-wide one chat.postMessage also keeps
        (docs.slack.dev rate limits: "one message per second per channel, while also
        maintaining a workspace-wide limit", its size not published), and the pacer stays
        under the per-channel rate. So each channel waits it out instead of collecting a 429
        of its own."""
        item_lane = lane(item)
        key = ((item_lane[0], EVERY_CHANNEL) if told and item_lane[0] == "chat.postMessage"
               else item_lane)
        self.held[key] = max(until, self.held.get(key, until))

    def held_until(self, item_lane: Lane) -> datetime | None:
        """Until when Slack asked this lane to wait, if it did (its own hold, or its method's
        in every channel)."""
        own, every = self.held.get(item_lane), self.held.get((item_lane[0], EVERY_CHANNEL))
        if own is None or every is None:
            return own or every
        return max(own, every)

    def _candidates(self, sending: Collection[int]) -> Iterable[tuple[int, OutboxMessage]]:
        ranks = self.ranks
        for key, queue in self.threads.items():
            if queue[0].id not in sending:  # a thread has one item in flight at most: order
                yield ranks[key], queue[0]
        for key, item in self.edits.items():
            waiting = self.threads.get(key)
            if item.id in sending or waiting and waiting[0].kind == OutboxKind.POST_PARENT:
                continue  # the card is not posted yet; posting it renders the newest state
            yield urgency(item), item

    def rank(self, item: OutboxMessage) -> int:
        """How urgent `item`'s queue is (a post: its whole thread; an edit: itself)."""
        key = order_key(item)
        return self.ranks[key] if item.kind != EDIT and key in self.ranks else urgency(item)

    def choose(self, now: datetime, pace_delay: Callable[[Lane], float],
               busy: Collection[Lane] = (), sending: Collection[int] = (),
               caps: Mapping[Lane, int] | None = None) -> Choice:
        """The most urgent item that can go now; `pace_delay(lane)` is the pacer's wait;
        `busy` lanes take no more calls for now; `sending` are the ids in flight (their
        threads, whose items are still queued, wait for them); `caps[lane]` is the least
        urgent rank a lane with a call in flight still takes (so nothing less urgent gets
        ready beside an urgent thread and goes before the rest of it)."""
        best: tuple[int, int, OutboxMessage] | None = None
        choice = Choice()
        caps = caps or {}
        # Per lane, once per choice (most threads share a few lanes): seconds until it may
        # take a call for its Retry-After hold, and for its pacing when not held.
        hold_of: dict[Lane, float] = {}
        pace_of: dict[Lane, float] = {}
        for rank, item in self._candidates(sending):
            if best is not None and (rank, item.id) >= best[:2]:
                continue
            item_lane = lane(item)
            if item_lane in busy or rank > caps.get(item_lane, rank):
                continue
            hold = hold_of.get(item_lane)
            if hold is None:
                until = self.held_until(item_lane)
                hold = hold_of[item_lane] = (until - now).total_seconds() if until else 0.0
            retry = item.next_attempt_at
            wait = (retry - now).total_seconds() if retry is not None and retry > now else 0.0
            if hold > wait:
                wait = hold
            if wait > 0:
                choice.due = wait if choice.due is None else min(choice.due, wait)
                continue
            pace = pace_of.get(item_lane)
            if pace is None:
                pace = pace_of[item_lane] = pace_delay(item_lane)
            if pace > 0:
                choice.pace = pace if choice.pace is None else min(choice.pace, pace)
                continue
            best = (rank, item.id, item)
        if best is not None:
            choice.item = best[2]
        return choice
