"""The service's words as types: every state, code and kind stored in the database or compared
in code is one of these `StrEnum`s. Values are the strings stored today, so rows and payloads
are unchanged; a `StrEnum` member equals its string (`JobState.QUEUED == "queued"`)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is (see `bot.imaging.jobs.TRANSITIONS`)."""

    AWAITING_CONFIRMATION = "awaiting_confirmation"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SNAPSHOTTING = "snapshotting"
    PENDING_UPLOAD = "pending_upload"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureCode(StrEnum):
    """Why a job failed (`Job.error_code`)."""

    BUSY = "busy"
    KILLED = "killed"
    VANISHED = "vanished"
    STUCK = "stuck"
    DENIED = "denied"
    UNREACHABLE = "unreachable"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    ORPHANED = "orphaned"
    REJECTED = "rejected"  # any other final refusal from the cloud (the engine's fallback)
    DUPLICATE = "duplicate"  # another job of ours is imaging the same server


class OutboxKind(StrEnum):
    """What an outbox row asks the notifier to do."""

    POST_PARENT = "post_parent"
    UPDATE_PARENT = "update_parent"
    REPLY = "reply"
    EPHEMERAL = "ephemeral"
    RESPOND = "respond"
    CHANNEL_POST = "channel_post"
    DM_COPY = "dm_copy"  # a change request's copy to one approver (bot.slack.direct)


class RequestStatus(StrEnum):
    """A change request's status."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


class RunResult(StrEnum):
    """A scheduled run's result (`schedule_runs.result`)."""

    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SKIPPED = "skipped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class GlanceStatus(StrEnum):
    """Glance image statuses (Image API v2, "Image statuses")."""

    QUEUED = "queued"
    SAVING = "saving"
    UPLOADING = "uploading"
    IMPORTING = "importing"
    ACTIVE = "active"
    KILLED = "killed"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    PENDING_DELETE = "pending_delete"
