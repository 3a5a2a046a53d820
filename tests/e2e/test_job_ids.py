"""Job ids are never reused: not even when the job row was lost but its image is in the cloud."""

from __future__ import annotations

from pathlib import Path

from bot.store import Store
from sandbox.cloud.model import World
from sandbox.system import running_system


def server_id(world: World, name: str) -> str:
    return next(s.id for s in world.servers.values() if s.name == name)


async def test_start_up_skips_job_ids_that_images_in_the_cloud_already_carry(
        tmp_path: Path) -> None:
    # A database that lost its rows (restored from an old backup, a lost write): the cloud
    # still holds images made for J1 and J5.
    world = World(speed=200)
    world.create_image(server_id(world, "web-1"), "old-1", {"imagebot_job_id": "J1"})
    world.create_image(server_id(world, "web-2"), "old-5", {"imagebot_job_id": "J5"})
    async with running_system(world=world, db_path=tmp_path / "bot.db",
                              slack_rate_scale=20) as system:
        answer = await system.command("alice", "#ops", "create db-1 --now")
        assert "J6" in answer.text, answer.text
        job = await system.runtime.store.run(Store.get_job, "J6")
        assert job.server_ref == "db-1"
        await system.settle()
        assert (await system.runtime.store.run(Store.get_job, "J6")).state == "succeeded"
    carried = sorted(i.properties.get("imagebot_job_id") for i in world.images.values()
                     if i.properties.get("imagebot_job_id"))
    assert carried == ["J1", "J5", "J6"]  # one image per id


def test_ids_come_from_a_durable_sequence_that_is_never_lowered(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = Store(path)
    try:
        first, _ = store.create_job(server_ref="web-1", requested_by="U1", channel="C1",
                                    state="queued")
        assert store.skip_job_ids_past(41) == 42
        assert store.skip_job_ids_past(3) == 42  # never lowered
        # Even when rows vanish (the store never deletes them; a hand edit or a restore might).
        store.db.execute("DROP TRIGGER job_events_no_delete")
        store.db.execute("DELETE FROM job_events")
        store.db.execute("DELETE FROM jobs")
        store.db.execute("DELETE FROM sqlite_sequence")
    finally:
        store.close()
    reopened = Store(path)
    try:
        again, _ = reopened.create_job(server_ref="web-1", requested_by="U1", channel="C1",
                                       state="queued")
        assert (first.id, again.id) == ("J1", "J42")
    finally:
        reopened.close()
