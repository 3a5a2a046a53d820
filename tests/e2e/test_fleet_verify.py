"""`--verify` on a fleet schedule end to end (issue 18): each member's image is booted by a
restore test on the simulated cloud (one boot made to fail with the simulator's `boot_fail`
fault), the one digest card shows each server's result, the summary waits for the restore
tests and counts them, and a failed one makes the run a failed run (the policy's ping) while
retention does not count that image as good."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from bot.imaging import verify
from bot.scheduling.due import ScheduleSpec
from bot.store import Store
from sandbox.system import running_system
from tests.e2e.helpers import approval_message, parents, policy_file, thread_texts
from tests.e2e.test_fleet_flow import add_image, blocks_text, run_slot

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "U0CAROL"]
notify_channel = "#ops-alerts"
mention = "<!here>"
servers = ["web-*"]
"""


async def test_fleet_verify_shows_each_boot_and_a_failed_one_fails_the_run(
        tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy) as system:
        world = system.world
        # web-2's one earlier good image (made by S1): with --keep 1 it must survive, since
        # the new image fails its restore test and so is not a good one.
        earlier = add_image(system, "web-2", "web-2-earlier", 1, imagebot_schedule_id="S1")
        older = add_image(system, "web-1", "web-1-older", 1, imagebot_schedule_id="S1")
        await system.command("alice", "#ops", "schedule web-* daily at 03:00 --keep 1 --verify")
        message = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        await system.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", "R1")
        await system.wait_for(lambda: "approved" in (approval_message(system, "R1").text or ""))
        # The members' jobs are J1 (web-1) and J2 (web-2); J2's restore-test boot fails.
        world.inject("boot_fail", name="imagebot-verify-J2", during="spawning")
        await run_slot(system, ScheduleSpec("daily", None, time(3, 0), "UTC", 1), 1)

        store = system.runtime.store
        [run] = await store.run(Store.runs_for_schedule, "S1")
        assert run.result == "failed" and "1 verified, 1 failed verify" in (run.detail or "")
        checks = {v.job_id: v for v in [await store.run(Store.get_verification, "V1"),
                                        await store.run(Store.get_verification, "V2")]}
        assert checks["J1"].outcome == "passed" and checks["J2"].outcome == "failed"
        assert all(v.deleted_at is not None for v in checks.values())  # nothing left behind
        assert not [s for s in world.servers.values()
                    if s.name.startswith(verify.NAME_PREFIX) and s.deleted_at is None]

        [card] = parents(system, "C0ALERTS")  # still ONE card, no restore-test threads
        shown = blocks_text(card)
        assert "2 of 2 servers ready, 1 verified, 1 failed verify" in shown
        assert "`web-1`: :white_check_mark: ready:" in shown and "verified: booted in" in shown
        assert "`web-2`: :x:" in shown and "restore test failed:" in shown
        replies = thread_texts(system, card.ts, "C0ALERTS")
        [summary] = [r for r in replies if "images ready" in r]
        assert "2 of 2 images ready, 1 verified, 1 failed verify" in summary
        assert "<!here>" in summary and "`web-2`: restore test failed" in summary
        assert not any("Restore test" in r for r in replies)

        # Retention: on web-1 (passed) the older own image went; on web-2 (failed verify)
        # the earlier good image stays, the newest good one.
        assert older not in world.images
        assert earlier in world.images
        schedule = await store.run(Store.get_schedule, "S1")
        assert (schedule.last_result or "").startswith("failed:")
