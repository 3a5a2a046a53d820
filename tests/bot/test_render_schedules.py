"""Block Kit for schedules and change requests (bot.scheduling.messages): pure, so plain asserts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta

from bot.scheduling.approvals import ApprovalRules, new_request
from bot.scheduling.due import (
    ScheduleSpec,
    ambiguous_or_missing,
    preview,
)
from bot.scheduling.messages import (
    ApprovalView,
    ScheduleLine,
    alert,
    approval_message,
    approvals_text,
    retention_reply,
    run_failed_alert,
    run_note,
    schedules_text,
)
from bot.scheduling.retention import RetainableImage

NOW = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)
SPEC = ScheduleSpec("daily", None, time(2, 30), "Europe/Berlin", 7)
RULES = ApprovalRules(approvers=frozenset({"U0BOB"}))


def request(**kw: object) -> ApprovalView:
    req = new_request(id="R4", kind="set", server="srv-1", old=None, new=SPEC,
                      requested_by="U0ALICE", channel="C0OPS", now=NOW, rules=RULES)
    req = dataclasses.replace(req, **kw)  # type: ignore[arg-type]
    return ApprovalView(request=req, server_label="web-1",
                        who_may_approve=RULES.who_may_approve("U0ALICE"),
                        next_runs=preview(SPEC, NOW, 3),
                        dst_notes=[n.text for n in ambiguous_or_missing(SPEC, 30, now=NOW)])


def all_text(payload: dict) -> str:
    parts = [payload["text"]]
    for block in payload.get("blocks", []):
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(str(element.get("text", "")))
    return "\n".join(parts)


def action_ids(payload: dict) -> list[str]:
    return [e["action_id"] for b in payload.get("blocks", []) if b["type"] == "actions"
            for e in b["elements"]]


def test_pending_message_says_what_changes_who_asked_who_may_approve_and_expiry() -> None:
    payload = approval_message(request(), NOW)
    text = all_text(payload)
    assert "no schedule" in text and "daily at 02:30 Europe/Berlin, keeping 7 images" in text
    assert "<@U0ALICE>" in text and "<@U0BOB>" in text
    assert "Expires at 09:00 UTC on 2025-03-21" in text
    # Next runs in the zone and UTC; 2025-03-30 02:30 does not exist in Berlin.
    assert "Fri 2025-03-21 02:30 CET (01:30 UTC)" in text
    assert "does not exist" in text
    assert action_ids(payload) == ["cr_approve", "cr_reject"]
    assert [e["value"] for b in payload["blocks"] if b["type"] == "actions"
            for e in b["elements"]] == ["R4", "R4"]


def test_retention_preview_lists_images_the_change_would_delete() -> None:
    doomed = [RetainableImage(id=f"i{n}", status="active", name=f"web-1-{n}",
                              created_at=NOW - timedelta(days=n), schedule_id="S1")
              for n in range(12, 0, -1)]
    view = dataclasses.replace(request(), would_delete=doomed)
    text = all_text(approval_message(view, NOW))
    assert "would delete 12 images this schedule made" in text and "`web-1-12`" in text and "2 more" in text


def test_decided_message_shows_outcome_and_no_buttons() -> None:
    view = request(status="rejected", decided_by="U0BOB", decided_at=NOW + timedelta(hours=1),
                   reason="not during <!channel> freeze")
    payload = approval_message(view, NOW)
    assert action_ids(payload) == []
    text = all_text(payload)
    assert "Rejected* by <@U0BOB> at 10:00 UTC" in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    expired = all_text(approval_message(request(status="expired"), NOW + timedelta(days=2)))
    assert "Expired" in expired and "Approve" not in expired


def test_off_request_reads_from_to() -> None:
    req = new_request(id="R5", kind="off", server="srv-1", old=SPEC, new=None,
                      requested_by="U0ALICE", channel="C0OPS", now=NOW, rules=RULES)
    view = ApprovalView(request=req, server_label="web-1", who_may_approve="<@U0BOB>")
    text = all_text(approval_message(view, NOW))
    assert "Turn off" in text and "daily at 02:30 Europe/Berlin" in text


def test_lists_and_notifications() -> None:
    line = ScheduleLine(id="S1", server_label="web-1", spec=SPEC,
                        next_run=preview(SPEC, NOW, 1)[0], last_result="succeeded: img",
                        last_run_at=NOW, approved_by="U0BOB")
    req = request().request
    text = schedules_text([line], [(req, "web-1")], NOW)
    assert "S1" in text and "(01:30 UTC)" in text and "last: done: img" in text and "R4" in text
    assert "No change requests" in approvals_text([], NOW)
    assert "R4" in approvals_text([(req, "web-1")], NOW)
    note = run_note("S1", SPEC, datetime(2025, 3, 21, 1, 30, tzinfo=UTC), missed=2, attempt=2)
    assert "2 earlier slots were missed" in note and "attempt 2" in note
    gone = [RetainableImage(id="a", status="active", name="old", created_at=NOW)]
    assert "deleted 1" in retention_reply(gone, [], 7)["text"]
    assert "nothing to delete" in retention_reply([], [], 7)["text"]
    assert "<!" not in alert("x")["text"]  # no ping unless the policy gives one
    assert run_failed_alert("S1", "web-1", "busy", 3, "<!here>")["text"].startswith("<!here>")
