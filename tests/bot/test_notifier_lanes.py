"""What the notifier sends next (`bot.slack.lanes`): pure, over items and passed-in waits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from bot.slack.lanes import Lane, OutboxLanes, lane, urgency
from bot.store import OutboxMessage
from bot.vocabulary import OutboxKind

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def item(id_: int, kind: OutboxKind, job: str | None = "J1", channel: str = "C1",
         due: datetime = NOW, **payload: Any) -> OutboxMessage:
    return OutboxMessage(id=id_, kind=kind, channel=channel, payload=payload, thread_key=job,
                         job_id=job, created_at=NOW, attempts=0, next_attempt_at=due,
                         sent_at=None, error=None, result_ts=None)


def free(_: Lane) -> float:
    return 0.0


def drain(lanes: OutboxLanes, pace: Any = free) -> list[int]:
    """Ids in the order `choose` hands them out while everything may go."""
    sent = []
    while (choice := lanes.choose(NOW, pace)).item is not None:
        sent.append(choice.item.id)
        lanes.done(choice.item)
    return sent


def test_only_the_newest_edit_of_a_card_is_kept_and_no_post_is_dropped() -> None:
    lanes = OutboxLanes()
    superseded = lanes.add([item(1, OutboxKind.POST_PARENT), item(2, OutboxKind.UPDATE_PARENT),
                            item(3, OutboxKind.REPLY, text="a"),
                            item(4, OutboxKind.UPDATE_PARENT),
                            item(5, OutboxKind.REPLY, text="b")])
    superseded += lanes.add([item(6, OutboxKind.UPDATE_PARENT), item(7, OutboxKind.REPLY)])
    assert superseded == [2, 4]
    assert len(lanes) == 5
    # The edit waits for the card to be posted, then goes after the replies (least urgent).
    assert drain(lanes) == [1, 3, 5, 7, 6]


def test_items_already_seen_are_not_taken_twice() -> None:
    lanes = OutboxLanes()
    lanes.add([item(1, OutboxKind.POST_PARENT), item(2, OutboxKind.REPLY)])
    lanes.add([item(2, OutboxKind.REPLY), item(3, OutboxKind.REPLY)])
    assert lanes.cursor == 3 and drain(lanes) == [1, 2, 3]


def test_the_most_urgent_thread_goes_first_but_a_thread_keeps_its_order() -> None:
    lanes = OutboxLanes()
    lanes.add([item(1, OutboxKind.REPLY, job="J1", text="packaging"),
               item(2, OutboxKind.REPLY, job="J2", text="copying"),
               item(3, OutboxKind.REPLY, job="J2", must_reach=True),
               item(4, OutboxKind.REPLY, job="J1", final=True),
               item(5, OutboxKind.CHANNEL_POST, job=None)])
    # Both threads hold an urgent reply: the older head wins each time; each thread stays in
    # order; the channel post (nothing a person waits on) comes after both, though older.
    assert drain(lanes) == [1, 2, 3, 4, 5]
    lanes.add([item(6, OutboxKind.CHANNEL_POST, job=None),
               item(7, OutboxKind.REPLY, job="J5", final=True)])
    assert drain(lanes) == [7, 6]
    lanes.add([item(8, OutboxKind.REPLY, job="J3", text="copying"),
               item(9, OutboxKind.REPLY, job="J4", text="copying"),
               item(10, OutboxKind.REPLY, job="J4", final=True)])
    assert drain(lanes) == [9, 10, 8]  # J4 holds the result: its whole thread goes first


def test_copying_now_goes_in_turn_with_the_cards_not_after_all_of_them() -> None:
    # 10 jobs started together in one channel: J1's "copying now" must not wait until every
    # later card is out, or J1's "writes may resume" (behind it in J1's thread) waits too.
    lanes = OutboxLanes()
    lanes.add([item(1, OutboxKind.POST_PARENT, job="J1"), item(2, OutboxKind.POST_PARENT, job="J2"),
               item(3, OutboxKind.REPLY, job="J1", text="copying now", on_card="copy"),
               item(4, OutboxKind.POST_PARENT, job="J3"),
               item(5, OutboxKind.REPLY, job="J2", text="a plain reply")])
    assert drain(lanes) == [1, 2, 3, 4, 5]


def test_a_channel_waiting_for_its_token_does_not_hold_back_another() -> None:
    lanes = OutboxLanes()
    lanes.add([item(1, OutboxKind.REPLY, job="J1", channel="C1", final=True),
               item(2, OutboxKind.REPLY, job="J2", channel="C2"),
               item(3, OutboxKind.UPDATE_PARENT, job="J1", channel="C1")])

    def pace(key: Lane) -> float:
        return 0.7 if key == ("chat.postMessage", "C1") else 0.0

    choice = lanes.choose(NOW, pace)
    assert choice.item is not None and choice.item.id == 2
    lanes.done(choice.item)
    # Card edits have their own limit: C1's card is edited while C1's post waits.
    choice = lanes.choose(NOW, pace)
    assert choice.item is not None and choice.item.id == 3
    lanes.done(choice.item)
    choice = lanes.choose(NOW, pace)
    assert choice.item is None and choice.pace == 0.7 and choice.due is None


def _held(told: bool, *others: OutboxMessage) -> tuple[OutboxLanes, datetime]:
    """Lanes where J1's reply in C1 failed and was held 30 s (`told`: by a Retry-After)."""
    lanes = OutboxLanes()
    first = item(1, OutboxKind.REPLY, job="J1", channel="C1")
    lanes.add([first, *others])
    later = NOW + timedelta(seconds=30)
    lanes.hold_for(first, later, told=told)
    lanes.retry(item(1, OutboxKind.REPLY, job="J1", channel="C1", due=later))
    return lanes, later


