"""Text transcripts: parent as edited, thread indented, Block Kit as text, numbered buttons."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from sandbox.slack.deliver import Deliverer
from sandbox.slack.model import SlackWorkspace
from sandbox.slack.render import mrkdwn_to_text, render_channel, render_transcript
from tests.sandbox.slack.conftest import ManualClock
from tests.sandbox.slack.test_deliver import FakeBot

APPROVAL = [
    {"type": "header", "text": {"type": "plain_text", "text": "Snapshot web-1"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "Requested by <@U0BOB>"},
     "fields": [{"type": "mrkdwn", "text": "*Job* J1"}, {"type": "mrkdwn", "text": "*Cloud* dfw"}]},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "approvers <!subteam^S0APPROVERS>"}]},
    {"type": "actions", "block_id": "job_J1", "elements": [
        {"type": "button", "action_id": "job_start", "value": "J1",
         "text": {"type": "plain_text", "text": "Start snapshot"}},
        {"type": "button", "action_id": "job_cancel", "value": "J1",
         "text": {"type": "plain_text", "text": "Cancel"}}]},
]


def build(ws: SlackWorkspace, clock: ManualClock) -> tuple[str, str]:
    ws.limits.enabled = False
    status = ws.post_message("C0OPS", text="J1 queued")
    clock.advance(1)
    approval = ws.post_message("C0OPS", text="Approve J1?", blocks=APPROVAL)
    clock.advance(4)
    ws.post_message("C0OPS", text="uploading", thread_ts=status.ts)
    ws.post_ephemeral("C0OPS", "U0BOB", text="you asked for this", thread_ts=status.ts)
    clock.advance(60)
    ws.post_message("C0OPS", text="J1 done", thread_ts=status.ts, reply_broadcast=True)
    ws.update_message("C0OPS", status.ts, text="J1 *succeeded*")
    ws.post_ephemeral("C0OPS", "U0ALICE", text="alice only")
    return status.ts, approval.ts


async def test_transcript_for_a_user(ws: SlackWorkspace, clock: ManualClock) -> None:
    status_ts, approval_ts = build(ws, clock)
    text = render_channel(ws, "C0OPS", user="bob")
    assert text == (
        "#ops (C0OPS)\n"
        "[22:46:40] imagebot (edited): J1 *succeeded*\n"
        "    ↳ [22:46:45] imagebot: uploading\n"
        "    ↳ [22:46:45] imagebot (only visible to you): you asked for this\n"
        "    ↳ [22:47:45] imagebot (also sent to the channel): J1 done\n"
        "[22:46:41] imagebot:\n"
        "    # Snapshot web-1\n"
        "    Requested by @bob\n"
        "    *Job* J1 | *Cloud* dfw\n"
        "    › approvers @approvers\n"
        "    [1 Start snapshot] [2 Cancel]\n"
        "[22:47:45] imagebot (replied to a thread): J1 done\n"
    )
    start = ws.button(1)
    assert (start.message_ts, start.action_id, start.value, start.block_id) == \
        (approval_ts, "job_start", "J1", "job_J1")
    assert ws.button(2).action_id == "job_cancel"
    with pytest.raises(KeyError):
        ws.button(3)


async def test_ephemerals_only_for_their_user(ws: SlackWorkspace, clock: ManualClock) -> None:
    build(ws, clock)
    alice = render_transcript(ws, "C0OPS", user="U0ALICE").text
    assert "alice only" in alice and "you asked for this" not in alice
    nobody = render_transcript(ws, "C0OPS").text
    assert "only visible" not in nobody
    # Ephemeral buttons are numbered too, and remember whose they are.
    ws.post_ephemeral("C0OPS", "U0ALICE", text="confirm", blocks=APPROVAL[3:])
    t = render_transcript(ws, "C0OPS", user="alice")
    assert [b.ephemeral_for for b in t.buttons.values()] == [None, None, "U0ALICE", "U0ALICE"]


def test_mrkdwn_links(ws: SlackWorkspace) -> None:
    assert mrkdwn_to_text(ws, "<@U0CAROL> in <#C0ALERTS> see <https://x.test|docs> &lt;3") == \
        "@carol in #ops-alerts see docs (https://x.test) <3"
    assert mrkdwn_to_text(ws, "<!here> <https://x.test>") == "@here https://x.test"


async def test_pressing_a_numbered_button(ws: SlackWorkspace, clock: ManualClock) -> None:
    build(ws, clock)
    render_channel(ws, "C0OPS", user="alice")
    bot = FakeBot()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bot.app())) as http:
        deliverer = Deliverer(ws, "http://bot.test/slack/events", "s", http=http, clock=clock)
        await deliverer.press(2, "alice")
    payload = json.loads(parse_qs(bot.requests[0][0].decode())["payload"][0])
    assert payload["actions"][0]["action_id"] == "job_cancel"
    assert payload["actions"][0]["text"]["text"] == "Cancel"
    assert payload["container"]["message_ts"] == ws.button(2).message_ts
