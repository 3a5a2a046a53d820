"""Issue 13 §2 and §3 end to end: signed slash commands and clicks into the real Bolt app, the
Slack emulator and the simulated cloud. A channel sees and touches only its own jobs, schedules
and change requests; a disabled channel answers one line; the text command and the button go
through the same check; name-keyed policies hold on clicks and alerts; approvals are decided
only in their own channel, by its members."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx

from bot.imaging.jobs import PhaseDeadlines
from bot.policy import DISABLED_TEXT
from bot.store import Store
from sandbox.slack.limits import RateLimiter
from sandbox.slack.model import BOT_USER_ID, Channel, Message, SlackWorkspace, User
from sandbox.system import System, running_system

OPS = "C0OPS"
DEV = "C0DEV"
ALERTS = "C0ALERTS"


def workspace_with_dev() -> SlackWorkspace:
    """The seeded workspace plus #dev (alice, bob, carol, the bot) and dave, who is in no
    channel."""
    ws = SlackWorkspace(rate_limits=RateLimiter(scale=20))
    ws.add_user(User("U0DAVE", "dave", "Dave Outsider"))
    ws.add_channel(Channel(DEV, "dev", members={"U0ALICE", "U0BOB", "U0CAROL", BOT_USER_ID}))
    return ws


def said(response: httpx.Response) -> str:
    """The ack text of a slash command."""
    assert response.status_code == 200
    # Bolt answers a text-only ack as plain text, one with blocks as JSON.
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json()["text"])
    return response.text


def parents(system: System, channel: str) -> list[Message]:
    return [m for m in system.workspace.channel_messages(channel) if not m.thread_ts]


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imagebot.toml"
    path.write_text(text)
    return path


async def test_list_and_status_show_only_the_channels_jobs_and_all_is_for_admins(
        tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[default]\nadmins = ["U0CAROL"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        assert "J1" in said(await system.command("alice", "#secret", "create web-1"))
        assert "J2" in said(await system.command("alice", "#ops", "create web-2"))
        await system.wait_for(lambda: parents(system, OPS))

        listed = said(await system.command("bob", "#ops", "list"))
        assert "J2" in listed and "J1" not in listed
        assert "J1" in said(await system.command("alice", "#secret", "list"))
        assert "J2" not in said(await system.command("alice", "#secret", "list"))
        # A job of another channel is "not found here", in the very words of a missing job.
        other = said(await system.command("bob", "#ops", "status J1"))
        missing = said(await system.command("bob", "#ops", "status J99"))
        assert other.replace("J1", "J?") == missing.replace("J99", "J?")
        assert "no job J1 in this channel" in other and "web-1" not in other
        assert "secret" not in other and "U0ALICE" not in other
        assert "J2" in said(await system.command("bob", "#ops", "status J2"))
        assert "No jobs for web-1 in this channel" in said(
            await system.command("bob", "#ops", "status web-1"))
        assert "J1" not in said(await system.command("bob", "#ops", "list web-1"))

        refused = said(await system.command("bob", "#ops", "list --all"))
        assert "admins" in refused and "J1" not in refused
        everything = said(await system.command("carol", "#ops", "list --all"))
        assert "J1" in everything and "J2" in everything
        assert "web-1" in said(await system.command("carol", "#ops", "status J1 --all"))


async def test_images_only_for_servers_the_channel_may_touch(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[channels.C0OPS]\nservers = ["web-*"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        refused = said(await system.command("alice", "#ops", "images db-1"))
        assert "may not image `db-1`" in refused
        assert "Looking up" in said(await system.command("alice", "#ops", "images web-1"))
        db1 = system.world.find_server("db-1")
        assert "Looking up" in said(await system.command("alice", "#ops", f"images {db1.id}"))
        await system.settle()
        answers = [e.text or "" for e in system.workspace.ephemerals("U0ALICE", OPS)]
        assert any("web-1" in a and "image" in a.lower() and "may not" not in a
                   for a in answers), answers
        # By UUID the server is resolved first, then refused by its name.
        assert any("may not image `db-1`" in a for a in answers[-3:]), answers


async def test_a_disabled_channel_answers_every_command_with_one_line(tmp_path: Path) -> None:
    # Keyed by name: the slash command's channel_name finds it.
    policy = policy_file(tmp_path, '[channels."#dev"]\nenabled = false\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy,
                              workspace=workspace_with_dev()) as system:
        await system.command("alice", "#ops", "create web-1")
        await system.command("alice", "#ops", "schedule web-2 daily at 03:00")
        await system.wait_for(lambda: len(parents(system, OPS)) >= 2, within=15)
        request = (await system.runtime.store.run(Store.list_change_requests))[0]
        before_calls = len(system.workspace.calls())
        commands = ["status", "status J1", "list", "images web-1", "schedules", "approvals",
                    f"approve {request.id}", f"reject {request.id}", "cancel J1",
                    "create web-1", "schedule web-1 daily", "list --all"]
        for text in commands:
            assert said(await system.command("dave", "#dev", text)) == DISABLED_TEXT, text
        assert "/image create" in said(await system.command("dave", "#dev", "help"))
        await system.settle()
        # Nothing else: no message, no follow-up answer, no job, the request still pending.
        assert system.workspace.all_messages(DEV) == []
        assert [e.text for e in system.workspace.ephemerals("U0DAVE", DEV)
                if e.text != DISABLED_TEXT and "/image create" not in (e.text or "")] == []
        assert not [c for c in system.workspace.calls()[before_calls:]
                    if c.method in ("chat.postMessage", "chat.postEphemeral")
                    and c.params.get("channel") == DEV]
        assert [j.id for j in await system.runtime.store.run(Store.list_jobs, limit=50)] == ["J1"]
        assert (await system.runtime.store.run(Store.get_change_request, request.id)).status == "pending"
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == "awaiting_confirmation"


async def test_cancel_text_and_button_share_one_check_and_the_card_names_who(
        tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[channels.C0OPS]\ncreators = ["U0ALICE", "U0CAROL"]\n'
                                   '[channels.C0ALERTS]\nenabled = false\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        await system.command("alice", "#ops", "create web-1")
        await system.wait_for(lambda: parents(system, OPS))
        [parent] = parents(system, OPS)
        # The card is posted once the server is resolved (no correcting edit follows).
        # Another channel: not found there (not cancelled from afar).
        elsewhere = said(await system.command("alice", "#secret", "cancel J1"))
        assert "no job J1 in this channel" in elsewhere
        assert said(await system.command("carol", "#ops-alerts", "cancel J1")) == DISABLED_TEXT
        # A click whose payload names another channel (a forged or stale button) is refused
        # the same way as the text command from there.
        forged = await system.runtime.listeners.click("job_cancel", "J1", "U0ALICE",
                                                      channel="G0SECRET", channel_name="secret")
        assert forged is not None and forged.text == "There is no job J1 in this channel."
        # Not the requester and not allowed to create here: refused, by text and by button.
        by_text = said(await system.command("bob", "#ops", "cancel J1"))
        assert "may not start or cancel" in by_text
        await system.deliverer.click("bob", OPS, parent.ts, "job_cancel", "J1")
        await system.settle()
        by_button = [e.text or "" for e in system.workspace.ephemerals("U0BOB", OPS)][-1]
        assert by_button == by_text
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == "awaiting_confirmation"

        await system.deliverer.click("carol", OPS, parent.ts, "job_cancel", "J1")
        await system.settle()
        job = await system.runtime.store.run(Store.get_job, "J1")
        assert (job.state, job.cancelled_by) == ("cancelled", "U0CAROL")
        [event] = [e for e in await system.runtime.store.run(Store.job_events, "J1")
                   if e.event == "cancelled"]
        assert event.actor == "U0CAROL"
        card = system.workspace.find_message(OPS, parent.ts)
        shown = " ".join(b.get("text", {}).get("text", "") for b in card.blocks or [])
        assert "Cancelled by <@U0CAROL> before anything was sent to the cloud." in shown

        # The requester may cancel her own job by text; the same check lets her.
        await system.command("alice", "#ops", "create web-2")
        assert "cancelled" in said(await system.command("alice", "#ops", "cancel J2"))
        await system.settle()
        assert (await system.runtime.store.run(Store.get_job, "J2")).cancelled_by == "U0ALICE"


async def test_clicks_and_alerts_use_a_policy_keyed_by_channel_name(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[channels."#dev"]\ncreators = ["U0ALICE"]\n'
                                   'notify_channel = "C0ALERTS"\nmention = "<!here>"\n')
    deadlines = PhaseDeadlines(snapshot=timedelta(seconds=1))
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy,
                              workspace=workspace_with_dev(), deadlines=deadlines) as system:
        await system.command("alice", "#dev", "create web-1")
        await system.wait_for(lambda: parents(system, DEV))
        [parent] = parents(system, DEV)
        assert (await system.runtime.store.run(Store.get_job, "J1")).channel_name == "dev"
        # Before: the click looked the policy up by id only and let bob start alice's job.
        await system.deliverer.click("bob", DEV, parent.ts, "job_start", "J1")
        await system.settle()
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == "awaiting_confirmation"
        assert any("may not start" in (e.text or "")
                   for e in system.workspace.ephemerals("U0BOB", DEV))

        # A job stored without its name (made before m006) after a restart (nothing cached):
        # the click asks Slack for the name.
        await system.runtime.store.run(Store.update_job, "J1", fields={"channel_name": None})
        assert system.runtime.listeners.channels.directory is not None
        system.runtime.listeners.channels.directory._names.clear()
        await system.deliverer.click("bob", DEV, parent.ts, "job_start", "J1")
        await system.settle()
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == "awaiting_confirmation"
        assert system.workspace.calls("conversations.info")

        # The alert of a stuck job goes where the name-keyed policy says, with its mention.
        system.world.inject("stuck", server="web-2", task_state="image_snapshot")
        await system.command("alice", "#dev", "create web-2 --now")
        await system.settle()
        assert (await system.runtime.store.run(Store.get_job, "J2")).error_code == "stuck"
        [alerted] = system.workspace.channel_messages(ALERTS)
        assert "J2" in (alerted.text or "") and "<!here>" in (alerted.text or "")


def approval_message(system: System, request_id: str) -> Message | None:
    for message in system.workspace.channel_messages(OPS):
        if f"Schedule change {request_id} " in (message.text or ""):
            return message
    return None


async def test_approvals_are_decided_in_their_own_channel_by_its_members(
        tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[default]\nadmins = ["U0CAROL"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy,
                              workspace=workspace_with_dev()) as system:
        await system.command("alice", "#ops", "schedule web-1 daily at 03:00")
        message = await system.wait_for(lambda: approval_message(system, "R1"), within=15)
        store = system.runtime.store

        # Listed only where it was proposed.
        assert "R1" in said(await system.command("bob", "#ops", "approvals"))
        assert "R1" not in said(await system.command("bob", "#dev", "approvals"))
        assert "web-1" not in said(await system.command("bob", "#dev", "schedules"))
        assert "R1" in said(await system.command("bob", "#ops", "schedules"))
        assert "R1" in said(await system.command("carol", "#dev", "approvals --all"))
        assert "R1" in said(await system.command("carol", "#dev", "schedules --all"))
        assert "admins" in said(await system.command("bob", "#dev", "approvals --all"))

        # From another channel: no such request there, nothing decided.
        elsewhere = said(await system.command("bob", "#dev", "approve R1"))
        assert "no change request R1 in this channel" in elsewhere
        assert system.runtime.schedules is not None
        forged = await system.runtime.schedule_commands.on_click("cr_approve", "R1", "U0BOB",
                                                         channel=DEV, channel_name="dev")
        assert forged is not None and "no change request R1 in this channel" in forged.text
        # dave is not a member of #ops: "any member other than the requester" excludes him,
        # by text and by button.
        outsider = said(await system.command("dave", "#ops", "approve R1"))
        assert "not a member" in outsider
        await system.deliverer.click("dave", OPS, message.ts, "cr_approve", "R1")
        await system.settle()
        assert any("not a member" in (e.text or "")
                   for e in system.workspace.ephemerals("U0DAVE", OPS))
        assert (await store.run(Store.get_change_request, "R1")).status == "pending"
        assert system.workspace.calls("conversations.members")
        refusals = [a for a in await store.run(Store.audit_rows, "R1") if a.action == "decision_refused"]
        assert len(refusals) >= 3

        # A member decides; the schedule exists only now, and only #ops lists it.
        await system.deliverer.click("carol", OPS, message.ts, "cr_approve", "R1")
        await system.settle()
        assert (await store.run(Store.get_change_request, "R1")).status == "approved"
        assert "web-1" in said(await system.command("bob", "#ops", "schedules"))
        assert "web-1" not in said(await system.command("bob", "#dev", "schedules"))
        assert "web-1" in said(await system.command("carol", "#dev", "schedules --all"))
