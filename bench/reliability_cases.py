"""The reliability cases. Each returns a `CaseResult`; `bench.reliability` runs them at full size,
`tests/reliability` at a small size. No case asserts on timing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import re
import sqlite3
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.fig_cloud import scaled_pacer
from bot.config import Settings
from bot.imaging import jobs
from bot.imaging.jobs import Job, PhaseDeadlines
from bot.logs import configure_logging
from bot.store import Store
from bot.wiring import Runtime, build_runtime, http_app
from sandbox.cloud.app import create_app as create_cloud_app
from sandbox.cloud.model import World
from sandbox.slack.deliver import Deliverer, sign
from sandbox.slack.limits import RateLimiter
from sandbox.slack.model import SlackWorkspace
from sandbox.slack.serve import running_slack
from sandbox.system import BOT_TOKEN, SIGNING_SECRET, System, running_system, sandbox_cloud_config

CHANNEL = "C0OPS"


@dataclass
class CaseResult:
    """What one case tried, how much survived and what was lost."""

    name: str
    tried: int = 0
    survived: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything survived and nothing was lost."""
        return self.lost == 0 and self.survived == self.tried and not self.problems

    def line(self) -> str:
        """The summary line."""
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.name:<38} tried {self.tried:>6}  survived {self.survived:>6}  "
                f"lost {self.lost:>3}  {verdict}")

    def check(self, passed: bool, problem: str) -> None:
        """Count one try."""
        self.tried += 1
        if passed:
            self.survived += 1
        else:
            self.problems.append(problem)


# --- what a finished job must look like in Slack -------------------------------------------


def parents_of(workspace: SlackWorkspace, job: Job) -> list[Any]:
    """Top-level messages that are the parent of `job`."""
    marker = f"job {job.id}:"
    return [m for m in workspace.all_messages(CHANNEL)
            if not m.is_reply and marker in (m.text or "")]


def finals_of(workspace: SlackWorkspace, job: Job) -> list[Any]:
    """Final (broadcast) replies in the job's thread."""
    if not job.thread_ts:
        return []
    return [m for m in workspace.thread(CHANNEL, job.thread_ts) if m.reply_broadcast]


def queued_replies(db_path: Path, job_id: str) -> list[str]:
    """Texts of the thread replies the bot committed for a job, in commit order; not a
    "copying now" reply closed unsent because the card's first post showed the copy
    (`Store.card_posted`, issue 17): that one is committed not to be posted."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT payload FROM outbox WHERE job_id = ? AND kind = 'reply' "
                            "AND error IS NOT 'shown on the card' ORDER BY id",
                            (job_id,)).fetchall()
    return [json.loads(p)["text"] for (p,) in rows]


def thread_problems(workspace: SlackWorkspace, db_path: Path, job: Job) -> list[str]:
    """Why the job's thread is not exactly its committed replies, in order, once each."""
    problems = []
    parents = parents_of(workspace, job)
    if len(parents) != 1:
        problems.append(f"{job.id}: {len(parents)} parent messages")
    finals = finals_of(workspace, job)
    if len(finals) != 1:
        problems.append(f"{job.id}: {len(finals)} final replies")
    if job.thread_ts:
        shown = [m.text for m in workspace.thread(CHANNEL, job.thread_ts)]
        wanted = queued_replies(db_path, job.id)
        if shown != wanted:
            problems.append(f"{job.id}: thread {len(shown)} replies != {len(wanted)} committed"
                            " (or out of order)")
    return problems


async def all_jobs(runtime: Runtime) -> list[Job]:
    """Every job, oldest first."""
    return list(reversed(await runtime.store.run(Store.list_jobs, limit=100_000)))


# --- 1. crash and restart -------------------------------------------------------------------


