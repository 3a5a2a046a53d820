"""Submitting a job: the store round trips a `--now` create costs, and the createImage attempt
count that bounds the retries when the cloud's answer is lost (issue 17: a burst of creates
waited on four store calls per job before its copy started)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.imaging import jobs
from bot.imaging.engine import MAX_CREATE_ATTEMPTS, Engine
from bot.store import AsyncStore, Store
from sandbox.cloud.model import World
from tests.bot.two_clouds import START, TwoClouds, two_clouds

CREATE_ROUTE = "POST /compute/v2.1/servers/{server_id}/action"


class CountingStore(AsyncStore):
    """An AsyncStore that counts the Store methods it runs, by name and by name:event."""

    calls: Counter[str]

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls[fn.__name__] += 1
        if kwargs.get("event"):
            self.calls[f"{fn.__name__}:{kwargs['event']}"] += 1
        return await super().run(fn, *args, **kwargs)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[CountingStore, Engine, TwoClouds]]:
    clouds = two_clouds({"main": 5.0, "lab": 5.0})
    opened = await AsyncStore.open(tmp_path / "e.db", clock=clouds.now)
    store = CountingStore(opened.store, opened._executor)
    store.calls = Counter()
    engine = Engine(store, clouds.pool, clock=clouds.now, alerts_for=lambda job: (None, ""))
    try:
        yield store, engine, clouds
    finally:
        await clouds.pool.aclose()
        await store.close()


async def now_job(store: AsyncStore, server: str = "web-1") -> str:
    """A `/image create <server> --now` as the listener writes it: queued, not announced."""
    job, _ = await store.run(Store.create_job, server_ref=server, requested_by="U0ALICE",
                             channel="C0OPS", state=jobs.QUEUED,
                             confirmed_at=datetime.fromtimestamp(START, UTC))
    return job.id


def creates(world: World) -> int:
    return int(world.stats_snapshot()["routes"].get(CREATE_ROUTE, 0))


async def test_a_now_job_is_submitted_in_two_store_writes_and_says_the_copy(rig: Any) -> None:
    store, engine, clouds = rig
    job_id = await now_job(store)
    store.calls.clear()
    await engine.tick()
    job = await store.run(Store.get_job, job_id)
    assert job.state == jobs.SNAPSHOTTING and job.image_id
    assert creates(clouds.worlds["main"]) == 1
    # The card and `submitting` in one write, the image id and the copy reply in the other:
    # no separate attempt record, no read of the events to learn nobody pressed Start.
    assert store.calls["transition:submitting"] == 1
    assert store.calls["transition:image_created"] == 1
    assert store.calls["update_job:create_attempt"] == 0 and store.calls["job_events"] == 0
    events = [e.event for e in await store.run(Store.job_events, job_id)]
    assert events[:3] == ["created", "submitting", "image_created"]
    pending = await store.run(Store.pending_outbox, datetime(2100, 1, 1, tzinfo=UTC),
                              limit=100)
    texts = [str(i.payload.get("text", "")) for i in pending if i.job_id == job_id]
    assert any("Copying the disk now" in t for t in texts)


async def test_lost_create_answers_stop_after_max_attempts_counting_the_first(rig: Any) -> None:
    store, engine, clouds = rig
    world = clouds.worlds["main"]
    # Nova answers every createImage with 503: the bot cannot know whether it went through,
    # so each tick looks for the image by metadata and tries again, MAX_CREATE_ATTEMPTS in all.
    world.inject("http", status=503, path="/action", method="POST", count=None)
    job_id = await now_job(store)
    for _ in range(MAX_CREATE_ATTEMPTS + 3):
        await engine.tick()
        clouds.mclock.advance(5)
    job = await store.run(Store.get_job, job_id)
    assert job.state == jobs.FAILED and "did not go through" in str(job.error)
    assert creates(world) == MAX_CREATE_ATTEMPTS
    events = Counter(e.event for e in await store.run(Store.job_events, job_id))
    assert events["submitting"] == 1 and events["create_attempt"] == MAX_CREATE_ATTEMPTS - 1


async def test_a_create_refused_with_a_5xx_is_tried_again_and_the_job_goes_on(rig: Any) -> None:
    store, engine, clouds = rig
    world = clouds.worlds["main"]
    job_id = await now_job(store)
    world.inject("http", status=502, path="/action", method="POST", count=1)
    await engine.tick()
    assert (await store.run(Store.get_job, job_id)).state == jobs.SUBMITTING
    clouds.mclock.advance(5)
    await engine.tick()  # no image carries the job's metadata: createImage again
    job = await store.run(Store.get_job, job_id)
    assert job.state not in (jobs.SUBMITTING, *jobs.TERMINAL) and job.image_id
    assert creates(world) == 2
    events = Counter(e.event for e in await store.run(Store.job_events, job_id))
    assert events["submitting"] == 1 and events["create_attempt"] == 1
