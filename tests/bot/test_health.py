"""Issue 14, what the bot shows about itself: `/healthz` through the real HTTP app when the
database cannot be written.

The full disk is made honestly, with SQLite's own limit: the bot's store connections are capped
at the pages the file has (`PRAGMA max_page_count`, a per-connection limit) and the room left in
them is used up, so the next write that needs a page fails with SQLITE_FULL, exactly as on a disk
with no free block. (A damaged database file is covered in tests/bot/test_http_edge.py.)
"""

from __future__ import annotations

import dataclasses
import sqlite3

import httpx

from bot.config import Settings
from bot.store import Store
from bot.wiring import Runtime, http_app
from sandbox.system import running_system

# SQLite's default cap (pages); what a connection has before a test lowers it.
UNCAPPED = 1073741823


def cap_at_current_size(store: Store) -> int:
    """No more pages for this connection than the file has now; returns that page count."""
    pages = int(store.db.execute("PRAGMA page_count").fetchone()[0])
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    return pages


def fill_up(store: Store) -> int:
    """The database as a full disk leaves it: no free page inside the file (VACUUM leaves
    none), no new page to be had (capped at its size), and the room left in its pages used up
    until a real write fails with SQLITE_FULL. Returns how many filler rows fitted."""
    store.db.conn.execute("VACUUM")
    cap_at_current_size(store)
    rows = 0
    while True:
        try:
            store.db.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                                  [f"filler-{rows}", "x" * 300])
        except sqlite3.OperationalError as exc:
            assert exc.sqlite_errorname == "SQLITE_FULL", exc
            assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
            return rows
        rows += 1


def uncap(store: Store) -> None:
    """Space again (the operator freed the disk)."""
    store.db.execute(f"PRAGMA max_page_count = {UNCAPPED}")


async def get_health(runtime: Runtime) -> httpx.Response:
    app = http_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bot") as client:
        return await client.get("/healthz")


def update_in_place(store: Store) -> None:
    store.db.conn.execute("UPDATE meta SET value = ? WHERE key = 'filler-0'", ["y" * 300])


async def test_a_full_database_makes_health_503_and_says_only_not_ok() -> None:
    async with running_system(speed=200) as system:
        runtime = system.runtime
        assert runtime.identity is not None  # health waits for auth.test like commands do
        await system.wait_for(lambda: runtime.identity and runtime.identity.current)
        healthy = await get_health(runtime)
        assert healthy.status_code == 200 and healthy.json() == {"ok": True}

        # Both of the bot's connections (engine/notifier/health, and the listeners') are full:
        # no free page is left and no new one can be had (fill_up saw SQLITE_FULL).
        assert await runtime.store.run(fill_up) > 0
        await runtime.listeners.store.run(cap_at_current_size)
        # The trap of a probe that only rewrites a row: that still fits (no new page needed),
        # so such a probe said ok while the next write that needs a page fails.
        await runtime.store.run(update_in_place)

        public = await get_health(runtime)
        assert public.status_code == 503
        assert public.json() == {"ok": False}  # nothing else: no check names, no errors

        # Details only when the operator asks for them (IMAGEBOT_HEALTH_DETAILS=1).
        asked = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "IMAGEBOT_HEALTH_DETAILS": "1"})
        assert asked.health_details is True
        runtime.settings = dataclasses.replace(runtime.settings,
                                               health_details=asked.health_details)
        detailed = await get_health(runtime)
        body = detailed.json()
        assert detailed.status_code == 503 and body["ok"] is False
        assert {name for name, check in body["checks"].items() if not check["ok"]} == {"db"}
        assert "http" not in detailed.text  # no compute / image URLs, even in detail

        # Room again (the operator freed the disk): health recovers without a restart, and
        # the probe left nothing behind.
        await runtime.store.run(uncap)
        await runtime.listeners.store.run(uncap)
        assert (await get_health(runtime)).status_code == 200
        later = await system.command("alice", "#ops", "create web-1 --now")
        assert "J1" in later.text
        leftovers = await runtime.store.run(Store.get_meta, "health_probe_room")
        assert leftovers is None
