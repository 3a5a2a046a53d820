"""Schedule operations end to end (issue 18): `/image schedule web-1 pause|resume|skip-next|
run-now` -> a change request in the channel -> approved by another member (signed slash
commands and clicks into the real Bolt app) -> the scheduler loop at the shifted clock's slots
-> the engine on the simulated cloud. The store is restarted where it matters: the operations
live in SQLite, not in the loop's memory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import time, timedelta
from pathlib import Path

from bot.scheduling.due import ScheduleSpec, next_run
from bot.store import Store
from sandbox.cloud.model import World
from sandbox.slack.model import SlackWorkspace
from sandbox.system import ShiftableClock, System, running_system
from tests.e2e.helpers import approval_message, parents, policy_file
from tests.e2e.test_schedules_flow import add_image, buttons

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "U0CAROL"]
notify_channel = "#ops-alerts"
"""
SPEC = ScheduleSpec("daily", None, time(3, 0), "UTC", 2)


class Rig:
    """One world, workspace, clock and database that bots come and go on (a restart)."""

    def __init__(self, tmp_path: Path, policy: str = POLICY) -> None:
        self.policy = policy_file(tmp_path, policy)
        self.db = tmp_path / "bot.db"
        self.clock = ShiftableClock()
        self.world: World | None = None
        self.workspace: SlackWorkspace | None = None

    @contextlib.asynccontextmanager
    async def bot(self) -> AsyncIterator[System]:
        async with running_system(speed=200, policy_path=self.policy, db_path=self.db,
                                  clock=self.clock, world=self.world,
                                  workspace=self.workspace) as system:
            self.world, self.workspace = system.world, system.workspace
            yield system


def section_text(system: System, request_id: str) -> str:
    message = approval_message(system, request_id)
    assert message is not None
    return " ".join(b.get("text", {}).get("text", "") for b in message.blocks or []
                    if b.get("type") == "section")


def told(system: System, user: str) -> list[str]:
    """What `user` was answered privately after the ack (the follow-up)."""
    return [e.text or "" for e in system.workspace.ephemerals(user)]


async def propose(system: System, user: str, text: str, request_id: str) -> str:
    response = await system.command(user, "#ops", text)
    assert response.status_code == 200
    await system.wait_for(lambda: approval_message(system, request_id), within=15)
    return section_text(system, request_id)


async def approve(system: System, request_id: str, user: str = "bob") -> None:
    response = await system.command(user, "#ops", f"approve {request_id}")
    assert f"approved {request_id}" in response.text, response.text
    await system.wait_for(
        lambda: "approved" in (approval_message(system, request_id).text or ""))


async def refused_privately(system: System, text: str, fragment: str) -> None:
    before = len(await system.runtime.store.run(Store.list_change_requests))
    await system.command("alice", "#ops", text)
    await system.wait_for(lambda: any(fragment in t for t in told(system, "U0ALICE")))
    assert len(await system.runtime.store.run(Store.list_change_requests)) == before


async def set_schedule(system: System) -> None:
    await propose(system, "alice", "schedule web-1 daily at 03:00 --keep 2", "R1")
    await approve(system, "R1")


async def at(system: System, moment_offset: timedelta, slot_after: bool = True) -> None:
    """Move the clock by `moment_offset` and let the loop tick (twice: claim, then follow)."""
    system.clock.shift(moment_offset)
    assert system.runtime.schedules is not None
    await system.runtime.schedules.tick()
    await system.settle()


def to_slot_after(system: System, minutes: int = 1) -> timedelta:
    """The shift that puts the clock `minutes` past the next 03:00 UTC slot."""
    return next_run(SPEC, system.clock()) - system.clock() + timedelta(minutes=minutes)


async def runs(system: System) -> list[tuple[str, str | None]]:
    return [(r.result, r.job_id) for r in
            await system.runtime.store.run(Store.runs_for_schedule, "S1")]


