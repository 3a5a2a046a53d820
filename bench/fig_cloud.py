"""Figure 2: cloud API economy of 100 concurrent image jobs, against openstacksdk's waiter.

Ours: the real bot on the simulator at `speed`, every clock scaled alike (cloud durations, the
engine's tick, Slack's rate limits and the bot's pacer), counting every HTTP request the bot
makes from the first `/image create` until it has seen all 100 images active.

Peer: real openstacksdk in 100 threads, `find_server` + `create_server_image(wait=False)` +
`wait_for_image` (fixed 2 s polling), on an identical world in virtual time (`bench.vtime`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sqlite3
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import openstack.config
import openstack.connection
import openstack.utils

from bench import realtime
from bench.common import Row, percentile
from bench.floors import Post, ideal_times
from bench.trace import Tracer, split, summary
from bench.vtime import TimeShim, VirtualTime
from bot.imaging import jobs
from bot.slack.pacing import SlackPacer
from bot.store import Store
from sandbox.cloud.model import Job as SimJob
from sandbox.cloud.model import ManualClock, World
from sandbox.cloud.serve import cloud_in_thread
from sandbox.slack.limits import POST_MESSAGE, Limit, RateLimiter
from sandbox.slack.model import SlackWorkspace
from sandbox.system import running_system

GOAL_RATIO = 0.02


class RecordingWorld(World):
    """A World that remembers when each server entered each task state (and finished)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.transitions: list[tuple[str, str, float]] = []
        super().__init__(*args, **kwargs)

    def _enter(self, job: SimJob, index: int, at: float) -> None:
        self.transitions.append((job.server_id, job.phases[index][0], at))
        super()._enter(job, index, at)

    def _finish(self, job: SimJob, at: float, *, ok: bool, mode: str = "killed") -> None:
        self.transitions.append((job.server_id, "done" if ok else f"failed:{mode}", at))
        super()._finish(job, at, ok=ok, mode=mode)


def scaled_pacer(speed: float) -> SlackPacer:
    """The bot's Slack pacing with Slack's clock running `speed` times faster."""
    return SlackPacer(scale=speed)  # every rate, and the learning's windows, scaled


class PerChannelPacer(SlackPacer):
    """The bot's pacing without learning the workspace-wide post limit from 429s (the anchor
    of the capped rows): each channel keeps its own pace whatever Slack answers."""

    def refused(self, method: str, channel: str, sent_at: float, now: float) -> None:
        """Learn nothing."""


def polling_requests(routes: dict[str, int]) -> int:
    """Requests spent watching (reads of servers and images), not creating or authenticating."""
    return sum(n for route, n in routes.items()
               if route.startswith("GET ") and ("image" in route or "servers/detail" in route))


def channel_names(channels: int) -> list[str]:
    """The channels a scenario starts jobs in: #ops alone, or #load-0 … #load-<k-1>."""
    return ["ops"] if channels == 1 else [f"load-{c}" for c in range(channels)]


def needed_posts(job: Any, entered: dict[tuple[str, str], float],
                 first: dict[str, float], *, copy: bool = True) -> list[Post]:
    """The posts a `--now` job's thread needs (card, copy, writes may resume, result), ready
    when the cloud reached that point. No "copy" post (`copy=False`) for a job whose card was
    first posted after the copy started: the card said it (issue 17, message design)."""
    sid = str(job.server_id)
    start = first.get(sid)
    writes = entered.get((sid, "image_pending_upload"))
    done = entered.get((sid, "done"))
    if start is None or writes is None or done is None:
        return []
    return [Post(job.id, start, False, "card"),
            *([Post(job.id, start, False, "copy")] if copy else []),
            Post(job.id, writes, True, "writes"), Post(job.id, done, True, "final")]