class BotProcess:
    """A bot runtime over the in-process cloud and a loopback emulator, restartable on one DB."""

    def __init__(self, world: World, workspace: SlackWorkspace, slack_url: str, db: Path,
                 speed: float) -> None:
        self.world, self.workspace, self.slack_url = world, workspace, slack_url
        self.db, self.speed = db, speed
        self.transport = httpx.ASGITransport(app=create_cloud_app(world))
        self.runtime: Runtime | None = None
        self.deliverer: Deliverer | None = None

    async def boot(self) -> Runtime:
        """Build a fresh runtime on the same DB and start its loops."""
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET,
                            slack_api_url=f"{self.slack_url}/api/", db_path=self.db,
                            cloud_name="sandbox")
        runtime = await build_runtime(
            settings, cloud_config=sandbox_cloud_config("http://cloud.sandbox"),
            cloud_transport=self.transport, tick_scale=2.0 / self.speed)
        runtime.notifier.pacer = scaled_pacer(self.speed)
        runtime.start()
        self.runtime = runtime
        self.deliverer = Deliverer(
            self.workspace, "http://bot.sandbox/slack/events", SIGNING_SECRET,
            http=httpx.AsyncClient(transport=httpx.ASGITransport(app=http_app(runtime))),
            timeout=None)
        return runtime

    async def crash(self) -> None:
        """Stop dead: cancel the loops wherever they are, no stop flag, no graceful drain.

        Unlike kill -9, a store transaction already handed to the DB thread still completes
        (SQLite would roll it back); everything else is abandoned mid-flight."""
        runtime = self.runtime
        assert runtime is not None and self.deliverer is not None
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        await self.deliverer.http.aclose()
        with contextlib.suppress(Exception):
            await runtime.cloud.aclose()
        for store in (runtime.store, runtime.listeners.store):
            with contextlib.suppress(Exception):
                await store.close()
        with contextlib.suppress(Exception):
            session = getattr(runtime.web.client, "session", None)
            if session is not None:
                await session.close()
        self.runtime = None

    async def finish(self, within: float) -> None:
        """Let the current runtime run until nothing is in flight and the outbox is empty."""
        runtime = self.runtime
        assert runtime is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not await runtime.store.run(Store.in_flight_jobs) and \
                    await runtime.store.run(Store.outbox_depth) == 0:
                return
            runtime.poke()
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def bot_world(n_servers: int, speed: float) -> AsyncIterator[BotProcess]:
    """A world, an emulator (limits scaled like the pacer) and a restartable bot."""
    world = World(speed=speed, extra_servers=n_servers)
    workspace = SlackWorkspace(rate_limits=RateLimiter(scale=speed))
    with tempfile.TemporaryDirectory(prefix="imagebot-rel-") as tmp:
        async with running_slack(workspace, bot_token=BOT_TOKEN) as slack_url:
            bot = BotProcess(world, workspace, slack_url, Path(tmp) / "imagebot.db", speed)
            await bot.boot()
            try:
                yield bot
            finally:
                if bot.runtime is not None:
                    await bot.crash()


async def crash_restart(n_jobs: int = 50, kills: int = 20, speed: float = 100.0,
                        max_gap: float = 0.5, seed: int = 1) -> CaseResult:
    """Crash the bot `kills` times at random moments while `n_jobs` run; restart on one DB."""
    result = CaseResult(f"crash/restart x{kills} ({n_jobs} jobs)")
    rng = random.Random(seed)
    async with bot_world(n_jobs, speed) as bot:
        assert bot.deliverer is not None
        answers = await asyncio.gather(*(bot.deliverer.slash_command(
            "alice", "#ops", f"create load-{i} --now") for i in range(1, n_jobs + 1)))
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.0, max_gap))
            await bot.crash()
            await bot.boot()
        await bot.finish(within=120)
        assert bot.runtime is not None
        rows = await all_jobs(bot.runtime)
        acked = sum(1 for a in answers if a.status_code == 200)
        if len(rows) != n_jobs or acked != n_jobs:
            result.problems.append(f"{acked} acks, {len(rows)} jobs for {n_jobs} commands")
        images: dict[str, int] = {}
        for image in bot.world.images.values():
            owner = image.properties.get("imagebot_job_id")
            if owner:
                images[owner] = images.get(owner, 0) + 1
        for job in rows:
            problems = []
            if job.state not in jobs.TERMINAL:
                problems.append(f"{job.id} still {job.state}")
            if images.get(job.id, 0) != 1:
                problems.append(f"{job.id}: {images.get(job.id, 0)} images in the cloud")
            problems += thread_problems(bot.workspace, bot.db, job)
            result.check(not problems, "; ".join(problems))
            if job.state not in jobs.TERMINAL or not finals_of(bot.workspace, job):
                result.lost += 1
        result.lost += max(0, n_jobs - len(rows))
    return result


# --- 2. faults from the simulator ------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One simulator fault and the outcome it must lead to."""

    name: str
    arm: Callable[[World, str], Any]
    state: str
    code: str | None
    phrase: str
    after_ack: bool = False  # arm after the command was accepted (revocation mid-job)


