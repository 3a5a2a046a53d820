"""Fleet schedules end to end (issue 18): `/image schedule web-* ...` -> a change request that
lists the servers the target matches today -> approval by click -> at the slot, one digest
card in the notification channel (per server its phase), one combined "writes may resume"
reply per tick, a final summary -> retention per server that keeps a protected image -> the
next run includes a server added since and says which one was dropped. Against the simulated
cloud and the Slack emulator; only clocks are fast."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

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
servers = ["web-*"]
"""


def add_image(system: System, server: str, name: str, age_days: float, **props: Any) -> str:
    """An active image of `server` created `age_days` ago (world time)."""
    world = system.world
    created = world.now() - age_days * 86400
    protected = bool(props.pop("protected", False))
    image = Image(id=stable_id("image", name), name=name, status="active", created_at=created,
                  updated_at=created, owner=world.project_id, size=1024, protected=protected,
                  properties={"instance_uuid": stable_id("server", server),
                              "image_type": "snapshot", **props})
    with world.lock:
        world._add_image(image)  # test setup: images that exist before the bot starts
    return image.id


def blocks_text(message: Message) -> str:
    return " ".join(str(b) for b in message.blocks or [])


async def run_slot(system: System, spec: ScheduleSpec, run_number: int) -> None:
    """Move the clock past the schedule's next slot and wait for that run's summary."""
    slot = next_run(spec, system.clock())
    system.clock.shift(slot - system.clock() + timedelta(minutes=1))
    system.runtime.poke()
    store = system.runtime.store

    async def summarized() -> bool:
        runs = await store.run(Store.runs_for_schedule, "S1")
        return len(runs) >= run_number and runs[run_number - 1].result in ("succeeded",
                                                                           "failed")

    await system.wait_for(summarized, within=40)
    await system.settle()


async def test_fleet_schedule_approved_run_as_one_digest(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy) as system:
        world = system.world
        # Made by S1 before (the fleet's schedule id): on web-1 an old one and a protected one.
        old = add_image(system, "web-1", "web-1-old", 3, imagebot_schedule_id="S1")
        pinned = add_image(system, "web-1", "web-1-pinned", 9, imagebot_schedule_id="S1",
                           protected=True)
        manual = add_image(system, "web-1", "web-1-manual", 10)

        await system.command("alice", "#ops", "schedule web-* daily at 03:00 --keep 1")
        message = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        shown = blocks_text(message)
        assert "Matches today (2)" in shown and "`web-1`" in shown and "`web-2`" in shown
        assert "db-1" not in shown  # not matched by the glob

        await system.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", "R1")
        await system.wait_for(lambda: "approved" in (approval_message(system, "R1").text or ""))
        [schedule] = await system.runtime.store.run(Store.list_schedules)
        assert schedule.id == "S1" and schedule.target == "web-*"

        spec = ScheduleSpec("daily", None, time(3, 0), "UTC", 1)
        await run_slot(system, spec, 1)
        store = system.runtime.store
        [run] = await store.run(Store.runs_for_schedule, "S1")
        assert run.result == "succeeded" and run.job_id is None
        members = await store.run(Store.fleet_members, run.id)
        assert [m.server_name for m in members] == ["web-1", "web-2"]
        assert all(m.result == "succeeded" for m in members)

        # ONE card in the notification channel for the whole run, not one per server.
        [card] = parents(system, "C0ALERTS")
        assert "Scheduled images S1 of `web-*`" in blocks_text(card)
        assert "2 of 2 servers ready" in (card.text or "") or "2 of 2" in blocks_text(card)
        assert card.edits  # rewritten from the rows as the servers went
        replies = thread_texts(system, card.ts, "C0ALERTS")
        resumed = [r for r in replies if r.startswith(":arrow_forward: Writes may resume")]
        # Combined per tick: every server named once, in at most one reply per server.
        assert 1 <= len(resumed) <= 2
        assert all(sum(f"`{name}`" in r for r in resumed) == 1 for name in ("web-1", "web-2"))
        assert any("2 of 2 images ready" in r for r in replies)
        assert replies[-1].startswith(":white_check_mark: 2 of 2 images ready")
        # No job cards of their own.
        assert len(parents(system, "C0ALERTS")) == 1

        # Retention per server, keep 1: web-1's older own image went; the protected one
        # and the manual one stay, and so does the new image.
        assert old not in world.images
        assert pinned in world.images and manual in world.images
        job = await store.run(Store.get_job, str(members[0].job_id))
        assert job.image_id in world.images

        # Between runs: web-3 is added, web-2 deleted. The target is resolved again.
        world.add_server("web-3")
        world.delete_server(stable_id("server", "web-2"))
        await run_slot(system, spec, 2)
        runs = await store.run(Store.runs_for_schedule, "S1")
        second = await store.run(Store.fleet_members, runs[1].id)
        assert [m.server_name for m in second] == ["web-1", "web-3"]
        cards = parents(system, "C0ALERTS")
        assert len(cards) == 2
        assert "Dropped since the last run" in blocks_text(cards[1]) \
            and "`web-2`" in blocks_text(cards[1])
        summary = thread_texts(system, cards[1].ts, "C0ALERTS")[-1]
        assert "2 of 2 images ready" in summary and "web-2" in summary
        # The protected image survived the second retention too.
        assert pinned in world.images

        actions = [a.action for a in await store.run(Store.audit_rows, "S1")]
        assert actions.count("run_started") == 2 and actions.count("run_succeeded") == 2