def copy_on_card(db_path: Any) -> set[str]:
    """The jobs whose "copying now" reply was closed unsent: the card's first post showed
    the copy (`Store.card_posted`); their threads need no copy post."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return {str(r[0]) for r in conn.execute(
            "SELECT job_id FROM outbox WHERE error = 'shown on the card'")}


def outbox_rows(db_path: Any) -> dict[tuple[str, str], tuple[int, float]]:
    """{(job id, "writes" | "final"): (outbox id, commit wall time)} of the urgent replies."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT id, job_id, payload, created_at FROM outbox "
                            "WHERE kind = 'reply'").fetchall()
    found: dict[tuple[str, str], tuple[int, float]] = {}
    for outbox_id, job_id, payload, created_at in rows:
        data = json.loads(payload)
        kind = "final" if data.get("final") else "writes" if "Writes may resume" in str(
            data.get("text", "")) else None
        if kind and job_id:
            found[(job_id, kind)] = (outbox_id, datetime.fromisoformat(created_at).timestamp())
    return found


async def ours(n: int, speed: float, channels: int = 1, *,
               tracer: Tracer | None = None, workspace_cap: Limit | None = None,
               learn: bool = True, arrivals: list[float] | None = None) -> dict[str, Any]:
    """Run the bot on `n` concurrent jobs spread over `channels` channels; count requests,
    measure task change → Slack delays (unscaled seconds) and their per-channel floor
    (`tracer`: also where the time went, stage by stage; `workspace_cap`: Slack's
    workspace-wide post limit, unscaled; `learn=False`: the pacer does not learn it;
    `arrivals`: when each create is sent, unscaled seconds from the start, else all at once)."""
    world = RecordingWorld(speed=speed, extra_servers=n)
    workspace = SlackWorkspace(rate_limits=RateLimiter(scale=speed,
                                                       workspace_posts=workspace_cap))
    names = channel_names(channels)
    if channels > 1:
        workspace.add_load_channels(channels)
    async with running_system(world=world, workspace=workspace,
                              tick_scale=1.0 / speed) as system:
        system.runtime.notifier.pacer = (scaled_pacer(speed) if learn
                                         else PerChannelPacer(scale=speed))
        if tracer is not None:
            tracer.attach(system)
        cpu_started = time.process_time()
        world.reset_stats()
        started = time.monotonic()
        async def submit(i: int) -> Any:
            if arrivals:
                await asyncio.sleep(arrivals[i] / speed)
            return await system.command("alice", f"#{names[i % channels]}",
                                        f"create load-{i + 1} --now")

        answers = await asyncio.gather(*(submit(i) for i in range(n)))
        failed_acks = sum(1 for a in answers if a.status_code != 200)
        # Poll the DB without poking the engine: poking would add ticks and requests.
        deadline = time.monotonic() + 900 / speed + 120
        while True:
            rows = await system.runtime.store.run(Store.list_jobs, limit=10_000)
            if len(rows) >= n and all(j.state in jobs.TERMINAL for j in rows):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("jobs did not finish")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu_started
        stats = world.stats_snapshot()
        with contextlib.suppress(TimeoutError):  # late messages are counted as not seen
            await system.settle(within=150)
        rows = await system.runtime.store.run(Store.list_jobs, limit=10_000)
        urgent = outbox_rows(system.db_path) if tracer is not None else {}
        stages: dict[str, list[dict[str, float]]] = {"writes": [], "final": []}
        delays: dict[str, list[float]] = {"writes": [], "final": [],
                                          "writes_floor": [], "final_floor": [],
                                          "writes_floor_paced": []}
        own = SlackPacer()  # the bot's own pacing: a tenth under Slack's rate, burst 2
        entered = {(sid, state): at for sid, state, at in world.transitions}
        first: dict[str, float] = {}
        for sid, _, at in world.transitions:
            first.setdefault(sid, at)
        by_channel: dict[str, list[Any]] = {}
        for job in rows:
            by_channel.setdefault(job.channel, []).append(job)
        on_card = copy_on_card(system.db_path)
        for channel, channel_jobs in by_channel.items():
            posts = [p for job in channel_jobs for p in needed_posts(
                job, entered, first, copy=job.id not in on_card)]
            ideal = ideal_times(posts, POST_MESSAGE.rate * speed, POST_MESSAGE.burst)
            paced = ideal_times(posts, own.post_rate * speed, own.post_burst)
            for job in channel_jobs:
                if not job.thread_ts:
                    continue
                for kind, test in (("writes", lambda m: "Writes may resume" in (m.text or "")),
                                   ("final", lambda m: m.reply_broadcast)):
                    state = "image_pending_upload" if kind == "writes" else "done"
                    changed = entered.get((str(job.server_id), state))
                    seen = [m for m in workspace.thread(channel, job.thread_ts) if test(m)]
                    if changed is None or not seen:
                        continue
                    delays[kind].append((float(seen[0].ts) - changed) * speed)
                    if tracer is not None and (job.id, kind) in urgent:
                        outbox_id, committed = urgent[(job.id, kind)]
                        part = split(tracer, changed, committed, outbox_id, float(seen[0].ts))
                        if part is not None:
                            stages[kind].append(part)
                    if (job.id, kind) in ideal:
                        delays[kind + "_floor"].append((ideal[(job.id, kind)] - changed) * speed)
                    if kind == "writes" and (job.id, kind) in paced:
                        delays["writes_floor_paced"].append(
                            (paced[(job.id, kind)] - changed) * speed)
        succeeded = sum(1 for j in rows if j.state == jobs.SUCCEEDED)
        ends = sorted([(at, 1) for at in first.values()] +
                      [(at, -1) for (_, state), at in entered.items() if state == "done"])
        peak = max(itertools.accumulate(step for _, step in ends), default=0)
        return {"requests": stats["total"], "polling": polling_requests(stats["routes"]),
                "routes": stats["routes"], "seconds": elapsed, "succeeded": succeeded,
                "failed_acks": failed_acks, "delays": delays, "channels": channels,
                "peak_in_flight": peak,
                "slack_429": sum(1 for c in workspace.calls() if c.status == 429),
                "cpu_share": cpu / elapsed if elapsed else 0.0,
                "stages": {k: summary(v, speed) for k, v in stages.items()}}


