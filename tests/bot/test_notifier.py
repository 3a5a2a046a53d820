"""The notifier against a real store and a recording fake of the Slack edge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.errors import SlackRejected, SlackUnavailable
from bot.imaging import jobs
from bot.slack.lessons import LESSON_KEY
from bot.slack.notifier import NO_THREAD, Notifier
from bot.slack.pacing import SlackPacer
from bot.store import AsyncStore, OutboxItem, Store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeWeb:
    """Records calls; `fail` maps a call number to the error it raises."""

    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail or {}
        self.metrics = None
        self.posted: dict[int | None, str] = {}
        self.lookups = 0
        self.responded: list[Any] = []
        self.threads: list[tuple[str, str, str, str | None]] = []  # channel, ts, text, thread

    @contextlib.contextmanager
    def telling_429s(self, listener: Any) -> Iterator[None]:
        yield  # these fakes answer no call with a 429

    def _record(self, method: str, channel: str, text: str) -> None:
        self.calls.append((method, channel, text))
        error = self.fail.pop(len(self.calls), None)
        if error is not None:
            raise error

    async def post(self, channel: str, text: str, blocks: Any = None, *,
                   outbox_id: int | None = None, thread_ts: str | None = None,
                   **_: Any) -> tuple[str, str]:
        ts = f"{len(self.calls) + 1}.0"
        self.posted[outbox_id] = ts  # Slack keeps the message even if the answer is lost
        self.threads.append((channel, ts, text, thread_ts))
        self._record("post", channel, text)
        return channel, ts

    async def find_posted(self, channel: str, outbox_id: int, **_: Any) -> tuple[str, str] | None:
        self.lookups += 1
        ts = self.posted.get(outbox_id)
        return ("C0OPS", ts) if ts else None

    async def update_message(self, channel: str, ts: str, text: str, blocks: Any = None) -> None:
        self._record("update", channel, text)

    async def post_ephemeral(self, channel: str, user: str, text: str, *_: Any) -> None:
        self._record("ephemeral", channel, text)

    async def respond(self, url: str, text: str, blocks: Any = None, **_: Any) -> None:
        self.responded.append(blocks)
        self._record("respond", url, text)


async def make(tmp_path: Path, web: FakeWeb) -> tuple[AsyncStore, Notifier]:
    store = await AsyncStore.open(tmp_path / "n.db", clock=lambda: NOW)

    async def no_sleep(_: float) -> None:
        return None

    notifier = Notifier(store, web, clock=lambda: NOW, sleep=no_sleep,  # type: ignore[arg-type]
                        pacer=SlackPacer(scale=1000))
    return store, notifier


def reply(job: str, text: str, **flags: Any) -> OutboxItem:
    return OutboxItem(kind="reply", channel="C0OPS", job_id=job, thread_key=job,
                      payload={"text": text, **flags})


async def new_job(store: AsyncStore, *items: OutboxItem, channel: str = "C0OPS") -> str:
    job, _ = await store.run(Store.create_job, server_ref="web-1", requested_by="U0ALICE", channel=channel,
                                    state=jobs.QUEUED,
                                    outbox=[OutboxItem(kind="post_parent", channel=channel)])
    await store.run(Store.update_job, job.id, fields={}, outbox=[
        OutboxItem(kind=i.kind, channel=channel, job_id=job.id, thread_key=job.id,
                   payload=i.payload) for i in items])
    return job.id


async def test_urgent_thread_goes_first_and_each_thread_keeps_its_order(tmp_path: Path) -> None:
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "a-packaging"), reply("", "a-uploading"))
        await new_job(store, reply("", "b-copying"), reply("", "b-resume", must_reach=True))
        assert await notifier.flush() == 6
        texts = [text for _, _, text in web.calls]
        # B holds the urgent message, so its whole thread (parent first) goes before A's.
        assert "job J2" in texts[0] and texts[1:3] == ["b-copying", "b-resume"]
        assert "job J1" in texts[3]
        assert texts.index("a-packaging") < texts.index("a-uploading")
        assert (await store.run(Store.get_job, "J2")).thread_ts is not None
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def test_a_retryable_failure_holds_its_thread_and_keeps_the_item(tmp_path: Path) -> None:
    web = FakeWeb(fail={2: SlackUnavailable("429", retry_after=30)})
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "first"), reply("", "second"))
        assert await notifier.flush() == 1  # the parent went; "first" failed; "second" waited
        assert [t for _, _, t in web.calls][1:] == ["first"]
        assert await store.run(Store.outbox_depth) == 2
        notifier.clock = lambda: NOW + timedelta(seconds=31)
        assert await notifier.flush() == 2
        assert [t for _, _, t in web.calls][-2:] == ["first", "second"]
    finally:
        await store.close()


async def test_a_posts_retry_after_holds_posts_in_every_channel_but_not_other_methods(
        tmp_path: Path) -> None:
    # Slack's 429 on chat.postMessage may be its workspace-wide limit (docs.slack.dev rate
    # limits), so no channel posts until the Retry-After is over; edits and private answers,
    # paced by limits of their own, go on.
    web = FakeWeb(fail={1: SlackUnavailable("429", retry_after=30)})
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "a-reply"), channel="C0A")
        await new_job(store, reply("", "b-reply"), channel="C0B")
        await store.run(Store.enqueue, [OutboxItem(kind="ephemeral", channel="C0A", payload={
            "user": "U0ALICE", "text": "only for alice"})])
        await notifier.flush()
        # The two cards went out side by side; C0A's was refused. C0B's, already in flight,
        # was taken, but neither channel starts another post.
        posts = [(c, t) for m, c, t in web.calls if m == "post"]
        assert sorted(c for c, _ in posts) == ["C0A", "C0B"]
        assert not [t for _, t in posts if t.endswith("-reply")]
        assert [t for m, _, t in web.calls if m == "ephemeral"] == ["only for alice"]
        notifier.clock = lambda: NOW + timedelta(seconds=29)
        await notifier.flush()
        assert len([m for m, _, _ in web.calls if m == "post"]) == 2
        notifier.clock = lambda: NOW + timedelta(seconds=31)
        # C0A's card (looked up first: the refused call may have posted it) and both replies.
        assert await notifier.flush() == 3
        assert sorted(t for m, _, t in web.calls[3:] if m == "post") == ["a-reply", "b-reply"]
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def test_a_rejected_item_is_dropped_and_the_rest_goes(tmp_path: Path) -> None:
    # (invalid_blocks used to be the example; it now gets a plain-text second try, below.)
    web = FakeWeb(fail={2: SlackRejected("as_user_not_supported")})
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "broken"), reply("", "fine"))
        assert await notifier.flush() == 2
        assert [t for _, _, t in web.calls][-1] == "fine"
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def test_a_refused_post_is_retried_without_a_lookup(tmp_path: Path) -> None:
    web = FakeWeb(fail={2: SlackUnavailable("429", retry_after=1, answered=True)})
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "writes may resume", must_reach=True))
        assert await notifier.flush() == 1
        notifier.clock = lambda: NOW + timedelta(minutes=5)
        assert await notifier.flush() == 1
        assert web.lookups == 0
    finally:
        await store.close()


async def test_a_post_whose_answer_was_lost_is_found_not_repeated(tmp_path: Path) -> None:
    # Slack took the reply, but the bot died before committing: the answer never arrived.
    web = FakeWeb(fail={2: SlackUnavailable("connection reset")})
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "writes may resume", must_reach=True))
        assert await notifier.flush() == 1
        notifier.clock = lambda: NOW + timedelta(minutes=5)
        assert await notifier.flush() == 1
        assert [t for _, _, t in web.calls].count("writes may resume") == 1
        assert web.lookups == 1
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def _private_job(store: AsyncStore, channel: str = "G0SECRET", **fields: Any) -> str:
    job, _ = await store.run(Store.create_job, server_ref="web-99", requested_by="U0ALICE", channel=channel,
                                    state=jobs.AWAITING_CONFIRMATION,
                                    response_url="https://hooks.example/r/1", **fields)
    return job.id


def _note(job_id: str, channel: str = "G0SECRET") -> OutboxItem:
    return OutboxItem(kind="ephemeral", channel=channel, job_id=job_id, thread_key=job_id,
                      payload={"user": "U0ALICE", "text": "web-99 was not found"})


async def test_a_private_answer_falls_back_to_the_response_url(tmp_path: Path) -> None:
    web = FakeWeb(fail={1: SlackRejected("not_in_channel")})
    store, notifier = await make(tmp_path, web)
    try:
        job_id = await _private_job(store)
        assert (await store.run(Store.get_job, job_id)).announced_at is None  # no card was queued
        await store.run(Store.update_job, job_id, fields={}, outbox=[_note(job_id)])
        assert await notifier.flush() == 1
        assert web.calls == [("ephemeral", "G0SECRET", "web-99 was not found"),
                             ("respond", "https://hooks.example/r/1", "web-99 was not found")]
        assert await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


async def test_a_private_answer_interrupted_mid_send_is_not_repeated(tmp_path: Path) -> None:
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        job_id = await _private_job(store, channel="C0OPS")
        await store.run(Store.update_job, job_id, fields={}, outbox=[_note(job_id, "C0OPS")])
        [item] = await store.run(Store.pending_outbox, NOW)
        await store.run(Store.mark_posting, item.id)  # the bot died after the call went out
        await notifier.flush()
        assert web.calls == []  # an ephemeral cannot be looked up: at most once
        assert await store.run(Store.outbox_depth) == 0
        assert "unknown" in ((await store.run(Store.outbox_item, item.id)).error or "")
    finally:
        await store.close()


async def test_the_fallback_card_keeps_its_buttons_and_is_sent_once(tmp_path: Path) -> None:
    web = FakeWeb(fail={1: SlackRejected("not_in_channel")})
    store, notifier = await make(tmp_path, web)
    try:
        job_id = await _private_job(store)
        await store.run(Store.update_job, job_id, fields={}, outbox=[
            OutboxItem(kind="post_parent", channel="G0SECRET", job_id=job_id)])
        assert await notifier.flush() == 1
        assert [c[0] for c in web.calls] == ["post", "respond"]
        assert "job_start" in str(web.responded[-1]) and "job_cancel" in str(web.responded[-1])
        assert "/invite @imagebot" in web.calls[-1][2]
        assert (await store.run(Store.get_job, job_id)).thread_ts == NO_THREAD
        # A crash after the response_url post: the restarted notifier neither posts in the
        # channel again nor repeats the card.
        second = await _private_job(store)
        await store.run(Store.update_job, second, fields={"thread_ts": NO_THREAD}, outbox=[
            OutboxItem(kind="post_parent", channel="G0SECRET", job_id=second)])
        [item] = await store.run(Store.pending_outbox, NOW)
        await store.run(Store.mark_posting, item.id)
        before = len(web.calls)
        await notifier.flush()
        assert len(web.calls) == before and await store.run(Store.outbox_depth) == 0
    finally:
        await store.close()


def edit(job: str) -> OutboxItem:
    return OutboxItem(kind="update_parent", channel="C0OPS", job_id=job, thread_key=job,
                      payload={})


async def test_only_the_newest_edit_of_a_card_goes_and_no_reply_is_dropped(tmp_path: Path) -> None:
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        job_id = await new_job(store)
        assert await notifier.flush() == 1
        await store.run(Store.update_job, job_id, fields={}, outbox=[
            edit(job_id), reply(job_id, "one"), edit(job_id), reply(job_id, "two"),
            edit(job_id)])
        assert await notifier.flush() == 3  # two replies and one edit; two edits superseded
        # (Edits have their own lane: the one edit may go between the replies.)
        assert sorted(m for m, _, _ in web.calls) == ["post", "post", "post", "update"]
        assert [t for m, _, t in web.calls if m == "post"][1:] == ["one", "two"]
        assert await store.run(Store.outbox_depth) == 0
        errors = [(await store.run(Store.outbox_item, i)).error for i in range(2, 7)]
        assert errors == ["superseded", None, "superseded", None, None]
    finally:
        await store.close()


async def test_a_new_urgent_reply_goes_next_not_after_the_backlog(tmp_path: Path) -> None:
    store: AsyncStore | None = None

    class CommittingWeb(FakeWeb):
        """While the first backlog reply is being sent, the engine commits "writes may
        resume" for another job and wakes the notifier (as `on_change` does)."""

        async def post(self, channel: str, text: str, *args: Any, **kw: Any) -> tuple[str, str]:
            if text == "backlog-0":
                assert store is not None
                await store.run(Store.update_job, "J2", fields={},
                                outbox=[reply("J2", "resume", must_reach=True)])
                notifier.wake.set()
            return await super().post(channel, text, *args, **kw)

    web = CommittingWeb()
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store)
        await new_job(store)
        assert await notifier.flush() == 2  # both cards
        await store.run(Store.update_job, "J1", fields={}, outbox=[
            reply("J1", f"backlog-{i}") for i in range(5)])
        assert await notifier.flush() == 6
        texts = [t for _, _, t in web.calls][2:]
        assert texts[:2] == ["backlog-0", "resume"], texts
    finally:
        await store.close()


