"""One scheduled run's next step: pure decisions, no I/O (modelled on `bot.imaging.jobs.advance`).

A run (`schedule_runs` row) is claimed for a slot and followed until it ends. `run_step` looks at
the run, its schedule, the job it made and the clock, and returns a `RunStep` the shell
(`bot.scheduling.loop`) carries out:

- `wait`: nothing to do yet (the job is still working, or a busy retry is not due; `wake_at`);
- `commit`: one compare-and-set of the run row (`RunUpdate`) with its schedule fields, audit,
  outbox and, for the next attempt after a busy server, a new job, in one transaction:
  a busy server is retried `busy_tries` times in all, `busy_spacing` apart, then alerted; any
  other failure is alerted at once;
- `list_images`: the job succeeded (and, with `--verify`, its restore test ended); observe
  the server's images and call again with them;
- `retain`: delete `delete` (only this schedule's own ACTIVE, unpinned images beyond `keep`
  and/or older than `keep_days`, oldest first, never the image the run just made nor the newest
  good one: an image a restore test failed is not good), then record with `retention_done`.
  A run whose restore test failed is a failed run, after its retention.

Pruning happens only after a success, so a failed run never deletes anything
(see shared/reference/scheduling.md: qonos 569e42d, Karbor's retention_protect).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.imaging import jobs
from bot.imaging.jobs import Job
from bot.imaging.verify import Verification, ended
from bot.policy import ChannelPolicy
from bot.scheduling.age_retention import select_by_count_and_age
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.messages import (
    busy_retry_reply,
    retention_reply,
    run_failed_alert,
    run_note,
)
from bot.scheduling.retention import RetainableImage
from bot.scheduling.rows import label, schedule_spec
from bot.store import AuditEntry, OutboxItem, RunRow, ScheduleRow
from bot.vocabulary import FailureCode, JobState, OutboxKind, RunResult

BUSY_TRIES = 3
BUSY_SPACING = timedelta(hours=1)

StepKind = Literal["wait", "commit", "list_images", "retain"]


def retry_after_busy(attempt: int, *, tries: int = BUSY_TRIES,
                     spacing: timedelta = BUSY_SPACING) -> timedelta | None:
    """How long to wait after try number `attempt` (1-based) found the server busy.

    Like Rackspace: `tries` tries in all, `spacing` apart; None means give up and alert.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    return spacing if attempt < tries else None


@dataclass(frozen=True)
class Route:
    """Where a schedule's runs go, from its channel's policy as it is now."""

    notify: str  # the channel of the run's parent message, announcements and alerts
    notify_name: str | None  # that channel's name when known (for the one policy lookup)
    mention: str | None  # the alert ping, e.g. "<!here>"
    cloud: str | None  # the clouds.yaml entry that makes the image (None: the default)


def route_for(schedule: ScheduleRow, policy: ChannelPolicy) -> Route:
    """The route of `schedule` under its channel's `policy`."""
    notify = policy.notify_channel or schedule.channel
    if notify == schedule.channel:
        name = schedule.channel_name
    else:
        name = notify[1:] if notify.startswith("#") else None
    return Route(notify, name, policy.mention, policy.cloud)


def actor(schedule_id: str) -> str:
    """Who a schedule's jobs and audit entries are by."""
    return f"schedule:{schedule_id}"


def job_values(schedule: ScheduleRow, route: Route, spec: ScheduleSpec, slot: datetime,
               missed: int, attempt: int, now: datetime) -> dict[str, Any]:
    """The queued job of one attempt at one slot (the engine runs it like a confirmed one)."""
    who = actor(schedule.id)
    return {
        "server_ref": label(schedule), "requested_by": who,
        "channel": route.notify, "state": JobState.QUEUED, "schedule_id": schedule.id,
        "channel_name": route.notify_name,
        "server_id": schedule.server_id, "server_name": schedule.server_name,
        "cloud": route.cloud, "verify": schedule.verify,  # restore-test the image when made
        "note": run_note(schedule.id, spec, slot, missed, attempt),
        "confirmed_by": who, "confirmed_at": now, "actor": who,
        # The job's parent message in the notification channel is the run's thread.
        "outbox": [OutboxItem(kind=OutboxKind.POST_PARENT, channel=route.notify, payload={})],
    }