async def test_pause_stops_runs_across_a_restart_and_resume_runs_again_without_catch_up(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    async with rig.bot() as system:
        await set_schedule(system)
        text = await propose(system, "alice", "schedule web-1 pause", "R2")
        assert "Pause" in text and "S1" in text and "daily at 03:00 UTC" in text
        assert "no runs until resumed" in text
        assert "Retention" not in text  # a pause deletes nothing
        assert buttons(approval_message(system, "R2")) == ["cr_approve", "cr_reject"]
        # Until approved nothing changed; the requester may not approve her own request.
        own = await system.command("alice", "#ops", "approve R2")
        assert "own request" in own.text
        await approve(system, "R2")
        rewritten = str(approval_message(system, "R2").blocks)
        assert "S1 is paused" in rewritten
        await refused_privately(system, "schedule web-1 pause", "already paused (by R2)")
        await refused_privately(system, "schedule web-1 skip-next", "S1 is paused")
        listing = await system.command("carol", "#ops", "schedules")
        assert "paused since" in listing.text and "(R2)" in listing.text
        assert "next:" not in listing.text

    async with rig.bot() as system:  # a restart: the pause is in SQLite
        await at(system, to_slot_after(system))
        await at(system, timedelta(days=2))  # two more slots go by, paused
        assert await runs(system) == []
        assert await system.runtime.store.run(Store.list_jobs) == []

        await propose(system, "alice", "schedule web-1 resume", "R3")
        assert "not caught up" in section_text(system, "R3")
        await approve(system, "R3", "carol")
        await refused_privately(system, "schedule web-1 resume", "not paused")
        # Resumed just after a slot time (within the catch-up window): no surprise run, no
        # storm of the three slots missed while paused.
        await at(system, timedelta(seconds=1))
        assert await runs(system) == []
        listing = await system.command("carol", "#ops", "schedules")
        assert "paused" not in listing.text and "next:" in listing.text

        await at(system, to_slot_after(system))
        await system.wait_for(lambda: _succeeded(system), within=30)
        assert [r for r, _ in await runs(system)] == ["succeeded"]
        actions = [a.action for a in await system.runtime.store.run(Store.audit_rows)]
        assert "schedule_pause" in actions and "schedule_resume" in actions


async def _succeeded(system: System) -> bool:
    return [r for r, _ in await runs(system)] == ["succeeded"]


async def test_skip_next_skips_exactly_one_slot_across_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    async with rig.bot() as system:
        await set_schedule(system)
        first = next_run(SPEC, system.clock())
        text = await propose(system, "alice", "schedule web-1 skip-next", "R2")
        # The message names the slot it skips, and the next runs after it.
        assert f"the slot {first:%a %Y-%m-%d} 03:00 UTC does not run" in text
        assert f"{first + timedelta(days=1):%a %Y-%m-%d} 03:00 UTC" in text
        await approve(system, "R2")
        await refused_privately(system, "schedule web-1 skip-next", "already skips")
        listing = await system.command("carol", "#ops", "schedules")
        assert "skip-next (R2)" in listing.text
        assert f"next: {first + timedelta(days=1):%a %Y-%m-%d} 03:00 UTC" in listing.text

    async with rig.bot() as system:
        await at(system, to_slot_after(system))
        assert await runs(system) == [("skipped", None)]
        [run] = await system.runtime.store.run(Store.runs_for_schedule, "S1")
        assert run.slot == first
        await system.settle()
        notices = [m.text or "" for m in parents(system, "C0ALERTS")]
        assert any("skipped its slot" in t and "as R2 asked" in t for t in notices)

    async with rig.bot() as system:
        await at(system, to_slot_after(system))  # the slot after: runs as usual
        await system.wait_for(lambda: _one_skipped_then_done(system), within=30)
        schedule = await system.runtime.store.run(Store.get_schedule, "S1")
        assert schedule.skip_slot is None and schedule.skip_request is None


async def _one_skipped_then_done(system: System) -> bool:
    return [r for r, _ in await runs(system)] == ["skipped", "succeeded"]


async def test_run_now_makes_one_image_without_moving_the_slots_and_marks_protected_images(
        tmp_path: Path) -> None:
    # Self-approval allowed: run-now follows the channel's approval rules like any change.
    rig = Rig(tmp_path, POLICY + "allow_self_approval = true\n")
    async with rig.bot() as system:
        add_image(system, "web-1-old2", 2, imagebot_schedule_id="S1")
        add_image(system, "web-1-old1", 1, imagebot_schedule_id="S1")
        add_image(system, "web-1-pinned", 9, imagebot_schedule_id="S1", protected=True)
        await set_schedule(system)
        text = await propose(system, "bob", "schedule web-1 run-now", "R2")
        assert "once now" in text and "regular slots stay" in text
        # Retention preview: the oldest own image would go; the protected one is kept.
        assert "would delete" in text and "web-1-old2" in text
        assert "Kept because protected" in text and "web-1-pinned" in text
        assert "web-1-old1" not in text
        await approve(system, "R2", "bob")  # Bob, an approver, approves his own
        await system.wait_for(lambda: _succeeded(system), within=30)

    async with rig.bot() as system:  # after a restart it is not run again
        assert system.runtime.schedules is not None
        await system.runtime.schedules.tick()
        [run] = await system.runtime.store.run(Store.runs_for_schedule, "S1")
        job = await system.runtime.store.run(Store.get_job, str(run.job_id))
        assert job.state == "succeeded" and job.schedule_id == "S1"
        assert "Run-now of S1" in (job.note or "")
        schedule = await system.runtime.store.run(Store.get_schedule, "S1")
        assert schedule.last_slot is None and schedule.run_now_at is None
        await system.runtime.schedules.tick()
        assert len(await runs(system)) == 1  # once
        names = {i.name for i in system.world.images.values()}
        assert "web-1-pinned" in names and "web-1-old2" not in names
        # The regular slot still runs at its time.
        await at(system, to_slot_after(system))
        await system.wait_for(
            lambda: _results(system, ["succeeded", "succeeded"]), within=30)


async def _results(system: System, expected: list[str]) -> bool:
    return [r for r, _ in await runs(system)] == expected


async def test_operations_need_a_schedule_of_this_channel(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    async with rig.bot() as system:
        await refused_privately(system, "schedule web-1 pause", "web-1 has no schedule in "
                                "this channel")
