"""The schedule loop over two simulated clouds (separate worlds, the real HTTP client): a cloud
that refuses the bot, is down or answers garbage delays only the retention of its own
schedules' runs; the other cloud's run finishes in the same tick, and the failing cloud's run
finishes once it answers again (issue 14, "isolate clouds")."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import commands
from bot.cloud.pool import CloudPool
from bot.policy import Policy
from bot.scheduling.service import ScheduleService
from bot.store import AsyncStore, Store
from bot.vocabulary import JobState, RunResult
from sandbox.cloud.model import Image, ManualClock, World
from tests.bot.two_clouds import two_clouds

SLOT = datetime(2023, 11, 15, 3, 0, tzinfo=UTC).timestamp()  # the first 03:00 UTC after START
DAY = 86_400.0
POLICY = """
[channels.C0LAB]
cloud = "lab"
creators = ["U0ALICE"]
approvers = ["U0BOB"]

[channels.C0MAIN]
creators = ["U0ALICE"]
approvers = ["U0BOB"]
"""


@dataclass
class Rig:
    service: ScheduleService
    store: AsyncStore
    worlds: dict[str, World]
    mclock: ManualClock
    servers: dict[str, str]  # world -> server id

    async def schedule(self, world: str, channel: str, server: str) -> str:
        request = commands.parse(f"schedule {server} daily at 03:00 --tz UTC --keep 1")
        assert isinstance(request, commands.Schedule)
        row = await self.service.propose(request, user="U0ALICE", channel=channel)
        assert (await self.service.decide(row.id, actor="U0BOB", action="approve")).accepted
        schedule = await self.store.run(Store.schedule_for_server, self.servers[world])
        assert schedule is not None
        return schedule.id

    def image(self, world: str, image_id: str, age_days: float, schedule_id: str) -> None:
        """An ACTIVE image of the world's server made by `schedule_id`, `age_days` old."""
        w = self.worlds[world]
        at = self.mclock() - age_days * DAY
        with w.lock:
            w._add_image(Image(id=image_id, name=f"img-{image_id}", status="active",
                               created_at=at, updated_at=at, owner=w.project_id, size=1,
                               properties={"instance_uuid": self.servers[world],
                                           "imagebot_schedule_id": schedule_id}))

    async def succeed(self, job_id: str, image_id: str) -> None:
        await self.store.run(Store.transition, job_id, expected=JobState.QUEUED,
                             target=JobState.SUBMITTING, event="t")
        await self.store.run(Store.transition, job_id, expected=JobState.SUBMITTING,
                             target=JobState.SUCCEEDED, event="t", fields={"image_id": image_id})

    def to_slot(self) -> None:
        """One minute past the first slot of the daily 03:00 UTC schedules."""
        self.mclock.advance(SLOT + 60 - self.mclock())

    async def result(self, schedule_id: str) -> str:
        [run] = await self.store.run(Store.runs_for_schedule, schedule_id)
        return run.result


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clouds = two_clouds({"main": 2.0, "lab": 2.0})
    worlds = clouds.worlds
    # The worlds come with the same seeded servers (same ids): each schedule takes a server
    # of its own, as the store keeps one schedule per server id.
    servers = {"main": worlds["main"].find_server("web-1").id,
               "lab": worlds["lab"].add_server("lab-1").id}
    store = await AsyncStore.open(tmp_path / "s.db", clock=clouds.now)
    service = ScheduleService(store, clouds.pool, Policy.loads(POLICY), clock=clouds.now)
    try:
        yield Rig(service, store, worlds, clouds.mclock, servers)
    finally:
        await clouds.pool.aclose()
        await store.close()


