"""The DM copies of a change request (`request_copies`, m011): written with the request and its
outbox items in one transaction, then filled in by the notifier (DM channel, ts) and the loop
(the status a copy shows)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConflictingUpdate
from bot.store import OutboxItem, RequestPlan, Store
from bot.vocabulary import OutboxKind, RequestStatus
from tests.helpers import Clock

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(tmp_path / "imagebot.db", clock=clock)
    yield s
    s.close()


def values(**kw: Any) -> dict[str, Any]:
    return {"kind": "off", "server_id": "srv-1", "server_ref": "web-1", "server_name": "web-1",
            "requested_by": "U0ALICE", "channel": "C0OPS", "channel_name": "ops",
            "expires_at": T0 + timedelta(hours=24), "status": RequestStatus.PENDING} | kw


def propose(store: Store, users: list[str], *, fail: bool = False) -> str:
    def build(request_id: str) -> RequestPlan:
        if fail:
            raise ConflictingUpdate("an older request moved meanwhile")
        return RequestPlan(values=values(), copies=users, outbox=[
            OutboxItem(kind=OutboxKind.DM_COPY, channel=u, thread_key=f"{request_id}:dm:{u}",
                       payload={"request_id": request_id, "user": u, "text": "t"})
            for u in users])
    return store.add_change_request(build).id


def test_copies_are_written_with_the_request_and_its_outbox_items(store: Store) -> None:
    request_id = propose(store, ["U0BOB", "U0CAROL", "U0BOB"])
    copies = store.request_copies(request_id)
    assert [(c.request_id, c.user) for c in copies] == [("R1", "U0BOB"), ("R1", "U0CAROL")]
    assert all(c.created_at == T0 and not c.posted and c.shown_status is None for c in copies)
    assert [i.kind for i in store.pending_outbox(T0)] == ["dm_copy"] * 3
    assert store.request_copy("R1", "U0ALICE") is None


def test_a_failed_proposal_leaves_no_copy(store: Store) -> None:
    with pytest.raises(ConflictingUpdate):
        propose(store, ["U0BOB"], fail=True)
    assert store.db.execute("SELECT COUNT(*) FROM request_copies").fetchone()[0] == 0
    assert store.pending_outbox(T0) == []


def test_channel_then_ts_then_shown(store: Store, clock: Clock) -> None:
    propose(store, ["U0BOB"])
    store.set_copy_channel("R1", "U0BOB", "D0BOB")
    copy = store.request_copy("R1", "U0BOB")
    assert copy is not None and copy.dm_channel == "D0BOB" and not copy.posted
    clock.advance(5)
    store.record_copy_posted("R1", "U0BOB", "123.456", RequestStatus.PENDING)
    copy = store.request_copy("R1", "U0BOB")
    assert copy is not None and copy.posted and copy.ts == "123.456"
    assert copy.posted_at == T0 + timedelta(seconds=5) and copy.shown_status == "pending"
    # Still pending as shown: the request's message is not dirtied by the post.
    assert store.get_change_request("R1").message_dirty == 0
    store.record_copy_shown("R1", "U0BOB", RequestStatus.APPROVED)
    assert store.request_copy("R1", "U0BOB").shown_status == "approved"  # type: ignore[union-attr]


def test_a_copy_posted_after_the_decision_dirties_the_request_again(store: Store) -> None:
    """The loop may have rewritten the request's messages before this copy's ts was known:
    recording the ts of a copy that shows an older status asks for another rewrite."""
    propose(store, ["U0BOB"])
    store.update_change_request("R1", expected=RequestStatus.PENDING,
                                fields={"status": RequestStatus.APPROVED,
                                        "decided_by": "U0CAROL", "decided_at": T0})
    version = store.get_change_request("R1").message_dirty
    assert store.mark_request_clean("R1", version)
    store.record_copy_posted("R1", "U0BOB", "1.2", RequestStatus.PENDING)
    assert [r.id for r in store.dirty_requests()] == ["R1"]


def test_is_copy_in_is_the_users_own_dm_only(store: Store) -> None:
    propose(store, ["U0BOB", "U0CAROL"])
    store.set_copy_channel("R1", "U0BOB", "D0BOB")
    assert store.is_copy_in("R1", "U0BOB", "D0BOB")
    assert store.is_copy_in("r1", "U0BOB", "D0BOB")  # ids are read case-insensitively
    assert not store.is_copy_in("R1", "U0CAROL", "D0BOB")  # Carol's copy is not there
    assert not store.is_copy_in("R1", "U0BOB", "C0OPS")  # the channel card is no DM copy
    assert not store.is_copy_in("R1", "U0BOB", "")
    assert not store.is_copy_in("R2", "U0BOB", "D0BOB")
    assert not store.is_copy_in("not an id", "U0BOB", "D0BOB")
