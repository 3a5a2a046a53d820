"""m013: a create's "is this server busy?" check reads only that server's in-flight jobs, by
ref, name or id (partial indexes), never every job in flight (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ServerInUse
from bot.imaging import jobs
from bot.store import Store
from bot.store import jobs as job_tables
from tests.helpers import Clock


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "jobs.db", clock=Clock(datetime(2026, 12, 2, 12, 0, tzinfo=UTC)))
    yield s
    s.close()


def plan(store: Store, sql: str, params: list[Any]) -> list[str]:
    return [row["detail"] for row in store.db.query(f"EXPLAIN QUERY PLAN {sql}", params)]


def create(store: Store, ref: str, key: str, **kw: Any) -> Any:
    return store.create_job(server_ref=ref, requested_by="U1", channel="C1",
                            state=jobs.QUEUED, dedupe_key=key, refuse_if_in_flight=True, **kw)


def test_the_indexes_carry_the_in_flight_states_as_the_queries_write_them(
        store: Store) -> None:
    # SQLite uses a partial index only when the query repeats its WHERE term to the letter
    # (sqlite.org/partialindex.html, "Queries Using Partial Indexes").
    assert job_tables.IN_FLIGHT_SQL == (
        "state IN (" + ", ".join(f"'{s}'" for s in sorted(jobs.IN_FLIGHT)) + ")")
    found = {row["name"]: row["sql"] for row in store.db.query(
        "SELECT name, sql FROM sqlite_master WHERE name LIKE 'jobs_in_flight_%'")}
    assert set(found) == {"jobs_in_flight_ref", "jobs_in_flight_name", "jobs_in_flight_id"}
    for sql in found.values():
        assert sql.endswith(f"WHERE {job_tables.IN_FLIGHT_SQL}")


def test_the_busy_check_searches_the_partial_indexes_not_every_job_in_flight(
        store: Store) -> None:
    where, params = job_tables._in_flight_sql(["web-1"], None)
    details = plan(store, f"SELECT * FROM jobs WHERE {where} OR dedupe_key = ?",
                   [*params, "trigger:1"])
    for index in ("jobs_in_flight_ref", "jobs_in_flight_name", "jobs_in_flight_id",
                  "jobs_dedupe"):
        assert any(f"USING INDEX {index} " in d for d in details), details
    assert not any("jobs_state" in d or d.startswith("SCAN jobs") for d in details), details


def test_the_create_statement_itself_uses_them(store: Store) -> None:
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    create(store, "web-1", "trigger:1")
    store.db.conn.set_trace_callback(None)
    insert = next(s for s in seen if s.startswith("INSERT INTO jobs"))
    details = [row[3] for row in store.db.conn.execute(
        f"EXPLAIN QUERY PLAN {insert}").fetchall()]
    assert any("USING INDEX jobs_in_flight_name" in d for d in details), details
    assert not any("jobs_state" in d or d == "SCAN jobs" for d in details), details


def test_busy_by_ref_name_or_id_on_the_same_cloud_and_only_while_in_flight(
        store: Store) -> None:
    first, _ = create(store, "web-1", "trigger:1", cloud="lab")
    store.update_job(first.id, fields={"server_name": "web-1.example", "server_id": "uuid-1"})
    for ref in ("web-1", "web-1.example", "uuid-1"):
        with pytest.raises(ServerInUse) as refused:
            create(store, ref, f"trigger:{ref}", cloud="lab")
        assert refused.value.job.id == first.id
    other_cloud, created = create(store, "uuid-1", "trigger:other", cloud=None)
    assert created
    # The same trigger again is the same job (dedupe wins over busy), nothing written.
    again, created = create(store, "web-1", "trigger:1", cloud="lab")
    assert (again.id, created) == (first.id, False)
    store.transition(first.id, expected=jobs.QUEUED, target=jobs.CANCELLED, event="cancelled")
    later, created = create(store, "web-1", "trigger:later", cloud="lab")
    assert created and later.number == other_cloud.number + 1
    assert store.in_flight_for_server(["uuid-1"], "lab") == []
    assert [j.id for j in store.in_flight_for_server(["uuid-1", "web-1"], None)] == [
        other_cloud.id]
