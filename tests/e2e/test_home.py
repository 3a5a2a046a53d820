"""The App Home tab end to end, over both transports (the Events API over HTTP and Socket
Mode): `app_home_opened` -> the bot publishes the user's Home (views.publish on the emulator);
a job's phase change republishes it; Approve on the Home decides the change request through
the channel card's path (`direct=True`), the channel card is rewritten, the Home republished."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.serve import connect_socket_mode
from bot.slack.home_view import APPROVE_ACTION, REJECT_ACTION
from bot.store import Store
from sandbox.slack.deliver import SOCKET_MODE, Deliverer
from sandbox.system import SIGNING_SECRET, System, running_system
from tests.e2e.helpers import approval_message, policy_file

POLICY = """
[channels.C0OPS]
approvers = ["U0BOB"]
"""


@contextlib.asynccontextmanager
async def transport(system: System, kind: str) -> AsyncIterator[Deliverer]:
    """What delivers to the bot: the system's HTTP deliverer, or one over Socket Mode."""
    if kind == "http":
        yield system.deliverer
        return
    handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
    try:
        await system.workspace.socket_hub.connected.wait()
        yield Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET)
    finally:
        await handler.close_async()


def home_text(system: System, user: str) -> str:
    """Every text of the Home view last published for `user` ("" when none)."""
    view = system.workspace.home_views.get(user)
    if view is None:
        return ""
    out: list[str] = []
    for block in view["blocks"]:
        text = block.get("text")
        if isinstance(text, dict):
            out.append(text.get("text", ""))
        out += [e.get("text", "") for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return "\n".join(out)


def home_buttons(system: System, user: str) -> list[tuple[str, str]]:
    view = system.workspace.home_views.get(user) or {"blocks": []}
    return [(e["action_id"], e.get("value", "")) for b in view["blocks"]
            if b.get("type") == "actions" for e in b["elements"]]


def publishes(system: System) -> list[Any]:
    return [c for c in system.workspace.calls("views.publish") if c.status == 200]


@pytest.mark.parametrize("kind", ["http", "socket"])
async def test_home_shows_a_running_job_and_follows_its_phases(kind: str) -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system, \
            transport(system, kind) as slack:
        answer = await slack.open_home("alice")
        assert answer.status_code == 200  # a listener took it (no 404)
        await system.wait_for(lambda: "Nothing is running" in home_text(system, "U0ALICE"))
        opened = len(publishes(system))

        # The job never leaves the upload: it stays "running" for the rest of the test.
        system.world.inject("stuck", server="web-1", task_state="image_uploading")
        await system.command("alice", "#ops", "create web-1 --now")
        # No second app_home_opened: the phase changes alone republish Alice's Home.
        await system.wait_for(lambda: "uploading the image" in home_text(system, "U0ALICE"))
        text = home_text(system, "U0ALICE")
        assert "*J1*" in text and "writes may resume since" in text
        assert "/archives/C0OPS/p" in text  # linked to its thread
        assert len(publishes(system)) > opened
        # Bob is in #ops too, but only a tab that was opened is kept fresh.
        assert "U0BOB" not in system.workspace.home_views
        await slack.open_home("bob")
        await system.wait_for(lambda: "*J1*" in home_text(system, "U0BOB"))


@pytest.mark.parametrize("kind", ["http", "socket"])
async def test_approve_on_the_home_tab(tmp_path: Path, kind: str) -> None:
    policy = policy_file(tmp_path, POLICY)
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system, \
            transport(system, kind) as slack:
        await slack.open_home("alice")
        await system.command("alice", "#ops", "schedule web-1 daily at 03:00")
        await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        await system.wait_for(lambda: "waiting for a decision" in home_text(system, "U0ALICE"))
        assert home_buttons(system, "U0ALICE") == []  # her own request: not hers to decide

        await slack.open_home("carol")  # in #ops, but not an approver there: no buttons
        await system.wait_for(lambda: "No change request waits for you" in home_text(
            system, "U0CAROL"))
        assert home_buttons(system, "U0CAROL") == [] and "R1" not in home_text(system, "U0CAROL")
        await slack.open_home("bob")
        await system.wait_for(lambda: home_buttons(system, "U0BOB"))
        assert home_buttons(system, "U0BOB") == [(APPROVE_ACTION, "R1"), (REJECT_ACTION, "R1")]
        clicked = await slack.click_home("bob", APPROVE_ACTION, "R1")
        assert clicked.status_code == 200

        row = await system.runtime.store.run(Store.get_change_request, "R1")
        assert row.status == "approved" and row.decided_by == "U0BOB"

        def card_done() -> bool:
            message = approval_message(system, "R1")
            return message is not None and "Approved" in str(message.blocks) and \
                "cr_approve" not in str(message.blocks)

        await system.wait_for(card_done)  # the channel card, rewritten as for any decision
        await system.wait_for(lambda: "You approved R1" in home_text(system, "U0BOB"))
        assert home_buttons(system, "U0BOB") == []
        await system.wait_for(lambda: "approved by" in home_text(system, "U0ALICE"))
        assert "S1" in home_text(system, "U0BOB")  # the schedule, with its next run
        assert "next " in home_text(system, "U0BOB")
        schedules = await system.runtime.store.run(Store.list_schedules)
        assert [s.id for s in schedules] == ["S1"]
