"""The App Home view, pure: scoping (channels, public cards), buttons only where the reader
decides, the writes state, and Block Kit limits (checked by the emulator's `views.publish`
validation, which follows docs.slack.dev/reference/views/home-tab-views)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.imaging import jobs
from bot.imaging.jobs import Job
from bot.scheduling.approvals import ApprovalRules
from bot.slack.home_view import (
    APPROVE_ACTION,
    HEADER_LIMIT,
    HOME_BLOCK_LIMIT,
    REJECT_ACTION,
    HomeSchedule,
    home_view,
    may_decide,
    select,
    thread_link,
)
from bot.store import RequestRow, ScheduleRow
from bot.vocabulary import FailureCode, RequestStatus
from sandbox.slack.views import validate_home_view

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
OPS, SECRET = "C0OPS", "G0SECRET"
URL = "https://sandbox.slack.com/"


def job(number: int = 1, state: str = jobs.UPLOADING, channel: str = OPS, **kw: Any) -> Job:
    base: dict[str, Any] = dict(
        id=f"J{number}", state=state, server_ref="web-1", server_name="web-1",
        requested_by="U0BOB", channel=channel, created_at=T0, updated_at=T0,
        submitted_at=T0 + timedelta(seconds=1), snapshot_started_at=T0 + timedelta(seconds=2),
        snapshot_ended_at=T0 + timedelta(seconds=9), thread_ts="1764666000.000100",
        announced_at=T0)
    base.update(kw)
    return Job(**base)


def request(number: int = 1, channel: str = OPS, by: str = "U0BOB",
            status: RequestStatus = RequestStatus.PENDING, **kw: Any) -> RequestRow:
    base: dict[str, Any] = dict(
        id=f"R{number}", kind="set", server_id="srv-1", server_ref="web-1",
        server_name="web-1", old_spec=None,
        new_spec={"frequency": "daily", "day": None, "at": "03:00", "tz": "UTC", "keep": 3},
        requested_by=by, channel=channel, channel_name=None, created_at=T0,
        expires_at=T0 + timedelta(hours=24), status=status, decided_by=None, decided_at=None,
        reason=None, warned_at=None, message_dirty=0, updated_at=T0)
    base.update(kw)
    return RequestRow(**base)


def schedule(number: int = 1, channel: str = OPS, **kw: Any) -> HomeSchedule:
    base: dict[str, Any] = dict(
        id=f"S{number}", server_id=f"srv-{number}", server_ref="web-1", server_name="web-1",
        frequency="daily", day=None, at="03:00", tz="UTC", keep=3, channel=channel,
        channel_name=None, created_by="U0BOB", approved_by="U0ALICE", request_id="R1",
        effective_at=T0, last_slot=None, last_result=None, last_run_at=None, status="active",
        created_at=T0, updated_at=T0)
    base.update(kw)
    nxt = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
    return HomeSchedule(ScheduleRow(**base), (nxt, nxt))


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False)


def buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in view["blocks"] if b["type"] == "actions"
            for e in b["elements"]]


def test_a_user_outside_a_private_channel_never_sees_its_jobs() -> None:
    secret = dict(channel=SECRET)
    everything = dict(
        running=[job(1), job(2, **secret)],
        failures=[job(3, jobs.FAILED, error_code=FailureCode.KILLED, **secret)],
        requests=[request(1, **secret), request(2, by="U0ALICE", **secret)],
        schedules=[schedule(1, **secret), schedule(2)],
        decidable={"R1", "R2"}, workspace_url=URL)
    alice = select("U0ALICE", NOW, visible={OPS}, **everything)  # type: ignore[arg-type]
    assert [j.id for j in alice.running] == ["J1"]
    assert not alice.failures and not alice.waiting and not alice.mine
    assert [s.row.id for s in alice.schedules] == ["S2"]
    shown = text_of(home_view(alice))
    for hidden in ("J2", "J3", "R1", "R2", "S1", SECRET):
        assert hidden not in shown
    # A member of the private channel sees it all.
    carol = select("U0CAROL", NOW, visible={OPS, SECRET}, **everything)  # type: ignore[arg-type]
    assert {j.id for j in carol.running} == {"J1", "J2"} and [j.id for j in carol.failures] == ["J3"]
    assert [r.id for r in carol.waiting] == ["R1", "R2"]


def test_a_job_without_a_public_card_shows_only_to_its_requester() -> None:
    private = job(1, jobs.QUEUED, announced_at=None, requested_by="U0BOB")
    failed = job(2, jobs.FAILED, announced_at=None, error_code=FailureCode.NOT_FOUND)
    common = dict(running=[private], failures=[failed], requests=[], schedules=[],
                  visible={OPS}, decidable=set())
    assert not select("U0ALICE", NOW, **common).running  # type: ignore[arg-type]
    assert not select("U0ALICE", NOW, **common).failures  # type: ignore[arg-type]
    bob = select("U0BOB", NOW, **common)  # type: ignore[arg-type]
    assert [j.id for j in bob.running] == ["J1"] and [j.id for j in bob.failures] == ["J2"]
    assert "server not found" in text_of(home_view(bob))


def test_buttons_only_on_requests_waiting_for_me() -> None:
    rules = ApprovalRules(approvers=frozenset({"U0ALICE"}))
    theirs, mine = request(1, by="U0BOB"), request(2, by="U0ALICE")
    decided = request(3, status=RequestStatus.APPROVED, decided_by="U0ALICE", decided_at=T0)
    assert may_decide(theirs, "U0ALICE", rules)
    assert not may_decide(mine, "U0ALICE", rules)  # no self-approval
    assert may_decide(mine, "U0ALICE", ApprovalRules(allow_self_approval=True))
    assert not may_decide(theirs, "U0CAROL", rules)  # not an approver
    assert may_decide(theirs, "U0CAROL", ApprovalRules(approver_groups=frozenset({"S1"})),
                      frozenset({"S1"}))
    assert not may_decide(decided, "U0ALICE", rules)
    decidable = {r.id for r in (theirs, mine, decided) if may_decide(r, "U0ALICE", rules)}
    view = home_view(select("U0ALICE", NOW, running=[], failures=[],
                            requests=[theirs, mine, decided], schedules=[], visible={OPS},
                            decidable=decidable))
    assert buttons(view) == [(APPROVE_ACTION, "R1"), (REJECT_ACTION, "R1")]
    shown = text_of(view)
    assert "*R2*" in shown and "waiting for a decision" in shown  # mine, listed, no buttons
    # An expired request (the loop has not marked it yet) offers no buttons either.
    late = select("U0ALICE", T0 + timedelta(days=2), running=[], failures=[],
                  requests=[theirs], schedules=[], visible={OPS}, decidable={"R1"})
    assert buttons(home_view(late)) == []


def test_running_jobs_say_their_phase_and_when_writes_may_resume() -> None:
    copying = job(1, jobs.SNAPSHOTTING, snapshot_ended_at=None)
    uploading = job(2, jobs.UPLOADING)
    fallback = job(3, jobs.UPLOADING, thread_ts="fallback")
    data = select("U0ALICE", NOW, running=[copying, uploading, fallback], failures=[],
                  requests=[], schedules=[], visible={OPS}, decidable=set(), workspace_url=URL)
    lines = [b["text"]["text"] for b in home_view(data)["blocks"]
             if b["type"] == "section"]
    assert "(keep writes stopped) since 09:00:01 UTC" in lines[0]
    assert "uploading the image · writes may resume since 09:00:09 UTC" in lines[1]
    assert lines[1].count("writes may resume") == 1
    assert f"<{URL}archives/C0OPS/p1764666000000100|thread>" in lines[1]
    assert "thread>" not in lines[2]  # a response_url card has no thread to link
    assert thread_link(uploading, None) is None
    scheduled = job(4, jobs.QUEUED, schedule_id="S1", requested_by="schedule:S1")
    data = select("U0ALICE", NOW, running=[scheduled], failures=[], requests=[], schedules=[],
                  visible={OPS}, decidable=set())
    assert "scheduled run of S1" in text_of(home_view(data))


def test_my_requests_say_what_became_of_them() -> None:
    mine = [request(1, by="U0ALICE"),
            request(2, by="U0ALICE", status=RequestStatus.REJECTED, decided_by="U0ALICE",
                    decided_at=T0),
            request(3, by="U0ALICE", status=RequestStatus.APPROVED, decided_by="U0BOB",
                    decided_at=T0)]
    data = select("U0ALICE", NOW, running=[], failures=[], requests=mine, schedules=[],
                  visible={OPS}, decidable=set())
    assert [r.id for r in data.mine] == ["R1", "R2", "R3"]  # pending first
    shown = text_of(home_view(data))
    assert "withdrawn at 09:00 UTC" in shown and "approved by <@U0BOB> at 09:00 UTC" in shown


def test_empty_home_says_so() -> None:
    view = home_view(select("U0ALICE", NOW, running=[], failures=[], requests=[],
                            schedules=[], visible=set(), decidable=set()))
    validate_home_view(view)
    shown = text_of(view)
    assert "Nothing is running" in shown and "No change request waits for you" in shown


@pytest.mark.parametrize("name_length", [10, 2000])
def test_a_crowded_home_stays_within_block_kit_limits(name_length: int) -> None:
    name = "w" * name_length
    many = dict(server_ref=name, server_name=name)
    data = select(
        "U0ALICE", NOW,
        running=[job(n, **many) for n in range(1, 201)],
        failures=[job(n, jobs.FAILED, error_code=FailureCode.BUSY, **many)
                  for n in range(201, 301)],
        requests=[request(n, **many) for n in range(1, 61)]
        + [request(n, by="U0ALICE", **many) for n in range(61, 161)],
        schedules=[schedule(n, server_ref=name, server_name=name) for n in range(1, 101)],
        visible={OPS}, decidable={f"R{n}" for n in range(1, 61)},
        notice="x" * 5000)
    view = home_view(data)
    validate_home_view(view)  # what views.publish accepts
    blocks = view["blocks"]
    assert len(blocks) <= HOME_BLOCK_LIMIT
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_LIMIT
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    shown = text_of(view)
    assert "and 185 more" in shown  # 200 running, 15 shown
    assert "and 50 more" in shown  # 60 waiting, 10 with buttons
    assert len(buttons(view)) == 20
    assert "more" in shown.split("Last failures")[1]
