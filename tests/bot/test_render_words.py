"""Issue 19, "Words and states": the bot's words read right (pure renderers, plain asserts)."""

from __future__ import annotations

import dataclasses
import json
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from bot import blocks
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.imaging.jobs import Job
from bot.scheduling.approvals import ApprovalRules, new_request
from bot.scheduling.due import ScheduleSpec, preview
from bot.scheduling.messages import (
    ApprovalView,
    approval_message,
    local_and_utc,
    retention_reply,
    run_failed_alert,
    run_note,
    skipped_notice,
)
from bot.scheduling.retention import RetainableImage
from bot.vocabulary import FailureCode, RequestStatus

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
BERLIN = ScheduleSpec("daily", None, time(3, 0), "Europe/Berlin", 7)
UTC_SPEC = ScheduleSpec("daily", None, time(3, 0), "UTC", 1)


def job(state: str = jobs.SUCCEEDED, **kw: Any) -> Job:
    base: dict[str, Any] = dict(
        id="J17", state=state, server_ref="web1", requested_by="U123", channel="C1",
        created_at=T0, updated_at=T0, confirmed_at=T0, confirmed_by="U123",
        submitted_at=T0 + timedelta(seconds=1), snapshot_started_at=T0 + timedelta(seconds=2),
        snapshot_ended_at=T0 + timedelta(seconds=9), upload_started_at=T0 + timedelta(seconds=20),
        finished_at=T0 + timedelta(minutes=2), server_name="web1", image_name="web1-x",
        image_id="img-1", image_size=1024)
    base.update(kw)
    return Job(**base)


def scheduled(state: str = jobs.SNAPSHOTTING, **kw: Any) -> Job:
    slot = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    kw.setdefault("note", run_note("S1", BERLIN, slot, 0))
    return job(state, schedule_id="S1", requested_by="schedule:S1", confirmed_by="schedule:S1",
               **kw)


def text_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


# --- /image list and status: words, not codes ------------------------------------------------


def test_list_says_states_in_words_and_cancelled_is_not_failed() -> None:
    rows = [job(jobs.FAILED, id="J5", error_code=FailureCode.NOT_FOUND),
            job(jobs.FAILED, id="J4", error_code=FailureCode.BUSY),
            job(jobs.CANCELLED, id="J3", cancelled_by="U123"),
            job(jobs.SUCCEEDED, id="J2"),
            job(jobs.PENDING_UPLOAD, id="J1", finished_at=None)]
    lines = render.jobs_table(rows, NOW).splitlines()
    assert lines[0].startswith("`J5` failed: server not found · ")
    assert lines[1].startswith("`J4` failed: busy · ")
    assert lines[2].startswith("`J3` cancelled · ") and "failed" not in lines[2]
    assert lines[3].startswith("`J2` done → `web1-x` · ")
    assert lines[4].startswith("`J1` packaging · ")
    assert not any("_" in line.split(" · ")[0] for line in lines)  # no `not_found`, no codes


def test_success_is_done_on_the_card_status_and_list() -> None:
    finished = job(jobs.SUCCEEDED)
    card = render.parent_message(finished, NOW)
    assert card["text"].startswith("Image of `web1` · job J17: done (")
    assert ":white_check_mark: done" in text_of(card)
    assert ":white_check_mark: done" in render.job_status_text(finished, NOW)
    assert " done → " in render.jobs_table([finished], NOW)
    for shown in (card["text"], render.job_status_text(finished, NOW),
                  render.jobs_table([finished], NOW)):
        assert "succeeded" not in shown


def test_every_failure_code_has_list_words() -> None:
    for code in FailureCode:
        words = render.state_words(job(jobs.FAILED, error_code=code))
        assert words.startswith("failed: ") and "_" not in words, code


def test_scheduled_job_is_named_as_a_scheduled_run_in_list_and_status() -> None:
    run = scheduled(jobs.SUCCEEDED)
    assert "schedule S1" in render.jobs_table([run], NOW)
    status = render.job_status_text(run, NOW)
    assert "Scheduled run of S1 (daily at 03:00 Europe/Berlin)" in status
    assert "schedule:S1" not in status and "Requested by" not in status


# --- scheduled runs ---------------------------------------------------------------------------


def test_scheduled_card_says_scheduled_run_of_with_the_schedule() -> None:
    card = render.parent_message(scheduled(), NOW)
    head = card["blocks"][0]["text"]["text"]
    assert "\nScheduled run of S1 (daily at 03:00 Europe/Berlin) for " in head
    everything = text_of(card)
    assert "Requested by" not in everything and "schedule:S1" not in everything
    assert "*Note:*" not in everything  # the note is the "who" line, not said twice
    assert card["text"].endswith("(scheduled run of S1)")