@dataclass(frozen=True)
class RunUpdate:
    """A compare-and-set of one run row (`expected` -> `fields`) and what commits with it."""

    expected: RunResult
    fields: Mapping[str, Any]
    schedule_fields: Mapping[str, Any]
    audit: tuple[AuditEntry, ...]
    outbox: tuple[OutboxItem, ...] = ()
    job: Mapping[str, Any] | None = None  # the next attempt's job


@dataclass(frozen=True)
class RunStep:
    """What to do for one run now (see the module docstring)."""

    kind: StepKind = "wait"
    update: RunUpdate | None = None  # for "commit"
    wake_at: datetime | None = None  # look again then (after the commit, for "commit")
    delete: tuple[RetainableImage, ...] = ()  # for "retain"


def run_step(run: RunRow, schedule: ScheduleRow, job: Job | None, *, now: datetime,
             route: Route, images: Sequence[RetainableImage] | None = None,
             busy_tries: int = BUSY_TRIES, busy_spacing: timedelta = BUSY_SPACING,
             check: Verification | None = None,
             failed_verify: Collection[str] = ()) -> RunStep:
    """Decide the next step of `run` (see the module docstring).

    `job` is the run's latest job (None when it has none); `images` the server's images once
    listed (None: not looked at yet); `check` the job's latest restore test (None: none yet)
    and `failed_verify` the listed images a restore test failed. Raises `InvalidSchedule`
    when a retry is due for a schedule that can no longer run (a zone tzdata dropped).
    """
    who = actor(schedule.id)
    if run.result == RunResult.RETRY_WAIT:
        if run.next_attempt_at is not None and run.next_attempt_at > now:
            return RunStep(wake_at=run.next_attempt_at)
        attempt = run.attempts + 1
        return RunStep("commit", RunUpdate(
            expected=RunResult.RETRY_WAIT,
            fields={"result": RunResult.RUNNING, "next_attempt_at": None},
            job=job_values(schedule, route, schedule_spec(schedule), run.slot, run.missed,
                           attempt, now),
            schedule_fields={"last_result": RunResult.RUNNING, "last_run_at": now},
            audit=(AuditEntry("run_retry", schedule.id, who,
                              {"slot": run.slot.isoformat(), "attempt": attempt}),)))
    if run.result != RunResult.RUNNING or job is None or job.state not in jobs.TERMINAL:
        return RunStep()
    if job.state == JobState.SUCCEEDED:
        if job.verify and not ended(check):
            return RunStep()  # retention waits for the restore test: a failed image is not good
        if images is None:
            return RunStep("list_images")
        return RunStep("retain", delete=retention_choice(images, schedule, job.image_id,
                                                         now=now, failed_verify=failed_verify))
    reason = job.error or job.state
    if job.state == JobState.FAILED and job.error_code == FailureCode.BUSY:
        delay = retry_after_busy(run.attempts, tries=busy_tries, spacing=busy_spacing)
        if delay is not None:
            retry_at = now + delay
            return RunStep("commit", RunUpdate(
                expected=RunResult.RUNNING,
                fields={"result": RunResult.RETRY_WAIT, "next_attempt_at": retry_at},
                schedule_fields={"last_result": f"server busy, retrying "
                                                f"(attempt {run.attempts})"},
                audit=(AuditEntry("run_busy", schedule.id, who,
                                  {"job": job.id, "attempt": run.attempts,
                                   "retry_at": retry_at.isoformat()}),),
                outbox=(OutboxItem(kind=OutboxKind.REPLY, channel=job.channel, job_id=job.id,
                                   thread_key=job.id,
                                   payload=busy_retry_reply(run.attempts, retry_at, now)),)),
                wake_at=retry_at)
    if job.error_code == FailureCode.STUCK and job.task_state:
        reason += f" (stuck in {job.task_state})"
    return RunStep("commit", RunUpdate(
        expected=RunResult.RUNNING,
        fields={"result": RunResult.FAILED, "detail": reason},
        schedule_fields={"last_result": f"failed: {reason}"[:500]},
        audit=(AuditEntry("run_failed", schedule.id, who,
                          {"job": job.id, "error_code": job.error_code,
                           "attempts": run.attempts}),),
        outbox=(OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=route.notify,
                           payload=run_failed_alert(schedule.id, label(schedule), reason,
                                                    run.attempts, route.mention)),)))