class TimedWeb(FakeWeb):
    """Notes when (on the test's pacing clock `now[0]`) each text was posted."""

    def __init__(self, now: list[float]) -> None:
        super().__init__()
        self.now = now
        self.at: dict[str, float] = {}

    def _record(self, method: str, channel: str, text: str) -> None:
        self.at[text] = self.now[0]
        super()._record(method, channel, text)


async def test_a_channel_out_of_tokens_does_not_hold_back_another(tmp_path: Path) -> None:
    pace_now = [100.0]

    async def sleep(seconds: float) -> None:
        # Simulated time passes only once the work under way is done, as it would in real
        # time (a send takes milliseconds, a token a second): three round trips through the
        # store's one thread (FIFO) let each send in flight write its outcome (mark_posting,
        # the fake call, mark_sent). A send that ends meanwhile wakes the notifier, which
        # cancels this sleep, and no time passes. Advancing at once let a channel's wait for
        # its token run ahead of the other channel's card still being written (a flaky test).
        for _ in range(3):
            await store.run(Store.outbox_depth)
        pace_now[0] += seconds

    web = TimedWeb(pace_now)
    store = await AsyncStore.open(tmp_path / "n.db", clock=lambda: NOW)
    notifier = Notifier(store, web, clock=lambda: NOW, sleep=sleep,  # type: ignore[arg-type]
                        pacer=SlackPacer(), pace_clock=lambda: pace_now[0])
    try:
        await new_job(store, *(reply("", f"busy-{i}") for i in range(4)), channel="C0BUSY")
        await new_job(store, reply("", "quiet"), channel="C0QUIET")
        assert await notifier.flush() == 7
        # C0BUSY spends its burst (card + one reply) and waits for tokens; meanwhile C0QUIET's
        # card and reply go at once instead of queueing behind it.
        assert web.at["quiet"] == 100.0
        assert web.at["busy-0"] == 100.0 < web.at["busy-1"] < web.at["busy-2"]
        assert [c for _, c, t in web.calls if t.startswith("busy")] == ["C0BUSY"] * 4
        pacer = SlackPacer()
        assert web.at["busy-3"] - 100.0 >= (5 - pacer.post_burst) / pacer.post_rate - 1e-6
    finally:
        await store.close()


