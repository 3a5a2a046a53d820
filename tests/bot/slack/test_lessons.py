"""The learnt workspace post limit kept across restarts (`bot.slack.lessons`), on a real
database file: one process saves it, the next (a new connection, a new monotonic clock)
recalls it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError
from bot.slack.lessons import LESSON_KEY, KeptLesson
from bot.slack.pacing import SlackPacer
from bot.store import AsyncStore, Store


def learnt_pacer(at: float) -> SlackPacer:
    pacer = SlackPacer()
    pacer.take("chat.postMessage", "C0EARLY", at - 50.0)
    for channel in ("C1", "C2", "C3"):
        pacer.take("chat.postMessage", channel, at)
    pacer.refused("chat.postMessage", "C3", at, at)
    assert pacer.workspace_posts is not None
    return pacer


async def test_a_lesson_saved_by_one_process_is_recalled_by_the_next(tmp_path: Path) -> None:
    wall = [1_000_000.0]
    first = await AsyncStore.open(tmp_path / "l.db")
    try:
        pacer = SlackPacer()
        kept = KeptLesson(first, wall=lambda: wall[0])
        await kept.sync(pacer, 500.0)  # start: nothing saved yet, nothing learnt
        assert pacer.workspace_posts is None
        await kept.sync(pacer, 501.0)
        assert await first.run(Store.get_meta, LESSON_KEY) is None  # nothing to save
        # A pacer that learnt before its first sync keeps its own lesson and saves it.
        learnt = learnt_pacer(500.0)
        await first.run(Store.set_meta, LESSON_KEY, json.dumps({"rate": 50.0,
                                                                 "refused_at": wall[0]}))
        kept = KeptLesson(first, wall=lambda: wall[0])
        await kept.sync(learnt, 500.0)
        own = learnt.lesson(500.0)
        assert own is not None and own[0] == pytest.approx(0.9 * 3)  # not the saved 50/s
        raw = await first.run(Store.get_meta, LESSON_KEY)
        assert raw is not None and json.loads(raw)["rate"] == own[0]
        learnt.take("chat.postMessage", "C4", 500.5)
        learnt.refused("chat.postMessage", "C4", 500.5, 500.5)  # a second lesson: a cut
        wall[0] += 2.0
        await kept.sync(learnt, 502.0)
        raw = await first.run(Store.get_meta, LESSON_KEY)
        assert raw is not None
        saved = json.loads(raw)
        lesson = learnt.lesson(502.0)
        assert lesson is not None and lesson[0] == pytest.approx(0.7 * 0.9 * 3)
        assert saved == {"rate": lesson[0], "refused_at": 1_000_000.5}  # 1.5 s before the save
    finally:
        await first.close()
    wall[0] += 40.0  # the restart took 40 s
    second = await AsyncStore.open(tmp_path / "l.db")
    try:
        restarted = SlackPacer()
        await KeptLesson(second, wall=lambda: wall[0]).sync(restarted, 3.0)
        assert restarted.workspace_posts is not None
        assert restarted.lesson(3.0) == (pytest.approx(saved["rate"]), pytest.approx(3.0 - 41.5))
    finally:
        await second.close()


async def test_an_unreadable_or_stale_saved_lesson_is_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await AsyncStore.open(tmp_path / "l.db")
    try:
        await store.run(Store.set_meta, LESSON_KEY, "{not json")
        pacer = SlackPacer()
        with caplog.at_level(logging.WARNING):
            await KeptLesson(store, wall=lambda: 5000.0).sync(pacer, 1.0)
        assert pacer.workspace_posts is None
        assert "unreadable saved Slack post limit" in caplog.text
        await store.run(Store.set_meta, LESSON_KEY,
                        json.dumps({"rate": 4.0, "refused_at": 5000.0 - 600.0}))
        stale = SlackPacer()
        await KeptLesson(store, wall=lambda: 5000.0).sync(stale, 1.0)
        assert stale.workspace_posts is None  # ten quiet minutes: forgotten, as in the pacer
    finally:
        await store.close()


async def test_a_lesson_the_store_cannot_save_is_logged_and_the_notifier_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = await AsyncStore.open(tmp_path / "l.db")
    try:
        kept = KeptLesson(store, wall=lambda: 5000.0)
        pacer = SlackPacer()
        await kept.sync(pacer, 500.0)
        learnt = learnt_pacer(500.0)
        real = store.run

        async def failing(fn: Any, *args: Any, **kwargs: Any) -> Any:
            if fn is Store.set_meta:
                raise StoreError("job database error: disk I/O error")
            return await real(fn, *args, **kwargs)

        monkeypatch.setattr(store, "run", failing)
        with caplog.at_level(logging.WARNING):
            await kept.sync(learnt, 501.0)  # does not raise
        assert "could not save the learnt Slack post limit" in caplog.text
        assert await real(Store.get_meta, LESSON_KEY) is None
    finally:
        await store.close()
