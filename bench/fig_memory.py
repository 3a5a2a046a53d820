"""Figure 5: resident memory of the bot process with 1 000 jobs in flight.

The bot runs alone in a child process (`--child`): the simulated cloud is another process
(`imagebot cloud-sim`) and the Slack emulator lives in this (the harness) process, so neither
counts. The child reads its own VmRSS/VmHWM from /proc/self/status.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row

GOAL_MB = 120.0


def status_mb(field: str) -> float:
    """A `Vm*` line of /proc/self/status in MB."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


async def child(cloud_url: str, slack_url: str, db: str, n: int) -> dict[str, Any]:
    """In the child: build the real runtime, start `n` jobs, report memory."""
    from bot.config import Settings
    from bot.imaging import jobs
    from bot.slack.types import Invocation
    from bot.store import Store
    from bot.wiring import build_runtime
    from sandbox.system import BOT_TOKEN, SIGNING_SECRET, sandbox_cloud_config

    settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET,
                        slack_api_url=f"{slack_url}/api/", db_path=Path(db), cloud_name="sandbox")
    runtime = await build_runtime(settings, cloud_config=sandbox_cloud_config(cloud_url))
    runtime.start()
    await asyncio.sleep(0.5)
    idle = status_mb("VmRSS")

    for i in range(1, n + 1):
        who = Invocation(user="U0ALICE", channel="C0OPS", channel_name="ops", trigger_id=None,
                         response_url=None)
        await runtime.router.command(f"create load-{i} --now", who)
    runtime.poke()
    deadline = time.monotonic() + 300
    observed = 0
    while time.monotonic() < deadline:
        rows = await runtime.store.run(Store.in_flight_jobs)
        observed = sum(1 for j in rows if j.image_id and j.state in jobs.CLOUD_PHASES)
        if observed >= n:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # at least one batched observation of all of them
    in_flight = len(await runtime.store.run(Store.in_flight_jobs))
    result = {"idle_mb": idle, "rss_mb": status_mb("VmRSS"), "peak_mb": status_mb("VmHWM"),
              "in_flight": in_flight, "observed": observed}
    runtime.stop_event.set()
    return result


async def measure(n: int = 1000) -> tuple[list[Row], dict[str, Any]]:
    """Rows for figure 5."""
    from sandbox.slack.model import SlackWorkspace
    from sandbox.slack.serve import running_slack
    from sandbox.system import BOT_TOKEN

    cloud = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "cloud-sim", "--port", "0", "--servers", str(n),
        "--speed", "0.1", stdout=asyncio.subprocess.PIPE)
    try:
        assert cloud.stdout is not None
        line = (await cloud.stdout.readline()).decode()
        cloud_url = line.strip().rsplit(" ", 1)[-1]
        workspace = SlackWorkspace()
        workspace.limits.enabled = False
        with tempfile.TemporaryDirectory(prefix="imagebot-mem-") as tmp:
            async with running_slack(workspace, bot_token=BOT_TOKEN) as slack_url:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.fig_memory", "--child", cloud_url, slack_url,
                    str(Path(tmp) / "imagebot.db"), str(n), stdout=asyncio.subprocess.PIPE)
                out, _ = await proc.communicate()
        data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        cloud.terminate()
        await cloud.wait()
    note = (f"{data['in_flight']} jobs in flight, {data['observed']} with an image being "
            f"observed; peak {data['peak_mb']:.0f} MB")
    return [Row(f"5. bot RSS with {n:,} in-flight jobs (MB)", data["rss_mb"], data["idle_mb"],
                "MB", f"< {GOAL_MB:.0f} MB",
                data["rss_mb"] < GOAL_MB and data["in_flight"] >= n, "same bot, idle", note)], data


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(child(sys.argv[2], sys.argv[3], sys.argv[4],
                                           int(sys.argv[5])))))
    else:
        for row in asyncio.run(measure())[0]:
            print(row.figure, row.ours, row.anchor, row.met, row.note)