async def test_a_slow_call_in_one_channel_does_not_hold_back_another(tmp_path: Path) -> None:
    class SlowWeb(FakeWeb):
        """Slack takes its time answering the post in C0SLOW: it answers only once the post
        in C0FAST went out (a notifier calling Slack one channel after another would wait
        forever here, and fail on the timeout)."""

        def __init__(self) -> None:
            super().__init__()
            self.fast_done = asyncio.Event()

        async def post(self, channel: str, text: str, *args: Any, **kw: Any) -> tuple[str, str]:
            if text == "slow":
                await asyncio.wait_for(self.fast_done.wait(), timeout=5)
            answer = await super().post(channel, text, *args, **kw)
            if text == "fast":
                self.fast_done.set()
            return answer

    web = SlowWeb()
    store, notifier = await make(tmp_path, web)
    try:
        await new_job(store, reply("", "slow"), channel="C0SLOW")
        await new_job(store, reply("", "fast"), channel="C0FAST")
        assert await notifier.flush() == 4
        texts = [t for _, _, t in web.calls]
        assert texts.index("fast") < texts.index("slow")
    finally:
        await store.close()


async def test_an_urgent_reply_committed_while_a_channel_waits_for_its_token_goes_next(
        tmp_path: Path) -> None:
    # Issue 17: at Slack's pace a channel's next item used to be chosen as soon as the last
    # one was in flight, so it waited a whole token for its call, committed to going next,
    # and a "writes may resume" committed meanwhile went after it. An item is now chosen only
    # when its token is near (`LOOKAHEAD`).
    pace_now = [100.0]
    store: AsyncStore | None = None
    committed: list[float] = []

    async def sleep(seconds: float) -> None:
        if seconds > 0.5 and not committed:  # the channel waits for a token: J4 moves on
            assert store is not None
            committed.append(pace_now[0])
            await store.run(Store.update_job, "J4", fields={},
                            outbox=[reply("J4", "resume", must_reach=True)])
            notifier.wake.set()
        pace_now[0] += seconds

    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    try:
        for _ in range(4):
            await new_job(store)
        assert await notifier.flush() == 4  # the cards, at the fast test pace
        notifier.pacer = SlackPacer()
        notifier.pace_clock = lambda: pace_now[0]
        notifier.sleep = sleep
        notifier.pacer.take("chat.postMessage", "C0OPS", pace_now[0])  # one token is left
        for job in ("J1", "J2", "J3"):
            await store.run(Store.update_job, job, fields={}, outbox=[reply(job, f"r-{job}")])
        assert await notifier.flush() == 4
        assert committed  # the urgent reply came while the channel waited
        texts = [t for _, _, t in web.calls][4:]
        assert texts == ["r-J1", "resume", "r-J2", "r-J3"], texts
    finally:
        await store.close()


