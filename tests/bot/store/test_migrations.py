"""The migrations: a database built in one go has the schema of one upgraded from every earlier
version, and the migrations are literal SQL (never derived from a live dataclass)."""

from __future__ import annotations

import ast
import inspect
import re
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.imaging.jobs import JOB_FIELDS
from bot.store import Store
from bot.store import migrations as migrations_module
from bot.store.migrations import migrations

SCHEMAS = Path(__file__).parent / "schemas"
NAMES = [m.name for m in migrations._migrations]
# v<n>.sql: an empty database as the code of a main-line commit with n migrations made it.
OLD_VERSIONS = sorted(SCHEMAS.glob("v*.sql"), key=lambda p: int(p.stem[1:]))


def schema(path: Path) -> dict[tuple[str, str], str | None]:
    """(type, name) -> the CREATE statement SQLite keeps for it."""
    conn = sqlite3.connect(path)
    try:
        return {(kind, name): sql for kind, name, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%'")}
    finally:
        conn.close()


def folded(sql: str | None) -> str | None:
    """`sql` with layout folded away: white space runs to one space, none around ( ) ,"""
    if sql is None:
        return None
    return re.sub(r"\s*([(),])\s*", r"\1", re.sub(r"\s+", " ", sql)).strip()


@pytest.fixture
def fresh(tmp_path: Path) -> dict[tuple[str, str], str | None]:
    Store(tmp_path / "fresh.db").close()
    return schema(tmp_path / "fresh.db")


def test_there_is_a_saved_database_of_every_earlier_version() -> None:
    assert [p.stem for p in OLD_VERSIONS] == [f"v{n}" for n in range(1, len(NAMES) + 1)]


@pytest.mark.parametrize("applied", range(1, len(NAMES)))
def test_upgrading_from_each_step_gives_the_schema_of_a_new_database(
        tmp_path: Path, fresh: dict[tuple[str, str], str | None], applied: int) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before=NAMES[applied])
    assert len(migrations.applied(db)) == applied
    db.close()
    Store(path).close()
    assert schema(path) == fresh  # to the letter


@pytest.mark.parametrize("saved", OLD_VERSIONS, ids=lambda p: p.stem)
def test_a_database_made_by_an_earlier_version_upgrades_to_the_new_schema(
        tmp_path: Path, fresh: dict[tuple[str, str], str | None], saved: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(saved.read_text())
    # One job, in the columns every version has, made before the upgrade.
    conn.execute("INSERT INTO jobs (seq, id, state, server_ref, requested_by, channel, "
                 "created_at, updated_at) VALUES (3, 'J3', 'queued', 'web-1', 'U1', 'C1', "
                 "'2026-11-01T00:00:00.000000+00:00', '2026-11-01T00:00:00.000000+00:00')")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        old = store.get_job("J3")
        assert old.server_ref == "web-1"
        # m007 marks the jobs made before it as announced (their card went out with the row).
        made_before_m007 = NAMES.index("m007_job_announced") >= int(saved.stem[1:])
        assert (old.announced_at == old.created_at) is made_before_m007
        job, _ = store.create_job(server_ref="web-2", requested_by="U1", channel="C1",
                                  state="queued", cloud="lab", channel_name="ops")
        assert job.id == "J4"  # m005: the sequence starts past the rows
        assert store.get_job("J4").cloud == "lab"
    finally:
        store.close()
    # Earlier versions wrote m001's jobs columns in another layout (derived from `Job`):
    # the statements are the same but for white space.
    upgraded = schema(path)
    assert upgraded.keys() == fresh.keys()
    assert {k: folded(v) for k, v in upgraded.items()} == {k: folded(v) for k, v in fresh.items()}


def test_a_new_database_has_a_column_for_every_job_field(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")
    try:
        columns = {row[1] for row in store.db.execute("PRAGMA table_info(jobs)")}
    finally:
        store.close()
    assert columns - {"seq"} == set(JOB_FIELDS)  # a new Job field needs a new migration


def test_the_migrations_are_literal_sql() -> None:
    tree = ast.parse(inspect.getsource(migrations_module))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert imported <= {"__future__", "sqlite_utils", "sqlite_utils.migrations"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)]  # no f-strings
    executed = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute) and n.func.attr == "execute"]
    assert len(executed) > 20
    for call in executed:
        sql = call.args[0]
        assert isinstance(sql, ast.Constant) and isinstance(sql.value, str), ast.unparse(call)
