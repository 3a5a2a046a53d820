"""The job state machine: pure decisions over data, no I/O.

A job is one request to image one server. The engine observes the cloud and asks `advance` what
one observation means for a job; the store enforces `TRANSITIONS` on every state change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from bot.vocabulary import FailureCode, GlanceStatus, JobState

# The members under their short names (callers say `jobs.QUEUED`, `jobs.STUCK`).
AWAITING_CONFIRMATION = JobState.AWAITING_CONFIRMATION
QUEUED = JobState.QUEUED
SUBMITTING = JobState.SUBMITTING
SNAPSHOTTING = JobState.SNAPSHOTTING
PENDING_UPLOAD = JobState.PENDING_UPLOAD
UPLOADING = JobState.UPLOADING
SUCCEEDED = JobState.SUCCEEDED
FAILED = JobState.FAILED
CANCELLED = JobState.CANCELLED

STATES: tuple[JobState, ...] = tuple(JobState)
IN_FLIGHT = frozenset({QUEUED, SUBMITTING, SNAPSHOTTING, PENDING_UPLOAD, UPLOADING})
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# States in which the cloud is working on an image (the engine observes these).
CLOUD_PHASES = (SNAPSHOTTING, PENDING_UPLOAD, UPLOADING)

TRANSITIONS: Mapping[str, frozenset[JobState]] = {
    # `failed` from awaiting_confirmation: the server could not be resolved (not found,
    # ambiguous, denied, already being imaged) before anyone clicked; the engine fails the job
    # early. A typed create is still private then (no card): only the requester is told.
    AWAITING_CONFIRMATION: frozenset({QUEUED, CANCELLED, FAILED}),
    QUEUED: frozenset({SUBMITTING, CANCELLED, FAILED}),
    SUBMITTING: frozenset({SNAPSHOTTING, PENDING_UPLOAD, UPLOADING, SUCCEEDED, FAILED}),
    SNAPSHOTTING: frozenset({PENDING_UPLOAD, UPLOADING, SUCCEEDED, FAILED}),
    PENDING_UPLOAD: frozenset({UPLOADING, SUCCEEDED, FAILED}),
    UPLOADING: frozenset({SUCCEEDED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

# Failure causes (Job.error_code).
BUSY = FailureCode.BUSY
KILLED = FailureCode.KILLED
VANISHED = FailureCode.VANISHED
STUCK = FailureCode.STUCK
DENIED = FailureCode.DENIED
UNREACHABLE = FailureCode.UNREACHABLE
NOT_FOUND = FailureCode.NOT_FOUND
AMBIGUOUS = FailureCode.AMBIGUOUS
ORPHANED = FailureCode.ORPHANED
REJECTED = FailureCode.REJECTED
DUPLICATE = FailureCode.DUPLICATE
FAILURE_CODES = frozenset(FailureCode)

# Nova task states -> our phase. `image_backup` is the createBackup twin of image_snapshot.
TASK_PHASES: Mapping[str, JobState] = {
    "image_snapshot_pending": SNAPSHOTTING,
    "image_snapshot": SNAPSHOTTING,
    "image_backup": SNAPSHOTTING,
    "image_pending_upload": PENDING_UPLOAD,
    "image_uploading": UPLOADING,
}
# Glance statuses, grouped by what they mean for a job.
GLANCE_ACTIVE = GlanceStatus.ACTIVE
GLANCE_KILLED = frozenset({GlanceStatus.KILLED, GlanceStatus.DEACTIVATED})
GLANCE_GONE = frozenset({GlanceStatus.DELETED, GlanceStatus.PENDING_DELETE})
GLANCE_UNFINISHED = frozenset({GlanceStatus.QUEUED, GlanceStatus.SAVING})
GLANCE_WRITING = frozenset({GlanceStatus.SAVING, GlanceStatus.UPLOADING, GlanceStatus.IMPORTING})

_RANK: Mapping[JobState, int] = {SUBMITTING: 0, SNAPSHOTTING: 1, PENDING_UPLOAD: 2, UPLOADING: 3}


def can_transition(current: str, target: str) -> bool:
    """True when the state machine allows `current -> target`."""
    return target in TRANSITIONS.get(current, frozenset())


@dataclass(frozen=True)
class Job:
    """One image request, as stored. Datetimes are timezone-aware UTC."""

    id: str
    state: JobState
    server_ref: str
    requested_by: str
    channel: str
    created_at: datetime
    updated_at: datetime
    server_id: str | None = None
    server_name: str | None = None
    image_name: str | None = None
    image_id: str | None = None
    note: str | None = None
    thread_ts: str | None = None
    response_url: str | None = None
    task_state: str | None = None
    image_status: str | None = None
    image_size: int | None = None
    error_code: FailureCode | None = None
    error: str | None = None
    schedule_id: str | None = None
    dedupe_key: str | None = None
    volume_backed: bool = False
    data_disks: tuple[str, ...] = ()
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    submitted_at: datetime | None = None
    snapshot_started_at: datetime | None = None
    snapshot_ended_at: datetime | None = None  # the moment writes may resume
    upload_started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None  # deadline of the current phase
    # When the server was first seen with no task while the image was still unfinished
    # (the orphan timer); None while Nova reports a task.
    task_cleared_at: datetime | None = None
    cloud: str | None = None  # clouds.yaml entry from the channel policy; None = the default
    # The channel's name when the job was made (slash commands carry it): policies may be keyed
    # by name, and clicks and alerts must find the same policy as the command did.
    channel_name: str | None = None
    cancelled_by: str | None = None  # who cancelled (audit, shown on the card)
    # When the job's public card was queued. A typed create stays private (no card) until its
    # server is resolved; a job that fails before that is answered to the requester alone.
    announced_at: datetime | None = None
    # `--verify`: once the image is made, boot a throw-away server from it (bot.imaging.verify).
    verify: bool = False

    @property
    def number(self) -> int:
        """The integer behind the 'J<n>' id."""
        return int(self.id[1:])

    @property
    def server_label(self) -> str:
        """The best name for the server: resolved name, else what the user typed."""
        return self.server_name or self.server_ref


JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Job))
DATETIME_FIELDS = frozenset({"created_at", "updated_at", "confirmed_at", "submitted_at",
                             "snapshot_started_at", "snapshot_ended_at", "upload_started_at",
                             "finished_at", "deadline_at", "task_cleared_at", "announced_at"})


@dataclass(frozen=True)
class PhaseDeadlines:
    """How long each phase may last before the job is declared stuck."""

    snapshot: timedelta = timedelta(hours=1)
    pending_upload: timedelta = timedelta(hours=2)
    upload: timedelta = timedelta(hours=24)  # overall cap, counted from submission
    orphan_grace: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Step:
    """What one observation means: a target state (None = stay), fields to set, and events."""

    target: JobState | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when anything needs writing."""
        return self.target is not None or bool(self.fields) or bool(self.events)


