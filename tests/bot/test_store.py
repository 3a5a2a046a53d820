"""The SQLite store: migrations, CAS transitions, atomicity, dedupe, outbox, AsyncStore."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConflictingUpdate, InvalidTransition, JobError, ServerInUse
from bot.imaging import jobs
from bot.store import AsyncStore, OutboxItem, Store, StoreError
from tests.helpers import Clock

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(tmp_path / "imagebot.db", clock=clock)
    yield s
    s.close()


def new_job(store: Store, **kw: Any) -> jobs.Job:
    args: dict[str, Any] = dict(server_ref="web1", requested_by="U1", channel="C1",
                                state=jobs.AWAITING_CONFIRMATION)
    args.update(kw)
    job, created = store.create_job(**args)
    assert created
    return job


def count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


# --- opening ----------------------------------------------------------------------------------


def test_file_is_private_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.db"
    s = Store(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        mode = s.db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        s.close()


def test_existing_file_is_chmodded(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.touch()
    os.chmod(path, 0o644)
    Store(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_migrations_are_idempotent_and_data_survives(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "x.db"
    s = Store(path, clock=clock)
    job = new_job(s, note="keep me")
    s.set_meta("cursor", "abc")
    s.close()
    s2 = Store(path, clock=clock)
    try:
        assert s2.get_job(job.id) == job
        assert s2.get_meta("cursor") == "abc"
        applied = s2.db.execute("SELECT COUNT(*) FROM _sqlite_migrations "
                                "WHERE migration_set = 'imagebot'").fetchone()[0]
        assert applied == 13  # m001 initial, m002 schedules, m003 outbox posting, m004 job
        # cloud, m005 id sequences, m006 job channel name and who cancelled, m007 job
        # announced, m008 verify, m009 schedule operations, m010 native, m011 request copies,
        # m012 fleet, m013 job server index
        assert new_job(s2).id == "J2"
    finally:
        s2.close()


# --- jobs -------------------------------------------------------------------------------------


def test_create_and_get(store: Store, clock: Clock) -> None:
    job = new_job(store, image_name="img", note="n", response_url="https://r",
                  schedule_id="S1", confirmed_by="U9", confirmed_at=T0)
    assert job.id == "J1"
    assert job.state == jobs.AWAITING_CONFIRMATION
    assert job.created_at == T0 and job.created_at.tzinfo is not None
    assert (job.image_name, job.note, job.response_url, job.schedule_id) == ("img", "n",
                                                                            "https://r", "S1")
    assert job.confirmed_by == "U9" and job.confirmed_at == T0
    assert store.get_job("j1") == job
    assert store.get_job("J1") == job
    assert new_job(store).id == "J2"
    events = store.job_events("J1")
    assert [(e.event, e.from_state, e.to_state, e.actor) for e in events] == [
        ("created", None, jobs.AWAITING_CONFIRMATION, "U1")]


def test_unknown_and_malformed_ids(store: Store) -> None:
    with pytest.raises(JobError, match="no job J99"):
        store.get_job("J99")
    with pytest.raises(JobError, match="not a job id"):
        store.get_job("web1")


def test_create_rejects_terminal_state_and_unknown_fields(store: Store) -> None:
    with pytest.raises(InvalidTransition):
        store.create_job(server_ref="a", requested_by="U1", channel="C", state=jobs.SUCCEEDED)
    with pytest.raises(TypeError):
        store.create_job(server_ref="a", requested_by="U1", channel="C", state=jobs.QUEUED,
                         bogus=1)
    assert count(store, "jobs") == 0


def test_all_fields_round_trip(store: Store, clock: Clock) -> None:
    job = new_job(store, state=jobs.QUEUED)
    fields: dict[str, Any] = dict(
        server_id="s-1", server_name="web one", image_id="i-1", image_name="n",
        task_state="image_snapshot", image_status="queued", image_size=10 ** 12,
        volume_backed=True, data_disks=("vdb 100 GB", "vdc 5 GB"),
        submitted_at=T0 + timedelta(seconds=1), snapshot_started_at=T0 + timedelta(seconds=2),
        deadline_at=T0 + timedelta(hours=1), thread_ts="123.456")
    clock.advance(5)
    after = store.transition(job.id, expected=jobs.QUEUED, target=jobs.SUBMITTING,
                             event="submitting", fields=fields)
    for name, value in fields.items():
        assert getattr(after, name) == value, name
    assert after.updated_at == T0 + timedelta(seconds=5)
    assert store.get_job(job.id) == after


def test_transition_cas_conflict(store: Store) -> None:
    job = new_job(store)
    store.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.QUEUED,
                     event="confirmed", actor="U2")
    # A second click loses: the row is no longer awaiting confirmation.
    with pytest.raises(ConflictingUpdate, match="queued"):
        store.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.CANCELLED,
                         event="cancelled", actor="U3",
                         outbox=[OutboxItem("update_parent", "C1")])
    assert store.get_job(job.id).state == jobs.QUEUED
    assert count(store, "outbox") == 0
    assert [e.event for e in store.job_events(job.id)] == ["created", "confirmed"]


def test_transition_accepts_a_set_of_expected_states(store: Store) -> None:
    job = new_job(store, state=jobs.QUEUED)
    done = store.transition(job.id, expected=[jobs.AWAITING_CONFIRMATION, jobs.QUEUED],
                            target=jobs.CANCELLED, event="cancelled", actor="U1")
    assert done.state == jobs.CANCELLED


def test_invalid_transition(store: Store) -> None:
    job = new_job(store)
    with pytest.raises(InvalidTransition):
        store.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.UPLOADING,
                         event="x")
    assert store.get_job(job.id).state == jobs.AWAITING_CONFIRMATION


def test_state_and_identity_cannot_be_set_as_fields(store: Store) -> None:
    job = new_job(store)
    with pytest.raises(JobError):
        store.update_job(job.id, fields={"state": jobs.SUCCEEDED})
    with pytest.raises(JobError):
        store.update_job(job.id, fields={"id": "J7"})


def test_update_job_with_event_and_outbox(store: Store, clock: Clock) -> None:
    job = new_job(store)
    clock.advance(3)
    after = store.update_job(job.id, fields={"thread_ts": "1.2"}, event="posted",
                             outbox=[OutboxItem("reply", "C1", {"text": "hi"},
                                                thread_key=job.id)])
    assert after.thread_ts == "1.2" and after.state == job.state
    ev = store.job_events(job.id)[-1]
    assert (ev.event, ev.from_state, ev.to_state, ev.detail) == (
        "posted", job.state, job.state, {"thread_ts": "1.2"})
    [item] = store.pending_outbox(clock())
    assert item.job_id == job.id and item.payload == {"text": "hi"}
    # No event when none is asked for.
    store.update_job(job.id, fields={"task_state": "x"})
    assert len(store.job_events(job.id)) == 2


def test_atomicity_a_failure_mid_transaction_leaves_nothing(store: Store) -> None:
    job = new_job(store)
    bad = [OutboxItem("update_parent", "C1"), OutboxItem("nonsense", "C1")]
    with pytest.raises(ValueError):
        store.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.QUEUED,
                         event="confirmed", outbox=bad)
    assert store.get_job(job.id).state == jobs.AWAITING_CONFIRMATION
    assert count(store, "outbox") == 0
    assert len(store.job_events(job.id)) == 1
    with pytest.raises(ValueError):
        store.create_job(server_ref="web2", requested_by="U1", channel="C1",
                         state=jobs.QUEUED, outbox=bad)
    assert count(store, "jobs") == 1
    assert count(store, "job_events") == 1
    # Not serializable payload: fails inside the transaction too.
    with pytest.raises(TypeError):
        store.update_job(job.id, fields={"note": "x"}, event="e",
                         outbox=[OutboxItem("reply", "C1", {"x": object()})])
    assert store.get_job(job.id).note is None
    # The id sequence did not leak a number to the failed attempts in a visible way.
    assert new_job(store).id == "J2"


def test_create_job_outbox_gets_the_new_job_id(store: Store, clock: Clock) -> None:
    job, _ = store.create_job(server_ref="web1", requested_by="U1", channel="C1",
                              state=jobs.QUEUED,
                              outbox=[OutboxItem("post_parent", "C1", {})])
    [item] = store.pending_outbox(clock())
    assert item.job_id == job.id and item.kind == "post_parent" and item.thread_key is None


def test_dedupe_key(store: Store) -> None:
    first, created = store.create_job(server_ref="web1", requested_by="U1", channel="C1",
                                      state=jobs.QUEUED, dedupe_key="trigger:1",
                                      outbox=[OutboxItem("post_parent", "C1")])
    assert created
    again, created = store.create_job(server_ref="other", requested_by="U2", channel="C2",
                                      state=jobs.QUEUED, dedupe_key="trigger:1",
                                      outbox=[OutboxItem("post_parent", "C2")])
    assert not created and again == first
    assert count(store, "jobs") == 1 and count(store, "outbox") == 1
    # Jobs without a key never collide.
    new_job(store)
    new_job(store)
    assert count(store, "jobs") == 3


def test_lists(store: Store) -> None:
    a = new_job(store, server_ref="web1")
    b = new_job(store, server_ref="db1", state=jobs.QUEUED)
    c = new_job(store, server_ref="uuid-3", state=jobs.QUEUED)
    store.update_job(c.id, fields={"server_name": "web1", "server_id": "uuid-3"})
    store.transition(b.id, expected=jobs.QUEUED, target=jobs.CANCELLED, event="cancelled")
    assert [j.id for j in store.list_jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in store.list_jobs(limit=1)] == [c.id]
    assert [j.id for j in store.list_jobs(server="web1")] == [c.id, a.id]
    assert [j.id for j in store.list_jobs(server="uuid-3")] == [c.id]
    assert [j.id for j in store.list_jobs(states=[jobs.CANCELLED])] == [b.id]
    assert store.list_jobs(states=[]) == []
    assert [j.id for j in store.in_flight_jobs()] == [c.id]
    latest = store.latest_job_for_server("web1")
    assert latest is not None and latest.id == c.id
    assert store.latest_job_for_server("nope") is None


def test_events_are_append_only(store: Store) -> None:
    job = new_job(store)
    store.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.QUEUED,
                     event="confirmed", actor="U2", fields={"confirmed_by": "U2"})
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE job_events SET event = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM job_events")
    events = store.job_events(job.id)
    assert [e.event for e in events] == ["created", "confirmed"]
    assert events[1].actor == "U2" and events[1].detail == {"confirmed_by": "U2"}


def test_response_url_not_copied_into_events(store: Store) -> None:
    job = new_job(store)
    store.update_job(job.id, fields={"response_url": "https://secret"}, event="x")
    assert "response_url" not in store.job_events(job.id)[-1].detail


def test_naive_datetimes_are_refused(store: Store) -> None:
    job = new_job(store)
    with pytest.raises(ValueError, match="naive"):
        store.update_job(job.id, fields={"deadline_at": datetime(2025, 1, 1)})


# --- outbox ----------------------------------------------------------------------------------


def test_outbox_order_retry_and_give_up(store: Store, clock: Clock) -> None:
    store.enqueue([OutboxItem("channel_post", "C1", {"text": str(i)}) for i in range(3)])
    items = store.pending_outbox(clock())
    assert [i.payload["text"] for i in items] == ["0", "1", "2"]
    assert [i.id for i in items] == sorted(i.id for i in items)
    assert store.outbox_depth() == 3
    first, second, third = items
    store.mark_sent(first.id, result_ts="111.1")
    store.mark_failed(second.id, retry_at=clock() + timedelta(seconds=30), error="429")
    store.mark_failed(third.id, retry_at=None, error="not_in_channel")
    assert store.outbox_depth() == 1
    assert store.pending_outbox(clock()) == []
    clock.advance(29)
    assert store.pending_outbox(clock()) == []
    clock.advance(1)
    [due] = store.pending_outbox(clock())
    assert due.id == second.id and due.attempts == 1 and due.error == "429"
    assert store.outbox_item(first.id).result_ts == "111.1"
    assert store.outbox_item(first.id).sent_at == T0
    gave_up = store.outbox_item(third.id)
    assert gave_up.sent_at is None and gave_up.next_attempt_at is None
    assert gave_up.error == "not_in_channel"
    store.mark_sent(due.id)
    assert store.outbox_depth() == 0


def test_outbox_limit_and_future_items(store: Store, clock: Clock) -> None:
    store.enqueue([OutboxItem("reply", "C1", {"n": i}) for i in range(5)])
    assert [i.payload["n"] for i in store.pending_outbox(clock(), limit=2)] == [0, 1]
    assert store.pending_outbox(clock() - timedelta(seconds=1)) == []


# --- deliveries and meta ----------------------------------------------------------------------


def test_claim_delivery(store: Store) -> None:
    assert store.claim_delivery("ev:1", "J1") is True
    assert store.claim_delivery("ev:1", "J2") is False
    assert store.delivery_job("ev:1") == "J1"
    assert store.delivery_job("ev:2") is None
    assert store.claim_delivery("ev:2") is True
    assert store.delivery_job("ev:2") is None


def test_meta(store: Store) -> None:
    assert store.get_meta("k") is None
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.get_meta("k") == "2"


# --- async ----------------------------------------------------------------------------------


async def test_async_store_runs_off_the_loop_thread(tmp_path: Path, clock: Clock) -> None:
    seen: list[str] = []

    def spying_clock() -> datetime:
        seen.append(threading.current_thread().name)
        return clock()

    astore = await AsyncStore.open(tmp_path / "a.db", clock=spying_clock)
    try:
        loop_thread = threading.current_thread().name
        job, created = await astore.run(Store.create_job,
            server_ref="web1", requested_by="U1", channel="C1", state=jobs.AWAITING_CONFIRMATION,
            dedupe_key="t:1", outbox=[OutboxItem("post_parent", "C1")])
        assert created and job.id == "J1"
        assert seen and all(name != loop_thread for name in seen)
        assert len(set(seen)) == 1  # one dedicated worker thread
        # Concurrent callers are serialised on that thread without errors.
        results = await asyncio.gather(*(astore.run(Store.claim_delivery, f"k{i % 3}") for i in range(9)))
        assert sum(results) == 3
        done = await astore.run(Store.transition, job.id, expected=jobs.AWAITING_CONFIRMATION,
                                       target=jobs.QUEUED, event="confirmed", actor="U2")
        assert done.state == jobs.QUEUED
        with pytest.raises(ConflictingUpdate):
            await astore.run(Store.transition, job.id, expected=jobs.AWAITING_CONFIRMATION,
                                    target=jobs.CANCELLED, event="cancelled")
        await astore.run(Store.update_job, job.id, fields={"thread_ts": "9.9"}, event="posted")
        assert (await astore.run(Store.get_job, "j1")).thread_ts == "9.9"
        assert [j.id for j in await astore.run(Store.in_flight_jobs)] == ["J1"]
        assert [j.id for j in await astore.run(Store.list_jobs, server="web1")] == ["J1"]
        assert (await astore.run(Store.latest_job_for_server, "web1")) is not None
        assert len(await astore.run(Store.job_events, job.id)) == 3
        [item] = await astore.run(Store.pending_outbox, clock())
        await astore.run(Store.mark_failed, item.id, retry_at=clock() + timedelta(seconds=5), error="x")
        assert await astore.run(Store.outbox_depth) == 1
        await astore.run(Store.mark_sent, item.id, "1.1")
        assert await astore.run(Store.outbox_depth) == 0
        await astore.run(Store.set_meta, "c", "v")
        assert await astore.run(Store.get_meta, "c") == "v"
        assert await astore.run(Store.delivery_job, "k0") is None
        # The connection was opened on the worker thread: sqlite3 refuses it on the loop thread.
        with pytest.raises(sqlite3.ProgrammingError, match="thread"):
            astore.store.get_meta("c")
    finally:
        await astore.close()


def test_due_times_compare_as_instants(store: Store, clock: Clock) -> None:
    store.enqueue([OutboxItem("reply", "C1", {})])
    [item] = store.pending_outbox(clock())
    # A retry half a second later is not due at the whole second before it.
    store.mark_failed(item.id, retry_at=T0 + timedelta(seconds=10, microseconds=500_000),
                      error="x")
    assert store.pending_outbox(T0 + timedelta(seconds=10)) == []
    assert len(store.pending_outbox(T0 + timedelta(seconds=11))) == 1
    # Other time zones are converted, not compared as text.
    plus2 = (T0 + timedelta(seconds=11)).astimezone(timezone(timedelta(hours=2)))
    assert len(store.pending_outbox(plus2)) == 1


def test_cas_holds_across_two_connections(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "shared.db"
    a, b = Store(path, clock=clock), Store(path, clock=clock)
    try:
        job = new_job(a)
        assert b.get_job(job.id) == job
        a.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.QUEUED,
                     event="confirmed", actor="U2")
        with pytest.raises(ConflictingUpdate):
            b.transition(job.id, expected=jobs.AWAITING_CONFIRMATION, target=jobs.CANCELLED,
                         event="cancelled", actor="U3")
        assert b.get_job(job.id).state == jobs.QUEUED
        assert new_job(b).id == "J2"
    finally:
        a.close()
        b.close()


async def test_locked_database_is_a_store_error_and_recovers(tmp_path: Path,
                                                             clock: Clock) -> None:
    path = tmp_path / "locked.db"
    astore = await AsyncStore.open(path, clock=clock)
    try:
        job, _ = await astore.run(Store.create_job, server_ref="web1", requested_by="U1", channel="C1",
                                         state=jobs.AWAITING_CONFIRMATION)
        await astore._run(astore.store.db.execute, "PRAGMA busy_timeout = 20")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(StoreError, match="locked"):
                await astore.run(Store.transition, job.id, expected=jobs.AWAITING_CONFIRMATION,
                                        target=jobs.QUEUED, event="confirmed")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert not isinstance(StoreError("x"), JobError)  # the notifier must not drop work
        # Nothing half-written, and the store works again once the lock is gone.
        assert (await astore.run(Store.get_job, job.id)).state == jobs.AWAITING_CONFIRMATION
        assert len(await astore.run(Store.job_events, job.id)) == 1
        done = await astore.run(Store.transition, job.id, expected=jobs.AWAITING_CONFIRMATION,
                                       target=jobs.QUEUED, event="confirmed")
        assert done.state == jobs.QUEUED
    finally:
        await astore.close()


def test_m004_adds_the_cloud_column_to_an_older_database(tmp_path) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    store.db.execute("ALTER TABLE jobs DROP COLUMN cloud")
    store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_job_cloud'")
    store.close()
    reopened = Store(path)
    try:
        assert "cloud" in reopened.db["jobs"].columns_dict
        job, _ = reopened.create_job(server_ref="web-1", requested_by="U1", channel="C1",
                                     state="queued", cloud="lab")
        assert reopened.get_job(job.id).cloud == "lab"
    finally:
        reopened.close()


def test_m007_marks_every_older_job_as_announced(tmp_path) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    store.db.execute("ALTER TABLE jobs DROP COLUMN announced_at")
    store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm007_job_announced'")
    store.db.execute("INSERT INTO jobs (seq, id, state, server_ref, requested_by, channel, "
                     "created_at, updated_at) VALUES (1, 'J1', 'awaiting_confirmation', 'web-1', "
                     "'U1', 'C1', '2026-11-01T00:00:00.000000+00:00', "
                     "'2026-11-01T00:00:00.000000+00:00')")
    store.close()
    reopened = Store(path)
    try:  # its card was queued with the row, as before this migration
        assert reopened.get_job("J1").announced_at == datetime(2026, 11, 1, tzinfo=UTC)
    finally:
        reopened.close()


def test_a_job_created_with_its_card_is_announced_and_one_without_is_not(store: Store) -> None:
    public = new_job(store, outbox=[OutboxItem(kind="post_parent", channel="C1")])
    private = new_job(store, server_ref="web2")
    assert public.announced_at is not None and private.announced_at is None


def test_a_create_for_a_server_in_flight_is_refused_and_writes_nothing(store: Store) -> None:
    running = new_job(store, state=jobs.QUEUED, cloud="lab")
    store.update_job(running.id, fields={"server_id": "uuid-1", "server_name": "web1"})
    before = (count(store, "jobs"), count(store, "job_events"), count(store, "outbox"))
    for ref in ("web1", "uuid-1"):
        with pytest.raises(ServerInUse) as refused:
            store.create_job(server_ref=ref, requested_by="U2", channel="C1",
                             state=jobs.QUEUED, cloud="lab", refuse_if_in_flight=True)
        assert refused.value.job.id == running.id
    assert (count(store, "jobs"), count(store, "job_events"), count(store, "outbox")) == before
    # Another cloud's web1 is another server; a job waiting for a click images nothing yet.
    new_job(store, cloud="other", refuse_if_in_flight=True)
    waiting = new_job(store, server_ref="db1")
    assert new_job(store, server_ref="db1", refuse_if_in_flight=True).id != waiting.id
