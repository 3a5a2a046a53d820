"""Rackspace Scheduled Images (`--native`) end to end through the Slack app, against
`--api rackspace-legacy`: propose -> approve (someone else, in the channel) -> the scheduler
loop sets the cloud's `rax-si-image-schedule` (read back with our own HTTP GET on the
simulator, as the docs shape it) -> `/image schedules` lists it, and one set in the control
panel too; `off --native` disables; the limits are said plainly and privately; an OpenStack
cloud (no rax-si extension) gets a clear answer. Only clocks are fast; nothing is stubbed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bot.store import Store
from sandbox.cloud.app import create_app
from sandbox.cloud.model import stable_id
from sandbox.system import System, running_system
from tests.e2e.helpers import approval_message, parents, policy_file, thread_texts

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB", "U0CAROL"]
servers = ["web-*"]
"""
WEB1 = stable_id("server", "web-1")
WEB2 = stable_id("server", "web-2")
DB1 = stable_id("server", "db-1")


@asynccontextmanager
async def control_panel(system: System) -> AsyncIterator[httpx.AsyncClient]:
    """Our own client of the simulated cloud (not the bot's): logged in with the API key as
    the Rackspace control panel would be."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(system.world)),
                                 base_url="http://cloud.sandbox") as http:
        resp = await http.post("/identity/v2.0/tokens", json={"auth": {
            "RAX-KSKEY:apiKeyCredentials": {"username": "demo", "apiKey": "demo-api-key"}}})
        assert resp.status_code == 200
        http.headers["X-Auth-Token"] = resp.json()["access"]["token"]["id"]
        yield http


def si_path(server_id: str) -> str:
    return f"/compute/v2.1/servers/{server_id}/rax-si-image-schedule"


async def cloud_schedule(system: System, server_id: str) -> Any:
    """The server's schedule as the cloud answers `GET .../rax-si-image-schedule` (None: 404)."""
    async with control_panel(system) as http:
        resp = await http.get(si_path(server_id))
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200
    return resp.json()


def ephemeral_texts(system: System, user: str) -> list[str]:
    return [e.text or "" for e in system.workspace.ephemerals(user, "C0OPS")]


async def said_privately(system: System, user: str, words: str) -> str:
    return str(await system.wait_for(lambda: next(
        (t for t in ephemeral_texts(system, user) if words in t), None), within=15))


async def applied(system: System, request_id: str) -> bool:
    """Whether the loop has recorded the cloud's answer to the native request."""
    row = await system.runtime.store.run(Store.get_change_request, request_id)
    return row.applied_at is not None


async def approve(system: System, request_id: str) -> None:
    message = await system.wait_for(lambda: approval_message(system, request_id), within=15)
    await system.deliverer.click("bob", "C0OPS", message.ts, "cr_approve", request_id)


