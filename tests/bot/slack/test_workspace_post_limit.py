"""The workspace-wide chat.postMessage limit, learnt from 429s (`bot.slack.pacing`).

Slack keeps a workspace-wide post limit besides one post per second per channel, and does not
publish its size (docs.slack.dev/apis/web-api/rate-limits). slack_sdk retries a 429 inside the
call, so the bot's pacer hears of it through the retry handler (`NotedRateLimitRetries`), here
with the real slack_sdk client against the Slack emulator over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from bot.imaging import jobs
from bot.slack.lessons import LESSON_KEY
from bot.slack.pacing import FORGET_AFTER
from bot.slack.web import SlackWeb, make_web_client, web_session
from bot.store import Store
from sandbox.slack.limits import Limit, RateLimiter
from sandbox.slack.model import BOT_USER_ID, Channel, SlackWorkspace
from sandbox.slack.serve import running_slack
from sandbox.system import BOT_TOKEN, running_system


async def test_a_429_that_slack_sdk_retries_is_told_to_the_calling_task_only() -> None:
    workspace = SlackWorkspace()
    counted: list[str] = []
    async with running_slack(workspace, bot_token=BOT_TOKEN) as url:
        session = web_session()
        web = SlackWeb(make_web_client(BOT_TOKEN, f"{url}/api/", session=session,
                                       counted_429=counted.append))
        told: list[float | None] = []
        try:
            workspace.start_storm(1, retry_after=1)
            with web.telling_429s(told.append):
                channel, ts = await web.post("#ops", "after one 429")
            assert ts  # slack_sdk slept Retry-After and posted: no error reached us
            assert told == [1.0]
            workspace.start_storm(1, retry_after=1)
            await web.post("#ops", "outside the block")  # retried as well, told to no one
            assert told == [1.0]
        finally:
            await session.close()
    refused = [c for c in workspace.calls("chat.postMessage") if c.status == 429]
    assert len(refused) == 2
    assert counted == ["chat.postMessage"] * 2  # the metrics count every one


async def test_posts_in_many_channels_learn_the_workspace_limit_and_lose_nothing(
        tmp_path: Path) -> None:
    # A cap of 2 posts/s (burst 2) for the whole workspace, x20 like the bot's pacing; six
    # channels' cards at once are over it.
    speed = 20.0
    workspace = SlackWorkspace(rate_limits=RateLimiter(
        scale=speed, workspace_posts=Limit(rate=2.0, burst=2)))
    names = [f"load{i}" for i in range(6)]
    for i, name in enumerate(names):
        workspace.add_channel(Channel(f"C0CAP{i}", name,
                                      members={"U0ALICE", "U0BOB", BOT_USER_ID}))
    db_path = tmp_path / "imagebot.db"
    async with running_system(speed=100, workspace=workspace, slack_rate_scale=speed,
                              extra_servers=12, db_path=db_path) as system:
        for i in range(12):
            answer = await system.command("alice", f"#{names[i % 6]}",
                                          f"create load-{i + 1} --now")
            assert answer.status_code == 200
        await system.settle(within=120)
        pacer = system.runtime.notifier.pacer
        metrics = system.runtime.metrics.render().decode()
        rows = await system.runtime.store.run(Store.list_jobs, limit=100)
    assert len(rows) == 12 and all(j.state == jobs.SUCCEEDED for j in rows)
    refused = [c for c in workspace.calls("chat.postMessage") if c.status == 429]
    assert refused, "the cap was never reached: the test proves nothing"
    # /metrics counts each 429, also those slack_sdk retried and the notifier never saw.
    assert (f'imagebot_slack_rate_limited_total{{method="chat.postMessage"}} '
            f'{float(len(refused))}') in metrics
    assert pacer.workspace_posts is not None  # learnt; at least one channel's pace
    assert pacer.workspace_posts.rate >= pacer.post_rate * pacer.scale
    # /metrics shows it, in posts per second of Slack's time (the emulator's cap is 2/s).
    shown = [line for line in metrics.splitlines()
             if line.startswith("imagebot_slack_workspace_post_limit ")]
    assert len(shown) == 1 and 0.9 <= float(shown[0].split()[1]) <= 60.0, shown
    for job in rows:  # every thread complete, each message once
        assert job.thread_ts
        texts = [m.text for m in workspace.thread(job.channel, job.thread_ts)]
        assert sum("Writes may resume" in (t or "") for t in texts) == 1, texts
        assert len(texts) == len(set(texts)), texts
    # A restart starts from the lesson (`bot.slack.lessons`) instead of learning it again
    # from 429s: it is kept for ten quiet minutes of Slack's time (30 s at x20).
    with contextlib.closing(sqlite3.connect(db_path)) as outside:  # an operator's reader
        saved = json.loads(outside.execute("SELECT value FROM meta WHERE key = ?",
                                           [LESSON_KEY]).fetchone()[0])
    assert time.time() - saved["refused_at"] < FORGET_AFTER / speed
    async with running_system(speed=100, workspace=workspace, slack_rate_scale=speed,
                              db_path=db_path) as system:
        restarted = system.runtime.notifier.pacer
        for _ in range(100):
            if restarted.lessons:
                break
            await asyncio.sleep(0.02)
        recalled = restarted.lesson(time.monotonic())
        assert recalled is not None and recalled[0] == pytest.approx(saved["rate"])