def p95(values: list[float]) -> float:
    """The p95, or NaN when nothing was measured (the row then says so)."""
    return percentile(values, 95) if values else float("nan")


def connect(url: str) -> openstack.connection.Connection:
    """An openstacksdk connection to the simulator (password auth, like clouds.yaml)."""
    region = openstack.config.get_cloud_region(
        load_yaml_config=False, load_envvars=False, auth_type="password",
        auth={"auth_url": f"{url}/identity/v3", "username": "demo", "password": "secret",
              "project_name": "demo", "user_domain_name": "Default",
              "project_domain_name": "Default"},
        region_name="RegionOne", interface="public")
    return openstack.connection.Connection(config=region)


def peer(n: int) -> dict[str, Any]:
    """openstacksdk creating and waiting for `n` images concurrently (threads, virtual time)."""
    clock = ManualClock(time.time())
    world = World(clock=clock, extra_servers=n)
    vt = VirtualTime(clock, parties=n)
    original = openstack.utils.time
    with cloud_in_thread(world) as url:
        conn = connect(url)
        conn.authorize()
        world.reset_stats()
        errors: list[str] = []

        def one(i: int) -> None:
            try:
                server = conn.compute.find_server(f"load-{i}", ignore_missing=False)
                image = conn.compute.create_server_image(server, f"peer-{i}", wait=False)
                done = conn.wait_for_image(image)
                if done is None or done.status != "active":
                    errors.append(f"load-{i}: not active")
            except Exception as exc:  # report, do not hide, a failing peer
                errors.append(f"load-{i}: {type(exc).__name__}: {exc}")
            finally:
                vt.done()

        openstack.utils.time = TimeShim(vt)  # type: ignore[assignment]
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(one, range(1, n + 1)))
        finally:
            openstack.utils.time = original
        elapsed = time.monotonic() - started
        stats = world.stats_snapshot()
        conn.close()
    return {"requests": stats["total"], "polling": polling_requests(stats["routes"]),
            "routes": stats["routes"], "seconds": elapsed, "errors": errors,
            "simulated_seconds": clock() - world.stats_since}


TICK_S = 2.0  # the engine's poll interval while images are being copied (unscaled)
UPLOAD_TICK_S = 10.0  # ... and while they upload


