"""The scheduler loop: one `tick` does four passes, all from committed SQLite state.

1. expiry: pending change requests that expired are marked so (and warned about before);
2. due slots: each active schedule's due slot is claimed in `schedule_runs` (UNIQUE(schedule,
   slot) is the idempotency key) with a `queued` job the engine runs, or reported skipped;
3. following runs: each open run takes its pure `runs.run_step`, carried out here (busy retries,
   alerts, retention). Cloud calls are isolated per cloud: a cloud that is down, refuses the
   bot's credentials or answers garbage only delays the runs on that cloud; it is asked once per
   tick, said in the log once per outage, and the other clouds' runs go on;
4. message rewrites: approval messages (and their DM copies) whose row changed are rewritten
   from the row (`chat.update`, like job parents).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from bot.blocks import plural
from bot.errors import (
    CloudError,
    ConflictingUpdate,
    ImagebotError,
    SlackRejected,
    SlackUnavailable,
)
from bot.loops import run_until
from bot.scheduling.approvals import expire_due
from bot.scheduling.direct import copy_message, shown_state
from bot.scheduling.due import DEFAULT_WINDOW, DueQueue
from bot.scheduling.fleet import FleetRuns
from bot.scheduling.messages import approval_message, expiry_warning, skipped_notice
from bot.scheduling.native import NativeDesk, request_message
from bot.scheduling.op_loop import skip_on_request, start_runs_now
from bot.scheduling.operations import slot_decision
from bot.scheduling.ports import Context
from bot.scheduling.prune import delete_images
from bot.scheduling.retention import RetainableImage, retainable_from_image
from bot.scheduling.rows import (
    approval_view,
    decision_fields,
    label,
    op_state,
    schedule_spec,
    timing,
    to_request,
)
from bot.scheduling.runs import (
    BUSY_SPACING,
    BUSY_TRIES,
    Route,
    RunStep,
    RunUpdate,
    actor,
    job_values,
    retention_done,
    route_for,
    run_step,
)
from bot.store import AuditEntry, OutboxItem, RequestRow, RunRow, ScheduleRow, Store
from bot.vocabulary import JobState, OutboxKind, RequestStatus, RunResult

log = logging.getLogger(__name__)

WARN_BEFORE = timedelta(hours=1)


class ScheduleLoop:
    """Expiry, due slots, following runs and message rewrites, one `tick` at a time."""

    def __init__(self, ctx: Context, *, window: timedelta = DEFAULT_WINDOW,
                 warn_before: timedelta = WARN_BEFORE, busy_tries: int = BUSY_TRIES,
                 busy_spacing: timedelta = BUSY_SPACING, tick: float = 30.0,
                 tick_scale: float = 1.0) -> None:
        self.ctx = ctx
        self.window = window
        self.warn_before = warn_before
        self.busy_tries = busy_tries
        self.busy_spacing = busy_spacing
        self.tick_seconds = tick
        self.tick_scale = tick_scale
        self.ticks = 0
        self._due = DueQueue()
        self.fleet = FleetRuns(ctx, self.route, busy_tries=busy_tries,
                               busy_spacing=busy_spacing)
        # Clouds whose last call failed, with the reason: said once per outage, not per tick.
        self.clouds_down: dict[str | None, str] = {}
        self.native = NativeDesk(ctx)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; `wake` starts the next tick early."""

        async def step() -> float:
            return max(await self.tick(), 0.05)

        await run_until(stop, self.ctx.wake, step, name="schedule", fallback=self.tick_seconds,
                        scale=self.tick_scale)

    async def tick(self) -> float:
        """One pass: expiry, due slots, open runs, message rewrites. Returns seconds to sleep."""
        self.ticks += 1
        wake_at: list[datetime] = []
        await self._sweep_requests(wake_at)
        await self._run_due(wake_at)
        await self._follow_runs(wake_at)
        await self.native.apply()  # approved --native changes, set on the cloud
        await self.fleet.follow(wake_at)
        await self._rewrite_messages()
        now = self.ctx.clock()
        until = min(((w - now).total_seconds() for w in wake_at), default=self.tick_seconds)
        return max(0.0, min(until, self.tick_seconds))

    def route(self, schedule: ScheduleRow) -> Route:
        """Where `schedule`'s runs go under its channel's policy as it is now."""
        return route_for(schedule, self.ctx.channel_policy(schedule.channel,
                                                           schedule.channel_name))

    # --- 1. expiry -------------------------------------------------------------------------

    async def _sweep_requests(self, wake_at: list[datetime]) -> None:
        ctx = self.ctx
        now = ctx.clock()
        pending = await ctx.store.run(Store.list_change_requests,
                                      statuses=[RequestStatus.PENDING], limit=10_000)
        rows = {r.id: r for r in pending}
        for expired in expire_due([to_request(r) for r in pending], now):
            try:
                await ctx.store.run(Store.update_change_request,
                    expired.id, expected=RequestStatus.PENDING, fields=decision_fields(expired),
                    audit=[AuditEntry("request_expired", expired.id, None,
                                      {"expires_at": expired.expires_at.isoformat()})])
            except ConflictingUpdate:
                pass  # decided at the last moment
            rows.pop(expired.id, None)
        for row in rows.values():
            wake_at.append(row.expires_at)
            rules = ctx.channel_policy(row.channel, row.channel_name).approval_rules()
            lead = min(self.warn_before, rules.expiry / 4)
            if row.warned_at is not None or row.expires_at - now > lead:
                wake_at.append(row.expires_at - lead)
                continue
            if await ctx.store.run(Store.mark_request_warned, row.id):
                notify, mention = ctx.notify(row.channel, row.channel_name)
                await ctx.store.run(Store.enqueue, [OutboxItem(
                    kind=OutboxKind.CHANNEL_POST, channel=notify, thread_key=f"{row.id}:warn",
                    payload=expiry_warning(to_request(row), label(row),
                                           rules.who_may_approve(row.requested_by), now,
                                           mention))])
                await ctx.store.run(Store.add_audit,
                                    [AuditEntry("request_expiry_warned", row.id)])
                ctx.on_new_work()

    # --- 2. due slots ----------------------------------------------------------------------

    async def _run_due(self, wake_at: list[datetime]) -> None:
        schedules = await self.ctx.store.run(Store.list_schedules, status="active")
        self._due.forget([s.id for s in schedules])
        for schedule in schedules:
            await self._claim_due(schedule, wake_at)
        await start_runs_now(self.ctx, schedules, self.route)
        await self.fleet.start_runs_now(schedules)

    async def _claim_due(self, schedule: ScheduleRow, wake_at: list[datetime]) -> None:
        ctx = self.ctx
        now = ctx.clock()
        version = (schedule.frequency, schedule.day, schedule.at, schedule.tz,
                   schedule.effective_at, schedule.last_slot, op_state(schedule))
        if not self._due.needs_look(schedule.id, version, now):
            return  # its next slot has not come: no need to ask due()
        try:
            spec = schedule_spec(schedule)
        except ImagebotError as exc:  # e.g. a zone that tzdata no longer knows
            log.error("schedule %s cannot run: %s", schedule.id, exc)
            return
        # Pause, resume and skip-next applied to the catch-up policy (bot.scheduling.operations).
        decision = slot_decision(spec, op_state(schedule), timing(schedule, self.window),
                                 now=now)
        wake_at.append(decision.next_at)
        if decision.action in ("wait", "paused") or decision.slot is None:
            self._due.set(schedule.id, decision.next_at, version)
            return
        slot = decision.slot
        who = actor(schedule.id)
        route = self.route(schedule)
        if decision.action == "skip_requested":
            await skip_on_request(ctx, schedule, decision, route)
            return
        if decision.action == "skip":
            claimed = await ctx.store.run(Store.claim_slot,
                schedule.id, slot, missed=decision.missed, result=RunResult.SKIPPED, job=None,
                schedule_fields={"last_slot": slot, **decision.fields,
                                 "last_result": f"skipped {plural(decision.missed, 'slot')}"},
                audit=[AuditEntry("run_skipped", schedule.id, who,
                                  {"slot": slot.isoformat(), "missed": decision.missed})])
            if claimed is not None:
                await ctx.store.run(Store.enqueue, [OutboxItem(
                    kind=OutboxKind.CHANNEL_POST, channel=route.notify,
                    payload=skipped_notice(schedule.id, label(schedule), slot,
                                           decision.missed, now))])
                ctx.on_new_work()
            return
        if schedule.target:  # a fleet: resolved now, one job per server, one digest card
            await self.fleet.claim(schedule, spec, slot, decision.missed)
            return
        claimed = await ctx.store.run(Store.claim_slot,
            schedule.id, slot, missed=decision.missed, result=RunResult.RUNNING,
            job=job_values(schedule, route, spec, slot, decision.missed, 1, now),
            schedule_fields={"last_slot": slot, "last_run_at": now, **decision.fields,
                             "last_result": RunResult.RUNNING},
            audit=[AuditEntry("run_started", schedule.id, who,
                              {"slot": slot.isoformat(), "missed": decision.missed})])
        if claimed is not None:
            log.info("schedule %s: slot %s -> job %s", schedule.id, slot.isoformat(),
                     claimed[1].id if claimed[1] else None)
            ctx.on_new_work()

    # --- 3. following runs -----------------------------------------------------------------

    async def _follow_runs(self, wake_at: list[datetime]) -> None:
        failed: set[str | None] = set()  # clouds that failed in this tick
        for run in await self.ctx.store.run(Store.open_runs):
            try:
                await self._follow(run, wake_at, failed)
            except ImagebotError as exc:  # one broken run must not stop the others
                log.error("run %s (schedule %s) cannot go on yet: %s", run.id,
                          run.schedule_id, exc)

    async def _follow(self, run: RunRow, wake_at: list[datetime],
                      failed: set[str | None]) -> None:
        ctx = self.ctx
        schedule = await ctx.store.run(Store.get_schedule, run.schedule_id)
        job = await ctx.store.run(Store.get_job, run.job_id) if run.job_id else None
        check = None  # the image's restore test: retention waits for it (`runs.run_step`)
        if job is not None and job.verify and job.state == JobState.SUCCEEDED:
            checks = await ctx.store.run(Store.verifications_of_job, job.id)
            check = checks[-1] if checks else None

        def step(images: list[RetainableImage] | None = None,
                 failed_verify: frozenset[str] = frozenset()) -> RunStep:
            return run_step(run, schedule, job, now=ctx.clock(), route=self.route(schedule),
                            images=images, busy_tries=self.busy_tries,
                            busy_spacing=self.busy_spacing, check=check,
                            failed_verify=failed_verify)

        decided = step()
        if decided.kind == "list_images" and job is not None:
            cloud = job.cloud  # where this run's image was made
            if cloud in failed:
                return  # asked once per tick; the next tick tries again
            try:
                images = await ctx.cloud(cloud).list_images(server_id=schedule.server_id)
                found = [r for r in map(retainable_from_image, images) if r is not None]
                bad = await ctx.store.run(Store.failed_verification_images,
                                          [i.id for i in found])
                decided = step(found, frozenset(bad))
                if decided.kind == "retain":
                    deleted, refused = await delete_images(ctx.cloud(cloud), decided.delete)
                    decided = RunStep("commit", retention_done(
                        run, schedule, job, deleted, refused, self.route(schedule), check))
            except CloudError as exc:  # the listing, or the cloud went away during the deletes
                failed.add(cloud)
                self._cloud_failed(cloud, exc)
                return
            self._cloud_answered(cloud)
        if decided.kind == "commit" and decided.update is not None:
            if not await self._commit(run, decided.update):
                return
        if decided.wake_at is not None:
            wake_at.append(decided.wake_at)

    async def _commit(self, run: RunRow, update: RunUpdate) -> bool:
        """Carry out one `RunUpdate`; False when another tick changed the run first."""
        try:
            await self.ctx.store.run(Store.update_run,
                run.id, expected=update.expected, fields=update.fields, job=update.job,
                schedule_fields=update.schedule_fields, audit=list(update.audit),
                outbox=list(update.outbox))
        except ConflictingUpdate:
            return False
        self.ctx.on_new_work()
        return True

    def _cloud_failed(self, cloud: str | None, exc: Exception) -> None:
        name = cloud or "default"
        if cloud not in self.clouds_down:
            log.warning("cloud %s failed; its scheduled runs wait until it answers: %s",
                        name, exc)
        self.clouds_down[cloud] = str(exc)

    def _cloud_answered(self, cloud: str | None) -> None:
        if self.clouds_down.pop(cloud, None) is not None:
            log.info("cloud %s answers again; its scheduled runs go on", cloud or "default")

    # --- 4. message rewrites ---------------------------------------------------------------

    async def _rewrite_messages(self) -> None:
        ctx = self.ctx
        if ctx.web is None:
            return
        for row in await ctx.store.run(Store.dirty_requests):
            pol = ctx.channel_policy(row.channel, row.channel_name)
            if row.native:
                message = request_message(
                    row, pol.approval_rules().who_may_approve(row.requested_by), ctx.clock())
            else:
                message = approval_message(
                    approval_view(to_request(row), label(row), pol.approval_rules(),
                                  pol.notify_channel, ctx.clock()),
                    ctx.clock())
            if not await self._rewrite_copies(row, message):
                return  # Slack is away: the next tick tries again
            posted = await ctx.store.run(Store.posted_message, row.id)
            if posted is None:
                continue  # not delivered yet; the notifier posts it first
            channel, ts = posted
            try:
                await ctx.web.update_message(channel, ts, message["text"], message["blocks"])
            except SlackUnavailable as exc:
                log.warning("could not rewrite the message of %s yet: %s", row.id, exc)
                return
            except SlackRejected as exc:
                log.error("giving up rewriting the message of %s: %s", row.id, exc)
            await ctx.store.run(Store.mark_request_clean, row.id, row.message_dirty)

    async def _rewrite_copies(self, row: RequestRow, card: dict[str, Any]) -> bool:
        """Rewrite each posted DM copy of `row` that shows another status than the row's (the
        same card as the channel's, headed by its channel: `direct.copy_message`). A copy
        still being posted is rewritten once its ts is known (`record_copy_posted` dirties
        the row again). False when Slack is away."""
        ctx = self.ctx
        assert ctx.web is not None
        message = copy_message(card, row.channel)
        shown = shown_state(row.status, row.applied_at is not None)
        for copy in await ctx.store.run(Store.request_copies, row.id):
            if not copy.posted or copy.shown_status == shown:
                continue
            try:
                await ctx.web.update_message(str(copy.dm_channel), str(copy.ts),
                                             message["text"], message["blocks"])
            except SlackUnavailable as exc:
                log.warning("could not rewrite %s's copy of %s yet: %s", copy.user, row.id, exc)
                return False
            except SlackRejected as exc:  # e.g. the DM was closed: said once, not retried
                log.error("giving up rewriting %s's copy of %s: %s", copy.user, row.id, exc)
            await ctx.store.run(Store.record_copy_shown, row.id, copy.user, shown)
        return True