def _ttl(world: World, seconds: float) -> None:
    world.token_ttl = seconds
    world.inject("revoke_tokens")  # the current token was issued with the long TTL


FAULTS: tuple[Fault, ...] = (
    Fault("429 + Retry-After on createImage",
          lambda w, s: w.inject("http", path=r"/action$", method="POST", status=429,
                                retry_after=1, count=2), jobs.SUCCEEDED, None, "white_check_mark"),
    Fault("413 + Retry-After on servers",
          lambda w, s: w.inject("http", path=r"/servers", method="GET", status=413,
                                retry_after=1, count=2), jobs.SUCCEEDED, None, "white_check_mark"),
    Fault("5xx burst", lambda w, s: w.inject("http", path=r"/(compute|image)/", status=503,
                                             count=6), jobs.SUCCEEDED, None, "white_check_mark"),
    Fault("500 on createImage", lambda w, s: w.inject("http", path=r"/action$", method="POST",
                                                      status=500, count=1),
          jobs.SUCCEEDED, None, "white_check_mark"),
    Fault("dropped connections", lambda w, s: w.inject("drop", path=r"/compute/", delay=0.2,
                                                       count=3),
          jobs.SUCCEEDED, None, "white_check_mark"),
    Fault("token expiry", lambda w, s: _ttl(w, 0.3), jobs.SUCCEEDED, None, "white_check_mark"),
    Fault("token revocation mid-job", lambda w, s: w.inject("revoke_tokens"), jobs.SUCCEEDED,
          None, "white_check_mark", after_ack=True),
    Fault("killed upload", lambda w, s: w.inject("upload_fail", server=s), jobs.FAILED,
          jobs.KILLED, "killed"),
    Fault("vanished image", lambda w, s: w.inject("image_deleted", server=s), jobs.FAILED,
          jobs.VANISHED, "vanished"),
    Fault("stuck task state", lambda w, s: w.inject("stuck", server=s,
                                                    task_state="image_pending_upload"),
          jobs.FAILED, jobs.STUCK, "stuck"),
    Fault("server not found", lambda w, s: None, jobs.FAILED, jobs.NOT_FOUND, "not found"),
)


async def cloud_faults(speed: float = 200.0, rounds: int = 1) -> CaseResult:
    """Every simulator fault ends in the right job state and one clear final message."""
    result = CaseResult("cloud faults")
    deadlines = PhaseDeadlines(snapshot=timedelta(seconds=20),
                               pending_upload=timedelta(seconds=2),
                               upload=timedelta(seconds=60))
    async with running_system(speed=speed, deadlines=deadlines) as system:
        system.workspace.limits.enabled = False
        system.runtime.notifier.pacer = scaled_pacer(1000)
        for r in range(rounds):
            for i, fault in enumerate(FAULTS):
                name = f"f{r}-{i}"
                if fault.code != jobs.NOT_FOUND:
                    system.world.add_server(name)
                if not fault.after_ack:
                    fault.arm(system.world, name)
                answer = await system.command("alice", "#ops", f"create {name} --now")
                if fault.after_ack:
                    fault.arm(system.world, name)
                problems = []
                try:
                    await system.settle(within=60)
                except TimeoutError as exc:
                    problems.append(str(exc))
                system.world.inject("clear")
                system.world.token_ttl = 3600.0
                found = await system.runtime.store.run(Store.list_jobs, server=name, limit=5)
                if answer.status_code != 200 or len(found) != 1:
                    problems.append(f"{len(found)} jobs, ack {answer.status_code}")
                    result.check(False, f"{fault.name}: " + "; ".join(problems))
                    result.lost += 1
                    continue
                job = found[0]
                if job.state != fault.state or job.error_code != fault.code:
                    problems.append(f"ended {job.state}/{job.error_code}, wanted "
                                    f"{fault.state}/{fault.code}")
                finals = finals_of(system.workspace, job)
                if fault.code == jobs.NOT_FOUND:
                    # A mistake is answered to the requester alone: no card, no thread.
                    finals = [e for e in system.workspace.ephemerals("U0ALICE")
                              if e.via == "chat.postEphemeral" and job.id in (e.text or "")]
                    if parents_of(system.workspace, job):
                        problems.append(f"{job.id}: a public card for a missing server")
                texts = [m.text or "" for m in finals]
                if len(finals) != 1 or fault.phrase.lower() not in texts[0].lower():
                    problems.append(f"final replies {texts!r} lack {fault.phrase!r}")
                if job.state not in jobs.TERMINAL or not finals:
                    result.lost += 1
                result.check(not problems, f"{fault.name}: " + "; ".join(problems))
    return result