def test_a_probe_while_slack_is_away_holds_its_lane_only() -> None:
    lanes, later = _held(False, item(2, OutboxKind.REPLY, job="J2", channel="C1"),
                         item(3, OutboxKind.REPLY, job="J3", channel="C2"))
    choice = lanes.choose(NOW, free)
    assert choice.item is not None and choice.item.id == 3
    lanes.done(choice.item)
    choice = lanes.choose(NOW, free)
    assert choice.item is None and choice.due == 30.0
    assert drain_at(lanes, later) == [1, 2]


def test_a_posts_retry_after_holds_posts_in_every_channel_and_nothing_else() -> None:
    # Slack's 429 may be chat.postMessage's workspace-wide limit (docs.slack.dev).
    lanes, later = _held(True, item(2, OutboxKind.REPLY, job="J3", channel="C2"),
                         item(3, OutboxKind.UPDATE_PARENT, job="J4", channel="C2"))
    assert lanes.held_until(lane(item(9, OutboxKind.REPLY, channel="C9"))) == later
    assert drain_at(lanes, NOW) == [3]  # the card edit: chat.update has its own limit
    choice = lanes.choose(NOW + timedelta(seconds=29), free)
    assert choice.item is None and choice.due == 1.0
    assert drain_at(lanes, later) == [1, 2]


def drain_at(lanes: OutboxLanes, now: datetime) -> list[int]:
    sent = []
    while (choice := lanes.choose(now, free)).item is not None:
        sent.append(choice.item.id)
        lanes.done(choice.item)
    return sent


def test_a_thread_with_an_item_in_flight_waits_and_another_thread_gets_ready() -> None:
    # A lane may have a second send getting ready while one is in flight (issue #17), but
    # never two of one thread: the thread's order holds.
    lanes = OutboxLanes()
    lanes.add([item(1, OutboxKind.REPLY, job="J1"), item(2, OutboxKind.REPLY, job="J1"),
               item(3, OutboxKind.REPLY, job="J2")])
    choice = lanes.choose(NOW, free, sending={1})
    assert choice.item is not None and choice.item.id == 3
    assert lanes.choose(NOW, free, sending={1, 3}).item is None


def test_nothing_less_urgent_gets_ready_beside_an_urgent_thread() -> None:
    lanes = OutboxLanes()
    lanes.add([item(1, OutboxKind.POST_PARENT, job="J1"),
               item(2, OutboxKind.REPLY, job="J1", final=True),
               item(3, OutboxKind.REPLY, job="J2"),
               item(4, OutboxKind.REPLY, job="J3", final=True)])
    first = lanes.choose(NOW, free)
    assert first.item is not None and first.item.id == 1 and lanes.rank(first.item) == 0
    caps = {lane(first.item): lanes.rank(first.item)}
    # J2 (not urgent) would go before the rest of J1; J3 (urgent too) may get ready.
    second = lanes.choose(NOW, free, sending={1}, caps=caps)
    assert second.item is not None and second.item.id == 4
    assert lanes.choose(NOW, free, sending={1, 4}, caps=caps).item is None


KINDS = [OutboxKind.POST_PARENT, OutboxKind.REPLY, OutboxKind.UPDATE_PARENT,
         OutboxKind.CHANNEL_POST, OutboxKind.EPHEMERAL]