SLOW_SPEED = 5.0  # figure 2's 10 × 10 again, nearer real time (see `latency_rows`)
# 10 x 10 once more under a workspace-wide post cap (Slack keeps one and does not publish its
# size): the bot learning it from 429s, next to the same run with per-channel pacing only.
WORKSPACE_CAP = Limit(rate=3.0, burst=5)
# 10 x 10 once more as the creates would come from ten teams at work: one every ARRIVAL_GAP s
# on average (a Poisson stream, the same seed every run; up to 78 under way at once, as a run
# notes: the small disks' images are done before the last creates). At once, a channel's
# 10 jobs need ~30 posts in the few seconds of their copies, and Slack's 1 post/s per
# channel, not the bot, sets "writes may resume" (the x5 rows); arriving, Slack's rate does
# not bind and the rows measure the bot's own lag, the goal's subject.
ARRIVAL_GAP = 2.0  # unscaled seconds, one engine tick
ARRIVAL_SEED = 1
ARRIVING_SPEED = 5.0
# And from outside, in real time: the bot, the cloud and the emulator each in its own process
# (`bench.realtime`), 10 channels, the same kind of stream.
REAL_TIME_JOBS = 100
# 10 x 10 at x20 is the noisiest scenario (writes p95 17-30 s from run to run on one commit):
# `make bench` runs it this many times and reports the run with the median writes p95.
SPREAD_RUNS = 3