async def test_native_daily_weekly_and_off_through_approvals(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api="rackspace-legacy") as system:
        resp = await system.command("alice", "#ops", "schedule web-1 daily --keep 7 --native")
        assert resp.status_code == 200 and "Rackspace Scheduled Images" in resp.text
        message = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        shown = str(message.blocks)
        assert "Rackspace Scheduled Images" in shown and "the cloud picks" in shown
        assert "daily by Rackspace Scheduled Images, keeping 7 images" in shown
        assert "cr_approve" in shown
        # Nothing is set on the cloud before the approval.
        assert await cloud_schedule(system, WEB1) is None

        await approve(system, "R1")
        # Made by the scheduler loop, read back with the documented shape.
        assert await system.wait_for(lambda: cloud_schedule(system, WEB1), within=15) == {
            "image_schedule": {"retention": 7}}
        await system.settle()
        rewritten = approval_message(system, "R1")
        assert rewritten is not None and "cr_approve" not in str(rewritten.blocks)
        assert "set on the cloud" in str(rewritten.blocks)
        assert any("Rackspace Scheduled Images set on the cloud" in t
                   for t in thread_texts(system, rewritten.ts))
        # No bot schedule was made: the cloud runs this one.
        assert await system.runtime.store.run(Store.list_schedules) == []
        audit = [a.action for a in await system.runtime.store.run(Store.audit_rows)]
        assert "request_approved" in audit and "native_set" in audit

        # Weekly, switched in place (a POST replaces, per the docs).
        await system.command("alice", "#ops", "schedule web-1 weekly sat --keep 4 --native")
        await approve(system, "R2")

        async def weekly() -> bool:
            return await cloud_schedule(system, WEB1) == {
                "image_schedule": {"retention": 4, "day_of_week": "SATURDAY"}}

        await system.wait_for(weekly, within=15)

        # A schedule set in the control panel (not through the bot) shows up too; db-1's does
        # not: this channel's policy may touch web-* only.
        async with control_panel(system) as http:
            for server in (WEB2, DB1):
                done = await http.post(si_path(server),
                                       json={"image_schedule": {"retention": 3}})
                assert done.status_code == 200
        await system.command("alice", "#ops", "schedules")
        listing = await said_privately(system, "U0ALICE", "read from the cloud")
        assert "`web-1`: weekly on Saturday by Rackspace Scheduled Images, keeping 4" in listing
        assert "`web-2`: daily by Rackspace Scheduled Images, keeping 3 images" in listing
        assert "db-1" not in listing

        # Off.
        await system.command("alice", "#ops", "schedule web-1 off --native")
        await approve(system, "R3")

        async def gone() -> bool:
            return await cloud_schedule(system, WEB1) is None

        await system.wait_for(gone, within=15)
        await system.settle()
        assert "turned off on the cloud" in str(approval_message(system, "R3").blocks)
        # Nothing to turn off now: a clear private answer, no request.
        await system.command("alice", "#ops", "schedule web-1 off --native")
        await said_privately(system, "U0ALICE", "no Rackspace Scheduled Images to turn off")
        assert approval_message(system, "R4") is None


async def test_a_cloud_read_failure_is_a_short_note_in_the_listing(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api="rackspace-legacy") as system:
        # The bot's own schedules are read from SQLite: they are listed whatever the cloud does.
        system.world.inject("http", path="/servers/detail", status=503, count=None)
        resp = await system.command("alice", "#ops", "schedules")
        assert "No schedules." in resp.text
        note = await said_privately(system, "U0ALICE", "Rackspace Scheduled Images: could not")
        assert "unaffected" in note


async def test_the_limits_are_said_plainly_and_nothing_is_written(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api="rackspace-legacy") as system:
        cases = {
            "schedule web-1 daily at 02:30 --native": "no time of day: the cloud picks the hour",
            "schedule web-1 daily --tz Europe/Berlin --native": "the cloud picks the hour",
            "schedule web-* daily --native": "set per server",
            "schedule meta:role=web daily --native": "set per server",
            "schedule web-1 daily --verify --native": "drop --verify with --native",
        }
        for text, words in cases.items():
            resp = await system.command("alice", "#ops", text)
            assert resp.status_code == 200 and words in resp.text, (text, resp.text)
        # db-1 is outside this channel's servers: refused before the ack.
        resp = await system.command("alice", "#ops", "schedule db-1 daily --native")
        assert "may not" in resp.text or "not allowed" in resp.text, resp.text
        await system.settle()
        assert parents(system) == []
        assert await system.runtime.store.run(Store.list_change_requests) == []
        assert await cloud_schedule(system, WEB1) is None


async def test_native_on_openstack_is_a_clear_answer(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api="openstack") as system:
        await system.command("alice", "#ops", "schedule web-1 daily --keep 7 --native")
        text = await said_privately(system, "U0ALICE", "no Rackspace Scheduled Images")
        assert "--native" in text
        await system.settle()
        assert await system.runtime.store.run(Store.list_change_requests) == []
        assert parents(system) == []
        # And `/image schedules` there reads nothing from the cloud (an OpenStack login).
        resp = await system.command("alice", "#ops", "schedules")
        assert "No schedules." in resp.text


