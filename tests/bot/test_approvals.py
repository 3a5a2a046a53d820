"""Change requests and approval decisions (bot.scheduling.approvals)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta

import pytest

from bot.errors import ApprovalError
from bot.scheduling.approvals import (
    ApprovalRules,
    ChangeRequest,
    decide,
    expire_due,
    new_request,
    supersede,
)
from bot.scheduling.due import ScheduleSpec

T0 = datetime(2025, 5, 6, 9, 0, tzinfo=UTC)
OLD = ScheduleSpec("daily", None, time(3, 0), "Europe/Berlin", 7)
NEW = ScheduleSpec("daily", None, time(3, 0), "Europe/Berlin", 3)
BOB_ONLY = ApprovalRules(approvers=frozenset({"U0BOB"}))


def request(rid: str = "R4", *, server: str = "srv-1", rules: ApprovalRules = BOB_ONLY,
            requested_by: str = "U0ALICE", at: datetime = T0) -> ChangeRequest:
    return new_request(id=rid, kind="set", server=server, old=OLD, new=NEW,
                       requested_by=requested_by, channel="C0OPS", now=at, rules=rules)


def test_new_request_expiry_follows_rules() -> None:
    r = request(rules=ApprovalRules(expiry=timedelta(minutes=90)))
    assert r.pending and r.expires_at == T0 + timedelta(minutes=90)
    assert request().expires_at == T0 + timedelta(hours=24)


@pytest.mark.parametrize("changes", [
    {"id": "J4"}, {"id": "R0"}, {"kind": "pause"}, {"new": None}, {"kind": "off"},
    {"status": "done"},
])
def test_request_validation(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(request(), **changes)  # type: ignore[arg-type]


def test_approver_approves() -> None:
    d = decide(request(), actor="U0BOB", action="approve", now=T0 + timedelta(minutes=3),
               rules=BOB_ONLY)
    assert d.accepted and d.changed and d.refusal is None
    assert d.request.status == "approved"
    assert d.request.decided_by == "U0BOB" and d.request.decided_at == T0 + timedelta(minutes=3)
    assert d.raise_if_refused() is d.request


def test_self_approval_refused_by_default() -> None:
    d = decide(request(), actor="U0ALICE", action="approve", now=T0, rules=BOB_ONLY)
    assert not d.accepted and not d.changed and d.refusal == "self_approval"
    assert d.request.status == "pending"
    assert "own request" in d.message and "<@U0BOB>" in d.message
    with pytest.raises(ApprovalError, match="own request"):
        d.raise_if_refused()


def test_self_approval_when_allowed() -> None:
    rules = ApprovalRules(approvers=frozenset({"U0ALICE", "U0BOB"}), allow_self_approval=True)
    d = decide(request(rules=rules), actor="U0ALICE", action="approve", now=T0, rules=rules)
    assert d.accepted and d.request.decided_by == "U0ALICE"
    # Allowing self-approval does not make a non-approver requester an approver.
    rules2 = dataclasses.replace(BOB_ONLY, allow_self_approval=True)
    d2 = decide(request(rules=rules2), actor="U0ALICE", action="approve", now=T0, rules=rules2)
    assert d2.refusal == "not_approver"


def test_non_approver_is_refused_and_told_who_may() -> None:
    rules = ApprovalRules(approvers=frozenset({"U0BOB"}), approver_groups=frozenset({"S0OPS"}))
    d = decide(request(rules=rules), actor="U0EVE", action="approve", now=T0, rules=rules)
    assert d.refusal == "not_approver" and d.request.status == "pending"
    assert "<@U0BOB> or a member of <!subteam^S0OPS>" in d.message


def test_group_approver() -> None:
    rules = ApprovalRules(approver_groups=frozenset({"S0OPS"}))
    r = request(rules=rules)
    ok = decide(r, actor="U0CAROL", action="approve", now=T0, rules=rules,
                actor_groups=frozenset({"S0DEV", "S0OPS"}))
    assert ok.accepted
    no = decide(r, actor="U0DAVE", action="approve", now=T0, rules=rules,
                actor_groups=frozenset({"S0DEV"}))
    assert no.refusal == "not_approver"


def test_no_approvers_configured_means_any_other_member() -> None:
    rules = ApprovalRules()
    r = request(rules=rules)
    assert decide(r, actor="U0ANYONE", action="approve", now=T0, rules=rules).accepted
    self_try = decide(r, actor="U0ALICE", action="approve", now=T0, rules=rules)
    assert self_try.refusal == "self_approval"
    assert "other than <@U0ALICE>" in self_try.message


def test_approval_after_expiry_marks_expired() -> None:
    r = request()
    d = decide(r, actor="U0BOB", action="approve", now=r.expires_at, rules=BOB_ONLY)
    assert not d.accepted and d.refusal == "expired"
    assert d.changed and d.request.status == "expired" and d.request.decided_by is None
    assert "expired at 09:00 UTC on 2025-05-07" not in d.message  # same day as now: no date
    assert "expired at 09:00 UTC" in d.message
    # Clicking again on the stored (expired) request: still refused, nothing more to store.
    again = decide(d.request, actor="U0BOB", action="approve",
                   now=r.expires_at + timedelta(days=1), rules=BOB_ONLY)
    assert again.refusal == "expired" and not again.changed
    assert "on 2025-05-07" in again.message
    # A minute before expiry still works.
    assert decide(r, actor="U0BOB", action="approve", now=r.expires_at - timedelta(minutes=1),
                  rules=BOB_ONLY).accepted


def test_double_click_second_is_told_already_approved() -> None:
    rules = ApprovalRules(approvers=frozenset({"U0BOB", "U0CAROL"}))
    first = decide(request(rules=rules), actor="U0BOB", action="approve",
                   now=T0 + timedelta(minutes=7), rules=rules)
    second = decide(first.request, actor="U0CAROL", action="approve",
                    now=T0 + timedelta(minutes=8), rules=rules)
    assert not second.accepted and second.refusal == "already_decided" and not second.changed
    assert second.message == "R4 was already approved by <@U0BOB> at 09:07 UTC."
    reject_late = decide(first.request, actor="U0BOB", action="reject",
                         now=T0 + timedelta(minutes=9), rules=rules)
    assert reject_late.refusal == "already_decided"


def test_requester_may_withdraw_by_rejecting() -> None:
    d = decide(request(), actor="U0ALICE", action="reject", now=T0, rules=BOB_ONLY)
    assert d.accepted and d.request.status == "rejected"
    assert d.request.reason == "withdrawn by the requester" and "withdrew" in d.message


def test_approver_rejects_with_reason_and_outsider_cannot() -> None:
    d = decide(request(), actor="U0BOB", action="reject", now=T0, rules=BOB_ONLY,
               reason="keep 7 until the migration")
    assert d.accepted and d.request.reason == "keep 7 until the migration"
    outsider = decide(request(), actor="U0EVE", action="reject", now=T0, rules=BOB_ONLY)
    assert outsider.refusal == "not_approver"


def test_stale_request_is_refused_when_schedule_changed() -> None:
    r = request()
    changed = dataclasses.replace(OLD, keep=5)
    d = decide(r, actor="U0BOB", action="approve", now=T0, rules=BOB_ONLY, current=changed)
    assert d.refusal == "stale"
    assert decide(r, actor="U0BOB", action="approve", now=T0, rules=BOB_ONLY,
                  current=OLD).accepted


def test_expire_due() -> None:
    a = request("R1")
    b = request("R2", at=T0 + timedelta(hours=2))
    done = dataclasses.replace(request("R3"), status="approved", decided_by="U0BOB",
                               decided_at=T0)
    expired = expire_due([a, b, done], T0 + timedelta(hours=25))
    assert [(r.id, r.status) for r in expired] == [("R1", "expired")]
    assert expired[0].decided_at == a.expires_at


def test_supersede_makes_conflicting_proposals_exclusive() -> None:
    r4 = request("R4")
    other = request("R5", server="srv-2")
    r6 = request("R6", requested_by="U0CAROL", at=T0 + timedelta(minutes=5))
    now = T0 + timedelta(minutes=5)
    replaced = supersede([r4, other, r6], r6, now)
    assert [(r.id, r.status, r.reason) for r in replaced] == [
        ("R4", "superseded", "superseded by R6")]
    # Approving the superseded one is refused; the newer one can be approved.
    d = decide(replaced[0], actor="U0BOB", action="approve", now=now, rules=BOB_ONLY)
    assert d.refusal == "superseded" and "R6" in d.message
    assert decide(r6, actor="U0BOB", action="approve", now=now, rules=BOB_ONLY).accepted


def test_bad_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decide(request(), actor="U0BOB", action="maybe", now=T0,  # type: ignore[arg-type]
               rules=BOB_ONLY)


def test_any_member_means_the_channels_members() -> None:
    # issue 13 §3: with no approvers listed, someone outside the channel may not decide.
    anyone = ApprovalRules()
    r = request(rules=anyone)
    members = frozenset({"U0ALICE", "U0BOB"})
    outsider = decide(r, actor="U0DAVE", action="approve", now=T0, rules=anyone,
                      members=members)
    assert (outsider.accepted, outsider.refusal) == (False, "not_member")
    assert "not a member" in outsider.message
    assert not decide(r, actor="U0DAVE", action="reject", now=T0, rules=anyone,
                      members=members).accepted
    assert decide(r, actor="U0BOB", action="approve", now=T0, rules=anyone,
                  members=members).accepted
    # The requester may always withdraw, member or not (they may have left the channel).
    assert decide(r, actor="U0ALICE", action="reject", now=T0, rules=anyone,
                  members=frozenset()).accepted
    # Listed approvers are asked by name: membership does not narrow them.
    assert decide(request(), actor="U0BOB", action="approve", now=T0, rules=BOB_ONLY,
                  members=frozenset()).accepted