def state_for_task(task_state: str | None, image_status: str | None) -> JobState | None:
    """Our state for a Nova task state and Glance image status; None when they say nothing.

    Glance's verdict wins over Nova's task state (a finished or failed image is final even if the
    server still shows a task). With no task state, an image being written means the upload is
    running; a `queued` image with no task says nothing by itself (see the orphan rule).
    """
    if image_status == GLANCE_ACTIVE:
        return SUCCEEDED
    if image_status in GLANCE_KILLED or image_status in GLANCE_GONE:
        return FAILED
    if task_state is not None and task_state in TASK_PHASES:
        return TASK_PHASES[task_state]
    if task_state is None and image_status in GLANCE_WRITING:
        return UPLOADING
    return None


def _phase_deadline(job: Job, phase: JobState, now: datetime,
                    deadlines: PhaseDeadlines) -> datetime:
    if phase == SNAPSHOTTING:
        return now + deadlines.snapshot
    if phase == PENDING_UPLOAD:
        return now + deadlines.pending_upload
    start = job.submitted_at or job.snapshot_started_at or job.created_at
    return start + deadlines.upload


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _fail(job: Job, code: FailureCode, message: str, now: datetime,
          base: dict[str, Any]) -> Step:
    fields_ = dict(base)
    fields_.update(error_code=code, error=message, finished_at=now, deadline_at=None)
    return Step(target=FAILED, fields=fields_, events=(f"failed:{code}",))