async def test_a_refusal_is_said_in_the_thread_and_an_outage_waits(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api="rackspace-legacy") as system:
        # The cloud refuses the change (403 on the POST): recorded once, said in the thread.
        system.world.inject("http", path="/rax-si-image-schedule$", method="POST", status=403,
                            count=1)
        await system.command("alice", "#ops", "schedule web-1 daily --keep 2 --native")
        await approve(system, "R1")

        await system.wait_for(lambda: applied(system, "R1"), within=15)
        await system.settle()
        message = approval_message(system, "R1")
        assert message is not None and "did not take the change" in str(message.blocks)
        assert any("did not take the change" in t for t in thread_texts(system, message.ts))
        assert await cloud_schedule(system, WEB1) is None
        audit = [a.action for a in await system.runtime.store.run(Store.audit_rows)]
        assert "native_failed" in audit and "native_set" not in audit

        # The cloud is down for a while: the change waits (nothing recorded), then is made.
        system.world.inject("http", path="/rax-si-image-schedule$", method="POST", status=503,
                            count=8)
        await system.command("alice", "#ops", "schedule web-1 daily --keep 2 --native")
        await approve(system, "R2")
        assert await system.wait_for(lambda: cloud_schedule(system, WEB1), within=30) == {
            "image_schedule": {"retention": 2}}
        # The cloud answered before the loop records it: wait for the record, not the cloud.
        await system.wait_for(lambda: applied(system, "R2"), within=15)
        row = await system.runtime.store.run(Store.get_change_request, "R2")
        assert row.apply_result is not None and row.apply_result.startswith("ok")


async def test_a_control_panel_change_after_the_proposal_makes_it_stale(tmp_path: Path) -> None:
    """The stale check of a native request: what the cloud said at the proposal is its old
    spec; changed on the cloud before the approval is carried out, nothing is written and the
    thread says why (like an out-of-date bot request, `approvals.decide`)."""
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, policy_path=policy, api="rackspace-legacy") as system:
        async with control_panel(system) as http:  # set before the bot is asked
            assert (await http.post(si_path(WEB1), json={"image_schedule": {
                "retention": 7}})).status_code == 200
        await system.command("alice", "#ops", "schedule web-1 weekly mon --keep 4 --native")
        message = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        assert "keeping 7" in str(message.blocks)
        # Someone changes it in the control panel meanwhile.
        async with control_panel(system) as http:
            assert (await http.post(si_path(WEB1), json={"image_schedule": {
                "retention": 3, "day_of_week": "SATURDAY"}})).status_code == 200
        await approve(system, "R1")

        await system.wait_for(lambda: applied(system, "R1"), within=15)
        await system.settle()
        # Nothing overwritten.
        assert await cloud_schedule(system, WEB1) == {
            "image_schedule": {"retention": 3, "day_of_week": "SATURDAY"}}
        row = await system.runtime.store.run(Store.get_change_request, "R1")
        assert row.apply_result is not None and row.apply_result.startswith("stale")
        why = ("the schedule of web-1 was changed in the control panel since this request "
               "(was: daily keep 7, now: weekly on Saturday keep 3); propose again")
        rewritten = approval_message(system, "R1")
        assert rewritten is not None and "cr_approve" not in str(rewritten.blocks)
        assert why in str(rewritten.blocks) and "R1 is out of date" in str(rewritten.blocks)
        assert any(why in t and "Nothing was changed on the cloud" in t
                   for t in thread_texts(system, rewritten.ts))
        audit = [a.action for a in await system.runtime.store.run(Store.audit_rows)]
        assert "native_stale" in audit and "native_set" not in audit

        # Proposed again against what the cloud says now, it goes through.
        await system.command("alice", "#ops", "schedule web-1 weekly mon --keep 4 --native")
        await approve(system, "R2")

        async def monday() -> bool:
            return await cloud_schedule(system, WEB1) == {
                "image_schedule": {"retention": 4, "day_of_week": "MONDAY"}}

        await system.wait_for(monday, within=15)