async def test_replies_find_their_thread_without_reading_the_job_again(tmp_path: Path) -> None:
    # Issue 17: every reply read its job for the thread's ts, a store round trip on the way
    # to each post. A posted card's thread never changes: the notifier keeps the ones it
    # posted. A notifier that did not post the card (after a restart) reads it once.
    web = FakeWeb()
    store, notifier = await make(tmp_path, web)
    reads: list[str] = []
    run = store.run

    async def counting_run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn is Store.get_job:
            reads.append(str(args[0]))
        return await run(fn, *args, **kwargs)

    store.run = counting_run  # type: ignore[method-assign]
    try:
        job = await new_job(store, reply("", "copying"), reply("", "resume", must_reach=True))
        assert await notifier.flush() == 3
        assert reads == [job]  # the card's render; the replies knew the thread
        card_ts = web.posted[1]
        await store.run(Store.update_job, job, fields={}, outbox=[reply(job, "done", final=True)])
        restarted = Notifier(store, web, clock=lambda: NOW,  # type: ignore[arg-type]
                             pacer=SlackPacer(scale=1000))
        assert await restarted.flush() == 1
        assert reads == [job, job]
        threads = {text: thread for _, _, text, thread in web.threads if thread}
        assert threads == {"copying": card_ts, "resume": card_ts, "done": card_ts}
    finally:
        await store.close()


