"""Schedules and their change requests: the I/O shell around `bot.scheduling.due` and `bot.scheduling.approvals`.

`ScheduleService` does four things, all from committed SQLite state:

- proposals: `/image schedule ...` creates a change request (never a schedule) and posts the
  approval message through the outbox (`channel_post`, thread_key = the request id, so its ts is
  found later with `Store.posted_message`);
- decisions: `decide()` applies the pure `approvals.decide` and persists it with compare-and-set on
  the request's status, upserting the server's schedule in the same transaction, so the first valid
  click wins; everything lands in `audit`;
- the loop (`tick`/`run`): expires requests (and warns before), claims due slots in
  `schedule_runs` (UNIQUE(schedule, slot) is the idempotency key) and creates `queued` jobs the
  engine runs, follows those jobs (busy -> bounded retries then an alert; success -> retention),
  and rewrites approval messages whose row changed (chat.update from the row, like parents);
- answers for `/image schedules`, `/image approvals`, `/image approve|reject` and the buttons
  (`bot.slack.schedules.register` routes them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol

import commands
from bot.cloud.models import Image, Server
from bot.cloud.pool import CloudPool
from bot.errors import (
    CloudError,
    CloudUnavailable,
    ConflictingUpdate,
    ImagebotError,
    NotFound,
    PermissionDenied,
    SlackRejected,
    SlackUnavailable,
)
from bot.imaging import jobs
from bot.imaging.jobs import Job
from bot.loops import run_until
from bot.policy import DISABLED_TEXT, ChannelPolicy, GroupResolver, Policy, not_here, refuse
from bot.scheduling.approvals import (
    UNSET,
    ApprovalRules,
    ChangeRequest,
    Decision,
    expire_due,
    new_request,
)
from bot.scheduling.approvals import decide as decide_request
from bot.scheduling.approvals import supersede as supersede_requests
from bot.scheduling.due import (
    DEFAULT_WINDOW,
    DueQueue,
    RetainableImage,
    ScheduleSpec,
    ambiguous_or_missing,
    due,
    preview,
    retainable_from_image,
    retry_after_busy,
    select_for_deletion,
    would_delete_at_next_success,
    zone,
)
from bot.scheduling.messages import (
    ApprovalView,
    ScheduleLine,
    approval_message,
    approvals_text,
    busy_retry_reply,
    expiry_warning,
    retention_reply,
    run_failed_alert,
    run_note,
    schedules_text,
    skipped_notice,
)
from bot.slack.directory import ChannelDirectory
from bot.store import (
    AsyncStore,
    AuditEntry,
    OutboxItem,
    RequestPlan,
    RequestRow,
    RunRow,
    ScheduleRow,
    Store,
)

log = logging.getLogger(__name__)

WARN_BEFORE = timedelta(hours=1)
BUSY_TRIES = 3
BUSY_SPACING = timedelta(hours=1)


class CloudPort(Protocol):
    """The cloud calls the service makes (`CloudClient` has them)."""

    async def find_server(self, ref: str) -> Server: ...

    async def list_images(self, server_id: str | None = None,
                          properties: Mapping[str, str] | None = None) -> list[Image]: ...

    async def delete_image(self, image_id: str) -> None: ...


class MessagePort(Protocol):
    """The Slack calls the service makes directly (`SlackWeb` has them)."""

    async def update_message(self, channel: str, ts: str, text: str,
                             blocks: list[dict[str, Any]] | None = None) -> None: ...

    async def respond(self, response_url: str, text: str,
                      blocks: list[dict[str, Any]] | None = None, *,
                      in_channel: bool = False, replace_original: bool = False) -> None: ...




# --- conversions -------------------------------------------------------------------------------


def spec_to_dict(spec: ScheduleSpec) -> dict[str, Any]:
    """A spec as stored: frequency, day, at 'HH:MM', tz, keep."""
    return {"frequency": spec.frequency, "day": spec.day, "at": spec.at.strftime("%H:%M"),
            "tz": spec.tz, "keep": spec.keep}


def spec_from_dict(data: Mapping[str, Any]) -> ScheduleSpec:
    """The inverse of `spec_to_dict`."""
    hh, mm = str(data["at"]).split(":")
    return ScheduleSpec(data["frequency"], data.get("day"), time(int(hh), int(mm)),
                        str(data["tz"]), int(data["keep"]))


def schedule_spec(row: ScheduleRow) -> ScheduleSpec:
    """The spec of a stored schedule."""
    return spec_from_dict({"frequency": row.frequency, "day": row.day, "at": row.at,
                           "tz": row.tz, "keep": row.keep})


def to_request(row: RequestRow) -> ChangeRequest:
    """The pure `ChangeRequest` of a stored row."""
    return ChangeRequest(
        id=row.id, kind=row.kind,  # type: ignore[arg-type]
        server=row.server_id,
        old=spec_from_dict(row.old_spec) if row.old_spec else None,
        new=spec_from_dict(row.new_spec) if row.new_spec else None,
        requested_by=row.requested_by, channel=row.channel, created_at=row.created_at,
        expires_at=row.expires_at, status=row.status,  # type: ignore[arg-type]
        decided_by=row.decided_by, decided_at=row.decided_at, reason=row.reason)


def _label(row: RequestRow | ScheduleRow) -> str:
    return row.server_name or row.server_ref


def _decision_fields(request: ChangeRequest) -> dict[str, Any]:
    return {"status": request.status, "decided_by": request.decided_by,
            "decided_at": request.decided_at, "reason": request.reason}


@dataclass(frozen=True)
class Outcome:
    """The result of one approve/reject attempt, for the person who tried."""

    accepted: bool
    message: str
    request: RequestRow


# --- the service -------------------------------------------------------------------------------


class ScheduleService:
    """Change requests, decisions, the scheduler loop, retention and notifications."""

    def __init__(self, store: AsyncStore, cloud: CloudPort | CloudPool, policy: Policy, *,
                 clock: Callable[[], datetime], web: MessagePort | None = None,
                 on_new_work: Callable[[], None] = lambda: None,
                 member_groups: GroupResolver | None = None,
                 directory: ChannelDirectory | None = None,
                 window: timedelta = DEFAULT_WINDOW, warn_before: timedelta = WARN_BEFORE,
                 busy_tries: int = BUSY_TRIES, busy_spacing: timedelta = BUSY_SPACING,
                 tick: float = 30.0, tick_scale: float = 1.0) -> None:
        self.store = store
        self.clouds = cloud
        self.policy = policy
        self.clock = clock
        self.web = web
        self.on_new_work = on_new_work
        self.member_groups = member_groups
        # Who is in a request's channel ("any member" approves); None = not checked.
        self.directory = directory
        self.window = window
        self.warn_before = warn_before
        self.busy_tries = busy_tries
        self.busy_spacing = busy_spacing
        self.tick_seconds = tick
        self.tick_scale = tick_scale
        self.wake = asyncio.Event()
        self.ticks = 0
        self._due = DueQueue()

    # --- policy helpers ------------------------------------------------------------------

    def _policy(self, channel: str, channel_name: str | None) -> ChannelPolicy:
        return self.policy.for_channel(channel, channel_name)

    def _cloud(self, name: str | None) -> CloudPort:
        """The cloud a channel policy names (None: the default)."""
        if isinstance(self.clouds, CloudPool):
            return self.clouds.get(name)
        return self.clouds

    def _notify(self, channel: str, channel_name: str | None) -> tuple[str, str | None]:
        """(channel for run announcements and alerts, the policy's mention)."""
        pol = self._policy(channel, channel_name)
        return pol.notify_channel or channel, pol.mention

    async def _groups(self, user: str, rules: ApprovalRules) -> frozenset[str]:
        if not rules.approver_groups or self.member_groups is None:
            return frozenset()
        return await self.member_groups(user, rules.approver_groups)

    # --- proposals -----------------------------------------------------------------------

    async def propose(self, request: commands.Schedule | commands.ScheduleOff, *, user: str,
                      channel: str, channel_name: str | None = None) -> RequestRow:
        """Create a change request for `request` and queue its approval message.

        Raises `PermissionDenied` (policy), `InvalidSchedule`, cloud errors (unknown server) or
        `ImagebotError` (nothing to change).
        """
        pol = self._policy(channel, channel_name)
        refusal = await refuse(pol, user, request.server.text, self.member_groups,
                               doing="propose schedules")
        if refusal:
            raise PermissionDenied(refusal)
        cloud = self._cloud(pol.cloud)
        server = await cloud.find_server(request.server.text)
        if not pol.may_touch(server.name):
            raise PermissionDenied(f"This channel may not image {server.name!r}.")
        existing = await self.store.run(Store.schedule_for_server, server.id)
        old = schedule_spec(existing) if existing and existing.status == "active" else None
        new: ScheduleSpec | None = None
        if isinstance(request, commands.ScheduleOff):
            if old is None:
                raise ImagebotError(f"{server.name} has no schedule to turn off.")
        else:
            new = ScheduleSpec(request.frequency, request.day, request.at, request.tz,
                               request.keep)
            if new == old:
                raise ImagebotError(f"{server.name} already has exactly that schedule.")
        doomed: list[RetainableImage] = []
        if new is not None and existing is not None:
            doomed = await self._would_delete(cloud, server.id, new.keep, existing.id)
        rules = pol.approval_rules()
        notify = pol.notify_channel
        for _ in range(3):
            now = self.clock()
            pending = [to_request(r) for r in await self.store.run(Store.list_change_requests,
                statuses=["pending"], server_id=server.id)]

            def build(request_id: str, now: datetime = now,
                      pending: list[ChangeRequest] = pending) -> RequestPlan:
                req = new_request(id=request_id, kind="off" if new is None else "set",
                                  server=server.id, old=old, new=new, requested_by=user,
                                  channel=channel, now=now, rules=rules)
                replaced = supersede_requests(pending, req, now)
                view = self._view(req, server.name, rules, notify, now, doomed)
                values = {
                    "kind": req.kind, "server_id": server.id, "server_ref": request.server.text,
                    "server_name": server.name,
                    "old_spec": spec_to_dict(old) if old else None,
                    "new_spec": spec_to_dict(new) if new else None,
                    "requested_by": user, "channel": channel, "channel_name": channel_name,
                    "expires_at": req.expires_at, "status": "pending",
                }
                audit = [AuditEntry("request_created", request_id, user, {
                    "kind": req.kind, "server_id": server.id, "server_name": server.name,
                    "old": values["old_spec"], "new": values["new_spec"],
                    "expires_at": req.expires_at.isoformat()})]
                audit += [AuditEntry("request_superseded", r.id, user, {"by": request_id})
                          for r in replaced]
                return RequestPlan(
                    values=values,
                    updates=[(r.id, "pending", _decision_fields(r)) for r in replaced],
                    audit=audit,
                    outbox=[OutboxItem(kind="channel_post", channel=channel,
                                       payload=approval_message(view, now),
                                       thread_key=request_id)])

            try:
                row = await self.store.run(Store.add_change_request, build)
            except ConflictingUpdate:
                continue  # an older request was decided meanwhile; look again
            self.on_new_work()
            return row
        raise ImagebotError("Too many concurrent changes for this server; try again.")

    async def _would_delete(self, cloud: CloudPort, server_id: str, keep: int,
                            schedule_id: str) -> list[RetainableImage]:
        try:
            images = await cloud.list_images(server_id=server_id)
        except CloudError as exc:  # the message just shows less; the decision is unaffected
            log.warning("could not list images for the approval message: %s", exc)
            return []
        found = [r for r in map(retainable_from_image, images) if r is not None]
        return would_delete_at_next_success(found, keep, schedule_id)

    def _view(self, request: ChangeRequest, server_label: str, rules: ApprovalRules,
              notify: str | None, now: datetime,
              doomed: Iterable[RetainableImage] = ()) -> ApprovalView:
        runs: list[tuple[datetime, datetime]] = []
        notes: list[str] = []
        if request.new is not None:
            runs = preview(request.new, now, 3)
            notes = [n.text for n in ambiguous_or_missing(request.new, 366, now=now)]
        return ApprovalView(request=request, server_label=server_label,
                            who_may_approve=rules.who_may_approve(request.requested_by),
                            next_runs=runs, dst_notes=notes, would_delete=tuple(doomed),
                            notify_channel=notify)

    # --- decisions -----------------------------------------------------------------------

    async def decide(self, request_id: str, *, actor: str, action: str,
                     reason: str | None = None, channel: str | None = None) -> Outcome:
        """Approve or reject a request as `actor`; the first valid decision wins.

        Permission is checked against the policy as it is now (not as it was when the message
        was posted). `channel` is where the decision was typed or clicked: a request is decided
        only in its own channel (another channel is told it does not exist there), never in
        a disabled one. With no approvers listed, only the channel's members decide. Refusals
        are audited too.
        """
        if action not in ("approve", "reject"):
            raise ValueError(f"unknown action {action!r}")
        for _ in range(5):
            try:
                row = await self.store.run(Store.get_change_request, request_id)
            except ImagebotError:
                if channel is None:
                    raise
                raise ImagebotError(not_here("change request", request_id.upper())) from None
            if channel is not None and row.channel != channel:
                await self.store.run(Store.add_audit, [AuditEntry("decision_refused", row.id, actor, {
                    "action": action, "refusal": "other_channel", "channel": channel})])
                raise ImagebotError(not_here("change request", row.id))
            request = to_request(row)
            policy = self._policy(row.channel, row.channel_name)
            if not policy.enabled:
                await self.store.run(Store.add_audit, [AuditEntry("decision_refused", row.id, actor, {
                    "action": action, "refusal": "disabled"})])
                return Outcome(False, DISABLED_TEXT, row)
            rules = policy.approval_rules()
            groups = await self._groups(actor, rules)
            members = None
            if self.directory is not None and not rules.restricted:
                members = await self.directory.members(row.channel)
            current_row = await self.store.run(Store.schedule_for_server, row.server_id)
            current = schedule_spec(current_row) if current_row and \
                current_row.status == "active" else None
            now = self.clock()
            decision: Decision = decide_request(
                request, actor=actor, action=action, now=now,  # type: ignore[arg-type]
                rules=rules, actor_groups=groups, reason=reason,
                current=current if action == "approve" else UNSET, members=members)
            if not decision.accepted:
                audit = [AuditEntry("decision_refused", row.id, actor,
                                    {"action": action, "refusal": decision.refusal})]
                if decision.changed:  # found expired at click time
                    try:
                        row = await self.store.run(Store.update_change_request,
                            row.id, expected="pending", fields=_decision_fields(decision.request),
                            audit=[AuditEntry("request_expired", row.id, None, {}), *audit])
                    except ConflictingUpdate:
                        continue
                    self.wake.set()
                else:
                    await self.store.run(Store.add_audit, audit)
                return Outcome(False, decision.message, row)
            done = decision.request
            schedule = self._schedule_values(row, done) if done.status == "approved" else None
            audit = [AuditEntry(f"request_{done.status}", row.id, actor,
                                {"reason": done.reason, "kind": row.kind,
                                 "server_id": row.server_id})]
            if schedule is not None:
                audit.append(AuditEntry("schedule_" + ("off" if row.kind == "off" else "set"),
                                        row.server_id, actor,
                                        {"request": row.id, "spec": row.new_spec}))
            try:
                row = await self.store.run(Store.update_change_request,
                    row.id, expected="pending", fields=_decision_fields(done), audit=audit,
                    schedule=schedule)
            except ConflictingUpdate:
                continue  # someone else decided first: the next pass tells who
            self.wake.set()
            self.on_new_work()
            return Outcome(True, decision.message, row)
        raise ImagebotError(f"{request_id} keeps changing; try again.")

    def _schedule_values(self, row: RequestRow, done: ChangeRequest) -> dict[str, Any]:
        now = done.decided_at or self.clock()
        if row.kind == "off":
            return {"server_id": row.server_id, "status": "off", "approved_by": done.decided_by,
                    "request_id": row.id, "effective_at": now}
        spec = dict(row.new_spec or {})
        return {"server_id": row.server_id, "server_ref": row.server_ref,
                "server_name": row.server_name, "frequency": spec["frequency"],
                "day": spec.get("day"), "at": spec["at"], "tz": spec["tz"], "keep": spec["keep"],
                "channel": row.channel, "channel_name": row.channel_name,
                "created_by": row.requested_by, "approved_by": done.decided_by,
                "request_id": row.id, "effective_at": now, "last_slot": None,
                "status": "active"}

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; `wake` starts the next tick early."""

        async def step() -> float:
            return max(await self.tick(), 0.05)

        await run_until(stop, self.wake, step, name="schedule", fallback=self.tick_seconds,
                        scale=self.tick_scale)

    async def tick(self) -> float:
        """One pass: expiry, due slots, open runs, message rewrites. Returns seconds to sleep."""
        self.ticks += 1
        wake_at: list[datetime] = []
        await self._sweep_requests(wake_at)
        await self._run_due(wake_at)
        await self._follow_runs(wake_at)
        await self._rewrite_messages()
        now = self.clock()
        until = min(((w - now).total_seconds() for w in wake_at), default=self.tick_seconds)
        return max(0.0, min(until, self.tick_seconds))

    async def _sweep_requests(self, wake_at: list[datetime]) -> None:
        now = self.clock()
        pending = await self.store.run(Store.list_change_requests, statuses=["pending"], limit=10_000)
        rows = {r.id: r for r in pending}
        for expired in expire_due([to_request(r) for r in pending], now):
            try:
                await self.store.run(Store.update_change_request,
                    expired.id, expected="pending", fields=_decision_fields(expired),
                    audit=[AuditEntry("request_expired", expired.id, None,
                                      {"expires_at": expired.expires_at.isoformat()})])
            except ConflictingUpdate:
                pass  # decided at the last moment
            rows.pop(expired.id, None)
        for row in rows.values():
            wake_at.append(row.expires_at)
            rules = self._policy(row.channel, row.channel_name).approval_rules()
            lead = min(self.warn_before, rules.expiry / 4)
            if row.warned_at is None and row.expires_at - now <= lead:
                if await self.store.run(Store.mark_request_warned, row.id):
                    notify, mention = self._notify(row.channel, row.channel_name)
                    request = to_request(row)
                    await self.store.run(Store.enqueue, [OutboxItem(
                        kind="channel_post", channel=notify, thread_key=f"{row.id}:warn",
                        payload=expiry_warning(request, _label(row),
                                               rules.who_may_approve(row.requested_by), now,
                                               mention))])
                    await self.store.run(Store.add_audit, [AuditEntry("request_expiry_warned", row.id)])
                    self.on_new_work()
            else:
                wake_at.append(row.expires_at - lead)

    def _job_values(self, schedule: ScheduleRow, spec: ScheduleSpec, slot: datetime,
                    missed: int, attempt: int, now: datetime) -> dict[str, Any]:
        notify, _ = self._notify(schedule.channel, schedule.channel_name)
        actor = f"schedule:{schedule.id}"
        return {
            "server_ref": schedule.server_name or schedule.server_ref, "requested_by": actor,
            "channel": notify, "state": jobs.QUEUED, "schedule_id": schedule.id,
            # The run's channel's name, for the one policy lookup (clicks, alerts, answers).
            "channel_name": schedule.channel_name if notify == schedule.channel else
            (notify[1:] if notify.startswith("#") else None),
            "server_id": schedule.server_id, "server_name": schedule.server_name,
            "cloud": self._policy(schedule.channel, schedule.channel_name).cloud,
            "note": run_note(schedule.id, spec, slot, missed, attempt),
            "confirmed_by": actor, "confirmed_at": now, "actor": actor,
            # The job's parent message in the notification channel is the run's thread.
            "outbox": [OutboxItem(kind="post_parent", channel=notify, payload={})],
        }

    async def _run_due(self, wake_at: list[datetime]) -> None:
        schedules = await self.store.run(Store.list_schedules, status="active")
        self._due.forget([s.id for s in schedules])
        for schedule in schedules:
            now = self.clock()
            version = (schedule.frequency, schedule.day, schedule.at, schedule.tz,
                       schedule.effective_at, schedule.last_slot)
            if not self._due.needs_look(schedule.id, version, now):
                continue  # its next slot has not come: no need to ask due()
            try:
                spec = schedule_spec(schedule)
            except ImagebotError as exc:  # e.g. a zone that tzdata no longer knows
                log.error("schedule %s cannot run: %s", schedule.id, exc)
                continue
            decision = due(spec, created_at=schedule.effective_at,
                           last_slot=schedule.last_slot, now=now, window=self.window)
            wake_at.append(decision.next_at)
            if decision.action == "wait" or decision.slot is None:
                self._due.set(schedule.id, decision.next_at, version)
                continue
            slot = decision.slot
            actor = f"schedule:{schedule.id}"
            if decision.action == "skip":
                claimed = await self.store.run(Store.claim_slot,
                    schedule.id, slot, missed=decision.missed, result="skipped", job=None,
                    schedule_fields={"last_slot": slot,
                                     "last_result": f"skipped {decision.missed} slot(s)"},
                    audit=[AuditEntry("run_skipped", schedule.id, actor,
                                      {"slot": slot.isoformat(), "missed": decision.missed})])
                if claimed is not None:
                    notify, _ = self._notify(schedule.channel, schedule.channel_name)
                    await self.store.run(Store.enqueue, [OutboxItem(
                        kind="channel_post", channel=notify,
                        payload=skipped_notice(schedule.id, _label(schedule), slot,
                                               decision.missed, now))])
                    self.on_new_work()
                continue
            claimed = await self.store.run(Store.claim_slot,
                schedule.id, slot, missed=decision.missed, result="running",
                job=self._job_values(schedule, spec, slot, decision.missed, 1, now),
                schedule_fields={"last_slot": slot, "last_run_at": now,
                                 "last_result": "running"},
                audit=[AuditEntry("run_started", schedule.id, actor,
                                  {"slot": slot.isoformat(), "missed": decision.missed})])
            if claimed is not None:
                log.info("schedule %s: slot %s -> job %s", schedule.id, slot.isoformat(),
                         claimed[1].id if claimed[1] else None)
                self.on_new_work()

    async def _follow_runs(self, wake_at: list[datetime]) -> None:
        for run in await self.store.run(Store.open_runs):
            try:
                await self._follow(run, wake_at)
            except CloudUnavailable as exc:
                log.warning("run %s: cloud unavailable, will retry: %s", run.id, exc)

    async def _follow(self, run: RunRow, wake_at: list[datetime]) -> None:
        schedule = await self.store.run(Store.get_schedule, run.schedule_id)
        notify, mention = self._notify(schedule.channel, schedule.channel_name)
        now = self.clock()
        actor = f"schedule:{schedule.id}"
        if run.result == "retry_wait":
            if run.next_attempt_at is not None and run.next_attempt_at > now:
                wake_at.append(run.next_attempt_at)
                return
            spec = schedule_spec(schedule)
            try:
                await self.store.run(Store.update_run,
                    run.id, expected="retry_wait", fields={"result": "running",
                                                           "next_attempt_at": None},
                    job=self._job_values(schedule, spec, run.slot, run.missed,
                                         run.attempts + 1, now),
                    schedule_fields={"last_result": "running", "last_run_at": now},
                    audit=[AuditEntry("run_retry", schedule.id, actor,
                                      {"slot": run.slot.isoformat(),
                                       "attempt": run.attempts + 1})])
            except ConflictingUpdate:
                return
            self.on_new_work()
            return
        if run.job_id is None:
            return
        job = await self.store.run(Store.get_job, run.job_id)
        if job.state not in jobs.TERMINAL:
            return
        if job.state == jobs.SUCCEEDED:
            await self._succeeded(run, schedule, job)
            return
        reason = job.error or job.state
        if job.state == jobs.FAILED and job.error_code == "busy":
            delay = retry_after_busy(run.attempts, tries=self.busy_tries,
                                     spacing=self.busy_spacing)
            if delay is not None:
                retry_at = now + delay
                try:
                    await self.store.run(Store.update_run,
                        run.id, expected="running",
                        fields={"result": "retry_wait", "next_attempt_at": retry_at},
                        schedule_fields={"last_result": f"server busy, retrying "
                                                        f"(attempt {run.attempts})"},
                        audit=[AuditEntry("run_busy", schedule.id, actor,
                                          {"job": job.id, "attempt": run.attempts,
                                           "retry_at": retry_at.isoformat()})],
                        outbox=[OutboxItem(kind="reply", channel=job.channel, job_id=job.id,
                                           thread_key=job.id,
                                           payload=busy_retry_reply(run.attempts, retry_at,
                                                                    now))])
                except ConflictingUpdate:
                    return
                wake_at.append(retry_at)
                self.on_new_work()
                return
        if job.error_code == "stuck" and job.task_state:
            reason += f" (stuck in {job.task_state})"
        try:
            await self.store.run(Store.update_run,
                run.id, expected="running", fields={"result": "failed", "detail": reason},
                schedule_fields={"last_result": f"failed: {reason}"[:500]},
                audit=[AuditEntry("run_failed", schedule.id, actor,
                                  {"job": job.id, "error_code": job.error_code,
                                   "attempts": run.attempts})],
                outbox=[OutboxItem(kind="channel_post", channel=notify,
                                   payload=run_failed_alert(schedule.id, _label(schedule),
                                                            reason, run.attempts, mention))])
        except ConflictingUpdate:
            return
        self.on_new_work()

    async def _succeeded(self, run: RunRow, schedule: ScheduleRow, job: Job) -> None:
        """Retention after a successful scheduled image, reported in the run's thread."""
        cloud = self._cloud(job.cloud)  # where this run's image was made
        images = await cloud.list_images(server_id=schedule.server_id)
        found = [r for r in map(retainable_from_image, images) if r is not None]
        doomed = select_for_deletion(found, schedule.keep, schedule.id)
        deleted: list[RetainableImage] = []
        failed: list[tuple[RetainableImage, str]] = []
        for image in doomed:
            # Belt and braces: never the image this run just made.
            if image.id == job.image_id:
                continue
            try:
                await cloud.delete_image(image.id)
            except NotFound:
                deleted.append(image)  # already gone: the goal is met
            except CloudUnavailable:
                raise  # retry the whole retention next tick (deletes are idempotent)
            except CloudError as exc:
                failed.append((image, exc.user_message()))
            else:
                deleted.append(image)
        actor = f"schedule:{schedule.id}"
        audit = [AuditEntry("run_succeeded", schedule.id, actor,
                            {"job": job.id, "image_id": job.image_id,
                             "slot": run.slot.isoformat()})]
        audit += [AuditEntry("retention_deleted", schedule.id, actor,
                             {"image_id": img.id, "name": img.name,
                              "created_at": img.created_at.isoformat()}) for img in deleted]
        audit += [AuditEntry("retention_failed", schedule.id, actor,
                             {"image_id": img.id, "error": why}) for img, why in failed]
        name = job.image_name or job.image_id or job.id
        try:
            await self.store.run(Store.update_run,
                run.id, expected="running",
                fields={"result": "succeeded", "detail": f"deleted {len(deleted)}"},
                schedule_fields={"last_result": f"succeeded: {name}"[:500]},
                audit=audit,
                outbox=[OutboxItem(kind="reply", channel=job.channel, job_id=job.id,
                                   thread_key=job.id,
                                   payload=retention_reply(deleted, failed, schedule.keep))])
        except ConflictingUpdate:
            return
        self.on_new_work()

    async def _rewrite_messages(self) -> None:
        if self.web is None:
            return
        for row in await self.store.run(Store.dirty_requests):
            posted = await self.store.run(Store.posted_message, row.id)
            if posted is None:
                continue  # not delivered yet; the notifier posts it first
            channel, ts = posted
            rules = self._policy(row.channel, row.channel_name).approval_rules()
            notify = self._policy(row.channel, row.channel_name).notify_channel
            message = approval_message(
                self._view(to_request(row), _label(row), rules, notify, self.clock()),
                self.clock())
            try:
                await self.web.update_message(channel, ts, message["text"], message["blocks"])
            except SlackUnavailable as exc:
                log.warning("could not rewrite the message of %s yet: %s", row.id, exc)
                return
            except SlackRejected as exc:
                log.error("giving up rewriting the message of %s: %s", row.id, exc)
            await self.store.run(Store.mark_request_clean, row.id, row.message_dirty)

    # --- answers -------------------------------------------------------------------------

    async def schedules_answer(self, server: str | None = None,
                               channel: str | None = None) -> str:
        """`/image schedules [server]`: schedules with next run, last result, pending changes;
        only those of `channel` (an id) when given."""
        now = self.clock()
        lines: list[ScheduleLine] = []
        rows = await self.store.run(Store.list_schedules, status="active", server=server, channel=channel)
        for row in rows:
            spec = schedule_spec(row)
            decision = due(spec, created_at=row.effective_at, last_slot=row.last_slot, now=now,
                           window=self.window)
            nxt = decision.slot if decision.action == "run" else decision.next_at
            lines.append(ScheduleLine(
                id=row.id, server_label=_label(row), spec=spec,
                next_run=(nxt.astimezone(zone(spec.tz)), nxt) if nxt else None,
                last_result=row.last_result, last_run_at=row.last_run_at,
                approved_by=row.approved_by))
        pending = await self.store.run(Store.list_change_requests, statuses=["pending"], channel=channel)
        if server is not None:
            pending = [r for r in pending if server in (r.server_ref, r.server_name, r.server_id)]
        return schedules_text(lines, [(to_request(r), _label(r)) for r in pending], now)

    async def approvals_answer(self, channel: str | None = None) -> str:
        """`/image approvals`: pending change requests (of `channel`, an id, when given)."""
        pending = await self.store.run(Store.list_change_requests, statuses=["pending"], channel=channel)
        return approvals_text([(to_request(r), _label(r)) for r in pending], self.clock())
