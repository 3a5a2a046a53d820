"""Operations on a fleet schedule end to end (issue 18): `/image schedule web-* pause|resume|
run-now|skip-next` -> a change request naming the target and the servers it matches today ->
approved through the Bolt app -> the scheduler loop at the shifted clock's slots -> fleet runs
on the simulated cloud, one digest card each. Bots are restarted where it matters: the
operations live in SQLite. `/image schedules` lists what a fleet matches now."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.store import Store
from sandbox.system import System
from tests.e2e.helpers import approval_message, parents, thread_texts
from tests.e2e.test_fleet_flow import add_image, blocks_text
from tests.e2e.test_schedule_operations import (
    Rig,
    approve,
    at,
    propose,
    refused_privately,
    runs,
    to_slot_after,
)

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "U0CAROL"]
notify_channel = "#ops-alerts"
servers = ["web-*"]

[channels.G0SECRET]
servers = ["web-*"]
"""


async def set_fleet(system: System) -> None:
    await propose(system, "alice", "schedule web-* daily at 03:00 --keep 2", "R1")
    await approve(system, "R1")


def card_blocks(system: System, request_id: str) -> str:
    message = approval_message(system, request_id)
    assert message is not None
    return blocks_text(message)


async def results(system: System) -> list[str]:
    return [r for r, _ in await runs(system)]


async def members_of_run(system: System, index: int) -> list[tuple[str, str]]:
    store = system.runtime.store
    run = (await store.run(Store.runs_for_schedule, "S1"))[index]
    return [(m.server_name, m.result) for m in await store.run(Store.fleet_members, run.id)]


async def test_fleet_pause_skips_slots_across_a_restart_and_resume_runs_every_server(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, POLICY)
    async with rig.bot() as system:
        await refused_privately(system, "schedule web-* pause",
                                "web-* has no schedule in this channel")
        await set_fleet(system)
        text = await propose(system, "alice", "schedule web-* pause", "R2")
        assert "Pause" in text and "S1" in text and "`web-*`" in text
        assert "no runs until resumed" in text
        shown = card_blocks(system, "R2")
        assert "Matches today (2)" in shown and "`web-1`" in shown and "`web-2`" in shown
        assert "Retention" not in shown  # a pause deletes nothing
        await approve(system, "R2")
        await refused_privately(system, "schedule web-* pause", "already paused (by R2)")
        listing = await system.command("carol", "#ops", "schedules")
        assert "paused since" in listing.text and "(R2)" in listing.text
        assert "matches now follow in a moment" in listing.text  # the cloud: after the ack
        assert "*S1* `web-*` matches now (2): `web-1`, `web-2`" in await follow_up(system)

    async with rig.bot() as system:  # a restart: the pause is in SQLite
        await at(system, to_slot_after(system))
        await at(system, timedelta(days=1))
        assert await runs(system) == []
        assert await system.runtime.store.run(Store.list_jobs) == []

        await propose(system, "alice", "schedule web-* resume", "R3")
        assert "not caught up" in card_blocks(system, "R3")
        await approve(system, "R3", "carol")
        await at(system, timedelta(seconds=1))  # resumed after a slot: no surprise run
        assert await runs(system) == []

        await at(system, to_slot_after(system))
        await system.wait_for(lambda: _results_are(system, ["succeeded"]), within=40)
        assert await members_of_run(system, 0) == [("web-1", "succeeded"),
                                                   ("web-2", "succeeded")]
        actions = [a.action for a in await system.runtime.store.run(Store.audit_rows)]
        assert "schedule_pause" in actions and "schedule_resume" in actions


async def _results_are(system: System, expected: list[str]) -> bool:
    return await results(system) == expected


