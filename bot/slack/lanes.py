"""What the notifier sends next: the unsent outbox in memory, as queues, decided purely.

Posts (card, replies, channel posts, private answers) queue per thread: within one thread they
go in the order they were written. Card edits are a queue of their own with at most one edit
per card: the card is re-rendered from the job's row when it goes, so an older edit waiting
behind a newer one says nothing new and is dropped (superseded). Every item goes through a
lane (a Slack method and, for posts, a channel) with its own pacing: a channel waiting for its
token holds back only itself. Among the items that can go now, the most urgent thread wins
("writes may resume", the result), then the oldest item. The candidates are kept sorted per
lane as the queues change: a choice looks at the first few of each lane, not at every thread.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bot.store import OutboxMessage
from bot.vocabulary import OutboxKind

Lane = tuple[str, str]  # (Slack method, channel or "" for workspace-wide limits)
EVERY_CHANNEL = "*"  # a hold on (method, EVERY_CHANNEL) holds that method in every channel
EDIT = OutboxKind.UPDATE_PARENT
Slot = tuple[bool, str]  # where a candidate sits: (is a card edit, its order key)
Entry = tuple[int, int, Slot]  # (rank, outbox id, slot): a lane's candidates sort by the first two


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
    Slack's clock (a token refills), `due` seconds of the business clock (a retry time or a
    hold ends). Never later than the first item could go; the items of a lane behind one
    that waits only for the lane's token are not looked at (they wait for that token too)."""

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
    # on every commit and every answered call, beside the acks of a burst.
    ranks: dict[str, int] = field(default_factory=dict)
    # Per lane, the items that may go next (each thread's head, each postable card edit),
    # sorted by (rank, id), kept as queues change: `choose` looks at a lane's first few
    # entries instead of every queued thread. With 1,500 cards queued in one channel the
    # scan over all threads was 22% of the event loop (issue 17).
    _index: dict[Lane, list[Entry]] = field(default_factory=dict, repr=False)
    _entry: dict[Slot, tuple[Lane, Entry]] = field(default_factory=dict, repr=False)
    _thread_of: dict[int, str] = field(default_factory=dict, repr=False)  # queued post -> key

    def __len__(self) -> int:
        return len(self._thread_of) + len(self.edits)  # every queued post, every edit

    def add(self, items: Iterable[OutboxMessage]) -> list[int]:
        """Take in newly read items; returns the ids of edits superseded by a newer one."""
        superseded: list[int] = []
        for item in sorted(items, key=lambda i: i.id):
            if item.id <= self.cursor:
                continue  # already known
            self.cursor = item.id
            key = order_key(item)
            if item.kind != EDIT:
                queue = self.threads.setdefault(key, deque())
                queue.append(item)
                self._thread_of[item.id] = key
                rank = urgency(item)
                if len(queue) == 1 or rank < self.ranks[key]:
                    self.ranks[key] = rank
                    self._thread_changed(key)
                continue
            older = self.edits.get(key)
            if older is not None:
                superseded.append(older.id)
            self.edits[key] = item
            self._reindex((True, key))
        return superseded

    def done(self, item: OutboxMessage) -> None:
        """The item was delivered or given up: it leaves its queue."""
        key = order_key(item)
        if item.kind == EDIT:
            if key in self.edits and self.edits[key].id == item.id:
                del self.edits[key]
                self._reindex((True, key))
            return
        queue = self.threads.get(key)
        if queue and queue[0].id == item.id:
            del self._thread_of[queue.popleft().id]
            self._reranked(key)

    def drop(self, ids: Collection[int]) -> None:
        """Items closed without a call (a reply the card already said): out of their queues."""
        keys = {self._thread_of[i] for i in ids if i in self._thread_of}
        for key in keys:  # the other threads keep queue and rank
            self.threads[key] = deque(i for i in self.threads[key] if i.id not in ids)
            for i in ids:
                if self._thread_of.get(i) == key:
                    del self._thread_of[i]
            self._reranked(key)

    def _reranked(self, key: str) -> None:
        """After `key`'s queue lost or replaced items: its rank again, or the thread is gone."""
        queue = self.threads[key]
        if queue:
            self.ranks[key] = min(urgency(i) for i in queue)
        else:
            del self.threads[key]
            del self.ranks[key]
        self._thread_changed(key)

    def _thread_changed(self, key: str) -> None:
        """`key`'s head or rank moved: its entry again, and its card edit's (an edit waits
        while the card itself is still to be posted)."""
        self._reindex((False, key))
        if key in self.edits:
            self._reindex((True, key))

    def _reindex(self, slot: Slot) -> None:
        """The slot's entry in its lane, as the queues now say (or none)."""
        old = self._entry.pop(slot, None)
        if old is not None:
            old_lane, entry = old
            entries = self._index[old_lane]
            del entries[bisect_left(entries, entry)]
            if not entries:
                del self._index[old_lane]
        item = self._at(slot)
        if item is None:
            return
        is_edit, key = slot
        if is_edit:
            waiting = self.threads.get(key)
            if waiting and waiting[0].kind == OutboxKind.POST_PARENT:
                return  # the card is not posted yet; posting it renders the newest state
        new = (urgency(item) if is_edit else self.ranks[key], item.id, slot)
        item_lane = lane(item)
        insort(self._index.setdefault(item_lane, []), new)
        self._entry[slot] = (item_lane, new)

    def _at(self, slot: Slot) -> OutboxMessage | None:
        """The item a slot holds now: the card's newest edit, or the thread's head."""
        is_edit, key = slot
        if is_edit:
            return self.edits.get(key)
        queue = self.threads.get(key)
        return queue[0] if queue else None

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
        for item_lane, entries in self._index.items():
            if item_lane in busy:
                continue
            cap = caps.get(item_lane, LEAST_URGENT)
            until = self.held_until(item_lane)
            hold = (until - now).total_seconds() if until else 0.0
            for rank, item_id, slot in entries:  # the lane's candidates, most urgent first
                if best is not None and (rank, item_id) >= best[:2] or rank > cap:
                    break  # neither this entry nor any after it could be chosen
                if item_id in sending:
                    continue  # in flight; its thread's next item waits for it (order)
                item = self._at(slot)
                assert item is not None and item.id == item_id  # the index follows the queues
                retry = item.next_attempt_at
                wait = (retry - now).total_seconds() if retry is not None and retry > now else 0.0
                if wait > 0 or hold > 0:
                    soonest = max(wait, hold)
                    choice.due = soonest if choice.due is None else min(choice.due, soonest)
                    if wait <= hold:
                        break  # the lane's hold: no entry after this one goes sooner
                    continue
                # Ready but for its lane's token: the entries after it wait for the same token.
                pace = pace_delay(item_lane)
                if pace > 0:
                    choice.pace = pace if choice.pace is None else min(choice.pace, pace)
                else:
                    best = (rank, item_id, item)
                break
        if best is not None:
            choice.item = best[2]
        return choice
