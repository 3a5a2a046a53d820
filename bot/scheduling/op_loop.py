"""The scheduler loop's part of schedule operations: a skip-next slot recorded as skipped, and
queued run-nows started. Called by `loop.ScheduleLoop` from committed state; the decisions are
`operations.slot_decision` (pure)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from bot.scheduling.op_messages import run_now_note, skipped_on_request
from bot.scheduling.operations import SlotDecision
from bot.scheduling.ports import Context
from bot.scheduling.rows import label, schedule_spec
from bot.scheduling.runs import Route, actor, job_values
from bot.store import AuditEntry, OutboxItem, ScheduleRow, Store
from bot.vocabulary import OutboxKind, RunResult

log = logging.getLogger(__name__)


async def skip_on_request(ctx: Context, schedule: ScheduleRow, decision: SlotDecision,
                          route: Route) -> None:
    """Record the slot skip-next named as skipped (claimed like a run: once, across restarts
    and instances) and say so in the notification channel."""
    slot = decision.slot
    assert slot is not None
    request = schedule.skip_request
    claimed = await ctx.store.run(Store.claim_slot,
        schedule.id, slot, missed=decision.missed, result=RunResult.SKIPPED, job=None,
        schedule_fields={"last_slot": slot, **decision.fields,
                         "last_result": f"skipped on request ({request or 'skip-next'})"},
        audit=[AuditEntry("run_skipped_on_request", schedule.id, actor(schedule.id),
                          {"slot": slot.isoformat(), "request": request})])
    if claimed is not None:
        await ctx.store.run(Store.enqueue, [OutboxItem(
            kind=OutboxKind.CHANNEL_POST, channel=route.notify,
            payload=skipped_on_request(schedule.id, label(schedule), schedule_spec(schedule),
                                       slot, request))])
        ctx.on_new_work()


async def start_runs_now(ctx: Context, schedules: Sequence[ScheduleRow],
                         route_of: Callable[[ScheduleRow], Route]) -> None:
    """Start each approved run-now whose schedule has no run in flight (one image per server
    at a time; it waits for the one running). Its run is claimed under the approval time as
    its slot, so it is made once, and `last_slot` stays: the regular slots do not move."""
    queued = [s for s in schedules if s.run_now_at is not None
              and not s.target]  # a fleet's: `fleet.FleetRuns.start_runs_now`
    if not queued:
        return
    busy = {r.schedule_id for r in await ctx.store.run(Store.open_runs)}
    for schedule in queued:
        if schedule.id in busy:
            continue
        at: datetime = schedule.run_now_at  # type: ignore[assignment]
        spec = schedule_spec(schedule)
        now = ctx.clock()
        job = job_values(schedule, route_of(schedule), spec, at, 0, 1, now)
        job["note"] = run_now_note(schedule.id, spec, schedule.run_now_request, at)
        done = {"run_now_at": None, "run_now_request": None}
        claimed = await ctx.store.run(Store.claim_slot,
            schedule.id, at, missed=0, result=RunResult.RUNNING, job=job,
            schedule_fields={**done, "last_run_at": now, "last_result": RunResult.RUNNING},
            audit=[AuditEntry("run_now_started", schedule.id, actor(schedule.id),
                              {"request": schedule.run_now_request, "at": at.isoformat()})])
        if claimed is None:  # that instant is a claimed slot already: it ran; drop the queue
            await ctx.store.run(Store.update_schedule, schedule.id, done)
            continue
        log.info("schedule %s: run-now (%s) -> job %s", schedule.id, schedule.run_now_request,
                 claimed[1].id if claimed[1] else None)
        ctx.on_new_work()