def poisson_arrivals(n: int, gap: float, seed: int) -> list[float]:
    """`n` send times (from 0) of a Poisson stream with a mean `gap` between sends."""
    rng = random.Random(seed)
    return list(itertools.accumulate(rng.expovariate(1.0 / gap) for _ in range(n)))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose "writes may resume" p95 is the median, with every run's p95s noted
    (`runs_note`, which its rows append)."""
    ranked = sorted(runs, key=lambda run: p95(run["delays"]["writes"]))
    chosen = dict(ranked[len(ranked) // 2])
    each = "; ".join(f"{p95(run['delays']['writes']):.2f} / {p95(run['delays']['final']):.2f} s"
                     for run in runs)
    chosen["runs_note"] = (f"the median of {len(runs)} runs by writes p95 (each run's writes / "
                           f"final p95: {each})")
    return chosen


FLOOR_POSTS = (f"an ideal notifier at Slack's 1 post/s (burst {POST_MESSAGE.burst:g}) sending the "
               "card, copy (unless the card showed it), writes and result each job needs")


def writes_to_floor(label: str, writes: float, floor: float, note: str, row_id: str) -> Row:
    """A "writes may resume" row whose goal is the floor of the same run (≤ 1.2×)."""
    return Row(f"2. task change → Slack p95, writes may resume, {label} (s)", writes, floor, "s",
               "≤ 1.2× the floor", writes <= 1.2 * floor, "per-channel post floor", note,
               id=row_id)


def final_to_upload_tick(label: str, final: float, floor: float, note: str,
                         row_id: str) -> Row:
    """A final reply row whose goal is one upload tick + 1 s (issue 17)."""
    return Row(f"2. task change → Slack p95, final reply, {label} (s)", final,
               UPLOAD_TICK_S + 1.0, "s", "≤ one upload tick + 1 s",
               final <= UPLOAD_TICK_S + 1.0, f"one upload tick = {UPLOAD_TICK_S:g} s + 1 s",
               note, extra={"floor_p95_s": floor}, id=row_id)


def latency_rows(mine: dict[str, Any], label: str, scenario: str) -> list[Row]:
    """Figure 2's task change → Slack rows of one scenario (unscaled seconds)."""
    d = mine["delays"]
    writes, final = p95(d["writes"]), p95(d["final"])
    floor_writes, floor_final = p95(d["writes_floor"]), p95(d["final_floor"])
    seen = f"n={len(d['writes'])}/{len(d['final'])} of {mine['succeeded']} jobs; " \
           f"{mine['slack_429']} Slack 429s; unscaled seconds"
    if "runs_note" in mine:
        seen += f"; {mine['runs_note']}"
    if scenario == "1x100":
        return [
            writes_to_floor(label, writes, floor_writes,
                            f"{seen}; floor: {FLOOR_POSTS}, urgent threads first",
                            "writes_p95_s_1x100"),
            Row(f"2. task change → Slack p95, final reply, {label} (s)", final, floor_final,
                "s", "—", None, "per-channel post floor", seen, id="final_p95_s_1x100"),
        ]
    if scenario == "10x10_slow":
        # At x20 every millisecond of the bot's CPU counts as 20 of Slack's and the cloud's:
        # 100 submits spread the copies' starts over ~20 s, and a channel's posts with them,
        # which lowers the per-channel floor (0.2-8 s from run to run). Nearer real time the
        # starts bunch as they would, and the floor that Slack's 1 post/s sets for 10 jobs
        # started together (~12-14 s) is above "one tick + 1 s": the ratio to the floor of
        # the same run is the goal that can hold, as for 1 × 100 (issue 17's note).
        own = SlackPacer()
        return [
            writes_to_floor(label, writes, floor_writes,
                            f"{seen}; the same scenario at x{SLOW_SPEED:g} instead of x20; "
                            f"floor as for 1 × 100 ({FLOOR_POSTS}); one tick + 1 s would be "
                            f"{TICK_S + 1.0:g} s; the same ideal notifier at the bot's own "
                            f"pacing ({own.post_rate:g} post/s, burst {own.post_burst:g}): "
                            f"{p95(d['writes_floor_paced']):.2f} s", "writes_p95_s_10x10_slow"),
            final_to_upload_tick(label, final, floor_final,
                                 f"{seen}; per-channel floor p95 {floor_final:.2f} s: a "
                                 "channel's 10 uploads end together, and with the upload tick "
                                 f"({UPLOAD_TICK_S:g} s) before a look the goal is below floor "
                                 f"+ tick = {floor_final + UPLOAD_TICK_S:.1f} s when the floor "
                                 "is above 1 s", "final_p95_s_10x10_slow"),
        ]
    if scenario == "10x10_arriving":
        return [
            Row(f"2. task change → Slack p95, writes may resume, {label} (s)", writes,
                TICK_S + 1.0, "s", "≤ one tick + 1 s", writes <= TICK_S + 1.0,
                f"one tick = {TICK_S:g} s + 1 s",
                f"{seen}; per-channel floor p95 {floor_writes:.2f} s ({FLOOR_POSTS}); "
                f"{mine['arrivals_note']}", extra={"floor_p95_s": floor_writes},
                id="writes_p95_s_10x10_arriving"),
            final_to_upload_tick(label, final, floor_final,
                                 f"{seen}; per-channel floor p95 {floor_final:.2f} s",
                                 "final_p95_s_10x10_arriving"),
        ]
    bound = ("; the floor is above one tick + 1 s: the jobs of a channel started together "
             "and Slack's per-channel rate, not the bot, binds; compare with the floor"
             if floor_writes > TICK_S + 1.0 else "")
    return [
        Row(f"2. task change → Slack p95, writes may resume, {label} (s)", writes,
            TICK_S + 1.0, "s", "≤ one tick + 1 s", writes <= TICK_S + 1.0,
            f"one tick = {TICK_S:g} s + 1 s",
            f"{seen}; per-channel floor p95 {floor_writes:.2f} s ({FLOOR_POSTS}){bound}; every "
            f"create sent at once; see also the x{SLOW_SPEED:g} and the arriving rows",
            extra={"floor_p95_s": floor_writes}, id="writes_p95_s_10x10"),
        final_to_upload_tick(label, final, floor_final,
                             f"{seen}; per-channel floor p95 {floor_final:.2f} s",
                             "final_p95_s_10x10"),
    ]


def real_time_row(got: dict[str, Any]) -> Row:
    """The outside check's "writes may resume" row (real seconds; `bench.realtime`)."""
    upper, lower = p95(got["upper"]), p95(got["lower"])
    per = got["jobs"] // got["channels"]
    return Row(f"2. task change → Slack p95, writes may resume, {got['channels']} channels × "
               f"{per} jobs arriving, real processes in real time (s)", upper, TICK_S + 1.0,
               "s", "≤ one tick + 1 s",
               upper <= TICK_S + 1.0 and len(got["upper"]) == got["jobs"],
               f"one tick = {TICK_S:g} s + 1 s",
               f"`imagebot run --http`, `imagebot cloud-sim` and the Slack emulator each in its "
               f"own process at x1; {got['acked']}/{got['jobs']} creates acked, one every "
               f"{ARRIVAL_GAP:g} s on average (seed {ARRIVAL_SEED}, the last at "
               f"{got['last_create_s']:.0f} s); n={len(got['upper'])}"
               f"; a watcher polls the cloud's state every {realtime.POLL_S:g} s: the copy "
               "ended after the last poll that did not show it (the figure: Slack ts minus "
               "that poll's start) and before the first that did (p95 from there: "
               f"{lower:.2f} s); p50 {percentile(got['upper'], 50):.2f} s",
               extra={"lower_p95_s": lower}, id="writes_p95_s_real_time")


