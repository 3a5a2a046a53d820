"""The scheduler loop carrying out schedule operations (bot.scheduling.op_loop) against the
simulated cloud, with a manual clock and the store closed and reopened between steps (a
restart: the operations live in SQLite)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import commands
from bot.cloud.client import CloudClient
from bot.policy import Policy
from bot.scheduling.service import ScheduleService
from bot.store import AsyncStore, Store
from bot.vocabulary import JobState, RunResult
from sandbox.cloud.app import create_app
from sandbox.cloud.model import ManualClock, World
from tests.bot.cloud.conftest import Sleeps, config

START = 1_700_000_000.0  # 2023-11-14 22:13 UTC
SLOT = datetime(2023, 11, 15, 3, 0, tzinfo=UTC)  # the first 03:00 UTC after START
POLICY = """
[channels.C0MAIN]
approvers = ["U0BOB"]
"""


class Rig:
    """A world and a database; `service()` opens the store and a service on them."""

    def __init__(self, tmp_path: Path) -> None:
        self.mclock = ManualClock(START)
        self.world = World(clock=self.mclock)
        self.path = tmp_path / "s.db"
        self.server_id = self.world.find_server("web-1").id

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.mclock(), UTC)

    def at(self, moment: datetime) -> None:
        self.mclock.advance(moment.timestamp() - self.mclock())

    async def open(self) -> tuple[ScheduleService, AsyncStore, Callable[[], Awaitable[None]]]:
        client = CloudClient(config(auth_url="http://cloud.test/identity/v3", username="demo",
                                    password="secret", project_name="demo"),
                             transport=httpx.ASGITransport(app=create_app(self.world)),
                             clock=self.now, sleep=Sleeps(), timeout=2.0)
        store = await AsyncStore.open(self.path, clock=self.now)
        service = ScheduleService(store, client, Policy.loads(POLICY), clock=self.now)

        async def close() -> None:
            await client.aclose()
            await store.close()

        return service, store, close


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


async def _approve(service: ScheduleService, text: str) -> str:
    request = commands.parse(text)
    if isinstance(request, commands.ScheduleOperation):
        row = await service.propose_operation(request, user="U0ALICE", channel="C0MAIN")
    else:
        assert isinstance(request, commands.Schedule | commands.ScheduleOff)
        row = await service.propose(request, user="U0ALICE", channel="C0MAIN")
    outcome = await service.decide(row.id, actor="U0BOB", action="approve", channel="C0MAIN")
    assert outcome.accepted, outcome.message
    return row.id


async def _finish(store: AsyncStore, job_id: str) -> None:
    await store.run(Store.transition, job_id, expected=JobState.QUEUED,
                    target=JobState.SUBMITTING, event="t")
    await store.run(Store.transition, job_id, expected=JobState.SUBMITTING,
                    target=JobState.SUCCEEDED, event="t", fields={"image_id": "img-" + job_id})


async def test_a_run_now_queued_across_a_restart_waits_for_the_run_in_flight_and_runs_once(
        rig: Rig) -> None:
    service, store, close = await rig.open()
    await _approve(service, "schedule web-1 daily at 03:00 --keep 3")
    rig.at(SLOT.replace(minute=1))
    await service.tick()  # the 03:00 run starts
    [regular] = await store.run(Store.runs_for_schedule, "S1")
    assert regular.result == RunResult.RUNNING
    request_id = await _approve(service, "schedule web-1 run-now")
    await close()

    service, store, close = await rig.open()  # a restart: the run-now is in SQLite
    try:
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.run_now_request == request_id and schedule.run_now_at is not None
        await service.tick()
        # One image per server at a time: the run-now waits for the 03:00 run.
        assert len(await store.run(Store.runs_for_schedule, "S1")) == 1
        await _finish(store, str(regular.job_id))
        await service.tick()  # the 03:00 run ends (retention) ...
        await service.tick()  # ... and the run-now starts
        runs = await store.run(Store.runs_for_schedule, "S1")
        assert len(runs) == 2 and runs[1].slot == schedule.run_now_at
        job = await store.run(Store.get_job, str(runs[1].job_id))
        assert job.state == JobState.QUEUED and job.note and "Run-now of S1" in job.note
        await service.tick()
        assert len(await store.run(Store.runs_for_schedule, "S1")) == 2  # once
        # The regular slots did not move: the last slot is still 03:00, the next is tomorrow.
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.last_slot == SLOT and schedule.run_now_at is None
        audit = [a.action for a in await store.run(Store.audit_rows, "S1")]
        assert audit.count("run_now_started") == 1
    finally:
        await close()


async def test_a_stale_skip_next_is_refused_at_approval(rig: Rig) -> None:
    service, store, close = await rig.open()
    try:
        await _approve(service, "schedule web-1 daily at 03:00 --keep 3")
        request = commands.parse("schedule web-1 skip-next")
        assert isinstance(request, commands.ScheduleOperation)
        row = await service.propose_operation(request, user="U0ALICE", channel="C0MAIN")
        rig.at(SLOT.replace(minute=1))
        await service.tick()  # the slot it names runs before anyone approves
        outcome = await service.decide(row.id, actor="U0BOB", action="approve",
                                       channel="C0MAIN")
        assert not outcome.accepted and "out of date" in outcome.message
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.skip_slot is None
        refusals = [a.detail for a in await store.run(Store.audit_rows, row.id)
                    if a.action == "decision_refused"]
        assert refusals == [{"action": "approve", "refusal": "stale"}]
    finally:
        await close()


async def test_turning_a_schedule_off_drops_its_pause_and_a_new_one_starts_unpaused(
        rig: Rig) -> None:
    service, store, close = await rig.open()
    try:
        await _approve(service, "schedule web-1 daily at 03:00 --keep 3")
        await _approve(service, "schedule web-1 pause")
        assert (await store.run(Store.get_schedule, "S1")).paused_at is not None
        await _approve(service, "schedule web-1 off")
        await _approve(service, "schedule web-1 daily at 04:00 --keep 3")
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.status == "active" and schedule.paused_at is None
        # A schedule change and an operation do not supersede each other.
        pause = commands.parse("schedule web-1 pause")
        change = commands.parse("schedule web-1 daily at 05:00 --keep 3")
        assert isinstance(pause, commands.ScheduleOperation)
        assert isinstance(change, commands.Schedule)
        op_row = await service.propose_operation(pause, user="U0ALICE", channel="C0MAIN")
        await service.propose(change, user="U0ALICE", channel="C0MAIN")
        assert (await store.run(Store.get_change_request, op_row.id)).status == "pending"
    finally:
        await close()


async def test_a_fleet_run_now_is_one_fleet_run_that_waits_for_the_cloud_and_the_run_in_flight(
        rig: Rig) -> None:
    service, store, close = await rig.open()
    await _approve(service, "schedule web-* daily at 03:00 --keep 3")
    rig.at(SLOT.replace(minute=1))
    await service.tick()  # the 03:00 fleet run starts: one job per server
    [regular] = await store.run(Store.runs_for_schedule, "S1")
    first = await store.run(Store.fleet_members, regular.id)
    assert [m.server_name for m in first] == ["web-1", "web-2"]
    request_id = await _approve(service, "schedule web-* run-now")
    await close()

    service, store, close = await rig.open()  # a restart: the run-now is in SQLite
    try:
        await service.tick()  # waits: the 03:00 run is in flight
        assert len(await store.run(Store.runs_for_schedule, "S1")) == 1
        for m in first:
            await _finish(store, str(m.job_id))
        rig.world.inject("http", path="/servers", status=500, count=None)
        await service.tick()  # the 03:00 run ends; the cloud cannot list: still queued
        await service.tick()
        [ended] = await store.run(Store.runs_for_schedule, "S1")
        assert ended.result == RunResult.SUCCEEDED  # nothing in flight: only the cloud holds it
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.run_now_request == request_id
        rig.world.inject("clear")
        await service.tick()
        runs = await store.run(Store.runs_for_schedule, "S1")
        assert len(runs) == 2 and runs[1].slot == schedule.run_now_at and runs[1].job_id is None
        members = await store.run(Store.fleet_members, runs[1].id)
        assert [m.server_name for m in members] == ["web-1", "web-2"]
        await service.tick()
        assert len(await store.run(Store.runs_for_schedule, "S1")) == 2  # once
        schedule = await store.run(Store.get_schedule, "S1")
        assert schedule.last_slot == SLOT and schedule.run_now_at is None
        audit = [a.action for a in await store.run(Store.audit_rows, "S1")]
        assert audit.count("run_now_started") == 1 and audit.count("run_started") == 1
    finally:
        await close()