async def test_fleet_run_now_is_one_digest_of_every_server_and_moves_no_slot(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, POLICY.replace('servers = ["web-*"]\n',
                                       'servers = ["web-*"]\nallow_self_approval = true\n', 1))
    async with rig.bot() as system:
        add_image(system, "web-1", "web-1-old2", 2, imagebot_schedule_id="S1")
        add_image(system, "web-1", "web-1-old1", 1, imagebot_schedule_id="S1")
        add_image(system, "web-2", "web-2-pinned", 9, imagebot_schedule_id="S1",
                  protected=True)
        await set_fleet(system)
        text = await propose(system, "bob", "schedule web-* run-now", "R2")
        assert "once now" in text and "regular slots stay" in text and "`web-*`" in text
        shown = card_blocks(system, "R2")
        assert "Matches today (2)" in shown
        # Retention per server at this run (keep 2 with the new image): web-1's oldest own
        # image would go; web-2's protected one is kept.
        assert "`web-1`: would delete `web-1-old2`" in shown
        assert "`web-2`: keeps protected `web-2-pinned`" in shown
        await approve(system, "R2", "bob")
        await system.wait_for(lambda: _results_are(system, ["succeeded"]), within=40)
        await system.settle()
        assert await members_of_run(system, 0) == [("web-1", "succeeded"),
                                                   ("web-2", "succeeded")]
        [card] = parents(system, "C0ALERTS")  # ONE card for the whole run
        assert "Scheduled images S1 of `web-*`" in blocks_text(card)
        assert "2 of 2 servers ready" in blocks_text(card)
        replies = thread_texts(system, card.ts, "C0ALERTS")
        assert replies[-1].startswith(":white_check_mark: 2 of 2 images ready")

    async with rig.bot() as system:  # after a restart it is not run again
        assert system.runtime.schedules is not None
        await system.runtime.schedules.tick()
        assert len(await runs(system)) == 1
        store = system.runtime.store
        [run] = await store.run(Store.runs_for_schedule, "S1")
        jobs = await store.run(Store.list_jobs)
        assert len(jobs) == 2 and all("Run-now of S1" in (j.note or "") for j in jobs)
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.last_slot is None and schedule.run_now_at is None
        names = {i.name for i in system.world.images.values()}
        assert "web-1-old2" not in names and "web-1-old1" in names and "web-2-pinned" in names
        actions = [a.action for a in await store.run(Store.audit_rows, "S1")]
        assert actions.count("run_now_started") == 1 and "run_started" not in actions
        # The regular slot still runs at its time.
        await at(system, to_slot_after(system))
        await system.wait_for(lambda: _results_are(system, ["succeeded", "succeeded"]),
                              within=40)
        assert len(parents(system, "C0ALERTS")) == 2


async def test_fleet_skip_next_skips_exactly_one_slot(tmp_path: Path) -> None:
    rig = Rig(tmp_path, POLICY)
    async with rig.bot() as system:
        await set_fleet(system)
        text = await propose(system, "alice", "schedule web-* skip-next", "R2")
        assert "does not run" in text and "`web-*`" in text
        await approve(system, "R2")
        await refused_privately(system, "schedule web-* skip-next", "already skips")

    async with rig.bot() as system:
        await at(system, to_slot_after(system))
        assert await runs(system) == [("skipped", None)]
        assert await system.runtime.store.run(Store.list_jobs) == []
        await system.settle()
        notices = [m.text or "" for m in parents(system, "C0ALERTS")]
        assert any("skipped its slot" in t and "as R2 asked" in t and "web-*" in t
                   for t in notices)
        await at(system, to_slot_after(system))  # the slot after: runs as usual
        await system.wait_for(lambda: _results_are(system, ["skipped", "succeeded"]),
                              within=40)
        assert [n for n, _ in await members_of_run(system, 1)] == ["web-1", "web-2"]
        schedule = await system.runtime.store.run(Store.get_schedule, "S1")
        assert schedule.skip_slot is None and schedule.skip_request is None


async def test_schedules_lists_what_a_fleet_matches_now_in_its_channel_only(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, POLICY)
    async with rig.bot() as system:
        await set_fleet(system)
        for n in range(3, 14):  # web-3 .. web-13: 13 servers in all
            system.world.add_server(f"web-{n}")
        listing = await system.command("carol", "#ops", "schedules")
        assert "web-*" in listing.text and "matches now (" not in listing.text  # not in the ack
        text = await follow_up(system)
        assert "matches now (13):" in text and "and 3 more" in text
        assert text.count("`web-") == 11  # the target and 10 servers named, the rest counted
        # Resolved when asked: a server deleted since is no longer listed.
        system.world.delete_server(system.world.find_server("web-13").id)
        await system.command("carol", "#ops", "schedules")
        text = await follow_up(system, 2)
        assert "matches now (12):" in text and "and 2 more" in text
        # Another channel sees neither the schedule nor its servers.
        elsewhere = await system.command("alice", "#secret", "schedules")
        assert "web-*" not in elsewhere.text and "follow in a moment" not in elsewhere.text
        await system.settle()
        assert not any("matches now" in (e.text or "")
                       for e in system.workspace.ephemerals("U0ALICE"))
        await refused_privately_in(system, "#secret", "schedule web-* pause",
                                   "web-* has no schedule in this channel")


async def follow_up(system: System, count: int = 1) -> str:
    """The `count`-th follow-up Carol got (the answer after the ack)."""
    def answers() -> list[str]:
        return [e.text or "" for e in system.workspace.ephemerals("U0CAROL")
                if "matches" in (e.text or "") and "follow in a moment" not in (e.text or "")]

    await system.wait_for(lambda: len(answers()) >= count)
    return answers()[count - 1]


async def refused_privately_in(system: System, channel: str, text: str, fragment: str) -> None:
    before = len(await system.runtime.store.run(Store.list_change_requests))
    await system.command("alice", channel, text)
    await system.wait_for(lambda: any(fragment in (e.text or "")
                                      for e in system.workspace.ephemerals("U0ALICE")))
    assert len(await system.runtime.store.run(Store.list_change_requests)) == before