def test_scheduled_card_never_says_keep_writes_stopped() -> None:
    copying = scheduled(jobs.SNAPSHOTTING, snapshot_ended_at=None, upload_started_at=None,
                        finished_at=None)
    for shown in (text_of(render.parent_message(copying, NOW)),
                  render.job_status_text(copying, NOW)):
        assert "keep writes stopped" not in shown and "(the copy window)" in shown
    failed = scheduled(jobs.FAILED, error_code=FailureCode.VANISHED, snapshot_ended_at=None)
    assert "If an app stopped its writes for this run" in render.final_reply(failed, NOW)["text"]
    manual = job(jobs.SNAPSHOTTING, snapshot_ended_at=None, finished_at=None)
    assert "keep writes stopped" in text_of(render.parent_message(manual, NOW))


def test_scheduled_card_without_a_note_still_names_the_schedule() -> None:
    card = render.parent_message(scheduled(note=None), NOW)
    assert "\nScheduled run of S1\n" in card["blocks"][0]["text"]["text"] + "\n"


def test_scheduled_thread_gives_the_copy_window_not_keep_writes_stopped() -> None:
    run = scheduled()
    began = render.phase_reply(run, "phase:snapshotting", NOW)
    assert began is not None
    assert "keep writes stopped" not in began["text"].lower()
    assert "copy window began at 12:00:01 UTC" in began["text"]
    ended = render.phase_reply(run, "writes_may_resume", NOW)
    assert ended is not None
    assert "The copy window is over" in ended["text"]
    assert "lasted 8 s (from the image request at 12:00:01 UTC until the copy was seen done " \
           "at 12:00:09 UTC)" in ended["text"]
    # A job someone started still tells them to keep writes stopped, and when they may resume.
    manual = job(jobs.SNAPSHOTTING)
    reply = render.phase_reply(manual, "phase:snapshotting", NOW)
    assert reply is not None and "keep writes stopped" in reply["text"]
    resume = render.phase_reply(manual, "writes_may_resume", NOW)
    assert resume is not None and "Writes may resume now" in resume["text"]


# --- the quiesce window is the measured one ---------------------------------------------------


@pytest.mark.parametrize(("copy", "said"), [
    (timedelta(seconds=8), "8 s"),
    (timedelta(milliseconds=400), "under 1 s"),
    (timedelta(minutes=2, seconds=3), "2 min 3 s"),
])
def test_card_and_reply_agree_on_the_quiesce_window(copy: timedelta, said: str) -> None:
    # The window runs from the image request (submitted_at) to the observed end of the copy,
    # not from when createImage returned (snapshot_started_at, later).
    submitted = T0 + timedelta(seconds=1)
    done = job(jobs.UPLOADING, finished_at=None, submitted_at=submitted,
               snapshot_started_at=submitted + copy / 2, snapshot_ended_at=submitted + copy,
               upload_started_at=submitted + copy + timedelta(seconds=1))
    card = text_of(render.parent_message(done, NOW))
    reply = render.phase_reply(done, "writes_may_resume", NOW)
    assert reply is not None
    assert f"disk copy (quiesce window) {said} ·" in card
    assert f"The quiesce window lasted {said} (" in reply["text"]
    assert "0 s" not in reply["text"].split("(")[0]
    assert render.quiesce_window(done) == (submitted, submitted + copy)


def test_quiesce_window_without_a_submission_time_starts_at_the_copy() -> None:
    legacy = job(jobs.UPLOADING, submitted_at=None)
    assert render.quiesce_window(legacy) == (legacy.snapshot_started_at,
                                             legacy.snapshot_ended_at)
    assert render.quiesce_window(job(jobs.QUEUED, snapshot_started_at=None,
                                     snapshot_ended_at=None)) is None


# --- change requests: decided cards say what happened -----------------------------------------


RULES = ApprovalRules(approvers=frozenset({"U0BOB"}))


def view(**kw: Any) -> ApprovalView:
    req = new_request(id="R4", kind="set", server="srv-1", old=None, new=BERLIN,
                      requested_by="U0ALICE", channel="C0OPS", now=T0, rules=RULES)
    req = dataclasses.replace(req, **kw)
    return ApprovalView(request=req, server_label="web-1",
                        who_may_approve=RULES.who_may_approve("U0ALICE"),
                        next_runs=preview(BERLIN, T0, 3))


def test_pending_card_says_who_may_approve_and_when_it_expires() -> None:
    text = text_of(approval_message(view(), T0))
    assert "may be approved by" in text and "Expires at" in text and "Approve" in text