# --- 3. the Slack side -----------------------------------------------------------------------


async def _run_jobs_through(system: System, servers: Iterable[str], disturb: Callable[[], Any],
                            result: CaseResult, label: str, within: float) -> None:
    names = list(servers)
    answers = await asyncio.gather(*(system.command("alice", "#ops", f"create {s} --now")
                                     for s in names))
    disturb()
    try:
        await system.settle(within=within)
    except TimeoutError as exc:
        result.problems.append(f"{label}: {exc}")
    for name, answer in zip(names, answers, strict=True):
        found = await system.runtime.store.run(Store.list_jobs, server=name, limit=5)
        if answer.status_code != 200 or len(found) != 1:
            result.check(False, f"{label} {name}: {len(found)} jobs")
            result.lost += 1
            continue
        job = found[0]
        problems = thread_problems(system.workspace, system.db_path, job)
        if job.state != jobs.SUCCEEDED:
            problems.append(f"{job.id} ended {job.state}")
        if not finals_of(system.workspace, job):
            result.lost += 1
        result.check(not problems, f"{label}: " + "; ".join(problems))


async def slack_side(outage: float = 3.0, storm: int = 40, speed: float = 200.0,
                     jobs_each: int = 3) -> CaseResult:
    """Outage, 429 storm, duplicate deliveries, forged/stale/replayed signatures."""
    result = CaseResult(f"slack side (outage {outage:g}s)")
    async with running_system(speed=speed) as system:
        system.workspace.limits.enabled = False
        system.runtime.notifier.pacer = scaled_pacer(1000)
        for i in range(jobs_each * 2 + 3):
            system.world.add_server(f"s{i}")
        ws = system.workspace
        before = len(ws.calls())
        await _run_jobs_through(system, [f"s{i}" for i in range(jobs_each)],
                                lambda: ws.start_outage(outage), result, "outage",
                                within=outage + 60)
        if not any(c.status == 503 for c in ws.calls()[before:]):
            result.problems.append("the outage was never hit")
        before = len(ws.calls())
        await _run_jobs_through(system, [f"s{i}" for i in range(jobs_each, 2 * jobs_each)],
                                lambda: ws.start_storm(storm, retry_after=1), result, "429 storm",
                                within=storm + 60)
        if not any(c.status == 429 for c in ws.calls()[before:]):
            result.problems.append("the 429 storm was never hit")
        # Slack retries a delivery it thinks timed out: one job, however many copies.
        deliverer = system.deliverer
        server = f"s{2 * jobs_each}"
        first = await system.command("alice", "#ops", f"create {server} --now")
        again = [await deliverer.redeliver(retry_num=n) for n in (1, 2, 3)]
        await system.settle(within=60)
        found = await system.runtime.store.run(Store.list_jobs, server=server, limit=10)
        result.check(first.status_code == 200 and len(found) == 1
                     and all(a.status_code == 200 for a in again),
                     f"redelivery: {len(found)} jobs from one command delivered 4 times")
        # Forged, stale and replayed requests are refused and change nothing.
        forged_server, stale_server = f"s{2 * jobs_each + 1}", f"s{2 * jobs_each + 2}"
        forged = await deliverer.slash_command("alice", "#ops", f"create {forged_server} --now",
                                               bad_signature=True)
        stale = await deliverer.slash_command("alice", "#ops", f"create {stale_server} --now",
                                              stale=True)
        genuine = deliverer.deliveries[0]  # accepted long ago (in request terms)
        old = str(int(time.time()) - 310)
        replayed = await deliverer.http.post(system.bot_url, content=genuine.body.encode(),
                                             headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": old,
            "X-Slack-Signature": sign(SIGNING_SECRET, old, genuine.body)})
        for label, response, ref in (("forged", forged, forged_server),
                                     ("stale", stale, stale_server),
                                     ("replayed", replayed, "s0")):
            count = len(await system.runtime.store.run(Store.list_jobs, server=ref, limit=10))
            expected = 1 if ref == "s0" else 0
            result.check(response.status_code == 401 and count == expected,
                         f"{label}: HTTP {response.status_code}, {count} jobs for {ref}")
    return result


