"""What schedule operations say (bot.scheduling.op_messages, and the approval message and the
`schedules` / `approvals` answers built with them): pure, so plain asserts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta

import pytest

from bot.scheduling.approvals import ApprovalRules, ChangeRequest, new_request
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.messages import ScheduleLine, approval_message, approvals_text, schedules_text
from bot.scheduling.op_messages import schedule_notes, skipped_on_request
from bot.scheduling.operations import OpKind, OpState, ScheduleOp
from bot.scheduling.retention import RetainableImage, kept_because_protected
from bot.scheduling.rows import approval_view
from bot.vocabulary import RequestStatus
from tests.bot.test_render_schedules import action_ids, all_text

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
SPEC = ScheduleSpec("daily", None, time(3, 0), "UTC", 2)
SLOT = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
RULES = ApprovalRules(approvers=frozenset({"U0BOB"}))


def op_request(kind: OpKind, slot: datetime | None = None, **kw: object) -> ChangeRequest:
    req = new_request(id="R5", kind="set", server="srv-1", old=SPEC, new=SPEC,
                      requested_by="U0ALICE", channel="C0OPS", now=NOW, rules=RULES,
                      operation=ScheduleOp(kind, "S3", slot))
    return dataclasses.replace(req, **kw)  # type: ignore[arg-type]


def image(name: str, days: float, protected: bool = False, schedule: str = "S3",
          status: str = "active") -> RetainableImage:
    return RetainableImage(id=name, status=status, created_at=NOW - timedelta(days=days),
                           protected=protected, schedule_id=schedule, name=name)


@pytest.mark.parametrize(("kind", "slot", "says", "runs"), [
    ("pause", None, "*Pause* S3 (`web-1`, daily at 03:00 UTC): no runs until resumed", 0),
    ("resume", None, "the slots missed while paused are not caught up", 3),
    ("skip-next", SLOT, "the slot Thu 2026-12-03 03:00 UTC does not run", 3),
    ("run-now", None, "*once now*", 3),
])
def test_the_approval_message_says_what_the_operation_will_do(
        kind: OpKind, slot: datetime | None, says: str, runs: int) -> None:
    view = approval_view(op_request(kind, slot), "web-1", RULES, None, NOW)
    text = all_text(approval_message(view, NOW))
    assert "Schedule change R5 for `web-1`" in text and says in text
    assert action_ids(approval_message(view, NOW)) == ["cr_approve", "cr_reject"]
    assert len(view.next_runs) == runs
    if kind == "skip-next":  # the runs listed come after the skipped slot
        assert all(utc > SLOT for _, utc in view.next_runs)
    assert ("Retention" in text) == (kind == "run-now")  # only a run-now deletes anything


def test_a_decided_operation_says_what_it_did() -> None:
    done = op_request("pause", status=RequestStatus.APPROVED, decided_by="U0BOB",
                      decided_at=NOW)
    text = all_text(approval_message(approval_view(done, "web-1", RULES, None, NOW), NOW))
    assert "*Approved* by <@U0BOB>" in text and "S3 is paused: no runs until resumed." in text
    assert "The new schedule is in effect" not in text


def test_the_retention_preview_marks_protected_images_as_kept() -> None:
    images = [image("old", 3), image("pinned", 9, protected=True),
              image("pinned-other", 9, protected=True, schedule="S9"),
              image("pinned-failed", 8, protected=True, status="killed")]
    kept = kept_because_protected(images, "S3")
    assert [i.id for i in kept] == ["pinned"]  # only what retention would otherwise count
    view = approval_view(op_request("run-now"), "web-1", RULES, None, NOW, [images[0]], kept)
    text = all_text(approval_message(view, NOW))
    assert "would delete 1 image" in text and "`old`" in text
    assert "Kept because protected" in text and "`pinned`" in text
    assert "pinned-other" not in text


def test_schedules_and_approvals_show_the_operations() -> None:
    state = OpState(paused_at=NOW - timedelta(hours=1), pause_request="R2",
                    skip_slot=SLOT, skip_request="R4", run_now_at=NOW, run_now_request="R6")
    notes = schedule_notes(state, SPEC, NOW)
    assert any("paused since 09:00 UTC (R2)" in n for n in notes)
    assert any("skip-next (R4): the slot Thu 2026-12-03 03:00 UTC" in n for n in notes)
    assert any("run-now queued (R6)" in n for n in notes)
    # A skip whose slot is past is not shown.
    assert len(schedule_notes(dataclasses.replace(state, skip_slot=NOW - timedelta(days=1)),
                              SPEC, NOW)) == 2
    line = ScheduleLine(id="S3", server_label="web-1", spec=SPEC, next_run=None,
                        last_result=None, last_run_at=None, approved_by="U0BOB", notes=notes)
    text = schedules_text([line], [(op_request("resume"), "web-1")], NOW)
    assert "paused since" in text and "next:" not in text
    assert "*R5* `web-1`: resume S3" in text
    assert "*R5* `web-1`: skip-next S3" in approvals_text(
        [(op_request("skip-next", SLOT), "web-1")], NOW)


def test_the_skip_notice_names_the_slot_and_the_request() -> None:
    text = skipped_on_request("S3", "web-1", SPEC, SLOT, "R4")["text"]
    assert "skipped its slot Thu 2026-12-03 03:00 UTC, as R4 asked" in text