@pytest.mark.parametrize(("fields", "said"), [
    ({"status": RequestStatus.APPROVED, "decided_by": "U0BOB"},
     "*Approved* by <@U0BOB> at 12:10 UTC. The new schedule is in effect."),
    ({"status": RequestStatus.REJECTED, "decided_by": "U0BOB", "reason": "freeze"},
     "*Rejected* by <@U0BOB> at 12:10 UTC — “freeze”. The schedule stays as it was."),
    ({"status": RequestStatus.REJECTED, "decided_by": "U0ALICE"},
     "*Withdrawn* by <@U0ALICE> at 12:10 UTC."),
    ({"status": RequestStatus.EXPIRED, "decided_by": None},
     "*Expired* at "),
    ({"status": RequestStatus.SUPERSEDED, "decided_by": "U0ALICE", "reason": "replaced by R5"},
     "*Superseded* by <@U0ALICE> at 12:10 UTC — “replaced by R5”: a newer request"),
])
def test_decided_cards_drop_who_may_approve_and_the_countdown(fields: dict[str, Any],
                                                              said: str) -> None:
    decided = T0 + timedelta(minutes=10)
    message = approval_message(view(decided_at=decided, **fields), decided)
    text = text_of(message)
    assert said in text
    assert "may be approved by" not in text
    assert "Expires at" not in text and "(in " not in text
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert "Requested by <@U0ALICE>" in text


# --- plurals and times ------------------------------------------------------------------------


def test_plural() -> None:
    assert blocks.plural(1, "image") == "1 image"
    assert blocks.plural(0, "image") == "0 images"
    assert blocks.plural(7, "image") == "7 images"
    assert blocks.plural(2, "child", "children") == "2 children"


def _img(i: int) -> RetainableImage:
    return RetainableImage(id=f"i{i}", status="active", created_at=T0, schedule_id="S1",
                           name=f"web-1-{i}")


def test_no_parenthesised_plurals_anywhere() -> None:
    one, two = [_img(1)], [_img(1), _img(2)]
    slot = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    shown = [
        retention_reply(one, [], 1)["text"], retention_reply(two, [], 1)["text"],
        run_failed_alert("S1", "web-1", "busy", 2, None)["text"],
        skipped_notice("S1", "web-1", slot, 1, NOW)["text"],
        skipped_notice("S1", "web-1", slot, 3, NOW)["text"],
        run_note("S1", BERLIN, slot, 1), run_note("S1", BERLIN, slot, 2),
        text_of(approval_message(dataclasses.replace(view(), would_delete=two), T0)),
        text_of(approval_message(dataclasses.replace(view(), would_delete=one), T0)),
    ]
    assert not [s for s in shown if "(s)" in s]
    assert "deleted 1 old image this schedule made" in shown[0]
    assert "deleted 2 old images" in shown[1]
    assert "after 2 attempts" in shown[2]
    assert "skipped 1 slot (" in shown[3] and "skipped 3 slots (" in shown[4]
    assert "1 earlier slot was missed" in shown[5] and "2 earlier slots were missed" in shown[6]
    assert "would delete 2 images this" in shown[7] and "would delete 1 image this" in shown[8]


def test_utc_times_are_not_said_twice() -> None:
    slot = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    assert local_and_utc(slot, slot) == "Sat 2025-03-01 03:00 UTC"
    note = run_note("S1", UTC_SPEC, slot, 0)
    assert "03:00 UTC (03:00 UTC)" not in note and note.endswith("for Sat 2025-03-01 03:00 UTC")
    berlin = slot.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert local_and_utc(berlin, slot) == "Sat 2025-03-01 04:00 CET (03:00 UTC)"
    london = zoneinfo.ZoneInfo("Europe/London")  # GMT in winter: the same time, said once
    assert local_and_utc(slot.astimezone(london), slot) == "Sat 2025-03-01 03:00 GMT"


# --- failures whose error adds facts to the cause ---------------------------------------------


def test_not_found_keeps_the_names_it_could_have_meant_once() -> None:
    from bot.errors import Ambiguous, NotFound
    missing = job(jobs.FAILED, server_ref="web-99", error_code=FailureCode.NOT_FOUND,
                  error=str(NotFound("server", "web-99", ["web-1", "web-9"])))
    text = render.failure_text(missing)
    assert text == ("Server `web-99` was not found (did you mean web-1, web-9?). Check the "
                    "name, or give the server's UUID.")
    several = job(jobs.FAILED, server_ref="db", error_code=FailureCode.AMBIGUOUS,
                  error=str(Ambiguous("server", "db", [("id-1", "db"), ("id-2", "db")])))
    assert render.failure_text(several) == ("Several servers are named `db` (id-1, id-2). Give "
                                            "the UUID of the one you mean instead.")
    bare = job(jobs.FAILED, server_ref="web-99", error_code=FailureCode.NOT_FOUND, error=None)
    assert render.failure_text(bare).startswith("Server `web-99` was not found. Check")


def test_duplicate_names_the_job_that_is_imaging_the_server() -> None:
    other = job(jobs.UPLOADING, id="J1", submitted_at=NOW - timedelta(seconds=3))
    said = render.busy_here(other, NOW, server="web-1", channel="C1")
    clash = job(jobs.FAILED, id="J2", error_code=FailureCode.DUPLICATE, error=said)
    text = render.failure_text(clash)
    assert text.startswith("web-1 is being imaged by J1 (uploading, 3 s in).")
    assert text.count("imag") == said.count("imag")  # said once, not again in a quote