# --- 3b. a flaky Slack and a misbehaving cloud ------------------------------------------------

# Slack's transient no's (docs.slack.dev, chat.postMessage errors) and a proxy's HTML page.
SLACK_NOS: tuple[dict[str, Any], ...] = ({"error": "internal_error", "count": 2}, {"error": "fatal_error"},
             {"error": "ratelimited", "retry_after": 1}, {"error": "service_unavailable"},
             {"error": "request_timeout"}, {"error": "internal_error", "body": "html"},
             {"error": "bad_gateway", "status": 502, "body": "html"})
# A 200 the client cannot use: an HTML page, JSON of the wrong shape, more than 8 MB.
CLOUD_NOS: tuple[dict[str, Any], ...] = ({"kind": "garbage", "path": r"/servers/detail", "count": 2},
             {"kind": "wrong_shape", "path": r"/servers/detail", "count": 1},
             {"kind": "huge", "path": r"/images", "count": 1, "size": 12 * 1024 * 1024},
             {"kind": "garbage", "path": r"/images", "count": 1})
LAB = "lab.sandbox"
LAB_CHANNEL = "C0ALERTS"  # the policy runs this channel's jobs on the cloud "lab"


def _clouds_yaml(path: Path) -> None:
    path.write_text(
        "clouds:\n  lab:\n    auth:\n      auth_url: http://" + LAB + "/identity/v3\n"
        "      username: demo\n      password: secret\n      project_name: demo\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n")


async def flaky(jobs_each: int = 2, speed: float = 200.0) -> CaseResult:
    """Slack that says no for a moment (transient ok:false, non-JSON answers), a cloud that
    answers garbage, wrongly shaped or huge bodies, and one of two clouds failing outright:
    every job still ends with its whole thread, once; the failing cloud delays only its own
    jobs and is reported once, and once when it is back."""
    result = CaseResult("flaky Slack and cloud")
    with tempfile.TemporaryDirectory(prefix="imagebot-flaky-") as tmp:
        clouds, policy = Path(tmp) / "clouds.yaml", Path(tmp) / "imagebot.toml"
        _clouds_yaml(clouds)
        policy.write_text(f'[channels.{LAB_CHANNEL}]\ncloud = "lab"\n')
        saved = os.environ.get("OS_CLIENT_CONFIG_FILE")
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        try:
            async with running_system(speed=speed, policy_path=policy) as system:
                system.workspace.limits.enabled = False
                system.runtime.notifier.pacer = scaled_pacer(1000)
                for i in range(jobs_each * 2 + 2):
                    system.world.add_server(f"k{i}")
                await _flaky_slack(system, result, [f"k{i}" for i in range(jobs_each)])
                await _flaky_cloud(system, result,
                                   [f"k{i}" for i in range(jobs_each, 2 * jobs_each)])
                await _one_cloud_down(system, result, f"k{2 * jobs_each}",
                                      f"k{2 * jobs_each + 1}")
        finally:
            if saved is None:
                os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
            else:
                os.environ["OS_CLIENT_CONFIG_FILE"] = saved
    return result


async def _flaky_slack(system: System, result: CaseResult, servers: list[str]) -> None:
    ws = system.workspace
    before = len(ws.calls())

    def disturb() -> None:
        from sandbox.slack.model import ApiFault

        for no in SLACK_NOS:
            ws.add_fault(ApiFault("chat.postMessage", str(no["error"]),
                                  status=int(no.get("status", 200)),
                                  remaining=int(no.get("count", 1)),
                                  retry_after=no.get("retry_after"),
                                  body=str(no.get("body", "json"))))

    await _run_jobs_through(system, servers, disturb, result, "transient ok:false", within=120)
    said_no = [c for c in ws.calls()[before:] if c.error]
    if len(said_no) < sum(int(n.get("count", 1)) for n in SLACK_NOS):
        result.problems.append(f"only {len(said_no)} of the scripted Slack no's were hit")


async def _flaky_cloud(system: System, result: CaseResult, servers: list[str]) -> None:
    before = system.world.stats_snapshot()

    def disturb() -> None:
        for no in CLOUD_NOS:
            params = dict(no)
            system.world.inject(str(params.pop("kind")), **params)

    await _run_jobs_through(system, servers, disturb, result, "garbage/huge cloud answers",
                            within=120)
    if system.world.http_faults:
        result.problems.append(f"{len(system.world.http_faults)} cloud faults never hit")
    del before


