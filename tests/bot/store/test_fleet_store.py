"""The fleet tables (m012_fleet): a fleet slot is claimed once with all its members' jobs and
its digest card; later steps are compare-and-sets, so a repeated tick (or a restart) never
repeats a reply."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConflictingUpdate
from bot.store import OutboxItem, Store
from bot.vocabulary import JobState, OutboxKind, RunResult
from tests.helpers import Clock

T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "imagebot.db", clock=Clock(T0))
    with s._tx():  # test setup: the approved fleet schedule
        s._upsert_schedule({
            "server_id": "fleet:web-*", "server_ref": "web-*", "server_name": "web-*",
            "target": "web-*", "keep_days": 30, "frequency": "daily", "day": None,
            "at": "03:00", "tz": "UTC", "keep": 7, "verify": 0, "channel": "C0OPS",
            "channel_name": "ops", "created_by": "U0ALICE", "approved_by": "U0BOB",
            "request_id": "R1", "effective_at": T0, "last_slot": None, "status": "active"}, T0)
    yield s
    s.close()


def job(name: str) -> dict[str, Any]:
    return {"server_ref": f"id-{name}", "server_id": f"id-{name}", "server_name": name,
            "requested_by": "schedule:S1", "channel": "C0ALERTS", "state": JobState.QUEUED,
            "schedule_id": "S1", "thread_ts": "fallback", "announced_at": T0}


def claim(store: Store) -> Any:
    return store.claim_fleet_slot(
        "S1", T0, missed=0, target="web-*",
        members=[("id-web-1", "web-1", job("web-1")), ("id-web-2", "web-2", job("web-2"))],
        dropped=["web-9"], skipped=[], result=RunResult.RUNNING,
        schedule_fields={"last_slot": T0},
        outbox=lambda run_id: [OutboxItem(kind=OutboxKind.CHANNEL_POST, channel="#ops-alerts",
                                          thread_key=f"fleet:R{run_id}",
                                          payload={"text": "card"})])


def test_a_fleet_slot_is_claimed_once_with_every_members_job_and_one_card(store: Store) -> None:
    run = claim(store)
    assert run is not None and claim(store) is None  # the second tick finds it claimed
    schedule = store.get_schedule("S1")
    assert (schedule.target, schedule.keep_days) == ("web-*", 30)
    members = store.fleet_members(run.id)
    assert [m.server_name for m in members] == ["web-1", "web-2"]
    assert all(store.get_job(str(m.job_id)).thread_ts == "fallback" for m in members)
    fleet = store.fleet_run(run.id)
    assert fleet is not None and fleet.dropped == ("web-9",)
    cards = [o for o in store.pending_outbox(T0) if o.kind == OutboxKind.CHANNEL_POST]
    assert [c.thread_key for c in cards] == [f"fleet:R{run.id}"]
    assert store.previous_fleet_members("S1") == members


def test_member_results_are_compare_and_set_with_their_reply(store: Store) -> None:
    run = claim(store)
    reply = OutboxItem(kind=OutboxKind.CHANNEL_POST, channel="#ops-alerts",
                       payload={"text": "writes may resume", "thread_of": f"fleet:R{run.id}"})
    store.update_fleet(run.id, members=[("id-web-1", RunResult.RUNNING,
                                         {"result": RunResult.SUCCEEDED, "deleted": 2}, None)],
                       resumed=["id-web-1"], outbox=[reply])
    with pytest.raises(ConflictingUpdate):  # a repeated step: nothing is written twice
        store.update_fleet(run.id, members=[("id-web-1", RunResult.RUNNING,
                                             {"result": RunResult.SUCCEEDED}, None)],
                           outbox=[reply])
    web1 = store.fleet_members(run.id)[0]
    assert web1.result == RunResult.SUCCEEDED and web1.resumed and web1.deleted == 2
    said = [o for o in store.pending_outbox(T0) if o.payload.get("thread_of")]
    assert len(said) == 1
    # A busy member's retry gets a new job and one more attempt.
    first_job = store.fleet_members(run.id)[1].job_id
    store.update_fleet(run.id, members=[("id-web-2", RunResult.RUNNING,
                                         {"result": RunResult.RETRY_WAIT}, None)])
    store.update_fleet(run.id, members=[("id-web-2", RunResult.RETRY_WAIT,
                                         {"result": RunResult.RUNNING}, job("web-2"))])
    web2 = store.fleet_members(run.id)[1]
    assert web2.attempts == 2 and web2.job_id not in (None, first_job)
    store.update_fleet(run.id, run_expected=RunResult.RUNNING,
                       run_fields={"result": RunResult.SUCCEEDED},
                       fleet_fields={"summarized_at": T0})
    assert store.schedule_run(run.id).result == RunResult.SUCCEEDED
    assert store.open_fleet_runs()[0].summarized_at == T0  # open until the card shows it
    store.update_fleet(run.id, fleet_fields={"card_done": 1})
    assert store.open_fleet_runs() == []

