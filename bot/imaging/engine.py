"""The job engine: the only place that does cloud work for jobs.

One loop serves every job. Each tick it submits queued jobs, reconciles jobs whose createImage
outcome is unknown, and observes all in-flight jobs with ONE batched `observe` call. The decision
for each observation is the pure `jobs.advance`; this module only moves data between the cloud,
that function and the store. Every state change is committed together with the outbox items that
tell Slack about it, so a crash at any point loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.blocks import user_text
from bot.cloud.client import CloudClient
from bot.cloud.models import Image, Server
from bot.cloud.pool import CloudPool
from bot.errors import (
    AuthFailed,
    CloudError,
    CloudRejected,
    CloudUnavailable,
    ConfigError,
    ConflictingUpdate,
)
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.imaging.failures import classify, failure_fields
from bot.imaging.fanout import fan_out, grouped, meanwhile
from bot.imaging.health import CloudHealth
from bot.imaging.images import JOB_METADATA_KEY, default_image_name, image_metadata
from bot.imaging.jobs import Job, PhaseDeadlines
from bot.imaging.verifier import Verifier
from bot.imaging.verify import VerifyLimits
from bot.logs import job_context
from bot.loops import run_until
from bot.metrics import Metrics
from bot.scheduling.messages import alert
from bot.store import AsyncStore, OutboxItem, Store
from bot.vocabulary import FailureCode, JobState, OutboxKind

log = logging.getLogger(__name__)

CURSOR_KEY = "observe_cursor"
MAX_CREATE_ATTEMPTS = 5
# The events that each stand for one createImage attempt: the first is the `submitting`
# transition itself (committed right before the call), each retry records its own.
ATTEMPT_EVENTS = frozenset({"submitting", "create_attempt"})
QUEUE_DEADLINE = timedelta(minutes=30)  # a queued job the cloud never accepted fails after this
IMAGE_SWEEP_TICKS = 5
# The events that get a thread reply: where a person must or may act (issue #17). Packaging and
# uploading are card edits; the result is the final reply.
THREAD_EVENTS = frozenset({"phase:snapshotting", "writes_may_resume"})


def by_cloud(items: Sequence[Job]) -> dict[str | None, list[Job]]:
    """Jobs grouped by the cloud they run on, in their original order."""
    groups: dict[str | None, list[Job]] = {}
    for job in items:
        groups.setdefault(job.cloud, []).append(job)
    return groups


class Engine:
    """Drives jobs through the cloud. Tests call `tick()`; the service calls `run()`."""

    def __init__(self, store: AsyncStore, cloud: CloudClient | CloudPool, *,
                 clock: Callable[[], datetime],
                 deadlines: PhaseDeadlines | None = None,
                 tick_scale: float = 1.0,
                 on_change: Callable[[], None] | None = None,
                 metrics: Metrics | None = None,
                 alerts_for: Callable[[Job], tuple[str | None, str | None]] | None = None,
                 verify_limits: VerifyLimits | None = None) -> None:
        self.store = store
        self.clouds = CloudPool.of(cloud)
        self.clock = clock
        self.deadlines = deadlines or PhaseDeadlines()
        self.tick_scale = tick_scale
        self.on_change = on_change or (lambda: None)
        self.metrics = metrics
        # (notification channel, mention) of a job's channel policy, for alerts.
        self.alerts_for = alerts_for or (lambda job: (None, None))
        self.wake = asyncio.Event()
        self.ticks = 0
        self._observed_at: dict[str | None, datetime] = {}  # per cloud, for rate pacing
        self.health = CloudHealth(store, clock=clock, alerts_for=self.alerts_for,
                                  on_change=lambda: self.on_change())
        self.verifier = Verifier(store, self.clouds, clock=clock, limits=verify_limits,
                                 alerts_for=self.alerts_for, on_change=lambda: self.on_change())

    # --- service loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a new job wakes the loop early through `wake`."""
        await run_until(stop, self.wake, self.tick, name="engine", fallback=30.0,
                        scale=self.tick_scale)

    async def tick(self) -> float:
        """One pass over all jobs; returns the seconds until the next pass should run.

        Each cloud's jobs are worked on concurrently and apart: a cloud that fails (refuses
        our credentials, answers garbage, drips) delays only its own jobs, is reported once in
        the notification channel of those jobs' channel policies, and once more when it is
        back."""
        self.ticks += 1
        started = self.clock()
        waiting = [j for j in await self.store.run(Store.list_jobs,
                                                   states=[jobs.AWAITING_CONFIRMATION], limit=200)
                   if not j.server_id]
        current = await self.store.run(Store.in_flight_jobs)
        groups = by_cloud(waiting + current)
        results = await asyncio.gather(*(self._cloud_pass(cloud, group)
                                         for cloud, group in groups.items()),
                                       return_exceptions=True)
        in_flight = await self.store.run(Store.in_flight_jobs)
        if self.metrics:
            self.metrics.in_flight(in_flight)
        floor = 0.0  # the slowest cloud's published rate limits pace the next tick
        for result in results:  # a bug in one cloud's pass still shows, after all passes ran
            if isinstance(result, BaseException):
                raise result
            floor = max(floor, result)
        verifying = await self.verifier.tick()  # restore tests, after the jobs they wait on
        interval = min(max(jobs.poll_interval(in_flight), floor), verifying)
        # The interval is a period, from this tick's start: a long tick does not push every
        # later look back (its time, in unscaled seconds, counts against the wait).
        spent = (self.clock() - started).total_seconds() / (self.tick_scale or 1.0)
        return max(interval - spent, 0.0)

    async def _paced_observe(self, cloud: str | None, group: list[Job]) -> float:
        """Observe unless the cloud's published rate limits (Nova `/limits`, read once; e.g.
        Rackspace's `GET *changes-since*` a few a minute) say it is too soon since the last look
        (an early wake-up, a look while submits go on); returns the poll floor in seconds."""
        client = self._client(cloud)
        try:
            await client.rate_limits()
        except CloudError as exc:
            log.info("cannot read the rate limits of cloud %s: %s", cloud, exc)
        floor = client.poll_floor(len({j.server_id for j in group}))
        last = self._observed_at.get(cloud)
        now = self.clock()
        if last is not None and floor and (now - last).total_seconds() < floor * self.tick_scale:
            return floor
        self._observed_at[cloud] = now
        await self._observe(cloud, group)
        return floor

    async def _cloud_pass(self, cloud: str | None, group: list[Job]) -> float:
        """Resolve, submit, reconcile and observe the jobs of one cloud (the copies under way
        also while the submits go on: `meanwhile`); returns the cloud's poll floor."""
        floor = 0.0
        self.health.begin(cloud)
        try:
            advance = asyncio.ensure_future(self._advance_cloud(
                cloud, [j for j in group if j.state == jobs.AWAITING_CONFIRMATION],
                [j for j in group if j.state != jobs.AWAITING_CONFIRMATION]))
            await meanwhile(advance, jobs.COPY_POLL * (self.tick_scale or 1.0),
                            lambda: self._observe_in_flight(cloud))
            floor = await self._observe_in_flight(cloud)
        except (CloudError, ConfigError) as exc:  # the other clouds go on
            # Said once per failing streak; the notification channel hears it from the report.
            log.log(self.health.level(cloud, logging.ERROR), "cloud %s: %s", cloud or "default",
                    exc)
            self.health.troubled(cloud, exc)
        await self.health.report(cloud, cloud or self.clouds.default_name or "default", group)
        return floor

    async def _observe_in_flight(self, cloud: str | None) -> float:
        """Observe the cloud's jobs that have an image under way; the poll floor."""
        in_flight = [j for j in await self.store.run(Store.in_flight_jobs) if j.cloud == cloud]
        observing = [j for j in in_flight if j.image_id and j.state in jobs.CLOUD_PHASES]
        return await self._paced_observe(cloud, observing) if observing else 0.0

    # --- steps ----------------------------------------------------------------------------

    def _client(self, cloud: str | None) -> CloudClient:
        return self.clouds.get(cloud)

    async def _advance_cloud(self, cloud: str | None, waiting: list[Job],
                             current: list[Job]) -> None:
        """Resolve, submit and reconcile the jobs of one cloud."""
        try:
            self._client(cloud)
        except ConfigError as exc:  # the channel policy names a cloud clouds.yaml lacks
            for job in waiting + [j for j in current if j.state == jobs.QUEUED]:
                with job_context(job.id):
                    await self._fail(job, FailureCode.REJECTED, exc)
            return
        queued = [j for j in current if j.state == jobs.QUEUED]
        # One server listing per tick resolves every new job, however many arrived at once.
        found = await self._find_servers(cloud, [j.server_ref for j in waiting] +
                                         [j.server_id or j.server_ref for j in queued])
        # Servers our own in-flight jobs are imaging; grows as this tick submits jobs.
        busy: dict[str, Job] = {str(j.server_id): j for j in current if j.server_id}

        unresolved = {j.id for j in waiting}

        def server_key(job: Job) -> str:  # jobs on one server go in turn (`busy` is exact)
            got = found.get(job.server_ref if job.id in unresolved
                            else job.server_id or job.server_ref)
            return got.id if isinstance(got, Server) else f"ref:{job.server_id or job.server_ref}"

        async def step(job: Job) -> None:
            with job_context(job.id):
                if job.id in unresolved:
                    await self._resolve(job, found.get(job.server_ref), busy)
                elif job.state == jobs.QUEUED:
                    await self._submit(job, found.get(job.server_id or job.server_ref), busy)
                elif job.state == jobs.SUBMITTING:
                    await self._reconcile(job)

        await fan_out(grouped(waiting + current, server_key), step)

    async def _commit(self, job: Job, *, target: JobState | None, event: str,
                      fields: dict[str, Any], outbox: Sequence[OutboxItem],
                      actor: str | None = None, expected: str | None = None) -> Job | None:
        try:
            if target is None:
                result = await self.store.run(Store.update_job, job.id, fields=fields,
                                              event=event, outbox=outbox, expected=expected)
            else:
                result = await self.store.run(Store.transition, job.id, expected=job.state,
                                              target=target, event=event, actor=actor,
                                              fields=fields, outbox=outbox)
        except ConflictingUpdate:
            log.info("job %s changed under us (was %s); skipping", job.id, job.state)
            return None
        if self.metrics:
            self.metrics.job_changed(job, result)
        self.on_change()
        return result

    def _messages(self, before: Job, after: Job, events: Sequence[str]) -> list[OutboxItem]:
        """Outbox items for a change: thread replies per event and one parent refresh."""
        now = self.clock()
        items: list[OutboxItem] = []

        def to_thread(kind: OutboxKind, payload: dict[str, Any]) -> None:
            items.append(OutboxItem(kind=kind, channel=after.channel, job_id=after.id,
                                    thread_key=after.id, payload=payload))

        for event in events:
            if event not in THREAD_EVENTS:
                continue  # other phases show on the card (its timeline), not as replies
            reply = render.phase_reply(after, event, now)
            if reply:
                # Without a thread (bot not in the channel) only what a person must act on goes
                # through the response_url, which Slack allows five times.
                # "Copying now" is not needed when the card's first post already shows the
                # copy under way (`Store.card_posted`): `on_card` marks it so.
                to_thread(OutboxKind.REPLY,
                          dict(reply) | {"must_reach": event == "writes_may_resume"}
                          | ({"on_card": "copy"} if event == "phase:snapshotting" else {}))
        if after.state in jobs.TERMINAL and before.state not in jobs.TERMINAL:
            to_thread(OutboxKind.REPLY, dict(render.final_reply(after, now)) | {"final": True})
        to_thread(OutboxKind.UPDATE_PARENT, {})
        if after.error_code == jobs.STUCK and before.state not in jobs.TERMINAL \
                and not after.schedule_id:  # scheduled runs are alerted by the scheduler
            notify, mention = self.alerts_for(after)
            if notify and notify != after.channel:
                text = (f"Job {after.id} ({user_text(after.server_name or after.server_ref)})"
                        f" in <#{after.channel}> is stuck: {render.failure_text(after)}")
                items.append(OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=notify,
                                        payload=alert(text, mention)))
        return items

    async def _move(self, job: Job, target: JobState | None, fields: dict[str, Any],
                    events: Sequence[str], event: str) -> Job | None:
        after = dataclasses.replace(job, state=target or job.state, **fields)
        return await self._commit(job, target=target, event=event, fields=fields,
                                  outbox=self._messages(job, after, events))

    async def _fail(self, job: Job, code: FailureCode, exc: Exception) -> None:
        fields = failure_fields(code, exc) | {"finished_at": self.clock()}
        log.info("job %s failed (%s): %s", job.id, code, exc)
        if job.announced_at is None:
            await self._fail_privately(job, fields, f"failed:{code}")
            return
        await self._move(job, jobs.FAILED, fields, (), f"failed:{code}")

    async def _fail_privately(self, job: Job, fields: dict[str, Any], event: str) -> None:
        """A job without a public card fails: only the requester is told (an ephemeral, or
        the response_url where the bot is not in the channel), nothing goes to the channel."""
        after = dataclasses.replace(job, state=jobs.FAILED, **fields)
        note = OutboxItem(kind=OutboxKind.EPHEMERAL, channel=job.channel, job_id=job.id,
                          thread_key=job.id,
                          payload={"user": job.requested_by, **render.private_failure(after)})
        await self._commit(job, target=jobs.FAILED, event=event, fields=fields, outbox=[note])

    def _clash(self, job: Job, server: Server, busy: dict[str, Job]) -> Job | None:
        """Another in-flight job of ours on this server (seen only now that the server is
        resolved, e.g. one job typed by name and the other by id)."""
        other = busy.get(server.id)
        return other if other is not None and other.id != job.id else None

    async def _refuse_duplicate(self, job: Job, server: Server, other: Job) -> None:
        text = render.busy_here(other, self.clock(), server=server.name, channel=job.channel)
        log.info("job %s refused: %s", job.id, text)
        fields = self._server_fields(job, server) | {
            "error_code": jobs.DUPLICATE, "error": text, "finished_at": self.clock()}
        await self._fail_privately(job, fields, f"failed:{jobs.DUPLICATE}")

    async def _announce(self, job: Job, server: Server, busy: dict[str, Job], *,
                        target: JobState | None, event: str,
                        fields: dict[str, Any]) -> Job | None:
        """Commit a private job's resolution together with its card (post_parent): the first
        public trace of the job. Refused privately when another job images the server."""
        other = self._clash(job, server, busy)
        if other is not None:
            await self._refuse_duplicate(job, server, other)
            return None
        card = OutboxItem(kind=OutboxKind.POST_PARENT, channel=job.channel, job_id=job.id,
                          payload={})
        return await self._commit(job, target=target, event=event,
                                  fields=fields | {"announced_at": self.clock()}, outbox=[card],
                                  expected=job.state)

    async def _find_servers(self, cloud: str | None,
                            refs: list[str]) -> dict[str, Server | CloudRejected]:
        """Servers for `refs` (names or ids); {} when there are none or the cloud is away."""
        if not refs:
            return {}
        try:
            return await self._client(cloud).find_servers(set(refs))
        except (CloudUnavailable, AuthFailed) as exc:  # the jobs wait; reported per cloud
            log.log(self.health.level(cloud), "cloud unavailable while resolving servers: %s", exc)
            self.health.troubled(cloud, exc)
            return {}

    async def _resolve(self, job: Job, found: Server | CloudRejected | None,
                       busy: dict[str, Job]) -> None:
        """Fill in server facts for a job that waits for a click, so its message shows them;
        a typed create's card is posted only now, once the server is known."""
        if found is None:
            return  # the cloud was unavailable: next tick
        if isinstance(found, CloudRejected):
            await self._fail(job, classify(found), found)
            return
        if job.announced_at is None:
            await self._announce(job, found, busy, target=None, event="resolved",
                                 fields=self._server_fields(job, found))
            return
        await self._move(job, None, self._server_fields(job, found), (), "resolved")

    @staticmethod
    def _server_fields(job: Job, server: Any) -> dict[str, Any]:
        return {
            "server_id": server.id,
            "server_name": server.name,
            "volume_backed": server.volume_backed,
            "data_disks": tuple(server.data_disks),
            "task_state": server.task_state,
        }

    async def _submit(self, job: Job, server: Server | CloudRejected | None,
                      busy: dict[str, Job]) -> None:
        now = self.clock()
        if now - (job.confirmed_at or job.created_at) > QUEUE_DEADLINE:
            await self._fail(job, FailureCode.UNREACHABLE,
                             CloudUnavailable("the cloud did not accept the request in time"))
            return
        if server is None:
            return  # the cloud was unavailable while resolving: next tick
        if isinstance(server, CloudRejected):
            await self._fail(job, classify(server), server)
            return
        fields = self._server_fields(job, server)
        fields["image_name"] = job.image_name or default_image_name(
            dataclasses.replace(job, server_name=server.name), now)
        fields["submitted_at"] = now
        clicked: bool | None = None  # read from the job's events when needed
        if job.announced_at is None:  # `--now`: the card goes out with the submission
            submitting = await self._announce(job, server, busy, target=jobs.SUBMITTING,
                                              event="submitting", fields=fields)
            clicked = False  # no card was public before this commit: nobody pressed Start
        else:
            submitting = await self._commit(job, target=jobs.SUBMITTING, event="submitting",
                                            fields=fields, outbox=())
        if submitting is not None:
            busy[server.id] = submitting
            # The `submitting` event just committed is this first attempt's record.
            await self._create(submitting, clicked=clicked)

    async def _create(self, job: Job, *, clicked: bool | None = None) -> None:
        """Call createImage for a committed `submitting` job whose attempt is recorded (the
        `submitting` event, or a retry's `create_attempt`: issue 17, two store writes per
        `--now` job, not four)."""
        try:
            image_id = await self._client(job.cloud).create_image(
                str(job.server_id), str(job.image_name),
                                                     image_metadata(job))
        except (CloudUnavailable, AuthFailed) as exc:
            # The request may or may not have reached Nova: the next tick reconciles by metadata.
            # (Refused credentials are the cloud's problem, not this job's: it waits too.)
            log.warning("job %s: createImage outcome unknown: %s", job.id, exc)
            self.health.troubled(job.cloud, exc)
            return
        except CloudRejected as exc:
            await self._fail(job, classify(exc), exc)
            return
        await self._started(job, image_id, "image_snapshot_pending", clicked=clicked)

    async def _started(self, job: Job, image_id: str, task_state: str | None, *,
                       clicked: bool | None = None) -> None:
        now = self.clock()
        fields = {"image_id": image_id, "task_state": task_state, "snapshot_started_at": now,
                  "deadline_at": now + self.deadlines.snapshot}
        # Whoever pressed Start snapshot read "stop writes" on the card; a `--now` (or
        # scheduled) job's thread says it when the copy starts.
        if clicked is None:
            clicked = any(e.event == "confirmed"
                          for e in await self.store.run(Store.job_events, job.id))
        events = () if clicked else ("phase:snapshotting",)
        await self._move(job, jobs.SNAPSHOTTING, fields, events, "image_created")

    async def _reconcile(self, job: Job) -> None:
        """A job in `submitting`: find its image by metadata, or try createImage again."""
        try:
            found = await self._client(job.cloud).find_images_by_metadata(JOB_METADATA_KEY,
                                                                          job.id)
        except (CloudUnavailable, AuthFailed) as exc:
            self.health.troubled(job.cloud, exc)
            return
        except CloudRejected as exc:
            await self._fail(job, classify(exc), exc)
            return
        if found:
            image = max(found, key=lambda i: i.created_at)
            log.info("job %s: adopted image %s found by metadata", job.id, image.id)
            await self._started(job, image.id, job.task_state or "image_snapshot_pending")
            return
        attempts = sum(1 for e in await self.store.run(Store.job_events, job.id)
                       if e.event in ATTEMPT_EVENTS)
        if attempts >= MAX_CREATE_ATTEMPTS:
            await self._fail(job, FailureCode.UNREACHABLE, CloudUnavailable(
                f"createImage did not go through after {attempts} attempts"))
            return
        await self.store.run(Store.update_job, job.id, fields={}, event="create_attempt")
        await self._create(job)

    async def _observe(self, cloud: str | None, observing: list[Job]) -> None:
        """Two cheap looks per tick at most: which servers changed, then the images that can
        have changed (their server moved, or their upload waits on Glance alone). Every
        IMAGE_SWEEP_TICKS ticks all images are looked at, which catches an image deleted or
        killed behind the server's back."""
        client = self._client(cloud)
        cursor_key = CURSOR_KEY if cloud is None else f"{CURSOR_KEY}:{cloud}"
        raw_cursor = await self.store.run(Store.get_meta, cursor_key)
        since = datetime.fromisoformat(raw_cursor) if raw_cursor else None
        now = self.clock()
        try:
            changed = await client.observe({str(j.server_id) for j in observing}, (), since)
            task_states = {job.id: (changed.servers[str(job.server_id)].task_state
                                    if str(job.server_id) in changed.servers else job.task_state)
                           for job in observing}
            sweep = self.ticks % IMAGE_SWEEP_TICKS == 0
            look = {str(job.image_id) for job in observing
                    if sweep or str(job.server_id) in changed.servers
                    or task_states[job.id] is None}
            seen = (await client.observe((), look, None)) if look else None
        except (CloudUnavailable, AuthFailed) as exc:
            log.log(self.health.level(cloud), "observe failed, will retry: %s", exc)
            self.health.troubled(cloud, exc)
            async def unseen(job: Job) -> None:  # deadlines still count while it is away
                with job_context(job.id):
                    await self._apply(job, job.task_state, job.image_status, False, None, now)

            await fan_out([[job] for job in observing], unseen)
            return
        async def apply(job: Job) -> None:  # jobs apart: their commits go side by side
            image = seen.images.get(str(job.image_id)) if seen else None
            status = image.status if image else job.image_status
            vanished = seen is not None and str(job.image_id) in seen.vanished_images
            with job_context(job.id):
                await self._apply(job, task_states[job.id], status, vanished, image, now)

        await fan_out([[job] for job in observing], apply)
        await self.store.run(Store.set_meta, cursor_key, changed.cursor.isoformat())

    async def _apply(self, job: Job, task_state: str | None, status: str | None,
                     vanished: bool, image: Image | None, now: datetime) -> None:
        """Commit what one observation means for one job."""
        step = jobs.advance(job, task_state=task_state, image_status=status,
                            image_vanished=vanished, now=now, deadlines=self.deadlines)
        fields = dict(step.fields)
        if image is not None and image.size is not None and image.size != job.image_size:
            fields["image_size"] = image.size
        if step.target is None and not fields and not step.events:
            return
        await self._move(job, step.target, fields, step.events, step.target or "observed")