async def _one_cloud_down(system: System, result: CaseResult, main_server: str,
                          lab_server: str) -> None:
    """The cloud "lab" answers garbage to everything while a job waits on it; the default
    cloud's job finishes meanwhile; then lab recovers and its job finishes too."""
    ws = system.workspace
    system.world.inject("garbage", path="/", host=LAB, count=None)
    lab_answer = await system.command("alice", "#ops-alerts", f"create {lab_server} --now")
    main_answer = await system.command("alice", "#ops", f"create {main_server} --now")
    store = system.runtime.store

    async def job_of(server: str) -> Job | None:
        found = await store.run(Store.list_jobs, server=server, limit=5)
        return found[0] if len(found) == 1 else None

    async def main_done_and_lab_reported() -> bool:
        main = await job_of(main_server)
        reported = [m for m in ws.channel_messages(LAB_CHANNEL) if "is failing" in (m.text or "")]
        return bool(main and main.state in jobs.TERMINAL and reported)

    try:
        await system.wait_for(main_done_and_lab_reported, within=90)
    except TimeoutError:
        pass
    main, lab = await job_of(main_server), await job_of(lab_server)
    result.check(main_answer.status_code == 200 and main is not None
                 and main.state == jobs.SUCCEEDED,
                 f"other cloud's job while lab was down: {main and main.state}")
    if main is None or main.state not in jobs.TERMINAL:
        result.lost += 1
    waiting = lab is not None and lab.state not in jobs.TERMINAL
    for _ in range(3):  # more failing ticks: still one report
        system.runtime.poke()
        await asyncio.sleep(0.1)
    downs = [m for m in ws.channel_messages(LAB_CHANNEL) if "is failing" in (m.text or "")]
    result.check(waiting and len(downs) == 1,
                 f"lab job {lab and lab.state} while lab was down; {len(downs)} reports")
    system.world.inject("clear")
    try:
        await system.settle(within=90)
    except TimeoutError as exc:
        result.problems.append(f"after lab recovered: {exc}")
    lab = await job_of(lab_server)
    backs = [m for m in ws.channel_messages(LAB_CHANNEL) if "answers again" in (m.text or "")]
    finals = ([m for m in ws.thread(LAB_CHANNEL, lab.thread_ts) if m.reply_broadcast]
              if lab is not None and lab.thread_ts else [])
    result.check(lab_answer.status_code == 200 and lab is not None
                 and lab.state == jobs.SUCCEEDED and len(finals) == 1 and len(backs) == 1,
                 f"lab job after recovery: {lab and lab.state}, {len(finals)} finals, "
                 f"{len(backs)} recovery notes")
    if lab is None or not finals:
        result.lost += 1


# --- 4. fuzzed /image texts ------------------------------------------------------------------

WORDS = ("create", "schedule", "status", "list", "cancel", "images", "help", "--now", "--name",
         "--note", "--keep", "web-1", "db-1", "app", "J1", "J999", "weekly", "daily", "monday",
         "03:00", "25:99", "keep", "7", "0", "-1", "Europe/Berlin", "Mars/Olympus", "<!channel>",
         "<@U0BOB>", "`", "*bold*", "\u202e", "'", '"', "--", "=", "now", "image", "server",
         "🙂", "ü", "\t", "name=x", "--name=", "--keep=99999", "off", "on", "delete", "approve")