class VirtualTime:
    """A clock for the pacing that moves only while every send under way waits for it, and
    then to the earliest wake-up: sleeps overlap as in real time, and no token comes while a
    send is still doing its store work (`drive`, run beside the notifier)."""

    def __init__(self, now: float, settle: Callable[[], Awaitable[None]]) -> None:
        self.now = now
        self.settle = settle
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.waiting: set[asyncio.Task[Any]] = set()

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + max(0.0, seconds), len(self.sleepers), future))
        task = asyncio.current_task()
        assert task is not None
        self.waiting.add(task)
        try:
            await future
        finally:
            self.waiting.discard(task)

    async def drive(self) -> None:
        while True:
            await self.settle()
            self.sleepers = [s for s in self.sleepers if not s[2].done()]  # cancelled ones
            sends = {t for t in asyncio.all_tasks() if not t.done()
                     and getattr(t.get_coro(), "__qualname__", "") == "Notifier._send"}
            if self.sleepers and sends <= self.waiting:
                deadline, _, future = min(self.sleepers, key=lambda s: (s[0], s[1]))
                self.sleepers.remove((deadline, _, future))
                self.now = max(self.now, deadline)
                future.set_result(None)


async def test_under_a_learnt_workspace_limit_the_most_urgent_post_of_any_channel_goes_next(
        tmp_path: Path) -> None:
    # Once the pacer has learnt Slack's workspace-wide post limit, every channel's posts share
    # one bucket: of the calls waiting for its next token, the most urgent takes it, whichever
    # channel it is in.
    async def settle() -> None:  # the store's work queued so far done, and the loop after it
        await store.run(Store.outbox_depth)
        for _ in range(5):
            await asyncio.sleep(0)

    clock = VirtualTime(100.0, settle)
    pacer = SlackPacer()
    pacer.take("chat.postMessage", "C0EARLIER", 0.0)  # posting for a while: a refusal teaches
    for channel in ("C0X", "C0Y"):
        pacer.take("chat.postMessage", channel, 99.9)
    pacer.refused("chat.postMessage", "C0Y", 99.9, 100.0)  # learnt: 1.8 posts/s in all
    web = FakeWeb()
    store = await AsyncStore.open(tmp_path / "n.db", clock=lambda: NOW)
    notifier = Notifier(store, web, clock=lambda: NOW, sleep=clock.sleep,  # type: ignore[arg-type]
                        pacer=pacer, pace_clock=lambda: clock.now)
    driver = asyncio.create_task(clock.drive())
    try:
        await new_job(store, reply("", "plain-1"), reply("", "plain-2"), channel="C0PLAIN")
        await new_job(store, reply("", "writes may resume", must_reach=True), channel="C0URGENT")
        # As `run` does first: the lesson this pacer came with is saved before any post.
        await notifier.kept_lesson.sync(pacer, clock.now)
        assert await notifier.flush() == 5
        posts = [t for _, _, t in web.calls]
        # The urgent thread's card, then its reply, before the other channel's card.
        assert posts[1] == "writes may resume", posts
        assert posts[2:] == [posts[2], "plain-1", "plain-2"] and "J1" in posts[2], posts
    finally:
        driver.cancel()
        await store.close()


