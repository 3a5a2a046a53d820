"""The crash case for real: `imagebot run --http` as its own process, killed with SIGKILL at
random moments while jobs run, restarted each time on the same SQLite file.

The simulated cloud and the Slack emulator run as separate processes too, so nothing survives a
kill but what the bot committed. At the end the DB, the cloud (`/_sim/state`) and the Slack
emulator (`/_emu/messages`) are read to check: no job lost, one image per job, one parent and
exactly one final reply per thread.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

from bench.procs import (
    FINAL,
    cloud_state,
    images_by_job,
    kill,
    post_commands,
    slack_messages,
    start_bot,
    stop,
    wait_settled,
    world,
)
from bench.reliability_cases import CaseResult

FINAL_MARKS = (":white_check_mark:", ":x:")


async def kill9(n_jobs: int = 50, kills: int = 20, speed: float = 50.0, max_gap: float = 1.0,
                seed: int = 1, within: float = 300.0, api: str = "openstack") -> CaseResult:
    """Run the case against the cloud-sim `api` shape; see the module docstring."""
    where = "" if api == "openstack" else f", {api}"
    result = CaseResult(f"kill -9 x{kills} ({n_jobs} jobs, processes{where})")
    rng = random.Random(seed)
    async with world(n_jobs, speed, api=api) as w:
        bot = await start_bot(w)
        try:
            acks = await post_commands(w, w.workspace(), [f"create load-{i} --now"
                                                          for i in range(1, n_jobs + 1)])
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.05, max_gap))
                await kill(bot)
                bot = await start_bot(w)
            rows, depth, settled = await wait_settled(w.db, within)
            if not settled:
                result.problems.append(f"still busy after {within:.0f}s: outbox {depth}")
            cloud, messages = await cloud_state(w), await slack_messages(w)
        finally:
            await stop(bot)
    check(result, n_jobs, acks, rows, cloud, messages)
    return result


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
    images = images_by_job(cloud)
    for job_id, state in rows:
        problems = []
        if state not in FINAL:
            problems.append(f"{job_id} still {state}")
        if images.get(job_id, 0) != 1:
            problems.append(f"{job_id}: {images.get(job_id, 0)} images in the cloud")
        if len(parents.get(job_id, [])) != 1:
            problems.append(f"{job_id}: {len(parents.get(job_id, []))} parent messages")
        if finals.get(job_id, 0) != 1:
            problems.append(f"{job_id}: {finals.get(job_id, 0)} final replies")
        result.check(not problems, "; ".join(problems))
        if state not in FINAL or not finals.get(job_id):
            result.lost += 1


if __name__ == "__main__":
    print(asyncio.run(kill9()).line())
