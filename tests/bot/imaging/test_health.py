"""The engine's cloud-health reports: one failing tick is a blip, a streak is reported once
where the jobs' policies send alerts, the recovery once, and the report survives a restart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import CloudUnavailable
from bot.imaging.health import CLOUD_DOWN_KEY, DOWN_AFTER_TICKS, CloudHealth
from bot.imaging.jobs import Job
from bot.store import AsyncStore, Store
from bot.vocabulary import JobState, OutboxKind

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = f"{CLOUD_DOWN_KEY}:lab"


def job(number: int, channel: str = "C0OPS") -> Job:
    return Job(id=f"J{number}", state=JobState.QUEUED, server_ref=f"web-{number}",
               requested_by="U0ALICE", channel=channel, created_at=NOW, updated_at=NOW)


def alerts_for(item: Job) -> tuple[str | None, str | None]:
    # #ops alerts go to the alerts channel with a mention; other channels hear it themselves.
    return ("C0ALERTS", "<!here>") if item.channel == "C0OPS" else (None, None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    opened = await AsyncStore.open(tmp_path / "h.db", clock=lambda: NOW)
    try:
        yield opened
    finally:
        await opened.close()


def health(store: AsyncStore, changes: list[int]) -> CloudHealth:
    return CloudHealth(store, clock=lambda: NOW, alerts_for=alerts_for,
                       on_change=lambda: changes.append(1))


async def posts(store: AsyncStore) -> list[tuple[str, str]]:
    items = await store.run(Store.pending_outbox, datetime(2100, 1, 1, tzinfo=UTC), limit=100)
    assert all(i.kind == OutboxKind.CHANNEL_POST for i in items)
    return [(i.channel, i.payload["text"]) for i in items]


async def tick(watch: CloudHealth, failing: bool, group: list[Job]) -> None:
    watch.begin("lab")
    if failing:
        watch.troubled("lab", CloudUnavailable("connection refused"))
    await watch.report("lab", "lab", group)


async def test_a_streak_is_reported_once_per_channel_and_the_recovery_once(
        store: AsyncStore) -> None:
    changes: list[int] = []
    watch = health(store, changes)
    group = [job(1), job(2), job(3, channel="C0DEV")]
    for _ in range(DOWN_AFTER_TICKS - 1):
        await tick(watch, True, group)
    assert await posts(store) == [] and changes == []  # one blip is not reported
    await tick(watch, True, group)
    await tick(watch, True, group)  # still failing: not said again
    said = await posts(store)
    assert [channel for channel, _ in said] == ["C0ALERTS", "C0DEV"]
    assert said[0][1].startswith("<!here>") and "<!here>" not in said[1][1]
    assert all("Cloud lab is failing, so its jobs wait (J1, J2, J3)" in text
               for _, text in said)
    assert changes == [1]
    assert "C0ALERTS" in str(await store.run(Store.get_meta, KEY))

    await tick(watch, False, group)
    await tick(watch, False, group)  # healthy again: the recovery is said once
    back = (await posts(store))[2:]
    assert [channel for channel, _ in back] == ["C0ALERTS", "C0DEV"]
    assert all("Cloud lab answers again" in text and "<!here>" not in text
               for _, text in back)
    assert await store.run(Store.get_meta, KEY) == ""
    assert changes == [1, 1]


async def test_the_report_survives_a_restart(store: AsyncStore) -> None:
    group = [job(1)]
    first = health(store, [])
    for _ in range(DOWN_AFTER_TICKS):
        await tick(first, True, group)
    assert len(await posts(store)) == 1
    restarted = health(store, [])  # a new process: its streak counts from zero
    for _ in range(DOWN_AFTER_TICKS + 1):
        await tick(restarted, True, group)
    assert len(await posts(store)) == 1  # the store remembers it was said
    await tick(restarted, False, group)
    assert [text for _, text in await posts(store)][1].startswith(
        ":rotating_light: Cloud lab answers again")


async def test_no_jobs_no_report_and_the_log_level_falls_after_the_first_tick(
        store: AsyncStore) -> None:
    watch = health(store, [])
    assert watch.level("lab") == logging.WARNING
    assert watch.level("lab", logging.ERROR) == logging.ERROR
    for _ in range(DOWN_AFTER_TICKS + 1):
        await tick(watch, True, [])
    assert await posts(store) == []  # nothing waits on the cloud, so nobody is told
    assert watch.level("lab") == logging.INFO
    assert watch.level(None) == logging.WARNING  # the other clouds' streaks are their own
