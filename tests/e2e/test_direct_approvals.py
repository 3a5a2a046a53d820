"""Approvers are asked directly (issue 19), end to end: `/image schedule` in #ops -> the change
request in the channel AND a DM copy (conversations.open, then chat.postMessage in the DM) to
each approver the policy names or the members of an approver user group -> a click on a DM
copy (signed block_actions, over HTTP and over Socket Mode, into the real Bolt app) -> every
copy and the channel card rewritten. Against the Slack emulator and the simulated cloud; only
clocks are fast."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import SlackUnavailable
from bot.serve import connect_socket_mode
from bot.slack.web import SlackWeb
from bot.store import Store
from sandbox.slack.deliver import SOCKET_MODE, Deliverer
from sandbox.slack.model import Message, User, UserGroup
from sandbox.system import SIGNING_SECRET, ShiftableClock, System, running_system
from tests.e2e.helpers import OPS, approval_message, policy_file

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "U0CAROL"]
"""
SCHEDULE = "schedule web-1 daily at 03:00 --keep 2"


def buttons(message: Message) -> list[str]:
    return [e["action_id"] for b in message.blocks or [] if b.get("type") == "actions"
            for e in b.get("elements", [])]


def dm_of(system: System, user_id: str) -> list[Message]:
    """The bot's messages in its DM with `user_id` (none when it was never opened)."""
    dm = "D" + user_id[1:]
    return system.workspace.channel_messages(dm) if dm in system.workspace.channels else []


def copy_of(system: System, user_id: str, request_id: str = "R1") -> Message | None:
    for message in dm_of(system, user_id):
        if f"Schedule change {request_id} " in (message.text or ""):
            return message
    return None


@contextlib.asynccontextmanager
async def clicker(system: System, transport: str) -> AsyncIterator[Deliverer]:
    """Who delivers clicks: the system's HTTP deliverer, or a Socket Mode link."""
    if transport == "http":
        yield system.deliverer
        return
    handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
    try:
        await system.workspace.socket_hub.connected.wait()
        yield Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET)
    finally:
        await handler.close_async()


async def propose(system: System) -> Message:
    response = await system.command("alice", "#ops", SCHEDULE)
    assert response.status_code == 200
    return await system.wait_for(lambda: approval_message(system, "R1"), within=15)


@pytest.mark.parametrize("transport", ["http", "socket"])
async def test_both_approvers_are_asked_and_a_dm_decision_updates_every_copy(
        tmp_path: Path, transport: str) -> None:
    async with running_system(speed=200, policy_path=policy_file(tmp_path, POLICY),
                              slack_rate_scale=20) as system:
        card = await propose(system)
        bob = await system.wait_for(lambda: copy_of(system, "U0BOB"))
        carol = await system.wait_for(lambda: copy_of(system, "U0CAROL"))
        # Same buttons as the channel card; the channel it is for; nothing more than the card.
        assert buttons(bob) == buttons(carol) == buttons(card) == ["cr_approve", "cr_reject"]
        assert "<#C0OPS>" in (bob.text or "") and "<#C0OPS>" in str(bob.blocks)
        assert bob.blocks is not None and card.blocks is not None
        assert bob.blocks[1:] == card.blocks
        # The requester is not asked; the DMs were opened with conversations.open.
        assert dm_of(system, "U0ALICE") == []
        opened = {c.params.get("users") for c in system.workspace.calls("conversations.open")}
        assert opened == {"U0BOB", "U0CAROL"}

        async with clicker(system, transport) as deliver:
            await deliver.click("carol", "D0CAROL", carol.ts, "cr_approve", "R1")

            def all_decided() -> bool:
                shown = [approval_message(system, "R1"), copy_of(system, "U0BOB"),
                         copy_of(system, "U0CAROL")]
                return all(m is not None and not buttons(m) for m in shown)

            await system.wait_for(all_decided)
        for message in (approval_message(system, "R1"), copy_of(system, "U0BOB"),
                        copy_of(system, "U0CAROL")):
            assert message is not None
            assert "Approved* by <@U0CAROL>" in str(message.blocks), message.blocks
            assert "may be approved by" not in str(message.blocks)
        assert "<#C0OPS>" in (copy_of(system, "U0BOB").text or "")  # type: ignore[union-attr]
        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.approved_by == "U0CAROL"
        # One copy each, never a second post.
        assert len(dm_of(system, "U0BOB")) == len(dm_of(system, "U0CAROL")) == 1