def naive_choice(lanes: OutboxLanes, pace: Any) -> tuple[int | None, float | None]:
    """The choice taken the slow way (as `choose` did before it kept `ranks`): each thread's
    rank is the minimum over its whole queue, computed afresh; no holds, no retry times."""
    best: tuple[int, int] | None = None
    waits = []
    heads = [(min(urgency(i) for i in q), q[0]) for q in lanes.threads.values()]
    edits = [(urgency(e), e) for key, e in lanes.edits.items()
             if not (lanes.threads.get(key) and
                     lanes.threads[key][0].kind == OutboxKind.POST_PARENT)]
    for rank, head in heads + edits:
        wait = pace(lane(head))
        if wait > 0:
            waits.append(wait)
        elif best is None or (rank, head.id) < best:
            best = (rank, head.id)
    return (best[1], None) if best else (None, min(waits) if waits else None)


@given(st.lists(st.tuples(st.sampled_from(["add", "done", "drop", "retry"]),
                          st.integers(0, 3), st.sampled_from(KINDS),
                          st.sampled_from([{}, {"final": True}, {"must_reach": True}]),
                          st.booleans()), max_size=40))
def test_the_kept_thread_ranks_choose_what_the_whole_queues_say(ops: list[Any]) -> None:
    lanes = OutboxLanes()
    next_id = 1

    def pace(key: Lane) -> float:  # one paced channel, so waits are reported too
        return 0.5 if key == ("chat.postMessage", "C2") else 0.0

    for op, job, kind, payload, other_channel in ops:
        channel = "C2" if other_channel else "C1"
        if op == "add":
            lanes.add([item(next_id, kind, job=f"J{job}", channel=channel, **payload)])
            next_id += 1
        queues = list(lanes.threads.values())
        if op == "done" and queues:
            lanes.done(queues[job % len(queues)][0])
        if op == "drop" and queues:
            lanes.drop({queues[job % len(queues)][-1].id})
        if op == "retry" and queues:
            lanes.retry(queues[job % len(queues)][0])
        assert lanes.ranks == {k: min(urgency(i) for i in q) for k, q in lanes.threads.items()}
        choice = lanes.choose(NOW, pace)
        # The pacing wait matters only when nothing can go (the notifier sleeps on it).
        got = (choice.item.id, None) if choice.item else (None, choice.pace)
        assert got == naive_choice(lanes, pace)


LANES_SEEN: list[Lane] = [("chat.postMessage", "C1"), ("chat.postMessage", "C2"),
                          ("chat.update", ""), ("chat.postEphemeral", "")]


def scan_choice(lanes: OutboxLanes, now: datetime, pace: Any, busy: set[Lane],
                sending: set[int], caps: dict[Lane, int]
                ) -> tuple[int | None, float | None, float | None]:
    """The choice by a scan of every queued thread and edit (how `choose` worked before its
    per-lane index): (the id to send, else the earliest wake-up any scan could give, and the
    latest that misses no item)."""
    candidates = [(min(urgency(i) for i in q), q[0]) for q in lanes.threads.values()
                  if q[0].id not in sending]
    candidates += [(urgency(e), e) for key, e in lanes.edits.items()
                   if e.id not in sending and not (
                       lanes.threads.get(key)
                       and lanes.threads[key][0].kind == OutboxKind.POST_PARENT)]
    ready: list[tuple[int, int]] = []
    soonest: list[float] = []  # each candidate's own wait: its retry or hold, else its token
    latest: list[float] = []  # when each candidate could really go: both of them
    for rank, head in candidates:
        item_lane = lane(head)
        if item_lane in busy or rank > caps.get(item_lane, rank):
            continue
        until = lanes.held_until(item_lane)
        retry = head.next_attempt_at or now
        wait = max((until - now).total_seconds() if until else 0.0,
                   (retry - now).total_seconds(), 0.0)
        token = pace(item_lane)
        if wait == 0 and token == 0:
            ready.append((rank, head.id))
        soonest.append(wait if wait > 0 else token)
        latest.append(max(wait, token))
    if ready:
        return min(ready)[1], None, None
    return None, min(soonest, default=None), min(latest, default=None)


