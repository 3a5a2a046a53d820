"""Posts to Slack from committed state: the outbox table is the queue.

A Slack outage, a 429 or a transient ok:false (`internal_error`, `ratelimited`, a non-JSON
answer...) delays messages but loses none: an item is marked sent only after Slack accepted it,
and a retryable failure holds back the rest of its thread, so later items never overtake earlier
ones. A permanent refusal falls back once (a shorter message, the response_url, the channel
policy's notification channel) and is logged once; a job whose parent cannot be posted goes on
without a thread instead of waiting for it forever.
Parent messages are re-rendered from the job's current row when sent, so of several card
edits waiting for the same card only the newest goes (`lanes`: one queue per thread for posts,
one edit per card, a pacer per Slack method and channel, the most urgent thread first).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.errors import JobError, SlackRejected, SlackUnavailable
from bot.imaging import messages as render
from bot.imaging.jobs import Job
from bot.loops import run_until
from bot.slack.direct import post_copy
from bot.slack.lanes import LEAST_URGENT, Choice, Lane, OutboxLanes, lane
from bot.slack.lessons import KeptLesson
from bot.slack.pacing import SlackPacer, Turns
from bot.slack.refusals import CHANNEL_REFUSALS, CONTENT_REFUSALS, backoff_delay, shortened
from bot.slack.web import SlackWeb
from bot.store import AsyncStore, OutboxMessage, Store

log = logging.getLogger(__name__)

NO_THREAD = "fallback"  # thread_ts marker: the bot cannot post in this channel
OUTAGE_PROBE = 2.0  # seconds a lane waits after Slack failed without a Retry-After
RESYNC_SECONDS = 60.0  # how often the whole unsent outbox is read again
# Calls one lane has in flight at most: the next one gets ready while the last is answered, so
# a channel's posts keep Slack's spacing even when a post's own store work takes longer.
LANE_DEPTH = 2
# How close (in token intervals) a lane's next token must be before its next item is chosen and
# gets ready. Chosen earlier, an item waits for its token committed to going next: a "writes may
# resume" committed meanwhile waited behind it, measured at ~2 intervals per post (issue 17).
LOOKAHEAD = 0.25
PACE_EPSILON = 1e-6  # seconds
THREADS_KEPT = 10_000  # posted cards' threads remembered (a miss costs one store read)


class _ParentPending(SlackUnavailable):
    """A reply waits for its thread parent; routine, so it is not logged as a failure."""


class Notifier:
    """Drains the outbox in order, pacing calls to Slack's limits."""

    def __init__(self, store: AsyncStore, web: SlackWeb, *, clock: Callable[[], datetime],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 pacer: SlackPacer | None = None,
                 pace_clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.web = web
        self.clock = clock
        self.sleep = sleep
        self.pacer = pacer or SlackPacer()
        self.pace_clock = pace_clock  # Slack's limits: real time, not the (shiftable) `clock`
        self.wake = asyncio.Event()
        self.lanes = OutboxLanes()
        self.sent = 0  # items delivered since start (for flush's count and the benchmarks)
        self._resync_at = 0.0
        self._gates: dict[tuple[str, str], asyncio.Lock] = {}  # one call in flight per lane
        self._took: set[int] = set()  # items in flight that have taken their pacing token
        # Job id -> (channel, thread ts) of the cards this notifier posted or read as posted:
        # a posted card's thread never changes, so a reply needs no store read to find it.
        self._threads: dict[str, tuple[str, str]] = {}
        self._sending: contextvars.ContextVar[OutboxMessage | None] = contextvars.ContextVar(
            "imagebot_sending_item", default=None)  # the item a `_send` task delivers
        self._turns = Turns()  # calls waiting for their token, by urgency
        self.kept_lesson = KeptLesson(store)  # the pacer's learnt limit, kept across restarts
        # The notification channel of a job's channel policy (wiring sets it), for the last
        # fallback of a job whose channel refuses the bot and that has no response_url.
        self.notify_for: Callable[[Any], str | None] = lambda job: None

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Deliver until `stop` is set. Each iteration first reads what was committed since
        the last one, sends whatever may go now, and then sleeps until the next token or
        retry time, `idle` at most; `wake` (set on every commit) ends the sleep early."""

        async def step() -> float:
            await self.kept_lesson.sync(self.pacer, self.pace_clock())
            choice = await self._drain()
            waits = [w for w in (choice.pace, choice.due) if w is not None]
            return min([idle, *waits])

        await run_until(stop, self.wake, step, name="notifier", fallback=idle)

    async def flush(self) -> int:
        """Deliver everything due now, waiting for pacing tokens as needed (retries due later
        stay queued); returns how many items were delivered."""
        sent = 0
        while True:
            before = self.sent
            choice = await self._drain()
            sent += self.sent - before
            if choice.pace is None:
                return sent
            await self.sleep(choice.pace)

    async def _refresh(self, *, resync: bool = False) -> None:
        """Read only what is new (ids grow in commit order); now and then (`resync`, between
        sends), everything again, which also picks up items changed outside the notifier."""
        if resync and self.pace_clock() >= self._resync_at:
            self.lanes = OutboxLanes(held=self.lanes.held)  # Retry-After still counts
            self._resync_at = self.pace_clock() + RESYNC_SECONDS
        items = await self.store.run(Store.outbox_after, self.lanes.cursor)
        superseded = self.lanes.add(items)
        if superseded:
            await self.store.run(Store.mark_superseded, superseded)

    async def _drain(self) -> Choice:
        """Send what may go now, most urgent first, one call at a time per lane (a channel's
        posts, card edits, ...) and lanes side by side: a slow or waiting channel holds back
        no other. A commit during a send (`wake`) is read before the next choice, so a new
        urgent reply never waits behind older work."""
        await self._refresh(resync=True)
        sending: dict[int, tuple[Lane, asyncio.Task[None]]] = {}
        caps: dict[Lane, int] = {}  # per lane in flight: the rank of its most urgent call
        woken: asyncio.Task[bool] | None = None

        def pace(key: Lane) -> float:
            # An item gets ready (store reads, `mark_posting`) a little before its token, also
            # beside a call of its lane in flight, and waits the rest in `_paced`; each call
            # of the lane still to take its token comes first, an interval each.
            interval = self.pacer.interval(key[0], key[1])
            ahead = sum(1 for item_id, (held, _) in sending.items()
                        if held == key and item_id not in self._took)
            wait = self.pacer.delay(key[0], key[1], self.pace_clock()) + ahead * interval
            early = wait - LOOKAHEAD * interval
            # A rounding error's worth is none: a clock cannot advance by 1e-14 s at 1e9.
            return early if early > PACE_EPSILON else 0.0

        try:
            while True:
                loads = Counter(held for held, _ in sending.values())  # calls in flight
                choice = self.lanes.choose(
                    self.clock(), pace, busy={k for k, n in loads.items() if n >= LANE_DEPTH},
                    sending=set(sending), caps=caps)
                if (item := choice.item) is not None:
                    item_lane = lane(item)
                    caps[item_lane] = min(caps.get(item_lane, LEAST_URGENT), self.lanes.rank(item))
                    sending[item.id] = (item_lane, asyncio.create_task(self._send(item)))
                    continue
                if not sending:
                    if not self.wake.is_set():
                        break  # (no await between here and run_until's clear: no lost wake)
                    self.wake.clear()
                    await self._refresh()
                    continue
                woken = woken or asyncio.create_task(self.wake.wait())
                # Also when a lane's next token comes near (`pace`), not only when a send ends.
                timer = (asyncio.ensure_future(self.sleep(choice.pace))
                         if choice.pace is not None else None)
                await asyncio.wait([*(t for _, t in sending.values()), woken,
                                    *([timer] if timer else [])],
                                   return_when=asyncio.FIRST_COMPLETED)
                if timer is not None:
                    timer.cancel()
                for key, (_, task) in list(sending.items()):
                    if task.done():
                        del sending[key]
                        self._took.discard(key)
                        task.result()  # a bug in _send is not swallowed
                caps = {k: v for k, v in caps.items() if any(h == k for h, _ in sending.values())}
                if woken.done():
                    woken = None
                    self.wake.clear()
                    await self._refresh()
        finally:
            if woken is not None:
                woken.cancel()
            if sending:  # cancelled mid-send: let the sends finish their bookkeeping
                await asyncio.gather(*(t for _, t in sending.values()), return_exceptions=True)
                self._took.difference_update(sending)
        if self.web.metrics:
            self.web.metrics.outbox_depth.set(len(self.lanes))
        return choice

    async def _send(self, item: OutboxMessage) -> None:
        """Deliver one item and record the outcome, in the store and in the lanes."""
        self._sending.set(item)  # this task's own context: `_paced` notes its token
        try:
            await self._deliver(item)
        except SlackUnavailable as exc:
            delay = backoff_delay(item.attempts, exc.retry_after)
            if not isinstance(exc, _ParentPending):
                # Slack (a limit, or Slack itself) failed, not this thread: hold the lane from
                # now, for Retry-After, or for one probe while Slack is away (`hold_for`).
                hold = delay if exc.retry_after is not None else min(delay, OUTAGE_PROBE)
                self.lanes.hold_for(item, self.clock() + timedelta(seconds=hold),
                                    told=exc.retry_after is not None)
            retry_at = self.clock() + timedelta(seconds=delay)
            await self.store.run(Store.mark_failed, item.id, retry_at=retry_at, error=str(exc))
            # The stored row is the truth for the next try (e.g. `posting_at`: look first).
            self.lanes.retry(await self.store.run(Store.outbox_item, item.id))
            # Said once per item; the retries that follow are routine.
            level = (logging.DEBUG if isinstance(exc, _ParentPending)
                     else logging.WARNING if item.attempts == 0 else logging.INFO)
            log.log(level, "slack unavailable, retrying outbox item %s in %.1fs: %s",
                    item.id, delay, exc)
            return
        except (SlackRejected, JobError) as exc:
            log.error("dropping outbox item %s (%s): %s", item.id, item.kind, exc)
            await self.store.run(Store.mark_failed, item.id, retry_at=None, error=str(exc))
            self.lanes.done(item)
            if item.kind == "post_parent" and item.job_id:
                await self._no_thread(str(item.job_id))
            return
        self.lanes.done(item)
        self.sent += 1

    @contextlib.asynccontextmanager
    async def _paced(self, method: str, channel: str) -> AsyncIterator[None]:
        """Wait for a token of `method` on `channel`, take it and make the call inside the
        block. One call per lane at a time (the next one of the lane got ready meanwhile, see
        LANE_DEPTH): it is sent only after the last one was answered, so calls reach Slack at
        least a token apart as they left, however long the last one travelled."""
        key = (method, channel if method == "chat.postMessage" else "")
        gate = self._gates.setdefault(key, asyncio.Lock())
        async with gate:
            sending = self._sending.get()
            rank = self.lanes.rank(sending) if sending is not None else LEAST_URGENT
            sent_at = await self._turns.take(self.pacer, method, channel, rank,
                                             self.pace_clock, self.sleep)
            if sending is not None:
                self._took.add(sending.id)
            async def refused(_: float | None) -> None:  # each 429, before slack_sdk retries
                self.pacer.refused(method, channel, sent_at, self.pace_clock())
                await self.kept_lesson.sync(self.pacer, self.pace_clock())  # a lesson, kept
            with self.web.telling_429s(refused):
                yield

    async def _deliver(self, item: OutboxMessage) -> None:
        payload: dict[str, Any] = dict(item.payload)
        if item.kind == "post_parent":
            await self._post_parent(item)
        elif item.kind == "update_parent":
            await self._update_parent(item)
        elif item.kind == "reply":
            await self._reply(item, payload)
        elif item.kind == "ephemeral":
            await self._ephemeral(item, payload)
        elif item.kind == "respond":
            await self._respond(item, payload)
        elif item.kind == "channel_post":
            thread_ts = payload.get("thread_ts")
            if thread_ts is None and payload.get("thread_of"):
                thread_ts = await self._thread_of(str(payload["thread_of"]))
            channel, ts = await self._post_item(item, item.channel, payload["text"],
                                                payload.get("blocks"), thread_ts=thread_ts)
            if item.thread_key and channel != item.channel:  # a name: keep the id for edits
                await self.store.run(Store.set_outbox_channel, item.id, channel)
            await self.store.run(Store.mark_sent, item.id, result_ts=ts)
        elif item.kind == "dm_copy":  # a change request's copy to one approver
            await post_copy(self, item)
        else:
            raise SlackRejected(f"unknown outbox kind {item.kind}")

    async def _thread_of(self, thread_key: str) -> str:
        """The ts of the delivered `channel_post` a reply belongs under (a fleet run's digest
        card); it comes first in the outbox, so until it is posted the reply waits."""
        posted = await self.store.run(Store.posted_message, thread_key)
        if posted is None:
            raise _ParentPending("thread parent not posted yet", retry_after=1.0)
        return posted[1]

    async def _post_parent(self, item: OutboxMessage) -> None:
        job = await self.store.run(Store.get_job, str(item.job_id))
        if job.thread_ts == NO_THREAD:  # a crash after the fallback was decided
            await self._card_by_response_url(item, job)
            return
        if job.thread_ts:  # already posted (a crash between post and mark_sent)
            await self.store.run(Store.mark_sent, item.id, result_ts=job.thread_ts)
            return
        message = render.parent_message(job, self.clock())
        # A first post (none attempted before: a crash leaves unknown what that one showed)
        # rendered with the copy under way says "keep writes stopped" itself.
        showed_copy = item.posting_at is None and job.snapshot_started_at is not None
        try:
            channel, ts = await self._post_item(item, item.channel, message["text"],
                                                message.get("blocks"))
        except SlackRejected as exc:
            log.error("cannot post the message of job %s in %s (%s); falling back", job.id,
                      item.channel, exc.code)
            if exc.code in CHANNEL_REFUSALS and job.response_url:
                job = await self.store.run(Store.update_job, job.id, fields={"thread_ts": NO_THREAD},
                                                  event="no_channel")
                await self._card_by_response_url(item, job)
            else:
                await self._fall_back(item, job, message, exc.code)
            return
        self.lanes.drop(await self.store.run(Store.card_posted, job.id, item.id, ts, channel,
                                             showed_copy=showed_copy))
        self._thread(job.id, channel, ts)

    async def _no_thread(self, job_id: str) -> None:
        """The job goes on without a thread: later messages take the response_url (or are
        skipped) instead of waiting for a parent that will never be posted."""
        try:
            job = await self.store.run(Store.get_job, job_id)
        except JobError:
            return
        if not job.thread_ts:
            await self.store.run(Store.update_job, job_id, fields={"thread_ts": NO_THREAD},
                                        event="no_channel")

    async def _fall_back(self, item: OutboxMessage, job: Any, message: dict[str, Any],
                         code: str) -> None:
        """Slack refused the parent for good: answer through the response_url (works where
        the bot is no member) or, failing that, tell the policy's notification channel."""
        if code in CHANNEL_REFUSALS:
            note = ("I am not a member of this channel, so I cannot keep a thread here. Invite "
                    "me with `/invite @imagebot` to get live updates; I will send the final "
                    "result here.")
        else:
            note = (f"Slack refused my message here ({code}), so there is no thread for this "
                    "job; I will send the final result here.")
        text = shortened(message["text"]) + "\n" + note
        try:
            if job.response_url:
                await self.web.respond(job.response_url, text)
            else:
                notify = self.notify_for(job)
                if notify and notify != item.channel:
                    async with self._paced("chat.postMessage", notify):
                        await self.web.post(notify, f"Job {job.id} in <#{item.channel}>: "
                                            + shortened(message["text"]) + f" (Slack refused "
                                            f"the post in the job's channel: {code})")
        except SlackRejected as exc:  # said once; the job goes on without a thread
            log.error("fallback for job %s refused too: %s", job.id, exc.code)
        await self.store.run(Store.update_job, job.id, fields={"thread_ts": NO_THREAD}, event="no_channel")
        await self.store.run(Store.mark_sent, item.id)

    async def _card_by_response_url(self, item: OutboxMessage, job: Job) -> None:
        """The bot is not in this channel: the card, buttons included, goes through the
        response_url (Slack delivers clicks on it like on any message), with how to invite the
        bot. `thread_ts = NO_THREAD` is committed first, so a restart never posts again in the
        channel and the response_url post keeps its own at-most-once marker."""
        if not job.response_url:
            await self.store.run(Store.mark_sent, item.id)
            return
        card = render.fallback_card(job, self.clock())
        url = job.response_url
        await self._send_unverifiable(item, lambda: self.web.respond(url, card["text"],
                                                                     card.get("blocks")))

    async def _send_unverifiable(self, item: OutboxMessage,
                                 send: Callable[[], Awaitable[None]]) -> None:
        """Send what Slack cannot show us again afterwards (ephemerals, response_url posts):
        `mark_posting` first; an attempt whose outcome is unknown (a crash or a lost answer
        after it was sent) is not repeated. The marker is read afresh: an earlier attempt of
        the same item by another route may have cleared it."""
        current = await self.store.run(Store.outbox_item, item.id)
        if current.posting_at is not None:
            log.warning("outbox item %s (%s) may have been sent already; not repeating it",
                        item.id, item.kind)
            await self.store.run(Store.mark_failed, item.id, retry_at=None,
                                         error="outcome of an earlier attempt unknown")
            return
        await self.store.run(Store.mark_posting, item.id)
        try:
            await send()
        except (SlackUnavailable, SlackRejected) as exc:
            if isinstance(exc, SlackRejected) or exc.answered:
                await self.store.run(Store.clear_posting, item.id)  # Slack said no: nothing was sent
            raise
        await self.store.run(Store.mark_sent, item.id)

    async def _ephemeral(self, item: OutboxMessage, payload: dict[str, Any]) -> None:
        """A private answer to one user; through the job's response_url when the bot cannot
        post in the channel (chat.postEphemeral needs the bot there)."""
        async def post() -> None:
            async with self._paced("chat.postEphemeral", item.channel):
                await self.web.post_ephemeral(item.channel, payload["user"], payload["text"],
                                              payload.get("blocks"))
        try:
            await self._send_unverifiable(item, post)
            return
        except SlackRejected as exc:
            if exc.code not in CHANNEL_REFUSALS | {"user_not_in_channel"} or not item.job_id:
                raise
            job = await self.store.run(Store.get_job, item.job_id)
            if not job.response_url:
                raise
            url = job.response_url
        await self._send_unverifiable(item, lambda: self.web.respond(url, payload["text"],
                                                                     payload.get("blocks")))

    async def _respond(self, item: OutboxMessage, payload: dict[str, Any]) -> None:
        """A post to a response_url; `card` re-renders the job's card from its row (e.g. to
        replace the clicked fallback card with one that has no buttons any more)."""
        text, blocks = payload.get("text", ""), payload.get("blocks")
        if payload.get("card") and item.job_id:
            card = render.fallback_card(await self.store.run(Store.get_job, item.job_id), self.clock())
            text, blocks = card["text"], card.get("blocks")
        url = str(payload["response_url"])
        await self._send_unverifiable(item, lambda: self.web.respond(
            url, text, blocks, in_channel=bool(payload.get("in_channel")),
            replace_original=bool(payload.get("replace_original"))))

    async def _update_parent(self, item: OutboxMessage) -> None:
        job = await self.store.run(Store.get_job, str(item.job_id))
        if not job.thread_ts or job.thread_ts == NO_THREAD:
            await self.store.run(Store.mark_sent, item.id)
            return
        message = render.parent_message(job, self.clock())
        async with self._paced("chat.update", job.channel):
            await self.web.update_message(job.channel, job.thread_ts, message["text"],
                                          message.get("blocks"))
        await self.store.run(Store.mark_sent, item.id)

    def _thread(self, job_id: str, channel: str, ts: str) -> tuple[str, str]:
        """Remember a posted card's thread (a bounded number of them, the newest)."""
        if len(self._threads) >= THREADS_KEPT:
            del self._threads[next(iter(self._threads))]
        thread = self._threads[job_id] = (channel, ts)
        return thread

    async def _reply(self, item: OutboxMessage, payload: dict[str, Any]) -> None:
        final = bool(payload.get("final"))
        thread = self._threads.get(str(item.job_id))
        if thread is None:
            thread = await self._thread_for_reply(item, payload, final=final)
            if thread is None:
                return
        _, ts = await self._post_item(item, thread[0], payload["text"], payload.get("blocks"),
                                      thread_ts=thread[1], broadcast=final)
        await self.store.run(Store.mark_sent, item.id, result_ts=ts)

    async def _thread_for_reply(self, item: OutboxMessage, payload: dict[str, Any], *,
                                final: bool) -> tuple[str, str] | None:
        """The thread a reply goes in, from the job's row; None when the reply was settled
        without one (the job has no thread: the response_url, or nothing)."""
        job = await self.store.run(Store.get_job, str(item.job_id))
        if job.thread_ts == NO_THREAD:
            if (final or payload.get("must_reach")) and job.response_url:
                url = job.response_url
                await self._send_unverifiable(item, lambda: self.web.respond(
                    url, payload["text"], payload.get("blocks")))
                return None
            await self.store.run(Store.mark_sent, item.id)
            return None
        if not job.thread_ts:
            # The parent has not been posted (it comes first in the outbox); try again shortly.
            raise _ParentPending("parent message not posted yet", retry_after=1.0)
        return self._thread(job.id, job.channel, job.thread_ts)

    async def _post_item(self, item: OutboxMessage, channel: str, text: str,
                         blocks: list[dict[str, Any]] | None, *, thread_ts: str | None = None,
                         broadcast: bool = False) -> tuple[str, str]:
        """`_post_once`, and once more as short plain text when Slack refuses the message
        itself (too long, bad blocks): the news arrives, if less pretty."""
        try:
            return await self._post_once(item, channel, text, blocks, thread_ts=thread_ts,
                                         broadcast=broadcast)
        except SlackRejected as exc:
            if exc.code not in CONTENT_REFUSALS:
                raise
            log.warning("Slack refused outbox item %s (%s); sending it as short text",
                        item.id, exc.code)
        return await self._post_once(item, channel, shortened(text), None,
                                     thread_ts=thread_ts, broadcast=broadcast)

    async def _post_once(self, item: OutboxMessage, channel: str, text: str,
                         blocks: list[dict[str, Any]] | None, *, thread_ts: str | None = None,
                         broadcast: bool = False) -> tuple[str, str]:
        """Post `item` at most once: an earlier attempt that may have gone through (a crash
        between Slack's answer and our commit) is looked up by its metadata first."""
        if item.posting_at is not None:
            try:
                found = await self.web.find_posted(channel, item.id, thread_ts=thread_ts)
            except SlackRejected as exc:  # e.g. missing history scope: fall back to posting
                log.warning("cannot check whether outbox item %s was posted (%s); posting",
                            item.id, exc.code)
                found = None
            if found is not None:
                log.info("outbox item %s was already posted as %s", item.id, found[1])
                return found
        await self.store.run(Store.mark_posting, item.id)
        try:
            async with self._paced("chat.postMessage", channel):
                return await self.web.post(channel, text, blocks, thread_ts=thread_ts,
                                           broadcast=broadcast, outbox_id=item.id)
        except (SlackUnavailable, SlackRejected) as exc:
            if isinstance(exc, SlackRejected) or exc.answered:
                await self.store.run(Store.clear_posting, item.id)  # Slack said no: nothing was posted
            raise
