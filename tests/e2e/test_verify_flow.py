"""Restore tests (`/image verify`, `create --verify`) and protected images, end to end: signed
HTTP into the Bolt app, the simulated cloud booting real (simulated) servers, the Slack
emulator, SQLite. Only clocks are fast."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from bot.errors import ImageProtected
from bot.imaging import verify
from bot.scheduling.due import ScheduleSpec, next_run
from bot.store import Store
from sandbox.system import System, running_system
from tests.e2e.helpers import (
    OPS,
    approval_message,
    images_of_job,
    parents,
    policy_file,
    thread_texts,
)
from tests.e2e.test_fleet_flow import add_image

APIS = pytest.mark.parametrize("api", ["openstack", "rackspace-legacy"])


def verify_servers(system: System) -> list[str]:
    """Names of the cloud's servers booted by a restore test that still exist."""
    return [s.name for s in system.world.servers.values()
            if s.name.startswith(verify.NAME_PREFIX) and s.deleted_at is None]


def answers(system: System, user: str = "U0ALICE") -> list[str]:
    """What `user` was told privately in #ops."""
    return [e.text or "" for e in system.workspace.ephemerals(user, OPS)]


async def verified(system: System) -> bool:
    """No restore test left open."""
    return not await system.runtime.store.run(Store.open_verifications)


@APIS
async def test_create_with_verify_boots_the_image_reports_in_the_thread_and_deletes(
        api: str) -> None:
    async with running_system(speed=200, slack_rate_scale=20, api=api) as system:
        response = await system.command("alice", "#ops", "create web-1 --now --verify")
        assert "J1" in response.text
        await system.settle()
        assert await verified(system)
        [parent] = parents(system)
        replies = thread_texts(system, parent.ts)
        booting = [r for r in replies if "Restore test of image" in r]
        result = [r for r in replies if "Restore test passed" in r]
        assert booting and "imagebot-verify-J1" in booting[0] and "m1.small" in booting[0]
        assert result and "booted in" in result[0] and "deleted" in result[0], replies
        # The throw-away server was booted (with the bot's metadata) and is gone.
        booted = [s for s in system.world.servers.values() if s.name == "imagebot-verify-J1"]
        assert len(booted) == 1 and booted[0].deleted_at is not None
        assert booted[0].metadata[verify.SERVER_METADATA_KEY] == "V1"
        assert not verify_servers(system)
        [image] = images_of_job(system, "J1")
        assert image.properties[verify.VERIFIED_PROPERTY] == "passed"
        if api == "openstack":  # Nova's os-interface names web-1's network: the same one
            assert booted[0].networks == system.world.find_server("web-1").networks
        events = [e.event for e in await system.runtime.store.run(Store.job_events, "J1")]
        assert "verify:passed" in events


async def test_verify_command_waits_for_the_console_marker_and_cleans_up() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1 --now")
        await system.settle()
        [image] = images_of_job(system, "J1")
        said = await system.command("alice", "#ops", f'verify {image.name} --console "login:"')
        assert "Looking up" in said.text
        await system.wait_for(lambda: any("Restore test V1" in a for a in answers(system)))
        await system.settle()
        assert await verified(system)
        [parent] = parents(system)
        [result] = [r for r in thread_texts(system, parent.ts) if "Restore test passed" in r]
        assert "console showed `login:`" in result and "deleted" in result
        assert not verify_servers(system)


async def test_a_console_marker_that_never_appears_fails_the_test() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1 --now")
        await system.settle()
        [image] = images_of_job(system, "J1")
        system.runtime.engine.verifier.limits = verify.VerifyLimits(
            console=verify.VerifyLimits().console / 10_000)
        await system.command("alice", "#ops", f'verify {image.id} --console "no-such-text"')
        await system.wait_for(lambda: verified(system))
        await system.settle()
        row = await system.runtime.store.run(Store.get_verification, "V1")
        assert row.state == verify.FAILED and row.console_seen is False
        assert row.deleted_at is not None and not verify_servers(system)


async def test_a_boot_that_fails_is_a_failed_result_and_no_server_is_left() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        system.world.inject("boot_fail", name="imagebot-verify-*", during="spawning")
        await system.command("alice", "#ops", "create web-1 --now --verify")
        await system.settle()
        assert await verified(system)
        [parent] = parents(system)
        replies = thread_texts(system, parent.ts)
        [failed] = [r for r in replies if "Restore test failed" in r]
        assert "failed to boot" in failed and "ERROR" in failed, failed
        # Failed results are broadcast to the channel like a job's final answer.
        assert system.workspace.thread(OPS, parent.ts)[-1].subtype == "thread_broadcast"
        assert not verify_servers(system)
        [image] = images_of_job(system, "J1")
        assert image.properties[verify.VERIFIED_PROPERTY] == "failed"
        row = await system.runtime.store.run(Store.get_verification, "V1")
        assert row.outcome == "failed" and row.deleted_at is not None