def advance(job: Job, *, task_state: str | None, image_status: str | None,
            image_vanished: bool, now: datetime, deadlines: PhaseDeadlines,
            image_size: int | None = None) -> Step:
    """Decide what one observation of the cloud means for `job`.

    Returns the target state (None for no change), the fields to set, and events for the
    notifier: `phase:<state>`, `writes_may_resume`, `succeeded`, `failed:<cause>`.
    Only jobs in `submitting` or a cloud phase are advanced; anything else is left alone.
    """
    if job.state not in _RANK:
        return Step()
    base: dict[str, Any] = {}
    if task_state != job.task_state:
        base["task_state"] = task_state
    if image_status is not None and image_status != job.image_status:
        base["image_status"] = image_status
    if image_size is not None and image_size != job.image_size:
        base["image_size"] = image_size
    shown_task = task_state or job.task_state or "none"

    if image_vanished:
        return _fail(job, VANISHED, "The image disappeared from the cloud (404) while it was "
                     f"being made (last task state {shown_task}).", now, base)
    if image_status in GLANCE_KILLED:
        return _fail(job, KILLED, f"The cloud marked the image `{image_status}`: the upload "
                     "failed.", now, base)
    if image_status in GLANCE_GONE:
        return _fail(job, VANISHED, f"The image was deleted (`{image_status}`) before it "
                     "finished.", now, base)

    events: list[str] = []
    fields_ = dict(base)

    def copy_done() -> None:
        # The disk copy (the quiesce window) is over: tell the user once.
        if job.snapshot_ended_at is None and "snapshot_ended_at" not in fields_:
            fields_["snapshot_ended_at"] = now
            events.append("writes_may_resume")

    if image_status == GLANCE_ACTIVE:
        copy_done()
        fields_.update(finished_at=now, deadline_at=None, task_cleared_at=None)
        events.append("succeeded")
        return Step(target=SUCCEEDED, fields=fields_, events=tuple(events))

    target: JobState | None = None
    phase = state_for_task(task_state, image_status)
    if phase is not None and phase in _RANK and _RANK[phase] > _RANK[job.state]:
        target = phase
        if phase == SNAPSHOTTING:
            if job.snapshot_started_at is None:
                fields_["snapshot_started_at"] = now
        else:
            copy_done()
            if phase == UPLOADING and job.upload_started_at is None:
                fields_["upload_started_at"] = now
        fields_["deadline_at"] = _phase_deadline(job, phase, now, deadlines)
        events.append(f"phase:{phase}")
    elif (task_state is None and image_status in GLANCE_WRITING
          and job.state != SUBMITTING):
        copy_done()

    # Orphan rule: Nova dropped the task but the image never finished.
    if task_state is None and image_status in GLANCE_UNFINISHED:
        if job.task_cleared_at is None:
            fields_["task_cleared_at"] = now
        elif now - job.task_cleared_at > deadlines.orphan_grace:
            return _fail(job, ORPHANED, "The server has no task any more but the image stayed "
                         f"`{image_status}` for over {_human(deadlines.orphan_grace)}: the "
                         "compute service probably restarted and abandoned it.", now, base)
    elif job.task_cleared_at is not None:
        fields_["task_cleared_at"] = None

    deadline = fields_.get("deadline_at", job.deadline_at)
    if target is None and deadline is not None and now > deadline:
        limit = {SNAPSHOTTING: deadlines.snapshot, PENDING_UPLOAD: deadlines.pending_upload,
                 UPLOADING: deadlines.upload}.get(job.state)
        past = f" past the {_human(limit)} deadline" if limit else " past its deadline"
        return _fail(job, STUCK, f"Stuck in task state {shown_task}{past}.", now, base)

    return Step(target=target, fields=fields_, events=tuple(events))


COPY_POLL = 2.0  # seconds between looks while a disk is copied (the quiesce window)


def poll_interval(jobs: Sequence[Job]) -> float:
    """Seconds until the next observation: fast while a disk is being copied."""
    states = {job.state for job in jobs}
    if states & {QUEUED, SUBMITTING, SNAPSHOTTING}:
        return COPY_POLL  # the quiesce window: users wait to resume writes
    if states & {PENDING_UPLOAD, UPLOADING}:
        return 10.0
    return 30.0
