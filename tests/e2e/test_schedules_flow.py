"""Schedules end to end: `/image schedule` -> change request in the channel -> button clicks
(signed block_actions into the real Bolt app) -> the scheduler loop at the shifted clock's slot
-> the engine on the simulated cloud -> retention. Only clocks are fast; nothing is stubbed."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.scheduling.due import ScheduleSpec, next_run
from bot.store import Store
from sandbox.cloud.model import Image, stable_id
from sandbox.slack.model import Message
from sandbox.system import System, running_system
from tests.e2e.helpers import approval_message, parents, policy_file, thread_texts

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "U0CAROL"]
notify_channel = "#ops-alerts"
"""


def buttons(message: Message) -> list[str]:
    found: list[str] = []
    for block in message.blocks or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            found.append(element["action_id"])
    return found


def ephemeral_texts(system: System, user: str) -> list[str]:
    return [e.text or "" for e in system.workspace.ephemerals(user, "C0OPS")]


def add_image(system: System, name: str, age_days: float, **props: Any) -> str:
    """An active image of web-1 created `age_days` ago (world time)."""
    world = system.world
    server_id = stable_id("server", "web-1")
    created = world.now() - age_days * 86400
    protected = bool(props.pop("protected", False))
    image = Image(id=stable_id("image", name), name=name, status="active", created_at=created,
                  updated_at=created, owner=world.project_id, size=1024, protected=protected,
                  properties={"instance_uuid": server_id, "image_type": "snapshot", **props})
    with world.lock:
        world._add_image(image)  # test setup: images that exist before the bot starts
    return image.id


async def propose_and_wait(system: System, text: str) -> Message:
    response = await system.command("alice", "#ops", text)
    assert response.status_code == 200
    return await system.wait_for(lambda: approval_message(system, "R1"), within=15)


@pytest.mark.parametrize("api", ["openstack", "rackspace-legacy"])
async def test_request_approve_run_and_retention(tmp_path: Path, api: str) -> None:
    # rackspace-legacy: Rackspace Cloud Images has no `in:` and no property filters to trust,
    # so retention must find the schedule's images on its own (owner listing + our check).
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api=api) as system:
        own_old = add_image(system, "web-1-old3", 3, imagebot_schedule_id="S1")
        own_mid = add_image(system, "web-1-old2", 2, imagebot_schedule_id="S1")
        own_new = add_image(system, "web-1-old1", 1, imagebot_schedule_id="S1")
        pinned = add_image(system, "web-1-pinned", 9, imagebot_schedule_id="S1", protected=True)
        foreign = add_image(system, "web-1-manual", 10)
        other = add_image(system, "web-1-other-schedule", 8, imagebot_schedule_id="S9")

        message = await propose_and_wait(
            system, "schedule web-1 daily at 03:00 --keep 2 --tz Europe/Berlin")
        assert buttons(message) == ["cr_approve", "cr_reject"]
        text = " ".join(b.get("text", {}).get("text", "") for b in message.blocks or []
                        if b.get("type") == "section")
        assert "no schedule" in text and "daily at 03:00 Europe/Berlin" in text
        assert "UTC)" in text  # next runs in the zone and in UTC
        # No schedule yet: nothing was made before the approval.
        assert await system.runtime.store.run(Store.list_schedules) == []

        # The requester may not approve; a non-approver is told who may.
        await system.deliverer.click("alice", "C0OPS", message.ts, "cr_approve", "R1")
        await system.wait_for(lambda: any("own request" in t
                                          for t in ephemeral_texts(system, "U0ALICE")))
        # Bob approves with one click; Carol, a moment later, is told it is already done.
        await system.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", "R1")
        await system.deliverer.click("carol", "C0OPS", message.ts, "cr_approve", "R1")
        await system.wait_for(lambda: any("already approved by <@U0BOB>" in t
                                          for t in ephemeral_texts(system, "U0CAROL")))
        await system.wait_for(lambda: "approved" in (approval_message(system, "R1").text or ""))
        rewritten = approval_message(system, "R1")
        assert rewritten is not None and buttons(rewritten) == []
        assert "Approved* by <@U0BOB>" in str(rewritten.blocks)
        # Decided: what happened, by whom, when; no "may be approved by", no countdown (#19).
        assert "may be approved by" not in str(rewritten.blocks)
        assert "Expires at" not in str(rewritten.blocks)

        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.id == "S1" and schedule.approved_by == "U0BOB"

        # Move the bot's clock to one minute after the next 03:00 Berlin slot.
        spec = ScheduleSpec("daily", None, time(3, 0), "Europe/Berlin", 2)
        slot = next_run(spec, system.clock())
        system.clock.shift(slot - system.clock() + timedelta(minutes=1))
        system.runtime.poke()
        store = system.runtime.store

        async def run_done() -> bool:
            runs = await store.run(Store.runs_for_schedule, "S1")
            return bool(runs) and runs[0].result == "succeeded"

        await system.wait_for(run_done, within=30)
        [run] = await store.run(Store.runs_for_schedule, "S1")
        assert run.slot == slot and run.attempts == 1
        job = await store.run(Store.get_job, str(run.job_id))
        assert job.state == "succeeded" and job.schedule_id == "S1"
        assert job.requested_by == "schedule:S1"
        # Posted in the notify channel, named for the one policy lookup (issue 13).
        assert (job.channel, job.channel_name) == ("C0ALERTS", "ops-alerts")
        new_image = system.world.images[str(job.image_id)]
        assert new_image.properties["imagebot_schedule_id"] == "S1"

        # Retention, keep 2: the new image and the newest old one stay; the two oldest own
        # images go; the protected, the manual and another schedule's images are untouched.
        images = system.world.images
        assert own_old not in images and own_mid not in images
        assert own_new in images and new_image.id in images
        assert pinned in images and foreign in images and other in images

        # The run was announced in the notification channel with its own thread, which reports
        # the deletions; nobody was pinged.
        await system.settle()
        [parent] = parents(system, "C0ALERTS")
        replies = thread_texts(system, parent.ts, "C0ALERTS")
        # The policy names the channel; the job learned its id from Slack's answer, so the
        # parent message could be updated (chat.update takes ids only).
        job = await store.run(Store.get_job, str(run.job_id))
        assert job.channel == "C0ALERTS" and parent.edits
        assert any("Retention" in r and "web-1-old3" in r and "web-1-old2" in r
                   for r in replies)
        # Issue 19: the card names the run and its schedule, not "Requested by schedule:S1";
        # nobody was asked to stop writes, so the thread gives the copy window instead.
        card = str(parent.blocks)
        assert "Scheduled run of S1 (daily at 03:00 Europe/Berlin) for " in card
        assert "Requested by" not in card and "schedule:S1" not in card
        assert not any("keep writes stopped" in r for r in replies)
        assert any("The copy window began at " in r for r in replies)
        assert any("The copy window is over" in r and "lasted " in r for r in replies)
        assert not any("<!channel>" in (m.text or "")
                       for m in system.workspace.all_messages("C0ALERTS"))

        actions = [(a.action, a.subject) for a in await store.run(Store.audit_rows)]
        for expected in [("request_created", "R1"), ("decision_refused", "R1"),
                         ("request_approved", "R1"), ("run_started", "S1"),
                         ("run_succeeded", "S1"), ("retention_deleted", "S1")]:
            assert expected in actions
        assert [a for a, _ in actions].count("request_approved") == 1
        assert [a for a, _ in actions].count("retention_deleted") == 2

        # /image schedules shows it with its next run and last result.
        response = await system.command("carol", "#ops", "schedules")
        assert "S1" in response.text and "last: done" in response.text