FAULTS: list[dict[str, Any]] = [
    {"kind": "garbage", "path": "/images"},  # a proxy's HTML page with a 200
    {"kind": "wrong_shape", "path": "/images"},
    {"kind": "http", "status": 503, "path": "/images"},
    # A final refusal (CloudRejected) once stopped the whole tick.
    {"kind": "http", "status": 403, "path": "/images"},
    # Credentials refused: Keystone answers POST /v3/auth/tokens with 401 (AuthFailed) after the
    # token in hand was revoked (Identity API v3 reference, "Authentication").
    {"kind": "http", "status": 401, "path": "/identity/v3/auth/tokens", "revoke": True},
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f['kind']}-{f.get('status', '')}")
async def test_one_failing_cloud_delays_only_its_own_runs_retention(
        rig: Rig, fault: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    lab = await rig.schedule("lab", "C0LAB", "lab-1")  # S1: its run is followed first
    main = await rig.schedule("main", "C0MAIN", "web-1")
    for world, sid in (("lab", lab), ("main", main)):
        rig.image(world, f"{world}-old", 3, sid)
        rig.image(world, f"{world}-new", 0.01, sid)  # what this run made
    rig.to_slot()
    await rig.service.tick()
    by_schedule = {j.schedule_id: j for j in await rig.store.run(Store.list_jobs)}
    assert by_schedule[lab].cloud == "lab" and by_schedule[main].cloud is None
    for world, sid in (("lab", lab), ("main", main)):
        await rig.succeed(by_schedule[sid].id, f"{world}-new")

    kind = fault.pop("kind")
    revoke = fault.pop("revoke", False)
    rig.worlds["lab"].inject(kind, count=None, **fault)
    if revoke:
        rig.worlds["lab"].inject("revoke_tokens")
    with caplog.at_level(logging.WARNING, logger="bot.scheduling.loop"):
        for _ in range(3):
            await rig.service.tick()
    assert await rig.result(main) == RunResult.SUCCEEDED  # the other cloud went on
    assert "main-old" not in rig.worlds["main"].images
    assert "main-new" in rig.worlds["main"].images
    assert await rig.result(lab) == RunResult.RUNNING  # waits: neither failed nor lost
    assert {"lab-old", "lab-new"} <= set(rig.worlds["lab"].images)
    said = [r for r in caplog.records if "cloud lab failed" in r.getMessage()]
    assert len(said) == 1  # once per outage, not once per tick

    rig.worlds["lab"].inject("clear")
    await rig.service.tick()
    assert await rig.result(lab) == RunResult.SUCCEEDED
    assert "lab-old" not in rig.worlds["lab"].images and "lab-new" in rig.worlds["lab"].images
    assert rig.service.loop.clouds_down == {}


async def test_a_down_cloud_is_asked_once_per_tick_however_many_runs_wait_on_it(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_world = rig.worlds["lab"]
    rig.servers["lab2"] = lab_world.add_server("lab-2").id
    rig.worlds["lab2"] = lab_world
    waiting = [await rig.schedule("lab", "C0LAB", "lab-1"),
               await rig.schedule("lab2", "C0LAB", "lab-2")]
    rig.to_slot()
    await rig.service.tick()
    for job in await rig.store.run(Store.list_jobs):
        await rig.succeed(job.id, "x")
    lab_world.inject("http", status=503, path="/images", count=None)
    pool = rig.service.ctx.clouds
    assert isinstance(pool, CloudPool)
    lab_client = pool.get("lab")
    asked: list[str | None] = []
    real = lab_client.list_images

    async def counted(server_id: str | None = None, properties: Any = None) -> Any:
        asked.append(server_id)
        return await real(server_id=server_id, properties=properties)

    monkeypatch.setattr(lab_client, "list_images", counted)
    for tick in (1, 2, 3):
        await rig.service.tick()
        assert len(asked) == tick  # one listing per tick, not one per waiting run
    assert [await rig.result(s) for s in waiting] == [RunResult.RUNNING] * 2
    lab_world.inject("clear")
    await rig.service.tick()
    assert [await rig.result(s) for s in waiting] == [RunResult.SUCCEEDED] * 2
    assert len(asked) == 5
