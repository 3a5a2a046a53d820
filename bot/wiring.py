"""The one place where clients, the store, the engine, the notifier and the Slack app meet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.cloud.client import CloudClient
from bot.cloud.config import CloudConfig, load_cloud_config
from bot.cloud.pool import CloudPool
from bot.config import Settings
from bot.imaging.engine import Engine
from bot.imaging.job_ids import skip_past_cloud_job_ids
from bot.imaging.jobs import Job, PhaseDeadlines
from bot.logs import LearnedSecrets
from bot.metrics import CountingTransport, Metrics
from bot.policy import Policy
from bot.priority import AcksFirst, TakingTurns
from bot.scheduling.service import ScheduleService
from bot.slack import home as home_slack
from bot.slack import imaging as imaging_slack
from bot.slack import schedules as schedules_slack
from bot.slack.app import SIGNATURE_CHECKED, SlackDeps, bolt_logger, build_app
from bot.slack.direct import slack_group_members
from bot.slack.directory import ChannelDirectory
from bot.slack.edge import EDGE_CHECKED, EdgeGuard
from bot.slack.home import HomeTabs
from bot.slack.identity import Identity
from bot.slack.imaging import ImagingListeners
from bot.slack.notifier import Notifier
from bot.slack.pacing import SlackPacer
from bot.slack.routing import AfterAck, Channels, LazyWork, Router
from bot.slack.schedules import ScheduleCommands, slack_group_resolver
from bot.slack.web import SlackWeb, make_web_client, web_session
from bot.store import AsyncStore, Store

log = logging.getLogger(__name__)


# On stop, answers still being prepared after their ack get this long before they are cancelled.
LAZY_DRAIN_SECONDS = 2.0


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Everything a running bot is made of; `start()` launches the loops, `stop()` ends them."""

    settings: Settings
    store: AsyncStore
    cloud: CloudPool
    web: SlackWeb
    app: AsyncApp
    router: Router  # `/image`, as the app routes it (tests and benchmarks call it directly)
    listeners: ImagingListeners
    engine: Engine
    notifier: Notifier
    clock: Callable[[], datetime]
    metrics: Metrics
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    schedules: ScheduleService | None = None
    schedule_commands: ScheduleCommands | None = None
    identity: Identity | None = None
    # Bolt's lazy listeners (answers prepared after their ack), countable and drained on stop.
    lazy: LazyWork | None = None
    # Cloud tokens the clients learned at login, masked in logs by value (bot.logs).
    learned: LearnedSecrets = field(default_factory=LearnedSecrets)
    home: HomeTabs | None = None  # the App Home tabs (bot.slack.home)
    # Requests in flight; the background loops' store, cloud and Slack calls wait for them.
    acks_first: AcksFirst = field(default_factory=AcksFirst)

    def start(self) -> None:
        """Start the engine and notifier loops on the running event loop."""
        self.stop_event.clear()
        if self.identity is not None:
            self.identity.start()  # auth.test, retried with back-off until Slack answers
        self.tasks = [
            asyncio.create_task(self.engine.run(self.stop_event), name="engine"),
            asyncio.create_task(self.notifier.run(self.stop_event), name="notifier"),
        ]
        if self.schedules is not None:
            self.tasks.append(asyncio.create_task(self.schedules.run(self.stop_event),
                                                  name="schedules"))
        if self.home is not None:
            self.tasks.append(asyncio.create_task(self.home.run(self.stop_event), name="home"))

    async def stop(self) -> None:
        """Stop loops and close clients and the store."""
        self.stop_event.set()
        self.engine.wake.set()
        self.notifier.wake.set()
        if self.schedules is not None:
            self.schedules.wake.set()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []
        if self.lazy is not None:
            await self.lazy.drain(LAZY_DRAIN_SECONDS)
        if self.identity is not None:
            await self.identity.stop()
        await self.cloud.aclose()
        await self.store.close()
        await self.listeners.store.close()
        await home_slack.close(self.home)
        if self.notifier.store is not self.store:
            await self.notifier.store.close()
        with contextlib.suppress(Exception):
            session = getattr(self.web.client, "session", None)
            if session is not None:
                await session.close()

    async def background_work(self) -> int:
        """Work still owed to Slack outside the outbox: answers being prepared after their ack
        (images lists, change requests) and approval messages waiting to be rewritten."""
        count = self.lazy.pending if self.lazy is not None else 0
        if self.schedule_commands is not None:
            count += len(await self.store.run(Store.dirty_requests))
        count += await self.store.run(Store.verify_work)  # restore tests
        count += await self.store.run(Store.fleet_work)  # fleet runs' summaries and cards
        return count

    def poke(self) -> None:
        """Something changed: wake the engine and the notifier now rather than at their tick."""
        self.engine.wake.set()
        self.notifier.wake.set()
        if self.schedules is not None:
            self.schedules.wake.set()
        if self.home is not None:
            self.home.changed()