async def test_metadata_target_policy_skip_and_retention_preview(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy) as system:
        world = system.world
        for name in ("web-1", "web-2"):
            world.set_server_metadata(stable_id("server", name), {"role": "web"})
        world.add_server("db-web", metadata={"role": "web"})  # the policy allows web-* only
        await system.command("alice", "#ops", "schedule meta:role=web daily at 03:00")
        message = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        shown = blocks_text(message)
        assert "Matches today (2)" in shown and "`web-1`" in shown and "`web-2`" in shown
        assert "may not image `db-web`" in shown
        await system.command("bob", "#ops", "approve R1")
        await system.wait_for(lambda: "approved" in (approval_message(system, "R1").text or ""))

        # A replacement is previewed per server: web-1's old own image would go, the
        # protected one is marked kept.
        add_image(system, "web-1", "web-1-a", 40, imagebot_schedule_id="S1")
        add_image(system, "web-1", "web-1-b", 1, imagebot_schedule_id="S1")
        add_image(system, "web-1", "web-1-keep", 50, imagebot_schedule_id="S1", protected=True)
        await system.command("alice", "#ops",
                             "schedule meta:role=web daily at 03:00 --keep-days 30")
        second = await system.wait_for(lambda: approval_message(system, "R2"), within=15)
        shown = blocks_text(second)
        assert "Retention at the next run" in shown
        assert "`web-1`: would delete `web-1-a`" in shown
        assert "web-1-b" not in shown.split("would delete")[1].split("\\n")[0]
        assert "keeps protected `web-1-keep`" in shown
        spec = ScheduleSpec("daily", None, time(3, 0), "UTC", 7)
        await system.command("bob", "#ops", "approve R2")
        await system.wait_for(lambda: "approved" in (approval_message(system, "R2").text or ""))
        await run_slot(system, spec, 1)
        [run] = await system.runtime.store.run(Store.runs_for_schedule, "S1")
        [card] = parents(system, "C0ALERTS")
        assert "Skipped: the channel policy may not image `db-web`" in blocks_text(card)
        assert stable_id("image", "web-1-a") not in world.images  # older than 30 days
        assert stable_id("image", "web-1-b") in world.images
        assert stable_id("image", "web-1-keep") in world.images  # protected


async def test_a_restart_mid_run_repeats_nothing_and_finishes_the_digest(tmp_path: Path) -> None:
    # Crash rules: the card, the "writes may resume" replies and the summary come from
    # committed rows through the outbox, so a bot stopped mid-run and started again on the
    # same database posts no second card and names no server twice.
    db = tmp_path / "bot.db"
    policy = policy_file(tmp_path, POLICY)
    spec = ScheduleSpec("daily", None, time(3, 0), "UTC", 7)
    async with running_system(speed=20, db_path=db, policy_path=policy) as first:
        world, workspace, clock = first.world, first.workspace, first.clock
        await first.command("alice", "#ops", "schedule web-* daily at 03:00")
        message = await first.wait_for(lambda: approval_message(first, "R1"), within=15)
        await first.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", "R1")
        await first.wait_for(lambda: "approved" in (approval_message(first, "R1").text or ""))
        slot = next_run(spec, first.clock())
        first.clock.shift(slot - first.clock() + timedelta(minutes=1))
        first.runtime.poke()

        async def uploading() -> bool:
            jobs = await first.runtime.store.run(Store.list_jobs)
            return len(jobs) == 2 and all(j.state == "uploading" for j in jobs)

        await first.wait_for(uploading, within=30)
    async with running_system(speed=20, db_path=db, policy_path=policy, world=world,
                              workspace=workspace, clock=clock) as second:
        store = second.runtime.store

        async def summarized() -> bool:
            runs = await store.run(Store.runs_for_schedule, "S1")
            return bool(runs) and runs[0].result == "succeeded"

        await second.wait_for(summarized, within=60)
        await second.settle()
        [card] = parents(second, "C0ALERTS")
        replies = thread_texts(second, card.ts, "C0ALERTS")
        resumed = [r for r in replies if r.startswith(":arrow_forward: Writes may resume")]
        assert all(sum(f"`{n}`" in r for r in resumed) == 1 for n in ("web-1", "web-2"))
        assert sum("images ready" in r for r in replies) == 1
        assert "2 of 2 servers ready" in blocks_text(card)
        assert len(second.world.images) - len(
            [i for i in second.world.images.values()
             if "imagebot_schedule_id" not in i.properties]) == 2  # one image per server
