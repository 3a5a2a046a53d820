"""Fleet runs, the shell: claim a fleet schedule's slot and follow its members each tick.

- `claim`: one server listing resolves the target (`fleet_plan.resolve`); the slot, one job
  per member (without a card of its own) and the digest card (`channel_post`, thread_key
  `fleet:R<run>`) are committed in one transaction. A cloud that does not answer leaves the
  slot unclaimed: the next tick tries again.
- `follow`: per open fleet run, the pure `fleet_plan.fleet_step` over the committed members
  and jobs; member results, busy retries and the one combined "writes may resume" reply are
  one commit; each ready member's retention (count and age, `age_retention`) is one commit;
  when every member has ended, the summary reply and the run's result are one commit. The
  card is then rewritten from the rows (`chat.update`) when its rendering changed.
Replies go under the card through the outbox (`thread_of`), so a crash never repeats one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.errors import (
    CloudError,
    ConflictingUpdate,
    SlackRejected,
    SlackUnavailable,
)
from bot.imaging import verify
from bot.imaging.jobs import Job
from bot.imaging.verify import Verification
from bot.scheduling.digest import (
    card_text,
    digest_card,
    resume_reply,
    run_failed,
    summary_reply,
    summary_text,
)
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.fleet_plan import FleetStep, digest_key, fleet_step, member_job, resolve
from bot.scheduling.messages import run_note
from bot.scheduling.op_messages import run_now_note
from bot.scheduling.ports import Context
from bot.scheduling.prune import delete_images
from bot.scheduling.retention import retainable_from_image
from bot.scheduling.rows import schedule_spec
from bot.scheduling.runs import (
    BUSY_SPACING,
    BUSY_TRIES,
    Route,
    actor,
    job_values,
    retention_choice,
)
from bot.store import AuditEntry, FleetMember, FleetRun, OutboxItem, ScheduleRow, Store
from bot.vocabulary import OutboxKind, RunResult
from commands.targets import target_from_text

log = logging.getLogger(__name__)


class FleetRuns:
    """Claims and follows the runs of fleet schedules (called by `ScheduleLoop.tick`)."""

    def __init__(self, ctx: Context, route: Callable[[ScheduleRow], Route], *,
                 busy_tries: int = BUSY_TRIES, busy_spacing: timedelta = BUSY_SPACING) -> None:
        self.ctx = ctx
        self.route = route
        self.busy_tries = busy_tries
        self.busy_spacing = busy_spacing

    # --- claiming a slot ---------------------------------------------------------------------

    async def claim(self, schedule: ScheduleRow, spec: ScheduleSpec, slot: datetime,
                    missed: int, *, run_now: bool = False) -> bool | None:
        """Resolve the target now and claim the slot with one job per member: True when
        claimed, False when the slot was claimed before, None when the cloud did not answer
        (the next tick tries again). A `run_now` run is claimed under the approval time and
        leaves `last_slot` alone, so the regular slots do not move (`operations`)."""
        ctx = self.ctx
        route = self.route(schedule)
        target = target_from_text(str(schedule.target))
        try:
            servers = await ctx.cloud(route.cloud).list_servers()
        except CloudError as exc:
            log.warning("schedule %s: cannot list servers for %s yet: %s", schedule.id,
                        target, exc)
            return None
        policy = ctx.channel_policy(schedule.channel, schedule.channel_name)
        previous = await ctx.store.run(Store.previous_fleet_members, schedule.id)
        found = resolve(target, servers, policy.may_touch, previous)
        now = ctx.clock()
        base = job_values(schedule, route, spec, slot, missed, 1, now)
        note = (run_now_note(schedule.id, spec, schedule.run_now_request, slot) if run_now
                else base["note"])
        members = [(s.id, s.name, member_job(base, s, now, f"{note} ({s.name})"))
                   for s in found.members]
        who = actor(schedule.id)
        started = {"slot": slot.isoformat(), "missed": missed,
                   "servers": [s.name for s in found.members], "skipped": list(found.skipped),
                   "dropped": list(found.dropped)}
        fields: dict[str, Any] = {"last_run_at": now, "last_result": RunResult.RUNNING}
        if run_now:
            fields |= {"run_now_at": None, "run_now_request": None}
            audit = [AuditEntry("run_now_started", schedule.id, who,
                                {"request": schedule.run_now_request, **started})]
        else:
            fields["last_slot"] = slot
            audit = [AuditEntry("run_started", schedule.id, who, started)]

        def outbox(run_id: int) -> list[OutboxItem]:
            fleet = FleetRun(run_id, schedule.id, target.text, found.dropped, found.skipped,
                             None, None)
            shown = [FleetMember(run_id, sid, name, None, 1, RunResult.RUNNING, None, None,
                                 False, 0) for sid, name, _ in members]
            card = digest_card(schedule.id, target.text, slot, fleet, shown, {},
                               {} if schedule.verify else None)  # as `_rewrite_card` shows
            return [OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=route.notify,
                               thread_key=digest_key(run_id), payload=card)]

        claimed = await ctx.store.run(Store.claim_fleet_slot,
            schedule.id, slot, missed=missed, target=target.text, members=members,
            dropped=found.dropped, skipped=found.skipped, result=RunResult.RUNNING,
            schedule_fields=fields, audit=audit, outbox=outbox)
        if claimed is None:
            return False
        log.info("schedule %s: %s %s -> fleet run %s (%d servers)", schedule.id,
                 "run-now" if run_now else "slot", slot.isoformat(), claimed.id, len(members))
        ctx.on_new_work()
        return True

    async def start_runs_now(self, schedules: Sequence[ScheduleRow]) -> None:
        """Start each approved run-now of a fleet schedule whose previous run has ended: ONE
        fleet run (one digest card, every server the target matches now), claimed under the
        approval time as its slot, so it is made once across restarts (`op_loop` does the
        same for one server)."""
        queued = [s for s in schedules if s.target and s.run_now_at is not None]
        if not queued:
            return
        busy = {r.schedule_id for r in await self.ctx.store.run(Store.open_runs)}
        for schedule in queued:
            if schedule.id in busy:
                continue  # one run of a schedule at a time: it waits for the one running
            at: datetime = schedule.run_now_at  # type: ignore[assignment]
            claimed = await self.claim(schedule, schedule_spec(schedule), at, 0, run_now=True)
            if claimed is False:  # that instant is a claimed slot already: drop the queue
                await self.ctx.store.run(Store.update_schedule, schedule.id,
                                         {"run_now_at": None, "run_now_request": None})

    # --- following runs ----------------------------------------------------------------------

    async def follow(self, wake_at: list[datetime]) -> None:
        """One pass over the open fleet runs (a run that cannot go on waits for the next)."""
        for fleet in await self.ctx.store.run(Store.open_fleet_runs):
            try:
                await self._follow(fleet, wake_at)
            except (CloudError, ConflictingUpdate) as exc:
                log.warning("fleet run %s (schedule %s) waits: %s", fleet.run_id,
                            fleet.schedule_id, exc)

    async def _state(self, run_id: int) -> tuple[list[FleetMember], dict[str, Job]]:
        members = await self.ctx.store.run(Store.fleet_members, run_id)
        job_of = {}
        for m in members:
            if m.job_id:
                job_of[m.job_id] = await self.ctx.store.run(Store.get_job, m.job_id)
        return members, job_of

    async def _checks(self, job_of: Mapping[str, Job]
                      ) -> dict[str, Verification] | None:
        """Each member job's latest restore test, by job id; None when the run's jobs were
        made without `--verify` (the card and summary then say nothing of restore tests).
        The jobs say it, not the schedule: one changed since does not hold this run."""
        if not any(job.verify for job in job_of.values()):
            return None
        checks: dict[str, Verification] = {}
        for job_id in job_of:
            found = await self.ctx.store.run(Store.verifications_of_job, job_id)
            if found:
                checks[job_id] = found[-1]
        return checks

    async def _follow(self, fleet: FleetRun, wake_at: list[datetime]) -> None:
        ctx = self.ctx
        schedule = await ctx.store.run(Store.get_schedule, fleet.schedule_id)
        run = await ctx.store.run(Store.schedule_run, fleet.run_id)
        route = self.route(schedule)
        key = digest_key(fleet.run_id)
        who = actor(schedule.id)
        if fleet.summarized_at is None:
            members, job_of = await self._state(fleet.run_id)
            step = fleet_step(members, job_of, now=ctx.clock(), busy_tries=self.busy_tries,
                              busy_spacing=self.busy_spacing)
            if step.wake_at is not None:
                wake_at.append(step.wake_at)
            await self._commit_step(fleet.run_id, schedule, run.slot, run.missed, route, key,
                                    step)
            checks = await self._checks(job_of)
            for member in step.ready:
                job = job_of[str(member.job_id)]
                if job.verify and not verify.ended((checks or {}).get(job.id)):
                    continue  # retention waits for the restore test: a failed one is not good
                await self._retain(schedule, member, job, route)
            members, job_of = await self._state(fleet.run_id)
            step = fleet_step(members, job_of, now=ctx.clock(), busy_tries=self.busy_tries,
                              busy_spacing=self.busy_spacing)
            if step.done:  # every member ended, restore tests included (they held retention)
                await self._summarize(schedule, fleet, members, step.retried, route, key, who,
                                      await self._checks(job_of))
        latest: FleetRun | None = await ctx.store.run(Store.fleet_run, fleet.run_id)
        await self._rewrite_card(schedule, latest or fleet, run.slot)

    async def _commit_step(self, run_id: int, schedule: ScheduleRow, slot: datetime,
                           missed: int, route: Route, key: str, step: FleetStep) -> None:
        ctx = self.ctx
        now = ctx.clock()
        who = actor(schedule.id)
        updates: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = [
            (sid, expected, fields, None) for sid, expected, fields in step.results]
        spec = schedule_spec(schedule)
        for m in step.restart:
            base = job_values(schedule, route, spec, slot, missed, m.attempts + 1, now)
            updates.append((m.server_id, RunResult.RETRY_WAIT,
                            {"result": RunResult.RUNNING, "next_attempt_at": None},
                            member_job(base, m, now,
                                       run_note(schedule.id, spec, slot, missed, m.attempts + 1)
                                       + f" ({m.server_name})")))
        outbox: list[OutboxItem] = []
        if step.resumed:
            outbox.append(OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=route.notify,
                                     payload=resume_reply(key, [m.server_name
                                                                for m in step.resumed])))
        if not updates and not outbox:
            return
        audit = [AuditEntry("fleet_member_" + str(fields["result"]), schedule.id, who,
                            {"server_id": sid, "detail": fields.get("detail")})
                 for sid, _, fields, _ in updates]
        await ctx.store.run(Store.update_fleet, run_id, members=updates,
                            resumed=[m.server_id for m in step.resumed], audit=audit,
                            outbox=outbox)
        ctx.on_new_work()

    async def _retain(self, schedule: ScheduleRow, member: FleetMember, job: Job,
                      route: Route) -> None:
        """Retention for one member whose image is ready, then the member is succeeded."""
        ctx = self.ctx
        cloud = ctx.cloud(job.cloud)
        images = [r for r in map(retainable_from_image,
                                 await cloud.list_images(server_id=member.server_id))
                  if r is not None]
        bad = await ctx.store.run(Store.failed_verification_images, [i.id for i in images])
        deleted, refused = await delete_images(cloud, retention_choice(
            images, schedule, job.image_id, now=ctx.clock(), failed_verify=bad))
        who = actor(schedule.id)
        audit = [AuditEntry("retention_failed", schedule.id, who,
                            {"image_id": image.id, "error": why}) for image, why in refused]
        audit += [AuditEntry("retention_deleted", schedule.id, who,
                             {"image_id": i.id, "name": i.name, "server": member.server_name,
                              "created_at": i.created_at.isoformat()}) for i in deleted]
        audit.append(AuditEntry("fleet_member_succeeded", schedule.id, who,
                                {"server_id": member.server_id, "job": job.id,
                                 "image_id": job.image_id}))
        await ctx.store.run(Store.update_fleet, member.run_id, members=[(
            member.server_id, RunResult.RUNNING,
            {"result": RunResult.SUCCEEDED, "deleted": len(deleted),
             "detail": f"deleted {len(deleted)}"}, None)], audit=audit)
        ctx.on_new_work()

    async def _summarize(self, schedule: ScheduleRow, fleet: FleetRun,
                         members: list[FleetMember], retried: int, route: Route, key: str,
                         who: str, checks: dict[str, Verification] | None) -> None:
        """The run's result and final reply: a failed restore test fails the run too."""
        ctx = self.ctx
        failed = run_failed(members, checks)
        ready = sum(1 for m in members if m.result == RunResult.SUCCEEDED)
        result = RunResult.FAILED if failed else RunResult.SUCCEEDED
        text = summary_text(members, retried, checks)
        await ctx.store.run(Store.update_fleet, fleet.run_id,
            run_expected=RunResult.RUNNING,
            run_fields={"result": result, "detail": text},
            fleet_fields={"summarized_at": ctx.clock()},
            schedule_fields={"last_result": (f"failed: {text}" if failed
                                             else f"succeeded: {text}")[:500]},
            audit=[AuditEntry("run_" + str(result), schedule.id, who,
                              {"run": fleet.run_id, "ready": ready, "servers": len(members),
                               "failed": [m.server_name for m in failed]})],
            outbox=[OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=route.notify,
                               payload=summary_reply(key, members, fleet, retried,
                                                     route.mention, checks))])
        ctx.on_new_work()

    async def _rewrite_card(self, schedule: ScheduleRow, fleet: FleetRun, slot: datetime) -> None:
        """Rewrite the digest card from the rows when its rendering changed."""
        ctx = self.ctx
        if ctx.web is None:
            return
        members, job_of = await self._state(fleet.run_id)
        card = digest_card(schedule.id, fleet.target, slot, fleet, members, job_of,
                           await self._checks(job_of))
        rendered = card_text(card)
        final = fleet.summarized_at is not None
        if rendered == fleet.digest:
            if final:
                await ctx.store.run(Store.update_fleet, fleet.run_id,
                                    fleet_fields={"card_done": 1})
            return
        posted = await ctx.store.run(Store.posted_message, digest_key(fleet.run_id))
        if posted is None:
            return  # not delivered yet; the notifier posts it first
        channel, ts = posted
        try:
            await ctx.web.update_message(channel, ts, card["text"], card["blocks"])
        except SlackUnavailable as exc:
            log.warning("could not rewrite the digest of fleet run %s yet: %s",
                        fleet.run_id, exc)
            return
        except SlackRejected as exc:
            log.error("giving up rewriting the digest of fleet run %s: %s", fleet.run_id, exc)
        await ctx.store.run(Store.update_fleet, fleet.run_id,
                            fleet_fields={"digest": rendered, "card_done": int(final)})

