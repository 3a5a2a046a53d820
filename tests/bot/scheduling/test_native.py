"""Rackspace Scheduled Images (`--native`), the pure parts: specs from the cloud's schedule,
the change request message (the service's limits said; the cloud's answer once approved) and
the cloud-read listing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from bot.cloud.rax import RaxSchedule
from bot.scheduling.approvals import ApprovalRules, new_request
from bot.scheduling.due import describe
from bot.scheduling.native import native_spec, spec_of_cloud, stale_reason
from bot.scheduling.native_messages import (
    NativeLine,
    applied_reply,
    brief,
    native_approval_message,
    native_listing,
)
from bot.scheduling.rows import spec_from_dict, spec_to_dict
from bot.store import RequestRow
from bot.vocabulary import RequestStatus

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def request(kind: str = "set"):  # type: ignore[no-untyped-def]
    new = native_spec("weekly", "SATURDAY", 4) if kind == "set" else None
    return new_request(id="R1", kind=kind, server="srv-1",  # type: ignore[arg-type]
                       old=native_spec("daily", None, 7), new=new, requested_by="U0ALICE",
                       channel="C0OPS", now=NOW, rules=ApprovalRules())


def blocks_text(message: dict[str, object]) -> str:
    return str(message["blocks"])


def test_the_cloud_schedule_as_a_native_spec_and_back() -> None:
    assert spec_of_cloud(None) is None
    daily = spec_of_cloud(RaxSchedule(7))
    assert daily == native_spec("daily", None, 7) and daily is not None and daily.native
    weekly = spec_of_cloud(RaxSchedule(4, "SATURDAY"))
    assert weekly is not None and (weekly.frequency, weekly.day) == ("weekly", "SATURDAY")
    stored = spec_to_dict(weekly)
    assert stored["native"] is True and spec_from_dict(stored) == weekly
    # The bot's own specs are stored as before (no `native` key) and differ from native ones.
    own = dataclasses.replace(weekly, native=False)
    assert "native" not in spec_to_dict(own) and own != weekly


def test_native_specs_are_described_without_a_time_of_day() -> None:
    text = describe(native_spec("weekly", "SATURDAY", 4), with_keep=True)
    assert text == "weekly on Saturday by Rackspace Scheduled Images, keeping 4 images"
    assert "00:00" not in text and "UTC" not in text


def test_the_pending_message_says_the_limits_and_has_the_buttons() -> None:
    msg = native_approval_message(request(), "web-1", "<@U0BOB>", NOW)
    text = blocks_text(msg)
    assert msg["text"].startswith("Schedule change R1 for web-1 ")  # type: ignore[attr-defined]
    assert "*Replace* Rackspace Scheduled Images" in text
    assert "at an hour the cloud picks" in text and "never culled" in text
    assert "may be approved by <@U0BOB>" in text and "cr_approve" in text


def test_once_approved_the_message_follows_the_cloud_call() -> None:
    done = dataclasses.replace(request(), status=RequestStatus.APPROVED, decided_by="U0BOB",
                               decided_at=NOW)
    waiting = blocks_text(native_approval_message(done, "web-1", "x", NOW))
    assert "Approved* by <@U0BOB>" in waiting and "Setting it on the cloud" in waiting
    assert "cr_approve" not in waiting
    ok = blocks_text(native_approval_message(done, "web-1", "x", NOW, result="ok: retention 4",
                                             applied_at=NOW + timedelta(seconds=5)))
    assert "Rackspace Scheduled Images set on the cloud at 10:00 UTC" in ok
    failed = native_approval_message(done, "web-1", "x", NOW,
                                     result="failed: The cloud denied permission: no")
    assert "did not take the change" in blocks_text(failed)
    assert "denied permission" in blocks_text(failed)
    off = dataclasses.replace(request("off"), status=RequestStatus.APPROVED, decided_by="U0BOB",
                              decided_at=NOW)
    assert "turned off on the cloud" in str(applied_reply(off, "web-1", "ok: disabled", NOW))


def test_rejected_and_expired_leave_the_cloud_as_it_was() -> None:
    rejected = dataclasses.replace(request(), status=RequestStatus.REJECTED, decided_by="U0BOB",
                                   decided_at=NOW)
    assert "cloud's schedule stays as it was" in blocks_text(
        native_approval_message(rejected, "web-1", "x", NOW))


def test_the_listing_shows_only_enabled_servers_and_a_short_note_on_failure() -> None:
    lines = [NativeLine("web-1", native_spec("daily", None, 7)), NativeLine("web-2", None)]
    text = native_listing(lines, unchecked=3)
    assert "`web-1`: daily by Rackspace Scheduled Images, keeping 7 images" in text
    assert "web-2" not in text and "3 more servers not checked" in text
    assert "none set" in native_listing([NativeLine("web-2", None)])
    note = native_listing([], unreadable="The cloud is unavailable")
    assert note.startswith(":warning:") and "\n" not in note and "unaffected" in note


def stored_request(old: RaxSchedule | None, new: RaxSchedule | None) -> RequestRow:
    """A native request row proposed when the cloud had `old`, asking for `new`."""
    def stored(rax: RaxSchedule | None) -> dict[str, object] | None:
        spec = spec_of_cloud(rax)
        return spec_to_dict(spec) if spec else None

    return RequestRow(id="R1", kind="set" if new else "off", server_id="srv-1",
                      server_ref="web-1", server_name="web-1", old_spec=stored(old),
                      new_spec=stored(new), requested_by="U0ALICE", channel="C0OPS",
                      channel_name=None, created_at=NOW, expires_at=NOW + timedelta(hours=1),
                      status=RequestStatus.APPROVED, decided_by="U0BOB", decided_at=NOW,
                      reason=None, warned_at=None, message_dirty=0, updated_at=NOW,
                      native=True)


def test_a_native_request_is_stale_when_the_cloud_moved_elsewhere() -> None:
    row = stored_request(RaxSchedule(7), RaxSchedule(4, "MONDAY"))
    # As proposed against, or already as asked (a repeat after a crash): carry on.
    assert stale_reason(row, spec_of_cloud(RaxSchedule(7))) is None
    assert stale_reason(row, spec_of_cloud(RaxSchedule(4, "MONDAY"))) is None
    assert stale_reason(row, spec_of_cloud(RaxSchedule(3, "SATURDAY"))) == (
        "the schedule of web-1 was changed in the control panel since this request "
        "(was: daily keep 7, now: weekly on Saturday keep 3); propose again")
    assert "now: none" in str(stale_reason(row, None))
    # Turning off what was set: disabled meanwhile is the goal met; another retention is not.
    off = stored_request(RaxSchedule(7), None)
    assert stale_reason(off, None) is None
    assert "was: daily keep 7, now: daily keep 2" in str(
        stale_reason(off, spec_of_cloud(RaxSchedule(2))))
    # Set where there was none: one set in the control panel meanwhile is a change too.
    fresh = stored_request(None, RaxSchedule(7))
    assert "was: none, now: daily keep 5" in str(stale_reason(fresh, spec_of_cloud(
        RaxSchedule(5))))
    assert brief(None) == "none"


def test_a_stale_result_says_out_of_date_and_that_nothing_changed() -> None:
    done = dataclasses.replace(request(), status=RequestStatus.APPROVED, decided_by="U0BOB",
                               decided_at=NOW)
    reply = applied_reply(done, "web-1", "stale: it moved (was: a, now: b)", NOW)
    assert "Not applied" in reply["text"] and "R1 is out of date: it moved" in reply["text"]
    assert "Nothing was changed on the cloud" in reply["text"]
