"""Figure 3: Slack budget — 200 jobs started in one channel within 10 s.

Slack's clock runs `speed` times faster (the emulator's rate limits and the bot's pacer alike),
and so do the cloud and the engine tick; times are reported in unscaled seconds (wall × speed).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from bench.common import Row
from bench.fig_cloud import scaled_pacer
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.store import Store
from sandbox.cloud.model import World
from sandbox.slack.limits import POST_MESSAGE, RateLimiter
from sandbox.slack.model import SlackWorkspace
from sandbox.system import running_system


def outbox_items(db_path: Any) -> int:
    """Every message the bot ever queued (what a one-call-per-event notifier would send)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def needed_posts(db_path: Any, channel: str) -> int:
    """The posts the design needs in `channel`: every card, reply and channel post queued
    for it (card edits are not posts: they go through chat.update, and only the newest)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM outbox WHERE channel = ? AND kind IN "
            "('post_parent', 'reply', 'channel_post')", [channel]).fetchone()[0])


def final_shown(workspace: SlackWorkspace, job: Any) -> bool:
    """The job's thread has its result (the broadcast reply) and its card shows the final
    state in the card's words (`state_words`: "done", "failed: …"; not the stored state)."""
    card = workspace.find_message("C0OPS", str(job.thread_ts))
    return (render.state_words(job) in (card.text or "")
            and any(m.reply_broadcast for m in workspace.thread("C0OPS", str(job.thread_ts))))


async def measure(n: int = 200, speed: float = 20.0) -> tuple[list[Row], dict[str, Any]]:
    """Start `n` jobs in #ops within 10 (unscaled) seconds and watch Slack until all are final."""
    workspace = SlackWorkspace(rate_limits=RateLimiter(scale=speed))
    world = World(speed=speed, extra_servers=n)
    async with running_system(world=world, workspace=workspace,
                              tick_scale=1.0 / speed) as system:
        system.runtime.notifier.pacer = scaled_pacer(speed)
        started = time.monotonic()
        started_at = system.runtime.clock()
        window = 10.0 / speed
        answers = []
        for i in range(1, n + 1):
            answers.append(asyncio.create_task(
                system.command("alice", "#ops", f"create load-{i} --now")))
            # Spread the starts over the 10 s window (they may take longer to send).
            delay = started + window * i / n - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        done = await asyncio.gather(*answers)
        start_span = (time.monotonic() - started) * speed
        deadline = time.monotonic() + 3000 / speed + 180
        final_at = None
        shown: set[str] = set()  # jobs whose thread shows the final state (looked at once)
        while time.monotonic() < deadline:
            rows = await system.runtime.store.run(Store.list_jobs, limit=10_000)
            for j in rows:
                if j.id not in shown and j.state in jobs.TERMINAL and j.thread_ts \
                        and final_shown(workspace, j):
                    shown.add(j.id)
            if len(shown) == n:
                final_at = time.monotonic()
                break
            await asyncio.sleep(0.1)
        calls = workspace.calls()
        posts = [c for c in calls if c.method == "chat.postMessage" and c.status == 200]
        queued = outbox_items(system.db_path)
        needed = needed_posts(system.db_path, "C0OPS")
        rows = await system.runtime.store.run(Store.list_jobs, limit=10_000)
    states: dict[str, int] = {}
    for job in rows:
        key = job.state + (f"/{job.error_code}" if job.error_code else "")
        states[key] = states.get(key, 0) + 1
    succeeded = sum(1 for j in rows if j.state == jobs.SUCCEEDED)
    too_many = sum(1 for c in calls if c.status == 429)
    by_method: dict[str, int] = {}
    for c in calls:
        if c.status == 429:
            by_method[c.method] = by_method.get(c.method, 0) + 1
    api_calls = [c for c in calls if c.method != "auth.test"]
    cutoff = (deadline - started) * speed
    elapsed = None if final_at is None else (final_at - started) * speed
    # Slack's floor: every post the design needs in the one channel at Slack's ~1 per second
    # after the burst (posts made beyond those, e.g. a retried one, do not lower it).
    posts_floor = max(0.0, (needed - POST_MESSAGE.burst) / POST_MESSAGE.rate)
    # No thread can show its result before the engine saw the job end: with few jobs the
    # cloud's own durations, not Slack's rate, are the floor.
    ends = [(j.finished_at - started_at).total_seconds() * speed for j in rows if j.finished_at]
    cloud_floor = max(ends, default=0.0)
    floor = max(posts_floor, cloud_floor)
    note = (f"speed x{speed:g}; starts spread over {start_span:.1f} s; "
            f"{sum(1 for a in done if a.status_code == 200)}/{n} acks, {succeeded}/{n} succeeded; states {states}")
    took = cutoff if elapsed is None else elapsed
    result = [
        Row(f"3. Slack 429s, {n} jobs in one channel", too_many, 0, "", "0", too_many == 0,
            "Slack's limits", f"{note}; 429s by method {by_method}", id=f"slack_429s_{n}"),
        Row("3. Web API calls per job", len(api_calls) / n, queued / n, "calls", "—", None,
            "one call per queued event", "auth.test excluded; anchor = outbox items per job"),
        Row("3. time until every thread shows its final state (s)", took, floor, "s",
            "≤ 1.2× the floor", elapsed is not None and took <= 1.2 * floor,
            "1 post/s/channel floor",
            ("NOT reached before the cut-off (value = cut-off); " if elapsed is None else "")
            + f"unscaled seconds; {len(posts)} posts made in the channel", id=f"final_all_s_{n}"),
        Row("3. the floor: posts the design needs at Slack's rate (s)", floor, None, "s", "—",
            None, "", f"the larger of ({needed} cards and replies - burst "
            f"{POST_MESSAGE.burst:g}) / {POST_MESSAGE.rate:g} per s = {posts_floor:.1f} s and "
            f"the last job's end as the engine saw it, {cloud_floor:.1f} s; unscaled seconds",
            id=f"floor_all_s_{n}"),
    ]
    return result, {"calls": len(calls), "posts": len(posts), "queued": queued,
                    "succeeded": succeeded, "states": states, "needed_posts": needed, "429_by_method": by_method, "elapsed": elapsed, "speed": speed}


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    out, raw = asyncio.run(measure(count))
    for row in out:
        print(row.figure, row.ours, row.anchor, row.met, row.note)
    print(raw)