def fuzz_texts(n: int, seed: int = 10) -> list[str]:
    """`n` deterministic fuzz inputs: grammar words, junk, control and long text."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.7:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 7)))
        elif roll < 0.85:
            text = "".join(chr(rng.choice((rng.randint(32, 126), rng.randint(0, 0x2FFF))))
                           for _ in range(rng.randint(1, 60)))
        elif roll < 0.95:
            text = rng.choice(WORDS[:7]) + " " + "x" * rng.randint(200, 5000)
        else:
            text = "".join(rng.choice(" \t\n\r\x00\x1b\u200b") for _ in range(rng.randint(0, 9)))
        out.append(text)
    return out


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def fuzz(n: int = 300, loopback: bool = False, speed: float = 500.0,
               batch: int = 10) -> CaseResult:
    """`n` fuzzed texts through the signed HTTP path: each answered, no listener crash."""
    result = CaseResult(f"fuzzed /image texts ({n})")
    errors = _Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        async with running_system(speed=speed, loopback=loopback) as system:
            system.workspace.limits.enabled = False
            system.runtime.notifier.pacer = scaled_pacer(1000)
            texts = fuzz_texts(n)
            pending: list[tuple[str, httpx.Response, str]] = []
            for start in range(0, n, batch):
                chunk = texts[start:start + batch]
                answers = await asyncio.gather(*(system.command("alice", "#ops", t)
                                                 for t in chunk), return_exceptions=True)
                for text, answer in zip(chunk, answers, strict=True):
                    if isinstance(answer, BaseException):
                        result.check(False, f"{text[:40]!r}: {type(answer).__name__}")
                        continue
                    rid = system.deliverer.deliveries[-1].response_url_id
                    pending.append((text, answer, rid))
            rids = {d.body: d.response_url_id for d in system.deliverer.deliveries}
            await asyncio.sleep(0.5)  # answers sent after the ack (images) arrive via respond
            for text, answer, _ in pending:
                rid = rids.get(_body_of(system, answer), "")
                ru = system.workspace.response_urls.get(rid)
                answered = answer.status_code == 200 and (bool(answer.text.strip())
                                                          or bool(ru and ru.posts))
                result.check(answered, f"{text[:40]!r}: HTTP {answer.status_code}, "
                                       f"body {answer.text[:40]!r}")
    finally:
        root.removeHandler(errors)
    crashes = [r for r in errors.records if "unhandled" in r.getMessage().lower()
               or r.name.startswith("slack_bolt")]
    for record in crashes[:5]:
        result.problems.append(f"crash: {record.getMessage()[:120]}")
    result.lost = len(crashes)
    return result


def _body_of(system: System, answer: httpx.Response) -> str:
    content = answer.request.content
    return content.decode() if isinstance(content, bytes) else ""


# --- 5. secrets --------------------------------------------------------------------------------


async def secrets(speed: float = 200.0) -> CaseResult:
    """No secret in DEBUG logs, Web API calls, messages or answers; the DB file is 0600."""
    result = CaseResult("secrets and DB mode")
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        async with running_system(speed=speed) as system:
            settings = system.runtime.settings
            configure_logging(json_lines=True, secrets=settings.secrets(), level=logging.DEBUG)
            handler = root.handlers[0]
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(buffer)
            system.workspace.limits.enabled = False
            await system.command("alice", "#ops", "create web-1 --now")
            system.world.inject("revoke_tokens")  # forces a re-authentication with the password
            await system.command("alice", "#ops", "create web-2 --now")
            await system.command("alice", "#ops", "images web-1")
            await system.command("alice", "#ops", "status")
            await system.deliverer.slash_command("alice", "#ops", "status", bad_signature=True)
            system.workspace.start_storm(3)
            await system.settle(within=60)
            system.world.inject("http", path=r"/servers", status=401, count=3)
            await system.command("alice", "#ops", "create db-1 --now")
            await system.settle(within=60)
            tokens = list(system.world.tokens)
            db_path = system.db_path
            modes = {p.name: stat.S_IMODE(os.stat(p).st_mode)
                     for p in db_path.parent.glob(db_path.name + "*")}
            ws = system.workspace
            slack_text = json.dumps([c.params for c in ws.call_log], default=str)
            slack_text += json.dumps([m.to_api() for ms in ws.messages.values() for m in ms])
            slack_text += json.dumps([e.to_api() for e in ws.ephemeral_messages])
            slack_text += json.dumps([ru.posts for ru in ws.response_urls.values()],
                                     default=str)
    finally:
        root.handlers[:], root.level = saved
    logs = buffer.getvalue()
    needles = {"bot token": re.escape(BOT_TOKEN), "signing secret": re.escape(SIGNING_SECRET),
               "cloud password": r"""password\W{0,6}secret\b""",
               "app credential secret": "demo-app-secret", "Rackspace API key": "demo-api-key"}
    needles.update({f"cloud token {t[:6]}…": re.escape(t) for t in tokens})
    for where, text in (("logs", logs), ("Slack", slack_text)):
        for label, pattern in needles.items():
            hit = re.search(pattern, text)
            result.check(hit is None, f"{label} appears in {where}: "
                         f"…{text[max(0, hit.start() - 60):hit.end() + 20]!r}…" if hit else "")
    if not logs.strip():
        result.problems.append("no DEBUG log output was captured")
    for name, mode in modes.items():
        result.check(mode == 0o600, f"{name} has mode {oct(mode)}")
    result.lost = 0
    return result
