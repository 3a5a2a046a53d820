"""One engine, two simulated clouds (separate worlds): a cloud that refuses our credentials,
answers garbage or drips delays only its own jobs, is reported once in the notification channel
of those jobs' channel policy, and once more when it is back. The other cloud's jobs finish."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.imaging import jobs
from bot.imaging.engine import Engine
from bot.store import AsyncStore, Store
from sandbox.cloud.model import ManualClock, World
from tests.bot.two_clouds import START, two_clouds


class Rig:
    def __init__(self, store: AsyncStore, engine: Engine, worlds: dict[str, World],
                 mclock: ManualClock) -> None:
        self.store, self.engine, self.worlds, self.mclock = store, engine, worlds, mclock

    async def ticks(self, n: int, step: float = 20.0) -> None:
        for _ in range(n):
            await self.engine.tick()
            self.mclock.advance(step)

    async def alerts(self) -> list[str]:
        items = await self.store.run(Store.pending_outbox, datetime(2100, 1, 1, tzinfo=UTC), limit=1000)
        return [i.payload["text"] for i in items if i.kind == "channel_post"]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clouds = two_clouds({"main": 5.0, "lab": 1.0})
    store = await AsyncStore.open(tmp_path / "e.db", clock=clouds.now)
    engine = Engine(store, clouds.pool, clock=clouds.now,
                    alerts_for=lambda job: ("C0ALERTS", "<!here>"))
    try:
        yield Rig(store, engine, clouds.worlds, clouds.mclock)
    finally:
        await clouds.pool.aclose()
        await store.close()


async def job_on(rig: Rig, cloud: str | None, server: str = "web-1") -> str:
    job, _ = await rig.store.run(Store.create_job, server_ref=server, requested_by="U0ALICE",
                                        channel="C0OPS", state=jobs.QUEUED, cloud=cloud,
                                        confirmed_at=datetime.fromtimestamp(START, UTC))
    return job.id


@pytest.mark.parametrize("fault", [
    {"kind": "garbage", "path": "/servers"},
    {"kind": "wrong_shape", "path": "/compute"},
    # Credentials refused: Keystone answers POST /v3/auth/tokens with 401 (AuthFailed); its
    # version document GET /v3 needs no token (Identity API v3 reference, "Authentication").
    {"kind": "http", "status": 401, "path": "/identity/v3/auth/tokens"},
    {"kind": "drip", "path": "/servers", "delay": 5, "size": 100},
])
async def test_one_failing_cloud_delays_only_its_jobs_and_is_reported_once(
        rig: Rig, fault: dict[str, object]) -> None:
    rig.worlds["lab"].inject(fault.pop("kind"), count=None, **fault)  # type: ignore[arg-type]
    main_job = await job_on(rig, None)
    lab_job = await job_on(rig, "lab")
    await rig.ticks(4, step=90)
    assert (await rig.store.run(Store.get_job, main_job)).state == jobs.SUCCEEDED
    lab = await rig.store.run(Store.get_job, lab_job)
    assert lab.state == jobs.QUEUED  # waits, neither failed nor lost
    [down] = await rig.alerts()  # once, however many ticks it failed
    assert "lab" in down and lab_job in down and down.startswith("<!here>")
    rig.worlds["lab"].inject("clear")
    await rig.ticks(12)
    assert (await rig.store.run(Store.get_job, lab_job)).state == jobs.SUCCEEDED
    alerts = await rig.alerts()
    assert len(alerts) == 2 and "answers again" in alerts[1]
    await rig.ticks(3)
    assert len(await rig.alerts()) == 2


async def test_one_bad_tick_is_not_reported(rig: Rig) -> None:
    rig.worlds["lab"].inject("garbage", path="/servers", count=1)
    lab_job = await job_on(rig, "lab")
    await rig.ticks(12)
    assert (await rig.store.run(Store.get_job, lab_job)).state == jobs.SUCCEEDED
    assert await rig.alerts() == []


async def test_a_cloud_failing_mid_flight_keeps_its_deadlines_and_reports(rig: Rig) -> None:
    lab_job = await job_on(rig, "lab")
    await rig.engine.tick()  # submitted, snapshotting
    assert (await rig.store.run(Store.get_job, lab_job)).state == jobs.SNAPSHOTTING
    rig.worlds["lab"].inject("garbage", path="/", count=None)
    await rig.ticks(3, step=1)
    assert (await rig.store.run(Store.get_job, lab_job)).state == jobs.SNAPSHOTTING
    assert len(await rig.alerts()) == 1
    rig.worlds["lab"].inject("clear")
    await rig.ticks(20)
    assert (await rig.store.run(Store.get_job, lab_job)).state == jobs.SUCCEEDED


async def test_a_copy_that_ends_while_a_slow_submit_goes_on_is_seen_before_it_ends(
        tmp_path: Path) -> None:
    """Issue #17: a tick's submits can take longer than a tick (a burst of createImage calls);
    the copies already under way are looked at meanwhile, every copy-phase interval, so a
    "writes may resume" is not held back until the last create of the burst answered."""
    clouds = two_clouds({"main": 30.0, "lab": 30.0})
    store = await AsyncStore.open(tmp_path / "e.db", clock=clouds.now)
    # tick_scale: the copy-phase interval (2 s) is 20 ms of wall time here.
    engine = Engine(store, clouds.pool, clock=clouds.now, tick_scale=0.01,
                    alerts_for=lambda job: (None, None))
    rig = Rig(store, engine, clouds.worlds, clouds.mclock)
    try:
        first = await job_on(rig, None, "web-1")
        await engine.tick()
        assert (await store.run(Store.get_job, first)).state == jobs.SNAPSHOTTING
        clouds.mclock.advance(60)  # the sim's copy of web-1 is over: pending upload
        second = await job_on(rig, None, "web-2")
        # Nova's createImage is POST /servers/{id}/action; this one answers after 1 s.
        clouds.worlds["main"].inject("slow", path="/servers/.*/action", method="POST",
                                     delay=1.0)
        await engine.tick()
        copied = [e.id for e in await store.run(Store.job_events, first)
                  if e.to_state == jobs.PENDING_UPLOAD or e.to_state == jobs.UPLOADING]
        submitted = [e.id for e in await store.run(Store.job_events, second)
                     if e.to_state == jobs.SNAPSHOTTING]
        assert copied and submitted
        assert copied[0] < submitted[0], "the ended copy was seen only after the slow submit"
    finally:
        await clouds.pool.aclose()
        await store.close()
