"""The notifier through the real Slack edge (slack_sdk over HTTP) against the emulator's
scripted faults: Slack that says no for a moment loses nothing and repeats nothing; Slack that
says no for good is worked around once and said in the log once.

Transient codes are those docs.slack.dev lists for chat.postMessage as "try again"
(`internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`, `ratelimited`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.imaging import jobs
from bot.slack.notifier import NO_THREAD, Notifier
from bot.slack.pacing import SlackPacer
from bot.slack.web import SlackWeb, make_web_client
from bot.store import AsyncStore, OutboxItem, Store
from sandbox.slack.model import ApiFault, SlackWorkspace
from sandbox.slack.serve import running_slack
from tests.helpers import Clock

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TOKEN = "xoxb-sandbox"


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackWorkspace, str]]:
    ws = SlackWorkspace()
    ws.limits.enabled = False
    async with running_slack(ws, bot_token=TOKEN) as url:
        yield ws, url


async def setup(tmp_path: Path, url: str, clock: Clock) -> tuple[AsyncStore, Notifier]:
    store = await AsyncStore.open(tmp_path / "n.db", clock=clock)

    async def no_sleep(_: float) -> None:
        return None

    web = SlackWeb(make_web_client(TOKEN, url + "/api/", rate_limit_retries=0))
    notifier = Notifier(store, web, clock=clock, sleep=no_sleep, pacer=SlackPacer(scale=1000))
    return store, notifier


async def new_job(store: AsyncStore, channel: str = "C0OPS", response_url: str | None = None,
                  texts: tuple[str, ...] = ("copying", "writes may resume", "done")) -> str:
    job, _ = await store.run(Store.create_job, server_ref="web-1", requested_by="U0ALICE", channel=channel,
                                    state=jobs.QUEUED, response_url=response_url,
                                    outbox=[OutboxItem(kind="post_parent", channel=channel)])
    await store.run(Store.update_job, job.id, fields={}, outbox=[
        OutboxItem(kind="reply", channel=channel, job_id=job.id, thread_key=job.id,
                   payload={"text": t, "final": t == "done"}) for t in texts])
    return job.id


async def drain(notifier: Notifier, clock: Clock, store: AsyncStore, rounds: int = 12) -> None:
    for _ in range(rounds):
        await notifier.flush()
        if await store.run(Store.outbox_depth) == 0:
            return
        clock.now += timedelta(minutes=10)  # past any back-off


@pytest.mark.parametrize("fault", [
    ApiFault("chat.postMessage", "internal_error", remaining=2),
    ApiFault("chat.postMessage", "fatal_error"),
    ApiFault("chat.postMessage", "service_unavailable", retry_after=3),
    ApiFault("chat.postMessage", "request_timeout"),
    ApiFault("chat.postMessage", "ratelimited", remaining=3),
    ApiFault("chat.postMessage", "internal_error", body="html", remaining=2),
    ApiFault("chat.postMessage", "internal_error", status=502, body="html"),
])
async def test_a_transient_no_on_the_parent_delays_the_thread_and_loses_nothing(
        tmp_path: Path, slack: tuple[SlackWorkspace, str], fault: ApiFault) -> None:
    ws, url = slack
    clock = Clock(START)
    store, notifier = await setup(tmp_path, url, clock)
    try:
        job_id = await new_job(store)
        ws.add_fault(fault)
        assert await notifier.flush() == 0  # the parent was refused: its thread waits
        await drain(notifier, clock, store)
        assert await store.run(Store.outbox_depth) == 0
        [parent] = [m for m in ws.channel_messages("C0OPS") if not m.thread_ts]
        assert f"job {job_id}" in (parent.text or "")
        assert [m.text for m in ws.thread("C0OPS", parent.ts)] == [
            "copying", "writes may resume", "done"]
        assert (await store.run(Store.get_job, job_id)).thread_ts == parent.ts
    finally:
        await store.close()


async def test_a_transient_no_on_a_reply_keeps_the_order(
        tmp_path: Path, slack: tuple[SlackWorkspace, str]) -> None:
    ws, url = slack
    clock = Clock(START)
    store, notifier = await setup(tmp_path, url, clock)
    try:
        await new_job(store)
        assert await notifier.flush() == 4
        await new_job(store, texts=("a", "b", "c"))
        ws.add_fault(ApiFault("chat.postMessage", "internal_error"))  # J2's parent
        ws.api_faults.append(ApiFault("chat.postMessage", "ratelimited", status=429,
                                      retry_after=1))
        await drain(notifier, clock, store)
        parent = [m for m in ws.channel_messages("C0OPS") if not m.thread_ts][-1]
        assert [m.text for m in ws.thread("C0OPS", parent.ts)] == ["a", "b", "c"]
        assert len([m for m in ws.channel_messages("C0OPS") if not m.thread_ts]) == 2
    finally:
        await store.close()


async def test_a_message_slack_refuses_as_too_long_goes_as_short_text(
        tmp_path: Path, slack: tuple[SlackWorkspace, str]) -> None:
    ws, url = slack
    clock = Clock(START)
    store, notifier = await setup(tmp_path, url, clock)
    try:
        job_id = await new_job(store)
        ws.add_fault(ApiFault("chat.postMessage", "msg_too_long"))
        ws.add_fault(ApiFault("chat.update", "invalid_blocks", remaining=1))
        await drain(notifier, clock, store)
        [parent] = [m for m in ws.channel_messages("C0OPS") if not m.thread_ts]
        assert f"job {job_id}" in (parent.text or "") and not parent.blocks
        assert [m.text for m in ws.thread("C0OPS", parent.ts)] == [
            "copying", "writes may resume", "done"]
    finally:
        await store.close()


async def test_a_channel_that_refuses_for_good_falls_back_once_and_stops_retrying(
        tmp_path: Path, slack: tuple[SlackWorkspace, str],
        caplog: pytest.LogCaptureFixture) -> None:
    ws, url = slack
    clock = Clock(START)
    store, notifier = await setup(tmp_path, url, clock)
    notifier.notify_for = lambda job: "C0ALERTS"
    ws.add_fault(ApiFault("chat.postMessage", "is_archived"))
    try:
        caplog.set_level(logging.INFO, logger="bot.slack.notifier")
        job_id = await new_job(store)
        for _ in range(5):  # a scheduled job: no response_url
            await notifier.flush()
            clock.now += timedelta(seconds=1)
        assert await store.run(Store.outbox_depth) == 0  # nothing retries every second
        assert (await store.run(Store.get_job, job_id)).thread_ts == NO_THREAD
        [notice] = ws.channel_messages("C0ALERTS")
        assert job_id in (notice.text or "") and "is_archived" in (notice.text or "")
        said = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1 and "is_archived" in said[0].getMessage()
    finally:
        await store.close()
