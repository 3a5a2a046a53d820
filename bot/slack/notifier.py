"""Posts to Slack from committed state: the outbox table is the queue.

A Slack outage, a 429 or a transient ok:false (`internal_error`, `ratelimited`, a non-JSON
answer...) delays messages but loses none: an item is marked sent only after Slack accepted it,
and a retryable failure holds back the rest of its thread, so later items never overtake earlier
ones. A permanent refusal falls back once (a shorter message, the response_url, the channel
policy's notification channel) and is logged once; a job whose parent cannot be posted goes on
without a thread instead of waiting for it forever.
Parent messages are re-rendered from the job's current row when sent, which coalesces several
state changes into one `chat.update`.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.blocks import truncate
from bot.errors import JobError, SlackRejected, SlackUnavailable
from bot.imaging import messages as render
from bot.imaging.jobs import Job
from bot.loops import run_until
from bot.slack.pacing import SlackPacer
from bot.slack.web import SlackWeb
from bot.store import AsyncStore, OutboxMessage, Store

log = logging.getLogger(__name__)

NO_THREAD = "fallback"  # thread_ts marker: the bot cannot post in this channel
# Permanent refusals about the channel (the bot cannot post there at all).
CHANNEL_REFUSALS = frozenset({"not_in_channel", "channel_not_found", "is_archived",
                              "restricted_action", "restricted_action_read_only_channel",
                              "cannot_reply_to_message", "ekm_access_denied"})
# Permanent refusals about the message: the same news as plain, short text goes through.
CONTENT_REFUSALS = frozenset({"msg_too_long", "invalid_blocks", "invalid_blocks_format",
                              "too_many_attachments", "invalid_attachments",
                              "invalid_metadata_format", "invalid_metadata_schema",
                              "metadata_too_large", "no_text", "markdown_text_conflict"})
SHORT_TEXT = 3000
MAX_BACKOFF = 300.0
UNSENT_HORIZON = timedelta(days=36500)  # "due by then" = every unsent item


def order_key(item: OutboxMessage) -> str:
    """Items with the same key are delivered in the order they were written."""
    if item.job_id or item.thread_key:
        return f"job:{item.job_id or item.thread_key}"
    return f"channel:{item.channel}"


def urgency(item: OutboxMessage) -> int:
    """0 is most urgent: what a person waits on to act (writes may resume, the result)."""
    if item.kind == "reply" and (item.payload.get("final") or item.payload.get("must_reach")):
        return 0
    if item.kind in ("post_parent", "ephemeral", "respond"):
        return 1
    if item.kind in ("reply", "channel_post"):
        return 2
    return 3  # update_parent: the parent is re-rendered from the row whenever it goes


def backoff_delay(attempts: int, retry_after: float | None) -> float:
    """Seconds before retrying an item that failed `attempts` times."""
    if retry_after is not None:
        return max(retry_after, 0.5)
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 8)) * (0.5 + random.random() / 2)


class _ParentPending(SlackUnavailable):
    """A reply waits for its thread parent; routine, so it is not logged as a failure."""


def shortened(text: str) -> str:
    """The fallback text of a message Slack refused as too long or malformed."""
    return truncate(text, SHORT_TEXT) if text else "(message could not be shown)"


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
        # Slack's limits run on real time, not on the (shiftable) business clock.
        self.pace_clock = pace_clock
        self.wake = asyncio.Event()
        # The notification channel of a job's channel policy (wiring sets it), for the last
        # fallback of a job whose channel refuses the bot and that has no response_url.
        self.notify_for: Callable[[Any], str | None] = lambda job: None

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Flush until `stop` is set; wakes early when `wake` is set."""

        async def step() -> float:
            await self.flush()
            return idle

        await run_until(stop, self.wake, step, name="notifier", fallback=idle)

    async def flush(self, limit: int = 500) -> int:
        """One pass over unsent outbox items; returns how many were delivered.

        Order is kept within each job's thread (parent first, phases in order) and among
        messages that belong to no job in a channel. Threads need no order among themselves,
        so under a backlog the thread with the most urgent message waiting (writes may resume,
        a final result) goes first. An item not due yet holds back the rest of its thread; a
        retryable failure also holds back its channel for this pass (Slack limits per channel).
        """
        now = self.clock()
        items = await self.store.run(Store.pending_outbox, now + UNSENT_HORIZON, limit=limit)
        queues: dict[str, deque[OutboxMessage]] = {}
        for item in items:
            queues.setdefault(order_key(item), deque()).append(item)
        ready = [(min(urgency(i) for i in queue), queue[0].id, key)
                 for key, queue in queues.items()]
        heapq.heapify(ready)
        held_channels: set[str] = set()
        sent = 0
        while ready:
            rank, _, key = heapq.heappop(ready)
            queue = queues[key]
            item = queue[0]
            if item.channel in held_channels or (
                    item.next_attempt_at is not None and item.next_attempt_at > now):
                continue  # the rest of this thread waits for the next pass
            queue.popleft()
            if item.kind == "update_parent" and any(o.kind == "update_parent" for o in queue):
                await self.store.run(Store.mark_sent, item.id)  # a later refresh renders the same row
            else:
                try:
                    await self._deliver(item)
                except SlackUnavailable as exc:
                    delay = backoff_delay(item.attempts, exc.retry_after)
                    await self.store.run(Store.mark_failed,
                        item.id, retry_at=self.clock() + timedelta(seconds=delay),
                        error=str(exc))
                    # Said once per item; the retries that follow are routine.
                    level = (logging.DEBUG if isinstance(exc, _ParentPending)
                             else logging.WARNING if item.attempts == 0 else logging.INFO)
                    log.log(level, "slack unavailable, retrying outbox item %s in %.1fs: %s",
                            item.id, delay, exc)
                    held_channels.add(item.channel)
                    continue
                except (SlackRejected, JobError) as exc:
                    log.error("dropping outbox item %s (%s): %s", item.id, item.kind, exc)
                    await self.store.run(Store.mark_failed, item.id, retry_at=None, error=str(exc))
                    if item.kind == "post_parent" and item.job_id:
                        await self._no_thread(str(item.job_id))
                else:
                    sent += 1
            if queue:
                heapq.heappush(ready, (min(urgency(i) for i in queue), queue[0].id, key))
        if self.web.metrics:
            self.web.metrics.outbox_depth.set(await self.store.run(Store.outbox_depth))
        return sent

    async def _paced(self, method: str, channel: str) -> None:
        delay = self.pacer.delay(method, channel, self.pace_clock())
        if delay > 0:
            await self.sleep(delay)
        self.pacer.take(method, channel, self.pace_clock())

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
            _, ts = await self._post_item(item, item.channel, payload["text"],
                                          payload.get("blocks"),
                                          thread_ts=payload.get("thread_ts"))
            await self.store.run(Store.mark_sent, item.id, result_ts=ts)
        else:
            raise SlackRejected(f"unknown outbox kind {item.kind}")

    async def _post_parent(self, item: OutboxMessage) -> None:
        job = await self.store.run(Store.get_job, str(item.job_id))
        if job.thread_ts == NO_THREAD:  # a crash after the fallback was decided
            await self._card_by_response_url(item, job)
            return
        if job.thread_ts:  # already posted (a crash between post and mark_sent)
            await self.store.run(Store.mark_sent, item.id, result_ts=job.thread_ts)
            return
        message = render.parent_message(job, self.clock())
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
        await self.store.run(Store.update_job, job.id, fields={"thread_ts": ts, "channel": channel},
                                    event="posted")
        await self.store.run(Store.mark_sent, item.id, result_ts=ts)

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
                    await self._paced("chat.postMessage", notify)
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
            await self._paced("chat.postEphemeral", item.channel)
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
        await self._paced("chat.update", job.channel)
        await self.web.update_message(job.channel, job.thread_ts, message["text"],
                                      message.get("blocks"))
        await self.store.run(Store.mark_sent, item.id)

    async def _reply(self, item: OutboxMessage, payload: dict[str, Any]) -> None:
        job = await self.store.run(Store.get_job, str(item.job_id))
        final = bool(payload.get("final"))
        if job.thread_ts == NO_THREAD:
            if (final or payload.get("must_reach")) and job.response_url:
                url = job.response_url
                await self._send_unverifiable(item, lambda: self.web.respond(
                    url, payload["text"], payload.get("blocks")))
                return
            await self.store.run(Store.mark_sent, item.id)
            return
        if not job.thread_ts:
            # The parent has not been posted (it comes first in the outbox); try again shortly.
            raise _ParentPending("parent message not posted yet", retry_after=1.0)
        _, ts = await self._post_item(item, job.channel, payload["text"], payload.get("blocks"),
                                      thread_ts=job.thread_ts, broadcast=final)
        await self.store.run(Store.mark_sent, item.id, result_ts=ts)

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
        await self._paced("chat.postMessage", channel)
        try:
            return await self.web.post(channel, text, blocks, thread_ts=thread_ts,
                                       broadcast=broadcast, outbox_id=item.id)
        except (SlackUnavailable, SlackRejected) as exc:
            if isinstance(exc, SlackRejected) or exc.answered:
                await self.store.run(Store.clear_posting, item.id)  # Slack said no: nothing was posted
            raise