async def test_reject_path_leaves_no_schedule(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy) as system:
        await propose_and_wait(system, "schedule web-1 weekly sat at 04:00 --keep 3")
        response = await system.command("bob", "#ops", "reject R1 not during the freeze")
        assert "rejected R1" in response.text
        await system.wait_for(lambda: "rejected" in (approval_message(system, "R1").text or ""))
        message = approval_message(system, "R1")
        assert message is not None and buttons(message) == []
        assert "not during the freeze" in str(message.blocks)
        assert await system.runtime.store.run(Store.list_schedules) == []
        # A late approval is refused and says who decided.
        response = await system.command("carol", "#ops", "approve R1")
        assert "already rejected by <@U0BOB>" in response.text
        statuses = [(a.action, a.actor) for a in await system.runtime.store.run(Store.audit_rows, "R1")]
        assert ("request_rejected", "U0BOB") in statuses
        # Nothing runs later either.
        system.clock.shift(timedelta(days=8))
        assert system.runtime.schedules is not None
        await system.runtime.schedules.tick()
        assert await system.runtime.store.run(Store.list_jobs) == []


async def test_expired_request_is_marked_expired_and_cannot_be_approved(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY + 'approval_expiry = "2h"\n')
    async with running_system(speed=200, policy_path=policy) as system:
        message = await propose_and_wait(system, "schedule web-1 daily at 03:00 --keep 2")
        system.clock.shift(timedelta(hours=2, minutes=1))
        system.runtime.poke()
        await system.wait_for(lambda: "expired" in (approval_message(system, "R1").text or ""))
        assert buttons(approval_message(system, "R1")) == []
        await system.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", "R1")
        await system.wait_for(lambda: any("expired" in t
                                          for t in ephemeral_texts(system, "U0BOB")))
        assert await system.runtime.store.run(Store.list_schedules) == []
        actions = [a.action for a in await system.runtime.store.run(Store.audit_rows, "R1")]
        assert "request_expired" in actions and "request_approved" not in actions


async def test_policy_denies_servers_and_approvers_outside_the_channel_rules(
        tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY + 'servers = ["web-*"]\n')
    async with running_system(speed=200, policy_path=policy) as system:
        denied = await system.command("alice", "#ops", "schedule db-1 daily --keep 2")
        assert "db-1" in denied.text and "may not" in denied.text
        assert await system.runtime.store.run(Store.list_change_requests) == []
        message = await propose_and_wait(system, "schedule web-2 daily --keep 2")
        # Alice is not an approver here (only Bob and Carol are); she is told who is.
        response = await system.command("alice", "#ops", "approve R1")
        assert "U0BOB" in response.text
        assert (await system.runtime.store.run(Store.get_change_request, "R1")).status == "pending"
        await system.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", "R1")
        await system.wait_for(lambda: "approved" in (approval_message(system, "R1").text or ""))
        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.approved_by == "U0BOB"