async def test_a_limit_learnt_mid_drain_is_saved_before_the_backlog_is_sent(
        tmp_path: Path) -> None:
    # A backlog keeps the notifier in one drain for as long as it takes to send it (minutes
    # under a workspace limit): a lesson is saved as soon as the call that taught it ends,
    # so a bot killed meanwhile restarts from it (bot/slack/lessons.py).
    class RefusedOnce(FakeWeb):
        def __init__(self) -> None:
            super().__init__()
            self.listener: Any = None
            self.saved_at_call: list[bool] = []

        @contextlib.contextmanager
        def telling_429s(self, listener: Any) -> Iterator[None]:
            self.listener = listener
            yield

        async def post(self, channel: str, text: str, *args: Any, **kwargs: Any
                       ) -> tuple[str, str]:
            self.saved_at_call.append(
                await store.run(Store.get_meta, LESSON_KEY) is not None)
            if len(self.calls) == 0:
                await self.listener(1.0)  # slack_sdk retried a 429, then the post went
            return await super().post(channel, text, *args, **kwargs)

    pacer = SlackPacer()
    pacer.take("chat.postMessage", "C0EARLIER", 0.0)
    pacer.take("chat.postMessage", "C0OTHER", 99.95)  # another channel in the same second
    web = RefusedOnce()
    store = await AsyncStore.open(tmp_path / "n.db", clock=lambda: NOW)

    pace_now = [100.0]

    async def sleep(seconds: float) -> None:
        pace_now[0] += seconds

    notifier = Notifier(store, web, clock=lambda: NOW, sleep=sleep,  # type: ignore[arg-type]
                        pacer=pacer, pace_clock=lambda: pace_now[0])
    try:
        await new_job(store, *(reply("", f"r{i}") for i in range(6)))
        assert await notifier.flush() == 7
        assert pacer.workspace_posts is not None  # learnt from the first post's 429
        # Saved while the refused call was still being retried: every later call finds it.
        assert web.saved_at_call[0] is False and all(web.saved_at_call[1:]), web.saved_at_call
    finally:
        await store.close()
