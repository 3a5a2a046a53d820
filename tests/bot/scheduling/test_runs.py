"""`bot.scheduling.runs.run_step` as a pure function: no store, no cloud. Busy retries,
retention's choice (only the schedule's own ACTIVE, unpinned images; never the new one; never
before a success; sorted by created_at) and alerts (shared/reference/scheduling.md (b) 3-7)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.imaging.jobs import TERMINAL, Job
from bot.imaging.verify import BOOTING, FAILED, PASSED, Verification, VerifyState
from bot.policy import ChannelPolicy
from bot.scheduling.retention import RetainableImage
from bot.scheduling.runs import Route, RunStep, retention_done, route_for, run_step
from bot.store import RunRow, ScheduleRow
from bot.vocabulary import FailureCode, JobState, OutboxKind, RunResult

NOW = datetime(2025, 3, 4, 2, 1, tzinfo=UTC)
SLOT = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)
ROUTE = Route(notify="C0ALERTS", notify_name=None, mention="<!here>", cloud="lab")


def schedule(keep: int = 2, sid: str = "S1") -> ScheduleRow:
    return ScheduleRow(id=sid, server_id="srv-1", server_ref="web-1", server_name="web-1",
                       frequency="daily", day=None, at="03:00", tz="Europe/Berlin", keep=keep,
                       channel="C0OPS", channel_name="ops", created_by="U0ALICE",
                       approved_by="U0BOB", request_id="R1", effective_at=NOW - timedelta(days=9),
                       last_slot=SLOT, last_result="running", last_run_at=NOW, status="active",
                       created_at=NOW - timedelta(days=9), updated_at=NOW)


def run(result: str = RunResult.RUNNING, attempts: int = 1,
        next_attempt_at: datetime | None = None, job_id: str | None = "J1") -> RunRow:
    return RunRow(id=1, schedule_id="S1", slot=SLOT, missed=0, attempts=attempts, job_id=job_id,
                  result=result, next_attempt_at=next_attempt_at, detail=None,
                  created_at=SLOT, updated_at=NOW)


def job(state: str = JobState.SUCCEEDED, error_code: str | None = None,
        image_id: str | None = "new", task_state: str | None = None) -> Job:
    return Job(id="J1", state=state, server_ref="web-1", requested_by="schedule:S1",
               channel="C0ALERTS", created_at=SLOT, updated_at=NOW, server_id="srv-1",
               image_id=image_id, error_code=error_code, error="it went wrong",
               task_state=task_state, schedule_id="S1", cloud="lab")


def image(iid: str, age_hours: float, *, sid: str | None = "S1", status: str = "active",
          protected: bool = False) -> RetainableImage:
    return RetainableImage(id=iid, status=status, created_at=NOW - timedelta(hours=age_hours),
                           protected=protected, schedule_id=sid, name=f"img-{iid}")


def step(r: RunRow, j: Job | None, images: list[RetainableImage] | None = None, *,
         keep: int = 2, now: datetime = NOW, tries: int = 3) -> RunStep:
    return run_step(r, schedule(keep), j, now=now, route=ROUTE, images=images, busy_tries=tries,
                    busy_spacing=timedelta(hours=1))


# --- busy retries and alerts -------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_busy_server_waits_an_hour_then_tries_again(attempt: int) -> None:
    busy = step(run(attempts=attempt), job(JobState.FAILED, FailureCode.BUSY))
    assert busy.kind == "commit" and busy.update is not None
    assert busy.update.expected == RunResult.RUNNING
    assert busy.update.fields == {"result": RunResult.RETRY_WAIT,
                                  "next_attempt_at": NOW + timedelta(hours=1)}
    assert busy.wake_at == NOW + timedelta(hours=1)
    [reply] = busy.update.outbox
    assert reply.kind == OutboxKind.REPLY and reply.job_id == "J1"
    assert [a.action for a in busy.update.audit] == ["run_busy"]
    waiting = run(RunResult.RETRY_WAIT, attempt, NOW + timedelta(hours=1))
    early = step(waiting, None, now=NOW + timedelta(minutes=59))
    assert early == RunStep(wake_at=NOW + timedelta(hours=1))
    due = step(waiting, None, now=NOW + timedelta(hours=1))
    assert due.kind == "commit" and due.update is not None and due.update.job is not None
    assert due.update.expected == RunResult.RETRY_WAIT
    assert due.update.fields == {"result": RunResult.RUNNING, "next_attempt_at": None}
    assert due.update.job["cloud"] == "lab" and due.update.job["channel"] == "C0ALERTS"
    assert f"attempt {attempt + 1}" in due.update.job["note"]


def test_the_last_busy_try_fails_with_one_alert_naming_the_attempts() -> None:
    out = step(run(attempts=3), job(JobState.FAILED, FailureCode.BUSY))
    assert out.kind == "commit" and out.update is not None
    assert out.update.fields["result"] == RunResult.FAILED
    [alert] = out.update.outbox
    assert alert.kind == OutboxKind.CHANNEL_POST and alert.channel == "C0ALERTS"
    assert alert.payload["text"].startswith("<!here>") and "after 3 attempt" in alert.payload["text"]


def test_other_failures_alert_at_once_and_a_stuck_job_says_where() -> None:
    out = step(run(), job(JobState.FAILED, FailureCode.STUCK, task_state="image_uploading"))
    assert out.update is not None
    assert out.update.fields["detail"] == "it went wrong (stuck in image_uploading)"
    assert out.update.schedule_fields["last_result"].startswith("failed: it went wrong")
    assert [a.action for a in out.update.audit] == ["run_failed"]


@pytest.mark.parametrize("state", sorted(set(JobState) - TERMINAL))
def test_a_job_still_working_means_wait(state: str) -> None:
    assert step(run(), job(state)) == RunStep()
    assert step(run(job_id=None), None) == RunStep()


# --- retention ---------------------------------------------------------------------------------


def test_a_success_asks_for_the_images_then_chooses_the_oldest_own_active_ones() -> None:
    assert step(run(), job()).kind == "list_images"
    images = [image("new", 0.01), image("own1", 72), image("own2", 48), image("own3", 24),
              image("pinned", 200, protected=True), image("manual", 300, sid=None),
              image("other", 250, sid="S7"), image("broken", 100, status="killed"),
              image("saving", 150, status="saving")]
    out = step(run(), job(), images, keep=2)
    assert out.kind == "retain" and out.update is None
    assert [i.id for i in out.delete] == ["own1", "own2"]


def test_never_the_image_the_run_just_made_even_when_it_sorts_first() -> None:
    images = [image("made", 500), image("a", 2), image("b", 1)]  # a clock gone wrong
    out = step(run(), job(image_id="made"), images, keep=1)
    assert "made" not in [i.id for i in out.delete] and [i.id for i in out.delete] == ["a"]


def test_retention_done_records_deleted_and_refused_and_replies_in_the_thread() -> None:
    deleted = [image("own1", 72)]
    refused = [(image("own2", 48), "The cloud denied permission")]
    update = retention_done(run(), schedule(), job(), deleted, refused)
    assert update.expected == RunResult.RUNNING
    assert update.fields == {"result": RunResult.SUCCEEDED, "detail": "deleted 1"}
    assert [a.action for a in update.audit] == ["run_succeeded", "retention_deleted",
                                                "retention_failed"]
    [reply] = update.outbox
    assert reply.kind == OutboxKind.REPLY and reply.thread_key == "J1"
    assert "img-own1" in reply.payload["text"]


def check(state: str, outcome: str | None = None) -> Verification:
    return Verification(id="V1", state=VerifyState(state), image_ref="new", requested_by="x",
                        channel="C0ALERTS", created_at=NOW, updated_at=NOW, job_id="J1",
                        outcome=outcome, error="failed to boot" if outcome == "failed" else None)


def test_with_verify_retention_waits_for_the_restore_test_and_a_failed_image_is_not_good(
        ) -> None:
    verified = replace(job(), verify=True)
    sched = schedule(keep=1)

    def decide(c: Verification | None, images: list[RetainableImage] | None = None,
               failed: frozenset[str] = frozenset()) -> RunStep:
        return run_step(run(), sched, verified, now=NOW, route=ROUTE, images=images,
                        check=c, failed_verify=failed)

    assert decide(None) == RunStep()  # not queued yet
    assert decide(check(BOOTING)) == RunStep()  # still booting
    assert decide(check(PASSED, "passed")).kind == "list_images"
    images = [image("new", 0.01), image("good", 48), image("older", 72)]
    passed = decide(check(PASSED, "passed"), images)
    assert [i.id for i in passed.delete] == ["older", "good"]
    # The new image failed its test: the newest good one ("good") stays, whatever keep says.
    failed = decide(check(FAILED, "failed"), images, frozenset({"new"}))
    assert [i.id for i in failed.delete] == ["older"]
    update = retention_done(run(), sched, verified, [image("older", 72)], [], ROUTE,
                            check(FAILED, "failed"))
    assert update.fields["result"] == RunResult.FAILED
    assert "restore test V1" in update.fields["detail"]
    assert [a.action for a in update.audit] == ["run_failed", "retention_deleted"]
    assert [o.kind for o in update.outbox] == [OutboxKind.REPLY, OutboxKind.CHANNEL_POST]
    assert "<!here>" in str(update.outbox[1].payload)
    ok = retention_done(run(), sched, verified, [], [], ROUTE, check(PASSED, "passed"))
    assert ok.fields["result"] == RunResult.SUCCEEDED


images_st = st.lists(st.builds(
    RetainableImage,
    id=st.text("abcdef", min_size=1, max_size=4),
    status=st.sampled_from(["active", "saving", "killed", "queued", "ACTIVE"]),
    created_at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2025, 3, 4),
                            timezones=st.just(UTC)),
    protected=st.booleans(),
    schedule_id=st.sampled_from(["S1", "S2", None]),
), max_size=12, unique_by=lambda i: i.id)


@given(images=images_st, keep=st.integers(1, 5), made=st.text("abcdef", min_size=1, max_size=4))
def test_property_retention_deletes_only_own_active_unpinned_and_keeps_the_newest(
        images: list[RetainableImage], keep: int, made: str) -> None:
    out = step(run(), job(image_id=made), images, keep=keep)
    assert out.kind == "retain"
    doomed = {i.id for i in out.delete}
    ours = [i for i in images if i.schedule_id == "S1" and i.status.lower() == "active"
            and not i.protected]
    assert made not in doomed
    assert all(i.schedule_id == "S1" and i.status.lower() == "active" and not i.protected
               for i in out.delete)
    kept = [i for i in ours if i.id not in doomed]
    assert len(kept) >= min(keep, len(ours))  # never below keep
    # Exactly the oldest beyond `keep` (by created_at, never by name), less the new image.
    assert doomed == {i.id for i in sorted(ours, key=_age)[:-keep]} - {made}
    if doomed and kept:
        newest_doomed = max(i.created_at for i in out.delete)
        assert all(i.created_at >= newest_doomed for i in kept if i.id != made)


def _age(i: RetainableImage) -> tuple[datetime, str]:
    return (i.created_at, i.id)


@given(images=images_st, state=st.sampled_from(sorted(set(JobState) - {JobState.SUCCEEDED})),
       code=st.sampled_from([None, *FailureCode]), attempts=st.integers(1, 5))
def test_property_nothing_is_deleted_unless_the_run_succeeded(
        images: list[RetainableImage], state: str, code: str | None, attempts: int) -> None:
    out = step(run(attempts=attempts), job(state, code), images)
    assert out.kind in ("wait", "commit") and out.delete == ()
    if out.update is not None:
        assert out.update.fields["result"] in (RunResult.RETRY_WAIT, RunResult.FAILED)
        assert all(a.action in ("run_busy", "run_failed") for a in out.update.audit)


def test_route_follows_the_channel_policy() -> None:
    plain = route_for(schedule(), ChannelPolicy())
    assert plain == Route("C0OPS", "ops", None, None)
    alerts = route_for(schedule(), ChannelPolicy(notify_channel="#ops-alerts", mention="<!here>",
                                                 cloud="lab"))
    assert alerts == Route("#ops-alerts", "ops-alerts", "<!here>", "lab")
