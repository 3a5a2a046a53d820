"""The bot's connections take turns on one lock around their write transactions
(`StoreBase.writers`, issue #17): a writer of the same process waits for the lock, which hands
over at once, instead of meeting the other connection's write lock in SQLite, whose busy
handler sleeps 1, 2, 5... ms between tries. Here the second connection has no busy timeout at
all, so a write that met SQLite's lock would fail at once: with the shared lock it never does.
Each connection lives on its own thread, as the bot's do."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.imaging import jobs
from bot.store import Store


class OnItsThread:
    """A Store opened on, and only used from, a thread of its own."""

    def __init__(self, path: Path, writers: Any, *, busy_timeout_ms: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)

        def open_store() -> Store:
            store = Store(path, writers=writers)
            if busy_timeout_ms is not None:
                store.db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            return store
        self.store = self.pool.submit(open_store).result(10)

    def submit(self, fn: Callable[[Store], Any]) -> Future[Any]:
        return self.pool.submit(fn, self.store)

    def close(self) -> None:
        self.pool.submit(self.store.close).result(10)
        self.pool.shutdown()


@pytest.fixture
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[OnItsThread, ...]]:
    """(first, second) connections to one file; `shared`: whether they share the lock."""
    lock = threading.RLock()
    shared = request.param
    first = OnItsThread(tmp_path / "w.db", lock if shared else None)
    second = OnItsThread(tmp_path / "w.db", lock if shared else None, busy_timeout_ms=0)
    yield first, second
    first.close()
    second.close()


def hold_a_transaction(first: OnItsThread) -> tuple[Future[Any], threading.Event]:
    """`first` writes in a transaction it keeps open until the returned event is set."""
    inside, release = threading.Event(), threading.Event()

    def hold(store: Store) -> None:
        with store._tx():
            store.set_meta("held", "yes")
            inside.set()
            release.wait(10)
    held = first.submit(hold)
    assert inside.wait(10)
    return held, release


def create(store: Store) -> Any:
    return store.run_batch([lambda: store.create_job(
        server_ref="web1", requested_by="U1", channel="C1", state=jobs.QUEUED)])[0]


@pytest.mark.parametrize("pair", [True], indirect=True)
def test_a_write_of_the_same_process_waits_for_the_turn_instead_of_sqlites_lock(
        pair: tuple[OnItsThread, OnItsThread]) -> None:
    first, second = pair
    held, release = hold_a_transaction(first)
    created = second.submit(create)
    time.sleep(0.2)  # room for the second write to (wrongly) reach SQLite's lock meanwhile
    assert not created.done(), "the second write went ahead while a transaction was open"
    release.set()
    held.result(10)
    outcome = created.result(10)
    assert outcome.error is None and outcome.value[1] is True
    assert second.submit(lambda s: s.get_meta("held")).result(10) == "yes"


@pytest.mark.parametrize("pair", [False], indirect=True)
def test_without_the_shared_turn_the_same_write_meets_sqlites_lock(
        pair: tuple[OnItsThread, OnItsThread]) -> None:
    """The control: separate locks (as two processes have), no busy timeout: locked."""
    first, second = pair
    held, release = hold_a_transaction(first)
    outcome = second.submit(create).result(10)
    release.set()
    held.result(10)
    assert outcome.error is not None and "locked" in str(outcome.error)


@pytest.mark.parametrize("pair", [True], indirect=True)
@pytest.mark.parametrize("method", ["mark_posting", "mark_sent", "clear_posting",
                                    "mark_failed"])
def test_the_notifiers_single_writes_take_the_turn_too(
        pair: tuple[OnItsThread, OnItsThread], method: str) -> None:
    """An UPDATE of no row still takes SQLite's write lock: it waits for the turn."""
    first, second = pair
    held, release = hold_a_transaction(first)
    args: dict[str, Any] = {"retry_at": None, "error": "x"} if method == "mark_failed" else {}
    written = second.submit(lambda s: getattr(s, method)(1, **args))
    time.sleep(0.1)
    release.set()
    held.result(10)
    assert written.result(10) is None  # a "database is locked" would raise here