def policy_clouds(cloud: CloudPool, policy: Policy) -> list[CloudClient]:
    """The default cloud and every cloud a channel policy names (unknown names are skipped:
    the policy check reports them when a channel uses them)."""
    clients = [cloud.default]
    names = {c.cloud for c in (policy.fallback, *policy.channels.values()) if c.cloud}
    for name in sorted(names):
        with contextlib.suppress(Exception):
            client = cloud.get(name)
            if client not in clients:
                clients.append(client)
    return clients


async def build_runtime(settings: Settings, *, cloud_config: CloudConfig | None = None,
                        cloud_transport: httpx.AsyncBaseTransport | None = None,
                        clock: Callable[[], datetime] = utc_now,
                        deadlines: PhaseDeadlines | None = None,
                        tick_scale: float | None = None,
                        slack_rate_scale: float | None = None,
                        learned: LearnedSecrets | None = None) -> Runtime:
    """Wire a runtime from settings. Tests inject a cloud transport and a clock. Every cloud
    token a login yields is added to `learned` (the log filter's registry, see
    `configure_logging`; a new one when not given: `Runtime.learned`)."""
    learned = learned if learned is not None else LearnedSecrets()
    tick_scale = settings.tick_scale if tick_scale is None else tick_scale
    slack_rate_scale = settings.slack_rate_scale if slack_rate_scale is None else slack_rate_scale
    policy = Policy.load(settings.policy_path) if settings.policy_path else Policy.default()
    config = cloud_config or load_cloud_config(settings.cloud_name)
    # The bot's connections take turns on one lock around their write transactions instead
    # of meeting on SQLite's sleeping busy handler (`StoreBase.writers`).
    writers = threading.RLock()
    store = await AsyncStore.open(settings.db_path, clock=clock, writers=writers)
    metrics = Metrics()
    # The engine, notifier and scheduler work through `store`, the cloud clients and `web`:
    # each of their calls first lets the acks in flight finish (bot/priority.py).
    acks_first = AcksFirst()
    store.before_call = acks_first.turn

    def client_for(cloud_config: CloudConfig) -> CloudClient:
        # The transport carries the cloud's resolved TLS settings (cacert, insecure, cert+key).
        return CloudClient(cloud_config, transport=TakingTurns(CountingTransport(
            cloud_transport or httpx.AsyncHTTPTransport(verify=cloud_config.ssl_verify()),
            metrics), acks_first.turn), on_token=learned.add)

    # Channel policies may name other clouds.yaml entries; each gets a client on first use.
    cloud = CloudPool(client_for(config), lambda name: client_for(load_cloud_config(name)),
                      default_name=settings.cloud_name or config.name)
    # Before the first create: no new job may get an id an image in a cloud already carries.
    await skip_past_cloud_job_ids(store, policy_clouds(cloud, policy))
    client = make_web_client(settings.bot_token, settings.slack_api_url, session=web_session(),
                             counted_429=lambda method: metrics.slack_429s.labels(method).inc())
    web = SlackWeb(client, metrics)
    web.before_call = acks_first.turn
    # The notifier's few small writes per post (mark_posting, mark_sent) get a connection and
    # thread of their own too: queued behind a tick's engine commits they held every post of
    # a channel back by more than Slack's one-second spacing (issue #17).
    outbox_store = await AsyncStore.open(settings.db_path, clock=clock, writers=writers)
    outbox_store.before_call = acks_first.turn
    notifier = Notifier(outbox_store, web, clock=clock, pacer=SlackPacer(scale=slack_rate_scale))
    metrics.watch_slack_pacing(lambda: notifier.pacer.workspace_post_limit(notifier.pace_clock()),
                               lambda: notifier.pacer.calmed_channels(notifier.pace_clock()))
    def alerts_for(job: Job) -> tuple[str | None, str | None]:
        # The same lookup as commands and clicks: by id, then by the name stored with the job.
        channel_policy = policy.for_channel(job.channel, job.channel_name)
        return channel_policy.notify_channel, channel_policy.mention

    notifier.notify_for = lambda job: alerts_for(job)[0]
    engine = Engine(store, cloud, clock=clock, deadlines=deadlines, tick_scale=tick_scale,
                    on_change=notifier.wake.set, metrics=metrics, alerts_for=alerts_for)
    # Slack waits on the listeners (3 s to ack); the engine and notifier write in bursts.
    # A connection and thread of their own keeps the acks from queueing behind engine writes
    # (SQLite in WAL mode serialises the writes themselves, which take a millisecond).
    interactive = await AsyncStore.open(settings.db_path, clock=clock, writers=writers)
    directory = ChannelDirectory(web, clock)
    router = Router(Channels(policy, directory=directory,
                             member_groups=slack_group_resolver(web)))
    identity = Identity(client)
    # Answers after an ack: on `web`'s session, counted by `lazy` (drained on stop).
    lazy = LazyWork(bolt_logger())
    after = AfterAck(lazy, web.answer)
    app = build_app(router, client, signing_secret=settings.signing_secret, identity=identity,
                    after=after)
    deps = SlackDeps(router=router, store=interactive, cloud=cloud, clock=clock, after=after)
    listeners = imaging_slack.register(app, deps)
    runtime = Runtime(settings=settings, store=store, cloud=cloud, web=web, app=app,
                      router=router, listeners=listeners, engine=engine, notifier=notifier,
                      clock=clock, metrics=metrics, identity=identity, lazy=lazy, learned=learned,
                      acks_first=acks_first)
    listeners.on_new_work = runtime.poke
    # Schedules and approvals: their commands and buttons, the loop in start().
    schedules = ScheduleService(store, cloud, policy, clock=clock, web=web,
                                on_new_work=runtime.poke,
                                member_groups=router.channels.member_groups, directory=directory,
                                group_members=slack_group_members(web), tick_scale=tick_scale)
    deps.schedules = schedules
    runtime.schedule_commands = schedules_slack.register(app, deps)
    runtime.schedules = schedules
    # The App Home tab: its own read connection (it never queues behind the engine's writes
    # or an ack's), refreshed by every change the engine or a listener reports.
    home = HomeTabs(await AsyncStore.open(settings.db_path, clock=clock, writers=writers), web,
                    router.channels, clock, schedules=schedules, identity=identity,
                    decide=runtime.schedule_commands.on_click, scale=slack_rate_scale)
    runtime.home = home_slack.register(app, home, after)

    def on_engine_change() -> None:
        notifier.wake.set()
        home.changed()

    engine.on_change = on_engine_change
    return runtime


