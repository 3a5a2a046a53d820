"""Approvers asked directly (issue 19): who gets a DM copy (`direct.recipients`, pure), what
it says (`direct.copy_message`), and the service's side: copies queued with the request, user
groups read through the port, copies rewritten with every change of the request."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.errors import SlackUnavailable
from bot.policy import Policy
from bot.scheduling.approvals import ApprovalRules
from bot.scheduling.direct import DM_CAP, copy_message, recipients
from bot.scheduling.service import ScheduleService
from bot.store import AsyncStore, Store
from tests.bot.test_schedules import POLICY, T0, FakeCloud, FakeWeb, propose
from tests.helpers import Clock

GROUP_POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "S0APPROVERS"]
"""


def test_named_approvers_but_never_the_requester() -> None:
    rules = ApprovalRules(approvers=frozenset({"U0CAROL", "U0BOB", "U0ALICE"}))
    assert recipients(rules, "U0ALICE", {}).users == ("U0BOB", "U0CAROL")


def test_nobody_is_asked_directly_when_any_member_decides() -> None:
    assert recipients(ApprovalRules(), "U0ALICE", {}).users == ()


def test_group_members_join_the_named_ones_once() -> None:
    rules = ApprovalRules(approvers=frozenset({"U0BOB"}), approver_groups=frozenset({"S1"}))
    got = recipients(rules, "U0ALICE", {"S1": {"U0BOB", "U0DAVE", "U0ALICE"}})
    assert got.users == ("U0BOB", "U0DAVE") and got.notes == ()


def test_a_group_past_the_cap_gets_no_dm_and_the_log_says_so() -> None:
    big = {f"U{i:03d}" for i in range(DM_CAP + 5)}
    rules = ApprovalRules(approvers=frozenset({"U0BOB"}),
                          approver_groups=frozenset({"S0BIG", "S0SMALL"}))
    got = recipients(rules, "U0ALICE", {"S0BIG": big, "S0SMALL": {"U0EVE"}})
    assert got.users == ("U0BOB", "U0EVE")
    [note] = got.notes
    assert "S0BIG" in note and "the channel message asks them" in note
    # Exactly at the cap still fits.
    fits = {f"U{i:03d}" for i in range(DM_CAP - 1)}
    assert len(recipients(rules, "U0ALICE", {"S0BIG": fits}).users) == DM_CAP


def test_too_many_named_approvers_are_cut_at_the_cap() -> None:
    rules = ApprovalRules(approvers=frozenset(f"U{i:03d}" for i in range(DM_CAP + 3)))
    got = recipients(rules, "U0ALICE", {})
    assert len(got.users) == DM_CAP and got.notes


def test_an_unreadable_group_is_left_to_the_channel_message() -> None:
    rules = ApprovalRules(approver_groups=frozenset({"S1"}))
    got = recipients(rules, "U0ALICE", {"S1": None})
    assert got.users == () and "could not be read" in got.notes[0]


def test_a_copy_is_the_channel_card_headed_by_its_channel() -> None:
    card = {"text": "Schedule change R1 for `web-1` waits for approval",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}},
                       {"type": "actions", "elements": []}]}
    copy = copy_message(card, "C0OPS")
    assert copy["blocks"][1:] == card["blocks"]  # nothing more than the channel shows
    assert "<#C0OPS>" in copy["blocks"][0]["elements"][0]["text"]
    assert copy["text"].startswith(card["text"]) and "<#C0OPS>" in copy["text"]


# --- the service ---------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path, clock: Clock):  # type: ignore[no-untyped-def]
    s = await AsyncStore.open(tmp_path / "imagebot.db", clock=clock)
    yield s
    await s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


class Groups:
    def __init__(self, members: dict[str, frozenset[str]], *, down: bool = False) -> None:
        self.members = members
        self.down = down
        self.asked: list[str] = []

    async def __call__(self, group: str) -> frozenset[str]:
        self.asked.append(group)
        if self.down:
            raise SlackUnavailable("usergroups.users.list: HTTP 503")
        return self.members[group]


def service_for(store: AsyncStore, clock: Clock, web: FakeWeb, policy: str = POLICY,
                groups: Groups | None = None) -> ScheduleService:
    return ScheduleService(store, FakeCloud(), Policy.loads(policy), clock=clock, web=web,
                           group_members=groups)


async def copies_queued(store: AsyncStore) -> list[tuple[str, str]]:
    return [(i.channel, i.payload["user"]) for i in await store.run(Store.pending_outbox, T0)
            if i.kind == "dm_copy"]