@given(st.lists(st.tuples(st.sampled_from(["add", "add", "done", "drop", "retry", "hold"]),
                          st.integers(0, 3), st.sampled_from(KINDS),
                          st.sampled_from([{}, {"final": True}, {"must_reach": True},
                                           {"on_card": "copy"}]),
                          st.booleans(), st.sampled_from([0, 0, 5, 20])), max_size=50),
       st.lists(st.tuples(st.sets(st.sampled_from(LANES_SEEN), max_size=2),
                          st.sets(st.integers(1, 50), max_size=4),
                          st.dictionaries(st.sampled_from(LANES_SEEN), st.integers(0, 3),
                                          max_size=2),
                          st.sampled_from([0, 3, 10, 30])), min_size=1, max_size=3))
# A card edit waits while its card is still to be posted, also when the posts are busy.
@example(ops=[("add", 0, OutboxKind.POST_PARENT, {}, False, 0),
              ("add", 0, OutboxKind.UPDATE_PARENT, {}, False, 0)],
         looks=[({("chat.postMessage", "C1")}, set(), {}, 0)])
def test_the_lane_index_chooses_what_a_scan_of_every_queue_chooses(
        ops: list[Any], looks: list[Any]) -> None:
    lanes = OutboxLanes()
    next_id = 1

    def pace(key: Lane) -> float:  # C2 is paced, so token waits are reported too
        return 0.5 if key == ("chat.postMessage", "C2") else 0.0

    for op, job, kind, payload, other_channel, due_in in ops:
        channel = "C2" if other_channel else "C1"
        due = NOW + timedelta(seconds=due_in)
        queues = list(lanes.threads.values())
        edits = list(lanes.edits.values())
        if op == "add":
            lanes.add([item(next_id, kind, job=f"J{job}", channel=channel, due=due, **payload)])
            next_id += 1
        elif op == "done" and (queues or edits):
            heads = [q[0] for q in queues] + edits
            lanes.done(heads[job % len(heads)])
        elif op == "drop" and queues:
            lanes.drop({queues[job % len(queues)][-1].id})
        elif op == "retry" and (queues or edits):
            head = ([q[0] for q in queues] + edits)[job % (len(queues) + len(edits))]
            lanes.retry(replace(head, next_attempt_at=due))
        elif op == "hold" and (queues or edits):
            head = ([q[0] for q in queues] + edits)[job % (len(queues) + len(edits))]
            lanes.hold_for(head, due, told=other_channel)
        assert len(lanes) == sum(len(q) for q in lanes.threads.values()) + len(lanes.edits)
        for busy, sending, caps, later in looks:
            now = NOW + timedelta(seconds=later)
            choice = lanes.choose(now, pace, busy=busy, sending=sending, caps=caps)
            want, soonest, latest = scan_choice(lanes, now, pace, busy, sending, caps)
            assert (choice.item.id if choice.item else None) == want
            if want is None:
                wake = min((w for w in (choice.pace, choice.due) if w is not None), default=None)
                # Never later than an item could go (nothing is missed); never sooner than a
                # scan of every item would wake (an index that looks at less wakes no more).
                assert (wake is None) == (latest is None)
                assert wake is None or soonest is not None and latest is not None and (
                    soonest <= wake <= latest)


class CountedLookups(set[int]):
    """A `sending` set that counts how often `choose` asks it: once per entry looked at."""

    asked = 0

    def __contains__(self, item_id: object) -> bool:
        self.asked += 1
        return super().__contains__(item_id)


def test_a_choice_looks_at_each_lanes_first_entries_not_at_every_queued_thread() -> None:
    # Issue 17: with 1,500 cards queued in one channel, the scan over every thread per
    # choice was 22% of the event loop. Paced, held or free, a lane is decided by its front.
    lanes = OutboxLanes()
    lanes.add([item(i, OutboxKind.POST_PARENT, job=f"J{i}") for i in range(1, 1001)])
    lanes.add([item(2000 + i, OutboxKind.REPLY, job=f"K{i}", channel="C2") for i in (1, 2, 3)])

    def paced(key: Lane) -> float:
        return 0.5 if key == ("chat.postMessage", "C1") else 0.0

    sending = CountedLookups({2001})
    choice = lanes.choose(NOW, paced, sending=sending)
    assert choice.item is not None and choice.item.id == 2002 and sending.asked <= 4
    sending = CountedLookups({2001, 2002, 2003})
    choice = lanes.choose(NOW, paced, sending=sending)
    assert choice.item is None and choice.pace == 0.5 and sending.asked <= 5
    lanes.hold_for(item(1, OutboxKind.POST_PARENT, job="J1"), NOW + timedelta(seconds=9),
                   told=False)
    sending = CountedLookups({2001, 2002, 2003})
    choice = lanes.choose(NOW, paced, sending=sending)
    assert choice.item is None and choice.due == 9.0 and sending.asked <= 5