async def arriving_run(n: int, *, seed: int = ARRIVAL_SEED,
                       tracer: Tracer | None = None) -> dict[str, Any]:
    """Figure 2's 10 × 10 with the creates arriving (`ARRIVAL_GAP`), at `ARRIVING_SPEED`."""
    arrivals = poisson_arrivals(n, ARRIVAL_GAP, seed)
    got = await ours(n, ARRIVING_SPEED, channels=10, arrivals=arrivals, tracer=tracer)
    got["arrivals_note"] = (f"the creates sent one every {ARRIVAL_GAP:g} s on average (a Poisson "
                            f"stream, seed {seed}, the last at {arrivals[-1]:.0f} s), at "
                            f"x{ARRIVING_SPEED:g}; at most {got['peak_in_flight']} images under "
                            "way at once")
    return got


async def measure(n: int = 100, speed: float = 20.0) -> tuple[list[Row], dict[str, Any]]:
    """Rows for figure 2 and the raw numbers: cloud economy and Slack latency with `n` jobs
    in one channel, Slack latency again with `n` jobs over 10 channels."""
    mine = await ours(n, speed)
    spread = median_run([await ours(n, speed, channels=10) for _ in range(SPREAD_RUNS)])
    spread_slow = await ours(n, SLOW_SPEED, channels=10)
    arriving = await arriving_run(n)
    real_time = await realtime.measure(REAL_TIME_JOBS, ARRIVAL_GAP, ARRIVAL_SEED)
    capped = await ours(n, speed, channels=10, workspace_cap=WORKSPACE_CAP)
    capped_alone = await ours(n, speed, channels=10, workspace_cap=WORKSPACE_CAP, learn=False)
    theirs = await asyncio.to_thread(peer, n)
    ok = mine["succeeded"] == n and not theirs["errors"]
    note = (f"bot at speed x{speed:g} (cloud, engine tick, Slack limits and pacer all scaled); "
            f"peer in virtual time; {mine['succeeded']}/{n} jobs succeeded, "
            f"peer errors {len(theirs['errors'])}")
    per = n // 10
    rows = [
        Row(f"2. cloud requests, {n} jobs, polling only", mine["polling"], theirs["polling"],
            "req", f"≤ {GOAL_RATIO:.0%} of peer",
            ok and mine["polling"] <= GOAL_RATIO * theirs["polling"],
            "openstacksdk wait_for_image", note),
        Row(f"2. cloud requests, {n} jobs, total", mine["requests"], theirs["requests"], "req",
            f"≤ {GOAL_RATIO:.0%} of peer",
            ok and mine["requests"] <= GOAL_RATIO * theirs["requests"],
            "openstacksdk find+create+wait", "includes auth, server lookup and createImage"),
        Row("2. one engine tick (s)", TICK_S, None, "s", "—", None, "",
            f"the engine's poll interval while a disk is copied (unscaled; x{speed:g} wall "
            f"{TICK_S / speed:.2f} s); uploads are polled every {UPLOAD_TICK_S:g} s",
            id="tick_s"),
        *latency_rows(mine, f"1 channel × {n} jobs", "1x100"),
        *latency_rows(spread, f"10 channels × {per} jobs", "10x10"),
        *latency_rows(spread_slow, f"10 channels × {per} jobs at x{SLOW_SPEED:g}",
                      "10x10_slow"),
        *latency_rows(arriving, f"10 channels × {per} jobs arriving, at x{ARRIVING_SPEED:g}",
                      "10x10_arriving"),
        real_time_row(real_time),
        *capped_rows(capped, capped_alone, per),
    ]
    return rows, {"ours": mine, "ours_10_channels": spread,
                  "ours_10_channels_slow": spread_slow,
                  "ours_10_channels_arriving": arriving, "real_time": real_time,
                  "ours_capped": capped,
                  "ours_capped_per_channel": capped_alone, "peer": theirs, "speed": speed}