HEALTH_CHECK_TIMEOUT = 5.0  # seconds per check: a hung dependency is an unhealthy one


async def _check(probe: Awaitable[Any]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(probe, HEALTH_CHECK_TIMEOUT)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


async def health(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """DB (a clean read and a committed write), cloud authentication, Slack reachable, engine
    running; each with ok and, for the operator only, a short detail (never an URL)."""
    checks: dict[str, Any] = {"db": await _check(runtime.store.run(Store.health_probe))}
    if checks["db"]["ok"]:
        with contextlib.suppress(Exception):
            checks["db"]["outbox_depth"] = await runtime.store.run(Store.outbox_depth)
    checks["cloud"] = await _check(runtime.cloud.default.endpoints())
    checks["slack"] = await _check(runtime.web.client.auth_test())
    if runtime.identity is not None and runtime.identity.current is None:
        checks["slack"] = {"ok": False, "error": "auth.test has not succeeded yet"}
    checks["engine"] = {"ok": bool(runtime.tasks) and not runtime.tasks[0].done(),
                        "ticks": runtime.engine.ticks}
    return all(c["ok"] for c in checks.values()), checks


def ops_routes(runtime: Runtime, *, details: bool) -> list[Route]:
    """`/healthz` and `/metrics`, for the HTTP app or a separate port in Socket Mode.

    `/healthz` is unauthenticated: it says ok / not ok (200 / 503) and, only with `details`
    (IMAGEBOT_HEALTH_DETAILS, or the loopback metrics port), which check failed."""

    async def healthz(request: Request) -> Response:
        healthy, checks = await health(runtime)
        body: dict[str, Any] = {"ok": healthy}
        if details:
            body["checks"] = checks
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics(request: Request) -> Response:
        return Response(runtime.metrics.render(), media_type=runtime.metrics.content_type)

    return [Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"])]


def http_app(runtime: Runtime) -> Starlette:
    """The HTTP face: Slack's request URL plus health and metrics."""
    handler = AsyncSlackRequestHandler(runtime.app)

    async def events(request: Request) -> Response:
        # The edge checked the signature (it marks the scope): Bolt does not check it again.
        checked = request.scope.get(EDGE_CHECKED) is True
        return await handler.handle(request, {SIGNATURE_CHECKED: True} if checked else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    settings = runtime.settings
    # EdgeGuard sees every request before Starlette or Bolt read a byte of its body.
    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]),
                             *ops_routes(runtime, details=settings.health_details)],
                     middleware=[Middleware(EdgeGuard, signing_secret=settings.signing_secret,
                                            max_body=settings.http_max_body,
                                            receive_timeout=settings.http_timeout,
                                            serving=runtime.acks_first.serving)],
                     lifespan=lifespan)
