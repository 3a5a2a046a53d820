"""The crash case for real: `imagebot run --http` as its own process, killed with SIGKILL at
random moments while jobs run, restarted each time on the same SQLite file.

The simulated cloud and the Slack emulator run as separate processes too, so nothing survives a
kill but what the bot committed. At the end the DB, the cloud (`/_sim/state`) and the Slack
emulator (`/_emu/messages`) are read to check: no job lost, one image per job, one parent and
exactly one final reply per thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fig_ack import command_body
from bench.procs import start_bot, world
from bench.reliability_cases import CaseResult
from sandbox.slack.deliver import sign
from sandbox.slack.model import SlackWorkspace
from sandbox.system import SIGNING_SECRET

FINAL_MARKS = (":white_check_mark:", ":x:")


def db_state(db: Path) -> tuple[list[tuple[str, str]], int]:
    """(job id, state) of every job, and unsent outbox items still to try."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT id, state FROM jobs ORDER BY seq").fetchall()
        depth = conn.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL "
                             "AND next_attempt_at IS NOT NULL").fetchone()[0]
    return [(str(r[0]), str(r[1])) for r in rows], int(depth)


async def kill9(n_jobs: int = 50, kills: int = 20, speed: float = 50.0, max_gap: float = 1.0,
                seed: int = 1, within: float = 300.0, api: str = "openstack") -> CaseResult:
    """Run the case against the cloud-sim `api` shape; see the module docstring."""
    where = "" if api == "openstack" else f", {api}"
    result = CaseResult(f"kill -9 x{kills} ({n_jobs} jobs, processes{where})")
    rng = random.Random(seed)
    async with world(n_jobs, speed, api=api) as w:
        ws = SlackWorkspace()
        ws.base_url = w.slack_url
        url = f"http://127.0.0.1:{w.port}/slack/events"
        bot = await start_bot(w)
        bodies = [command_body(ws, "alice", "#ops", f"create load-{i} --now")
                  for i in range(1, n_jobs + 1)]
        async with httpx.AsyncClient(timeout=30) as client:
            acks = await asyncio.gather(*(_post(client, url, body) for body in bodies))
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.05, max_gap))
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
            bot = await start_bot(w)
        deadline = time.monotonic() + within
        while True:
            rows, depth = db_state(w.db)
            if all(state in ("succeeded", "failed", "cancelled") for _, state in rows) \
                    and depth == 0:
                break
            if time.monotonic() > deadline:
                result.problems.append(f"still busy after {within:.0f}s: outbox {depth}")
                break
            await asyncio.sleep(0.5)
        async with httpx.AsyncClient(timeout=30) as client:
            cloud = (await client.get(f"{w.cloud_url}/_sim/state")).json()
            messages = (await client.get(f"{w.slack_url}/_emu/messages",
                                         params={"channel": "C0OPS"})).json()
        bot.send_signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bot.wait(), 10)
    check(result, n_jobs, acks, rows, cloud, messages)
    return result


async def _post(client: httpx.AsyncClient, url: str, body: str) -> int:
    stamp = str(int(time.time()))
    response = await client.post(url, content=body.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body)})
    return response.status_code


def _images_by_job(cloud: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for image in cloud.get("images", []):
        owner = (image.get("properties") or {}).get("imagebot_job_id")
        if owner:
            found[owner] = found.get(owner, 0) + 1
    return found


def check(result: CaseResult, n_jobs: int, acks: list[int], rows: list[tuple[str, str]],
          cloud: dict[str, Any], messages: Any) -> None:
    """Fill `result` from what the three processes hold at the end."""
    if sum(1 for a in acks if a == 200) != n_jobs or len(rows) != n_jobs:
        result.problems.append(f"{sum(a == 200 for a in acks)} acks, {len(rows)} jobs "
                               f"for {n_jobs} commands")
    result.lost += max(0, n_jobs - len(rows))
    listed = messages.get("messages", messages) if isinstance(messages, dict) else messages
    parents: dict[str, list[str]] = {}
    finals: dict[str, int] = {}
    for message in listed:
        text = message.get("text") or ""
        if message.get("thread_ts") in (None, message.get("ts")):
            found = re.search(r"job (J\d+)", text)
            if found:
                parents.setdefault(found.group(1), []).append(message["ts"])
        elif any(mark in text for mark in FINAL_MARKS):
            found = re.match(r"Job (J\d+)", text)
            if found and message.get("subtype") == "thread_broadcast":
                finals[found.group(1)] = finals.get(found.group(1), 0) + 1
    images = _images_by_job(cloud)
    for job_id, state in rows:
        problems = []
        if state not in ("succeeded", "failed", "cancelled"):
            problems.append(f"{job_id} still {state}")
        if images.get(job_id, 0) != 1:
            problems.append(f"{job_id}: {images.get(job_id, 0)} images in the cloud")
        if len(parents.get(job_id, [])) != 1:
            problems.append(f"{job_id}: {len(parents.get(job_id, []))} parent messages")
        if finals.get(job_id, 0) != 1:
            problems.append(f"{job_id}: {finals.get(job_id, 0)} final replies")
        result.check(not problems, "; ".join(problems))
        if state not in ("succeeded", "failed", "cancelled") or not finals.get(job_id):
            result.lost += 1


if __name__ == "__main__":
    print(asyncio.run(kill9()).line())