async def test_a_hanging_boot_fails_at_its_deadline_and_is_deleted() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        system.world.inject("boot_hang", name="imagebot-verify-*", task_state="spawning")
        system.runtime.engine.verifier.limits = verify.VerifyLimits(
            boot=verify.VerifyLimits().boot / 2_000)
        await system.command("alice", "#ops", "create web-1 --now --verify")
        await system.settle()
        row = await system.runtime.store.run(Store.get_verification, "V1")
        assert row.state == verify.FAILED and "did not become ACTIVE" in (row.error or "")
        assert "spawning" in (row.error or "")
        assert not verify_servers(system)


async def test_a_restart_mid_verify_resumes_and_deletes_the_server(tmp_path: Path) -> None:
    db = tmp_path / "imagebot.db"
    async with running_system(speed=20, slack_rate_scale=20, db_path=db) as system:
        world = system.world
        await system.command("alice", "#ops", "create web-1 --now --verify")

        async def booting() -> bool:
            rows = await system.runtime.store.run(Store.open_verifications)
            return bool(rows) and rows[0].server_id is not None
        await system.wait_for(booting)
    # The bot stopped with a verify server still building.
    assert any(s.name == "imagebot-verify-J1" and s.deleted_at is None
               for s in world.servers.values())
    async with running_system(world=world, db_path=db, slack_rate_scale=20) as system:
        await system.wait_for(lambda: verified(system), within=60)
        await system.settle()
        row = await system.runtime.store.run(Store.get_verification, "V1")
        assert row.state == verify.PASSED and row.deleted_at is not None
        assert not verify_servers(system)
        assert len([s for s in world.servers.values()
                    if s.name == "imagebot-verify-J1"]) == 1  # resumed, not booted again


async def test_a_verify_server_no_open_test_owns_is_deleted_by_the_sweep(tmp_path: Path) -> None:
    # A test that gave up deleting its server (ended, server still there): the sweep finds the
    # server by its metadata and deletes it.
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1 --now")
        await system.settle()
        [image] = images_of_job(system, "J1")
        row = await system.runtime.store.run(
            Store.create_verification, image_ref=image.id, requested_by="U0ALICE",
            channel=OPS, state=verify.FAILED, image_id=image.id, server_id="pending")
        left = system.world.create_server("imagebot-verify-V1", image.id, "2",
                                          metadata={verify.SERVER_METADATA_KEY: row.id})
        await system.runtime.store.run(Store.update_verification, row.id,
                                       expected=verify.FAILED, fields={"server_id": left.id})
        system.runtime.engine.verifier.ticks = 0  # the next tick sweeps
        system.runtime.poke()
        await system.wait_for(lambda: left.deleting)

        async def seen_gone() -> bool:
            system.runtime.engine.verifier.ticks = 0  # sweep again: the row learns it
            got = await system.runtime.store.run(Store.get_verification, "V1")
            return got.deleted_at is not None
        await system.wait_for(seen_gone)
        assert not verify_servers(system)
        # Servers that are not the bot's verify servers are never touched.
        assert system.world.find_server("web-1").deleted_at is None


