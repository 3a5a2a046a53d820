"""The job state machine and the pure `advance` decision."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.imaging import jobs
from bot.imaging.jobs import (
    Job,
    PhaseDeadlines,
    advance,
    can_transition,
    poll_interval,
    state_for_task,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DL = PhaseDeadlines()


def make(state: str = jobs.SNAPSHOTTING, **kw: Any) -> Job:
    base: dict[str, Any] = dict(
        id="J1", state=state, server_ref="web1", requested_by="U1", channel="C1",
        created_at=T0, updated_at=T0, server_id="srv-1", image_id="img-1",
        submitted_at=T0, task_state="image_snapshot", image_status="queued")
    if state in (jobs.SNAPSHOTTING, jobs.PENDING_UPLOAD, jobs.UPLOADING):
        base.update(snapshot_started_at=T0, deadline_at=T0 + DL.snapshot)
    if state in (jobs.PENDING_UPLOAD, jobs.UPLOADING):
        base.update(snapshot_ended_at=T0 + timedelta(seconds=10),
                    task_state="image_pending_upload", deadline_at=T0 + DL.pending_upload)
    if state == jobs.UPLOADING:
        base.update(upload_started_at=T0 + timedelta(seconds=30), task_state="image_uploading",
                    image_status="saving", deadline_at=T0 + DL.upload)
    base.update(kw)
    return Job(**base)


def apply(job: Job, step: jobs.Step) -> Job:
    return dataclasses.replace(job, state=step.target or job.state, **dict(step.fields))


# --- transitions --------------------------------------------------------------------------


def test_transitions_follow_architecture() -> None:
    assert can_transition(jobs.AWAITING_CONFIRMATION, jobs.QUEUED)
    assert can_transition(jobs.AWAITING_CONFIRMATION, jobs.CANCELLED)
    assert can_transition(jobs.QUEUED, jobs.SUBMITTING)
    assert can_transition(jobs.SUBMITTING, jobs.SUCCEEDED)
    assert can_transition(jobs.SNAPSHOTTING, jobs.UPLOADING)
    assert not can_transition(jobs.UPLOADING, jobs.SNAPSHOTTING)  # never backwards
    assert not can_transition(jobs.SNAPSHOTTING, jobs.CANCELLED)  # a snapshot cannot be stopped
    assert not can_transition(jobs.AWAITING_CONFIRMATION, jobs.SUBMITTING)
    for terminal in jobs.TERMINAL:
        assert jobs.TRANSITIONS[terminal] == frozenset()
        assert not can_transition(terminal, jobs.QUEUED)
    assert not can_transition("bogus", jobs.QUEUED)


def test_state_sets() -> None:
    assert jobs.IN_FLIGHT == {jobs.QUEUED, jobs.SUBMITTING, jobs.SNAPSHOTTING,
                              jobs.PENDING_UPLOAD, jobs.UPLOADING}
    assert jobs.TERMINAL == {jobs.SUCCEEDED, jobs.FAILED, jobs.CANCELLED}
    assert set(jobs.TRANSITIONS) == set(jobs.STATES)
    assert not jobs.IN_FLIGHT & jobs.TERMINAL


@pytest.mark.parametrize(("task", "status", "expected"), [
    ("image_snapshot_pending", "queued", jobs.SNAPSHOTTING),
    ("image_snapshot", "queued", jobs.SNAPSHOTTING),
    ("image_backup", "queued", jobs.SNAPSHOTTING),
    ("image_pending_upload", "queued", jobs.PENDING_UPLOAD),
    ("image_uploading", "saving", jobs.UPLOADING),
    (None, "saving", jobs.UPLOADING),
    (None, "active", jobs.SUCCEEDED),
    ("image_uploading", "active", jobs.SUCCEEDED),
    (None, "killed", jobs.FAILED),
    ("image_uploading", "deleted", jobs.FAILED),
    (None, "pending_delete", jobs.FAILED),
    (None, "deactivated", jobs.FAILED),
    (None, "queued", None),
    (None, None, None),
    ("powering-off", None, None),
])
def test_state_for_task(task: str | None, status: str | None, expected: str | None) -> None:
    assert state_for_task(task, status) == expected


# --- advance: the happy path ----------------------------------------------------------------


def test_full_sequence_emits_each_phase_and_writes_may_resume_once() -> None:
    job = make(jobs.SUBMITTING, task_state=None, image_status=None, snapshot_started_at=None)
    seen: list[str] = []
    script = [
        (T0 + timedelta(seconds=1), "image_snapshot_pending", "queued", jobs.SNAPSHOTTING),
        (T0 + timedelta(seconds=2), "image_snapshot", "queued", None),
        (T0 + timedelta(seconds=14), "image_pending_upload", "queued", jobs.PENDING_UPLOAD),
        (T0 + timedelta(seconds=30), "image_uploading", "saving", jobs.UPLOADING),
        (T0 + timedelta(seconds=90), "image_uploading", "saving", None),
        (T0 + timedelta(seconds=120), None, "active", jobs.SUCCEEDED),
    ]
    for now, task, status, target in script:
        step = advance(job, task_state=task, image_status=status, image_vanished=False,
                       now=now, deadlines=DL)
        assert step.target == target, (now, task, status)
        seen += step.events
        job = apply(job, step)
    assert seen == ["phase:snapshotting", "writes_may_resume", "phase:pending_upload",
                    "phase:uploading", "succeeded"]
    assert job.state == jobs.SUCCEEDED
    assert job.snapshot_started_at == T0 + timedelta(seconds=1)
    assert job.snapshot_ended_at == T0 + timedelta(seconds=14)
    assert job.upload_started_at == T0 + timedelta(seconds=30)
    assert job.finished_at == T0 + timedelta(seconds=120)
    assert job.deadline_at is None
    assert job.task_state is None and job.image_status == "active"


def test_jump_from_snapshotting_straight_to_succeeded() -> None:
    job = make(jobs.SNAPSHOTTING)
    now = T0 + timedelta(seconds=40)
    step = advance(job, task_state=None, image_status="active", image_vanished=False,
                   now=now, deadlines=DL)
    assert step.target == jobs.SUCCEEDED
    assert step.events == ("writes_may_resume", "succeeded")
    assert step.fields["snapshot_ended_at"] == now
    assert step.fields["finished_at"] == now


def test_jump_to_uploading_emits_writes_may_resume_then_phase() -> None:
    job = make(jobs.SNAPSHOTTING)
    now = T0 + timedelta(seconds=20)
    step = advance(job, task_state="image_uploading", image_status="saving",
                   image_vanished=False, now=now, deadlines=DL)
    assert step.target == jobs.UPLOADING
    assert step.events == ("writes_may_resume", "phase:uploading")
    assert step.fields["upload_started_at"] == now
    # The upload deadline is an overall cap counted from submission.
    assert step.fields["deadline_at"] == T0 + DL.upload


def test_writes_may_resume_not_repeated_after_success_from_upload() -> None:
    job = make(jobs.UPLOADING)
    step = advance(job, task_state=None, image_status="active", image_vanished=False,
                   now=T0 + timedelta(minutes=5), deadlines=DL)
    assert step.events == ("succeeded",)
    assert "snapshot_ended_at" not in step.fields


def test_stale_observation_never_moves_backwards() -> None:
    job = make(jobs.UPLOADING)
    step = advance(job, task_state="image_snapshot", image_status="saving",
                   image_vanished=False, now=T0 + timedelta(minutes=1), deadlines=DL)
    assert step.target is None
    assert step.events == ()


def test_no_change_gives_empty_step() -> None:
    job = make(jobs.SNAPSHOTTING)
    step = advance(job, task_state="image_snapshot", image_status="queued",
                   image_vanished=False, now=T0 + timedelta(seconds=5), deadlines=DL)
    assert not step.changed


def test_terminal_and_unsubmitted_jobs_are_left_alone() -> None:
    for state in (jobs.SUCCEEDED, jobs.FAILED, jobs.CANCELLED, jobs.QUEUED,
                  jobs.AWAITING_CONFIRMATION):
        step = advance(make(state), task_state=None, image_status="killed",
                       image_vanished=True, now=T0, deadlines=DL)
        assert not step.changed, state


def test_image_size_is_recorded() -> None:
    step = advance(make(jobs.UPLOADING), task_state="image_uploading", image_status="saving",
                   image_vanished=False, now=T0, deadlines=DL, image_size=1234)
    assert step.fields == {"image_size": 1234}


# --- advance: failures ----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [
    ("killed", jobs.KILLED), ("deactivated", jobs.KILLED),
    ("deleted", jobs.VANISHED), ("pending_delete", jobs.VANISHED)])
def test_glance_failure_statuses(status: str, code: str) -> None:
    step = advance(make(jobs.UPLOADING), task_state=None, image_status=status,
                   image_vanished=False, now=T0 + timedelta(minutes=3), deadlines=DL)
    assert step.target == jobs.FAILED
    assert step.fields["error_code"] == code
    assert status in step.fields["error"]
    assert step.events == (f"failed:{code}",)
    assert step.fields["finished_at"] == T0 + timedelta(minutes=3)


def test_vanished_image_fails() -> None:
    step = advance(make(jobs.SNAPSHOTTING), task_state=None, image_status=None,
                   image_vanished=True, now=T0 + timedelta(seconds=9), deadlines=DL)
    assert step.target == jobs.FAILED
    assert step.fields["error_code"] == jobs.VANISHED
    assert "writes_may_resume" not in step.events


def test_orphan_needs_the_grace_period() -> None:
    job = make(jobs.UPLOADING)
    t1 = T0 + timedelta(minutes=5)
    step = advance(job, task_state=None, image_status="saving", image_vanished=False,
                   now=t1, deadlines=DL)
    assert step.target is None
    assert step.fields["task_cleared_at"] == t1
    job = apply(job, step)
    # Still within the grace: nothing happens.
    step = advance(job, task_state=None, image_status="saving", image_vanished=False,
                   now=t1 + DL.orphan_grace, deadlines=DL)
    assert step.target is None and not step.fields
    step = advance(job, task_state=None, image_status="saving", image_vanished=False,
                   now=t1 + DL.orphan_grace + timedelta(seconds=1), deadlines=DL)
    assert step.target == jobs.FAILED
    assert step.fields["error_code"] == jobs.ORPHANED


def test_orphan_timer_resets_when_a_task_reappears() -> None:
    job = make(jobs.UPLOADING, task_cleared_at=T0 + timedelta(minutes=1))
    step = advance(job, task_state="image_uploading", image_status="saving",
                   image_vanished=False, now=T0 + timedelta(hours=1), deadlines=DL)
    assert step.target is None
    assert step.fields == {"task_cleared_at": None}


def test_queued_image_without_task_in_snapshot_phase_is_orphan_candidate() -> None:
    job = make(jobs.SNAPSHOTTING)
    t1 = T0 + timedelta(seconds=30)
    step = advance(job, task_state=None, image_status="queued", image_vanished=False,
                   now=t1, deadlines=DL)
    assert step.target is None
    assert "writes_may_resume" not in step.events  # queued: the copy may not have happened
    job = apply(job, step)
    step = advance(job, task_state=None, image_status="queued", image_vanished=False,
                   now=t1 + timedelta(minutes=11), deadlines=DL)
    assert step.fields["error_code"] == jobs.ORPHANED


@pytest.mark.parametrize(("state", "task", "limit"), [
    (jobs.SNAPSHOTTING, "image_snapshot", DL.snapshot),
    (jobs.PENDING_UPLOAD, "image_pending_upload", DL.pending_upload),
    (jobs.UPLOADING, "image_uploading", DL.upload),
])
def test_stuck_past_phase_deadline(state: str, task: str, limit: timedelta) -> None:
    job = make(state, task_state=task, deadline_at=T0 + limit)
    status = "saving" if state == jobs.UPLOADING else "queued"
    step = advance(job, task_state=task, image_status=status, image_vanished=False,
                   now=T0 + limit, deadlines=DL)
    assert step.target is None  # exactly at the deadline is still fine
    step = advance(job, task_state=task, image_status=status, image_vanished=False,
                   now=T0 + limit + timedelta(seconds=1), deadlines=DL)
    assert step.target == jobs.FAILED
    assert step.fields["error_code"] == jobs.STUCK
    assert task in step.fields["error"]
    assert step.events == ("failed:stuck",)


def test_progress_beats_the_old_deadline() -> None:
    job = make(jobs.SNAPSHOTTING, deadline_at=T0 + timedelta(minutes=1))
    now = T0 + timedelta(minutes=2)
    step = advance(job, task_state="image_pending_upload", image_status="queued",
                   image_vanished=False, now=now, deadlines=DL)
    assert step.target == jobs.PENDING_UPLOAD
    assert step.fields["deadline_at"] == now + DL.pending_upload


def test_deadlines_are_configurable() -> None:
    short = PhaseDeadlines(snapshot=timedelta(seconds=30))
    job = make(jobs.SUBMITTING, task_state=None, image_status=None, snapshot_started_at=None,
               deadline_at=None)
    step = advance(job, task_state="image_snapshot", image_status="queued",
                   image_vanished=False, now=T0, deadlines=short)
    assert step.fields["deadline_at"] == T0 + timedelta(seconds=30)


@given(st.lists(st.tuples(
    st.sampled_from([None, "image_snapshot_pending", "image_snapshot", "image_pending_upload",
                     "image_uploading"]),
    st.sampled_from([None, "queued", "saving", "active", "killed", "deleted"]),
    st.booleans(),
    st.integers(min_value=0, max_value=4000)), max_size=12))
def test_advance_only_takes_allowed_transitions(
        script: list[tuple[str | None, str | None, bool, int]]) -> None:
    job = make(jobs.SUBMITTING, task_state=None, image_status=None, snapshot_started_at=None,
               deadline_at=None)
    now = T0
    resumes = 0
    for task, status, vanished, seconds in script:
        now += timedelta(seconds=seconds)
        step = advance(job, task_state=task, image_status=status, image_vanished=vanished,
                       now=now, deadlines=DL)
        if step.target is not None:
            assert can_transition(job.state, step.target), (job.state, step.target)
        resumes += step.events.count("writes_may_resume")
        job = apply(job, step)
        assert set(step.fields) <= set(jobs.JOB_FIELDS) - {"id", "state"}
    assert resumes <= 1
    if job.state in jobs.TERMINAL:
        assert job.finished_at is not None


# --- poll interval --------------------------------------------------------------------------


def test_poll_interval_is_adaptive() -> None:
    assert poll_interval([]) == 30.0
    assert poll_interval([make(jobs.SUCCEEDED)]) == 30.0
    assert poll_interval([make(jobs.UPLOADING)]) == 10.0
    assert poll_interval([make(jobs.PENDING_UPLOAD), make(jobs.UPLOADING)]) == 10.0
    assert poll_interval([make(jobs.UPLOADING), make(jobs.SNAPSHOTTING)]) == 2.0
    assert poll_interval([make(jobs.SUBMITTING)]) == 2.0