def capped_rows(learnt: dict[str, Any], alone: dict[str, Any], per: int) -> list[Row]:
    """10 × 10 under Slack's workspace-wide post cap: the bot (learning the cap from 429s)
    next to the same load with per-channel pacing only (info rows: the issue sets no goal)."""
    cap = f"{WORKSPACE_CAP.rate * 60:g} posts/min (burst {WORKSPACE_CAP.burst:g})"
    note = (f"10 channels × {per} jobs at x20 with the emulator's workspace-wide post cap of "
            f"{cap}; the anchor is the same load with per-channel pacing only (no learning); "
            f"{learnt['succeeded']} and {alone['succeeded']} of {per * 10} jobs succeeded; "
            "slack_sdk retries a 429 after its Retry-After, at least 1 s of real time (20 s "
            "unscaled at x20)")
    writes = p95(learnt["delays"]["writes"]), p95(alone["delays"]["writes"])
    return [
        Row("2. Slack 429s, 10 channels × 10 jobs under a workspace post cap",
            learnt["slack_429"], alone["slack_429"], "", "—", None, "per-channel pacing only",
            note, id="slack_429s_10x10_capped"),
        Row("2. task change → Slack p95, writes may resume, 10 × 10 under a workspace post "
            "cap (s)", writes[0], writes[1], "s", "—", None, "per-channel pacing only",
            f"{note}; unscaled seconds", id="writes_p95_s_10x10_capped"),
    ]


# Name -> (channels, speed); a speed of None is `one_scenario`'s own (x20).
SCENARIOS: dict[str, tuple[int, float | None]] = {
    "1x100": (1, None), "10x10": (10, None), "10x10_slow": (10, SLOW_SPEED),
    "10x10_arriving": (10, ARRIVING_SPEED)}


async def one_scenario(name: str, runs: int, *, n: int = 100, speed: float = 20.0,
                       trace: bool = False) -> dict[str, Any]:
    """Figure 2's Slack latency in one scenario alone, `runs` times; medians of the p95s."""
    results = []
    channels, fixed_speed = SCENARIOS[name]
    for run in range(runs):
        tracer = Tracer() if trace else None
        got = (await arriving_run(n, seed=ARRIVAL_SEED + run, tracer=tracer)
               if name == "10x10_arriving" else
               await ours(n, fixed_speed or speed, channels, tracer=tracer))
        d = got["delays"]
        summary_row = {"writes_p95": p95(d["writes"]), "writes_floor_p95": p95(d["writes_floor"]),
                       "final_p95": p95(d["final"]), "final_floor_p95": p95(d["final_floor"]),
                       "n": (len(d["writes"]), len(d["final"])), "succeeded": got["succeeded"],
                       "slack_429": got["slack_429"], "cpu_share": round(got["cpu_share"], 2),
                       "wall_s": round(got["seconds"], 1)}
        print(f"run {run + 1}: " + json.dumps(summary_row, default=str), file=sys.stderr)
        if trace:
            print(json.dumps(got["stages"], indent=1), file=sys.stderr)
        results.append(summary_row)
    keys = ("writes_p95", "writes_floor_p95", "final_p95", "final_floor_p95")
    return {"scenario": name, "runs": runs,
            "median": {k: round(statistics.median(r[k] for r in results), 2) for k in keys},
            "each": results}


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.fig_cloud [--scenario 1x100|10x10|all] [--runs N] [--trace]`: one of
    figure 2's Slack scenarios alone (without the openstacksdk peer); `all` is the whole
    figure as `make bench` measures it."""
    parser = argparse.ArgumentParser(prog="python -m bench.fig_cloud")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--trace", action="store_true",
                        help="break each urgent reply's delay into stages (bench/trace.py)")
    args = parser.parse_args(argv)
    if args.scenario == "all":
        result_rows, raw = asyncio.run(measure(args.jobs))
        for row in result_rows:
            print(row.figure, row.ours, row.anchor, row.met, row.note)
        return 0
    out = asyncio.run(one_scenario(args.scenario, args.runs, n=args.jobs, trace=args.trace))
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