async def test_protect_and_unprotect_an_image_privately(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[channels.C0OPS]\nservers = ["web-*"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        await system.command("alice", "#ops", "create web-1 --now")
        await system.settle()
        [image] = images_of_job(system, "J1")
        said = await system.command("alice", "#ops", f"protect {image.name}")
        assert "Looking up" in said.text
        await system.wait_for(lambda: any("is protected" in a for a in answers(system)))
        assert system.world.images[image.id].protected
        # The bot refuses to delete it before asking Glance.
        deletes = system.world.stats_snapshot()["routes"].get(
            "DELETE /image/v2/images/{image_id}", 0)
        with pytest.raises(ImageProtected):
            await system.runtime.cloud.get(None).delete_image(image.id)
        assert system.world.stats_snapshot()["routes"].get(
            "DELETE /image/v2/images/{image_id}", 0) == deletes
        assert image.id in system.world.images
        # The images list marks it.
        await system.command("alice", "#ops", "images web-1")
        await system.wait_for(lambda: any(":lock: protected" in a for a in answers(system)))
        await system.command("alice", "#ops", f"unprotect {image.id}")
        await system.wait_for(lambda: any("no longer protected" in a for a in answers(system)))
        assert not system.world.images[image.id].protected
        # Nothing of it was said in the channel.
        assert len(parents(system)) == 1


async def test_protect_and_verify_only_images_of_servers_the_channel_may_touch(
        tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[channels.C0OPS]\nservers = ["web-*"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        db1 = system.world.find_server("db-1")
        image = system.world.create_image(db1.id, "db-1-manual", {})
        await system.command("alice", "#ops", f"protect {image.id}")
        await system.command("alice", "#ops", f"verify {image.id}")
        await system.wait_for(lambda: len([a for a in answers(system)
                                           if "may not image `db-1`" in a]) == 2)
        assert not system.world.images[image.id].protected
        assert not await system.runtime.store.run(Store.open_verifications)
        missing = await system.command("alice", "#ops", "verify no-such-image")
        assert "Looking up" in missing.text
        await system.wait_for(lambda: any("no-such-image" in a and "No image" in a
                                          for a in answers(system)))


async def test_a_schedule_with_verify_restore_tests_each_run(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[channels.C0OPS]\napprovers = ["U0BOB"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        await system.command("alice", "#ops", "schedule web-1 daily at 03:00 --verify")
        await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        request = await system.runtime.store.run(Store.get_change_request, "R1")
        assert request.new_spec is not None and request.new_spec["verify"] is True
        await system.command("bob", "#ops", "approve R1")
        store = system.runtime.store
        await system.wait_for(lambda: store.run(Store.list_schedules))
        [schedule] = await store.run(Store.list_schedules)
        assert schedule.verify
        slot = next_run(ScheduleSpec("daily", None, time(3, 0), "UTC", 7), system.clock())
        system.clock.shift(slot - system.clock() + timedelta(minutes=1))
        system.runtime.poke()

        async def tested() -> bool:
            runs = await store.run(Store.runs_for_schedule, "S1")
            if not runs or not runs[0].job_id:
                return False
            done = await store.run(Store.verifications_of_job, runs[0].job_id)
            return bool(done) and done[0].state == verify.PASSED
        await system.wait_for(tested, within=30)
        [run] = await store.run(Store.runs_for_schedule, "S1")
        job = await store.run(Store.get_job, str(run.job_id))
        assert job.verify and job.schedule_id == "S1"
        assert system.world.images[str(job.image_id)].properties[
            verify.VERIFIED_PROPERTY] == "passed"
        assert not verify_servers(system)
        # The same schedule asked again without --verify is a change, not "exactly that".
        await system.command("alice", "#ops", "schedule web-1 daily at 03:00")
        await system.wait_for(lambda: approval_message(system, "R2"), within=15)


async def test_verifying_an_image_the_bot_did_not_make_reports_in_the_channel() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        world = system.world
        web2 = world.find_server("web-2")
        image = world.create_image(web2.id, "web-2-by-hand", {})
        await system.wait_for(lambda: world.get_image(image.id).status == "active")
        await system.command("alice", "#ops", "verify web-2-by-hand")
        await system.wait_for(lambda: any("the result comes in this channel" in a
                                          for a in answers(system)))
        await system.settle()
        said = [m.text or "" for m in parents(system)]
        assert any("Restore test of image `web-2-by-hand` (V1): booting "
                   "`imagebot-verify-V1`" in t for t in said), said
        assert any("Restore test passed for image `web-2-by-hand` (V1)" in t for t in said)
        assert not verify_servers(system)


async def test_a_scheduled_run_whose_restore_test_fails_is_failed_and_keeps_the_good_image(
        tmp_path: Path) -> None:
    """Issue 18: with `--verify`, retention waits for the restore test, and an image that fails
    it is not the good one: `--keep 1` keeps the older good image, and the run is failed."""
    policy = policy_file(tmp_path, '[channels.C0OPS]\napprovers = ["U0BOB"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        good = add_image(system, "web-1", "web-1-good", 2, imagebot_schedule_id="S1")
        system.world.inject("boot_fail", name="imagebot-verify-*", during="spawning")
        await system.command("alice", "#ops", "schedule web-1 daily at 03:00 --keep 1 --verify")
        await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        await system.command("bob", "#ops", "approve R1")
        store = system.runtime.store
        await system.wait_for(lambda: store.run(Store.list_schedules))
        slot = next_run(ScheduleSpec("daily", None, time(3, 0), "UTC", 1), system.clock())
        system.clock.shift(slot - system.clock() + timedelta(minutes=1))
        system.runtime.poke()

        async def ended() -> bool:
            runs = await store.run(Store.runs_for_schedule, "S1")
            return bool(runs) and runs[0].result in ("succeeded", "failed")
        await system.wait_for(ended, within=30)
        await system.settle()
        [run] = await store.run(Store.runs_for_schedule, "S1")
        assert run.result == "failed" and "restore test V1" in (run.detail or "")
        job = await store.run(Store.get_job, str(run.job_id))
        assert job.state == "succeeded" and job.image_id in system.world.images
        assert good in system.world.images  # the newest good image is never deleted
        schedule = await store.run(Store.get_schedule, "S1")
        assert (schedule.last_result or "").startswith("failed: restore test V1")
        # Retention ran only once the restore test had ended.
        actions = [a.action for a in await store.run(Store.audit_rows)]
        assert "run_failed" in actions and "run_succeeded" not in actions
        [check] = await store.run(Store.verifications_of_job, job.id)
        assert check.outcome == "failed" and check.deleted_at is not None
        alerts = [m.text or "" for m in system.workspace.all_messages(OPS)
                  if "Scheduled image S1" in (m.text or "")]
        assert any("failed" in a and "restore test V1" in a for a in alerts), alerts
        assert not verify_servers(system)