async def test_a_typed_approval_in_the_channel_updates_the_dm_copies(tmp_path: Path) -> None:
    async with running_system(speed=200, policy_path=policy_file(tmp_path, POLICY),
                              slack_rate_scale=20) as system:
        await propose(system)
        await system.wait_for(lambda: copy_of(system, "U0BOB") and copy_of(system, "U0CAROL"))
        await system.command("bob", "#ops", "reject R1 not now")
        await system.wait_for(lambda: not buttons(copy_of(system, "U0CAROL")))  # type: ignore[arg-type]
        carol = copy_of(system, "U0CAROL")
        assert carol is not None and "Rejected* by <@U0BOB>" in str(carol.blocks)


async def test_a_user_group_is_asked_up_to_the_cap(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    policy = policy_file(tmp_path, """
[channels.C0OPS]
approvers = ["U0BOB", "S0APPROVERS", "S0MANY"]
""")
    async with running_system(speed=200, policy_path=policy, slack_rate_scale=20) as system:
        many = [f"U0M{i:02d}" for i in range(25)]
        for uid in many:
            system.workspace.add_user(User(uid, uid.lower(), f"Member {uid}"))
        system.workspace.add_usergroup(UserGroup("S0MANY", "everyone", "Everyone", many))
        with caplog.at_level(logging.INFO, logger="bot.scheduling.proposals"):
            await propose(system)
            # S0APPROVERS is Alice (the requester) and Carol; Bob is named.
            await system.wait_for(lambda: copy_of(system, "U0BOB") and copy_of(system, "U0CAROL"))
            await system.settle()
        assert dm_of(system, "U0ALICE") == []
        assert not [u for u in many if dm_of(system, u)]  # past the cap: the channel asks them
        assert any("S0MANY" in r.getMessage() and "channel message" in r.getMessage()
                   for r in caplog.records)
        copies = await system.runtime.store.run(Store.request_copies, "R1")
        assert sorted(c.user for c in copies) == ["U0BOB", "U0CAROL"]
        # Carol approves from her DM as a member of the group (approver by policy).
        carol = copy_of(system, "U0CAROL")
        assert carol is not None
        await system.deliverer.click("carol", "D0CAROL", carol.ts, "cr_approve", "R1")
        await system.wait_for(lambda: not buttons(copy_of(system, "U0BOB")))  # type: ignore[arg-type]
        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.approved_by == "U0CAROL"


async def test_a_crash_between_the_dm_post_and_its_ts_does_not_post_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob's copy reaches Slack, but the bot goes down before it records the ts (the answer is
    lost, then the process stops). The bot that starts next finds the copy in Bob's DM by its
    metadata (the notifier's lookup, `im:history`) instead of posting it again."""
    db = tmp_path / "imagebot.db"
    policy = policy_file(tmp_path, POLICY)
    real_post = SlackWeb.post

    async def post_then_lose_the_answer(self: SlackWeb, channel: str, text: str,
                                        *args: Any, **kwargs: Any) -> tuple[str, str]:
        result = await real_post(self, channel, text, *args, **kwargs)
        if channel == "D0BOB":  # posted; the answer never reaches us, retry much later
            raise SlackUnavailable("connection lost", retry_after=3600, answered=False)
        return result

    monkeypatch.setattr(SlackWeb, "post", post_then_lose_the_answer)
    clock = ShiftableClock()
    async with running_system(speed=200, policy_path=policy, db_path=db, clock=clock,
                              slack_rate_scale=20) as first:
        await propose(first)
        await first.wait_for(lambda: copy_of(first, "U0BOB") and copy_of(first, "U0CAROL"))
        [item] = [i for i in await first.runtime.store.run(Store.outbox_after, 0)
                  if i.thread_key == "R1:dm:U0BOB"]
        assert item.posting_at is not None and item.sent_at is None
        bob_copy = await first.runtime.store.run(Store.request_copy, "R1", "U0BOB")
        assert bob_copy is not None and bob_copy.dm_channel == "D0BOB" and bob_copy.ts is None
        workspace, world = first.workspace, first.world
    monkeypatch.undo()
    clock.shift(timedelta(hours=2))  # past the retry time
    async with running_system(speed=200, policy_path=policy, db_path=db, clock=clock,
                              workspace=workspace, world=world, slack_rate_scale=20) as second:
        store = second.runtime.store

        async def recorded() -> bool:
            copy = await store.run(Store.request_copy, "R1", "U0BOB")
            return copy is not None and copy.ts is not None

        await second.wait_for(recorded)
        bob = copy_of(second, "U0BOB")
        assert bob is not None and len(dm_of(second, "U0BOB")) == 1
        posts = [c for c in workspace.calls("chat.postMessage")
                 if c.params.get("channel") == "D0BOB"]
        assert len(posts) == 1  # looked up, not posted again:
        assert [c for c in workspace.calls("conversations.history")
                if c.params.get("channel") == "D0BOB" and c.error is None]
        copy = await store.run(Store.request_copy, "R1", "U0BOB")
        assert copy is not None and copy.ts == bob.ts
        # ... and it is that copy the next decision rewrites.
        await second.deliverer.click("bob", "D0BOB", bob.ts, "cr_approve", "R1")
        await second.wait_for(lambda: not buttons(copy_of(second, "U0BOB")))  # type: ignore[arg-type]
        assert len(dm_of(second, "U0BOB")) == 1


async def test_a_click_by_someone_no_longer_an_approver_is_refused_privately(
        tmp_path: Path) -> None:
    db = tmp_path / "imagebot.db"
    clock = ShiftableClock()
    async with running_system(speed=200, policy_path=policy_file(tmp_path, POLICY), db_path=db,
                              clock=clock, slack_rate_scale=20) as first:
        await propose(first)
        await first.wait_for(lambda: copy_of(first, "U0BOB") and copy_of(first, "U0CAROL"))
        await first.settle()
        workspace, world = first.workspace, first.world
    # The policy changes (Bob is no approver any more) and the bot restarts with it.
    changed = tmp_path / "changed"
    changed.mkdir()
    policy = policy_file(changed, '[channels.C0OPS]\napprovers = ["U0CAROL"]\n')
    async with running_system(speed=200, policy_path=policy, db_path=db, clock=clock,
                              workspace=workspace, world=world, slack_rate_scale=20) as second:
        bob = copy_of(second, "U0BOB")
        assert bob is not None
        await second.deliverer.click("bob", "D0BOB", bob.ts, "cr_approve", "R1")
        said = await second.wait_for(lambda: [e.text for e in workspace.ephemerals("U0BOB")])
        assert ":no_entry:" in said[0] and "<@U0CAROL>" in said[0]
        assert not [m for m in workspace.channel_messages(OPS) if "no_entry" in (m.text or "")]
        row = await second.runtime.store.run(Store.get_change_request, "R1")
        assert row.status == "pending"
        assert buttons(copy_of(second, "U0BOB")) == ["cr_approve", "cr_reject"]  # type: ignore[arg-type]


def decided_everywhere(system: System, request_id: str) -> bool:
    """The channel card and both approvers' copies of `request_id` show no buttons."""
    shown = [approval_message(system, request_id), copy_of(system, "U0BOB", request_id),
             copy_of(system, "U0CAROL", request_id)]
    return all(m is not None and not buttons(m) for m in shown)


async def test_an_operation_request_is_asked_by_dm_and_approved_there(tmp_path: Path) -> None:
    """Operations (pause here) go through the one propose path (`proposals.write_request`):
    their approvers get a DM copy too, and a click on it decides the request."""
    async with running_system(speed=200, policy_path=policy_file(tmp_path, POLICY),
                              slack_rate_scale=20) as system:
        await propose(system)
        await system.command("bob", "#ops", "approve R1")
        await system.command("alice", "#ops", "schedule web-1 pause")
        card = await system.wait_for(lambda: approval_message(system, "R2"), within=15)
        bob = await system.wait_for(lambda: copy_of(system, "U0BOB", "R2"))
        await system.wait_for(lambda: copy_of(system, "U0CAROL", "R2"))
        assert buttons(bob) == buttons(card) == ["cr_approve", "cr_reject"]
        assert bob.blocks is not None and bob.blocks[1:] == card.blocks
        assert "<#C0OPS>" in (bob.text or "")
        assert not [m for m in dm_of(system, "U0ALICE")]  # the requester is not asked

        await system.deliverer.click("bob", "D0BOB", bob.ts, "cr_approve", "R2")
        await system.wait_for(lambda: decided_everywhere(system, "R2"))
        for message in (approval_message(system, "R2"), copy_of(system, "U0CAROL", "R2")):
            assert message is not None and "Approved* by <@U0BOB>" in str(message.blocks)
        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.paused_at is not None and schedule.pause_request == "R2"


async def test_a_native_request_is_asked_by_dm_and_every_copy_follows_the_cloud(
        tmp_path: Path) -> None:
    """`--native` requests get DM copies too; approved from a copy, the cloud's schedule is
    set, and the channel card and every copy then say so (the cloud's answer changes the card
    without changing the request's status: `direct.shown_state`)."""
    async with running_system(speed=200, policy_path=policy_file(tmp_path, POLICY),
                              slack_rate_scale=20, api="rackspace-legacy") as system:
        await system.command("alice", "#ops", "schedule web-1 daily --keep 7 --native")
        card = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        carol = await system.wait_for(lambda: copy_of(system, "U0CAROL"))
        await system.wait_for(lambda: copy_of(system, "U0BOB"))
        assert "Rackspace Scheduled Images" in (carol.text or "")
        assert carol.blocks is not None and carol.blocks[1:] == card.blocks
        assert dm_of(system, "U0ALICE") == []

        # The cloud is away for a moment: every copy shows the approval before the answer.
        system.world.inject("http", path="/rax-si-image-schedule$", method="POST", status=503,
                            count=4)
        await system.deliverer.click("carol", "D0CAROL", carol.ts, "cr_approve", "R1")
        await system.wait_for(lambda: "Setting it on the cloud" in str(
            copy_of(system, "U0BOB").blocks), within=15)  # type: ignore[union-attr]

        def set_everywhere() -> bool:
            shown = [approval_message(system, "R1"), copy_of(system, "U0BOB"),
                     copy_of(system, "U0CAROL")]
            return all(m is not None and "set on the cloud" in str(m.blocks) for m in shown)

        await system.wait_for(set_everywhere, within=15)
        for message in (approval_message(system, "R1"), copy_of(system, "U0BOB")):
            assert message is not None and not buttons(message)
            assert "Approved* by <@U0CAROL>" in str(message.blocks)
        row = await system.runtime.store.run(Store.get_change_request, "R1")
        assert row.apply_result is not None and row.apply_result.startswith("ok")
        assert len(dm_of(system, "U0BOB")) == len(dm_of(system, "U0CAROL")) == 1


async def test_a_fleet_request_is_asked_by_dm_with_its_matched_servers(tmp_path: Path) -> None:
    async with running_system(speed=200, policy_path=policy_file(tmp_path, POLICY),
                              slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "schedule web-* daily at 03:00 --keep 2")
        card = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        bob = await system.wait_for(lambda: copy_of(system, "U0BOB"))
        await system.wait_for(lambda: copy_of(system, "U0CAROL"))
        assert bob.blocks is not None and bob.blocks[1:] == card.blocks
        assert "web-1" in str(bob.blocks)  # the servers it matches today, as in the channel
        await system.deliverer.click("bob", "D0BOB", bob.ts, "cr_approve", "R1")
        await system.wait_for(lambda: decided_everywhere(system, "R1"))
        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.approved_by == "U0BOB" and schedule.target == "web-*"