def retention_choice(images: Sequence[RetainableImage], schedule: ScheduleRow,
                     made: str | None, *, now: datetime,
                     failed_verify: Collection[str] = ()) -> tuple[RetainableImage, ...]:
    """What retention deletes of a server's `images` once a run of `schedule` made image
    `made`: `age_retention.select_by_count_and_age` (never a protected image nor the newest
    good one) and, belt and braces, never the image the run just made."""
    doomed = select_by_count_and_age(images, keep=schedule.keep, keep_days=schedule.keep_days,
                                     schedule_id=schedule.id, now=now,
                                     failed_verify=failed_verify)
    return tuple(i for i in doomed if i.id != made)


def retention_done(run: RunRow, schedule: ScheduleRow, job: Job,
                   deleted: Sequence[RetainableImage],
                   failed: Sequence[tuple[RetainableImage, str]],
                   route: Route | None = None, check: Verification | None = None) -> RunUpdate:
    """The run's end, recorded after retention: what was deleted, what could not be (with
    the cloud's reason), and the reply in the run's thread. A success, unless the image's
    restore test (`check`) failed: then a failed run, alerted in `route`'s channel."""
    who = actor(schedule.id)
    if check is not None and check.outcome == "failed":
        return _verify_failed(run, schedule, job, deleted, failed, route, check)
    audit = [AuditEntry("run_succeeded", schedule.id, who,
                        {"job": job.id, "image_id": job.image_id,
                         "slot": run.slot.isoformat()})]
    audit += _retention_audit(schedule, deleted, failed)
    name = job.image_name or job.image_id or job.id
    return RunUpdate(
        expected=RunResult.RUNNING,
        fields={"result": RunResult.SUCCEEDED, "detail": f"deleted {len(deleted)}"},
        schedule_fields={"last_result": f"succeeded: {name}"[:500]},
        audit=tuple(audit),
        outbox=(OutboxItem(kind=OutboxKind.REPLY, channel=job.channel, job_id=job.id,
                           thread_key=job.id,
                           payload=retention_reply(deleted, failed, schedule.keep)),))


def _retention_audit(schedule: ScheduleRow, deleted: Sequence[RetainableImage],
                     failed: Sequence[tuple[RetainableImage, str]]) -> list[AuditEntry]:
    who = actor(schedule.id)
    return ([AuditEntry("retention_deleted", schedule.id, who,
                        {"image_id": img.id, "name": img.name,
                         "created_at": img.created_at.isoformat()}) for img in deleted]
            + [AuditEntry("retention_failed", schedule.id, who,
                          {"image_id": img.id, "error": why}) for img, why in failed])


def _verify_failed(run: RunRow, schedule: ScheduleRow, job: Job,
                   deleted: Sequence[RetainableImage],
                   failed: Sequence[tuple[RetainableImage, str]], route: Route | None,
                   check: Verification) -> RunUpdate:
    """A run whose image failed its restore test: failed, and alerted like any failed run
    (the test's own result is already in the run's thread)."""
    name = job.image_name or job.image_id or job.id
    reason = f"restore test {check.id} of {name} failed: {check.error or 'see the thread'}"
    outbox = [OutboxItem(kind=OutboxKind.REPLY, channel=job.channel, job_id=job.id,
                         thread_key=job.id,
                         payload=retention_reply(deleted, failed, schedule.keep))]
    if route is not None:
        outbox.append(OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=route.notify,
                                 payload=run_failed_alert(schedule.id, label(schedule), reason,
                                                          run.attempts, route.mention)))
    return RunUpdate(
        expected=RunResult.RUNNING,
        fields={"result": RunResult.FAILED, "detail": reason[:500]},
        schedule_fields={"last_result": f"failed: {reason}"[:500]},
        audit=(AuditEntry("run_failed", schedule.id, actor(schedule.id),
                          {"job": job.id, "verification": check.id,
                           "image_id": job.image_id, "attempts": run.attempts}),
               *_retention_audit(schedule, deleted, failed)),
        outbox=tuple(outbox))