async def test_group_members_are_read_through_the_port(store: AsyncStore, clock: Clock) -> None:
    groups = Groups({"S0APPROVERS": frozenset({"U0CAROL", "U0ALICE", "U0DAVE"})})
    service = service_for(store, clock, FakeWeb(), GROUP_POLICY, groups)
    await propose(service, "schedule web-1 daily at 03:00")
    assert groups.asked == ["S0APPROVERS"]
    assert await copies_queued(store) == [("U0BOB", "U0BOB"), ("U0CAROL", "U0CAROL"),
                                          ("U0DAVE", "U0DAVE")]
    users = [c.user for c in await store.run(Store.request_copies, "R1")]
    assert users == ["U0BOB", "U0CAROL", "U0DAVE"]


async def test_a_group_that_cannot_be_read_leaves_the_named_copies(
        store: AsyncStore, clock: Clock) -> None:
    service = service_for(store, clock, FakeWeb(), GROUP_POLICY, Groups({}, down=True))
    await propose(service, "schedule web-1 daily at 03:00")
    assert await copies_queued(store) == [("U0BOB", "U0BOB")]


async def test_every_posted_copy_is_rewritten_once_when_decided(
        store: AsyncStore, clock: Clock) -> None:
    web = FakeWeb()
    service = service_for(store, clock, web)
    rid = await propose(service, "schedule web-1 daily at 03:00")
    card, *_ = await store.run(Store.pending_outbox, T0)
    await store.run(Store.mark_sent, card.id, result_ts="1.1")
    for user, dm in (("U0BOB", "D0BOB"), ("U0CAROL", "D0CAROL")):  # as the notifier would
        await store.run(Store.set_copy_channel, rid, user, dm)
        await store.run(Store.record_copy_posted, rid, user, f"{user}.1", "pending")
    assert (await service.decide(rid, actor="U0CAROL", action="approve",
                                 channel="D0CAROL", direct=True)).accepted
    await service.tick()
    assert sorted((c, ts) for c, ts, _, _ in web.updates) == [
        ("C0OPS", "1.1"), ("D0BOB", "U0BOB.1"), ("D0CAROL", "U0CAROL.1")]
    for channel, _, text, blocks in web.updates:
        assert blocks is not None and not [b for b in blocks if b["type"] == "actions"]
        assert "approved" in text and "Approved* by <@U0CAROL>" in str(blocks)
        if channel.startswith("D"):
            assert "<#C0OPS>" in text
    await service.tick()
    assert len(web.updates) == 3  # each copy shows the decision now


async def test_a_copy_posted_after_the_rewrite_pass_is_rewritten_next(
        store: AsyncStore, clock: Clock) -> None:
    web = FakeWeb()
    service = service_for(store, clock, web)
    rid = await propose(service, "schedule web-1 daily at 03:00")
    card, *_ = await store.run(Store.pending_outbox, T0)
    await store.run(Store.mark_sent, card.id, result_ts="1.1")
    await service.decide(rid, actor="U0BOB", action="reject", channel="C0OPS")
    await service.tick()  # the channel card; Carol's copy had no ts yet
    assert [c for c, *_ in web.updates] == ["C0OPS"]
    await store.run(Store.set_copy_channel, rid, "U0CAROL", "D0CAROL")
    await store.run(Store.record_copy_posted, rid, "U0CAROL", "9.9", "pending")
    clock.advance(1)
    await service.tick()
    assert "D0CAROL" in [c for c, *_ in web.updates][1:]
    assert "rejected" in web.updates[-1][2]


async def test_expiry_rewrites_the_copies_too(store: AsyncStore, clock: Clock) -> None:
    web = FakeWeb()
    service = service_for(store, clock, web)
    rid = await propose(service, "schedule web-1 daily at 03:00")
    await store.run(Store.set_copy_channel, rid, "U0BOB", "D0BOB")
    await store.run(Store.record_copy_posted, rid, "U0BOB", "2.2", "pending")
    clock.advance(timedelta(hours=25).total_seconds())
    await service.tick()
    assert [(c, ts) for c, ts, *_ in web.updates] == [("D0BOB", "2.2")]
    assert "expired" in web.updates[0][2]


async def test_a_superseded_request_rewrites_its_copies(store: AsyncStore, clock: Clock) -> None:
    web = FakeWeb()
    service = service_for(store, clock, web)
    rid = await propose(service, "schedule web-1 daily at 03:00")
    await store.run(Store.set_copy_channel, rid, "U0CAROL", "D0CAROL")
    await store.run(Store.record_copy_posted, rid, "U0CAROL", "3.3", "pending")
    assert await propose(service, "schedule web-1 daily at 04:00") == "R2"
    await service.tick()
    assert [(c, ts) for c, ts, *_ in web.updates] == [("D0CAROL", "3.3")]
    assert "superseded" in web.updates[0][2]
    # R2's copies are queued as R1's were; R1's are not sent any more if still unsent.
    assert ("U0CAROL", "U0CAROL") in await copies_queued(store)
