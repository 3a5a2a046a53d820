"""response_url posts: ephemeral/in_channel, replace/delete original, 5 uses, 30 minutes."""

from __future__ import annotations

import asyncio

import httpx

from sandbox.slack.model import SlackWorkspace
from tests.sandbox.slack.conftest import ManualClock

BUTTONS = [{"type": "actions", "block_id": "b", "elements": [
    {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "Go"}}]}]


async def test_five_uses_then_used_url(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    ru = ws.new_response_url("C0OPS", "U0BOB", "command")
    url = ws.response_url(ru)
    assert url.startswith("http://slack.test/response/")
    for i in range(5):
        r = await api.post(url, json={"text": f"reply {i}"})
        assert r.status_code == 200 and r.json()["ok"] is True
    sixth = await api.post(url, json={"text": "one too many"})
    assert sixth.status_code == 404 and sixth.json()["error"] == "used_url"
    assert [e.text for e in ws.ephemerals("U0BOB")] == [f"reply {i}" for i in range(5)]


async def test_expires_after_30_minutes(api: httpx.AsyncClient, ws: SlackWorkspace,
                                        clock: ManualClock) -> None:
    ru = ws.new_response_url("C0OPS", "U0BOB", "command")
    clock.advance(30 * 60)
    assert (await api.post(ws.response_url(ru), json={"text": "just in time"})).status_code == 200
    clock.advance(1)
    late = await api.post(ws.response_url(ru), json={"text": "late"})
    assert late.status_code == 404 and late.json()["error"] == "expired_url"
    unknown = await api.post("/response/T0001/9/nope", json={"text": "x"})
    assert unknown.status_code == 404


async def test_in_channel_even_where_bot_is_not_member(api: httpx.AsyncClient,
                                                      ws: SlackWorkspace) -> None:
    ru = ws.new_response_url("G0SECRET", "U0ALICE", "command")
    r = await api.post(ws.response_url(ru), json={"response_type": "in_channel", "text": "hi"})
    assert r.status_code == 200
    assert [m.text for m in ws.channel_messages("G0SECRET")] == ["hi"]
    # A command's later replace_original replaces what the url posted last.
    await api.post(ws.response_url(ru), json={"replace_original": True, "text": "hi, edited"})
    [msg] = ws.channel_messages("G0SECRET")
    assert msg.text == "hi, edited" and msg.edits[0].text == "hi"


async def test_action_replace_and_delete_original(api: httpx.AsyncClient,
                                                  ws: SlackWorkspace) -> None:
    msg = ws.post_message("C0OPS", text="approve?", blocks=BUTTONS)
    ru = ws.new_response_url("C0OPS", "U0ALICE", "action", message_ts=msg.ts)
    r = await api.post(ws.response_url(ru), json={"replace_original": "true",
                                                  "text": "approved by alice"})
    assert r.status_code == 200
    assert msg.text == "approved by alice" and msg.blocks is None and len(msg.edits) == 1
    eph = ws.post_ephemeral("C0OPS", "U0ALICE", text="only you", blocks=BUTTONS)
    ru2 = ws.new_response_url("C0OPS", "U0ALICE", "action", message_ts=eph.ts,
                              is_ephemeral=True)
    await api.post(ws.response_url(ru2), json={"delete_original": True})
    assert ws.ephemerals("U0ALICE") == []
    await api.post(ws.response_url(ru), json={"delete_original": True})
    assert ws.channel_messages("C0OPS") == []


async def test_bad_payloads(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    ru = ws.new_response_url("C0OPS", "U0BOB", "command")
    empty = await api.post(ws.response_url(ru), json={"response_type": "ephemeral"})
    assert empty.status_code == 400 and empty.json()["error"] == "no_text"
    blocks = await api.post(ws.response_url(ru), json={"text": "x", "blocks": [{}]})
    assert blocks.status_code == 400 and blocks.json()["error"] == "invalid_blocks"
    assert ru.uses == 0 and ws.ephemerals("U0BOB") == []


async def test_slow_responses_hold_the_next_posts_then_answer_as_usual(
        api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    ru = ws.new_response_url("C0OPS", "U0BOB", "command")
    url = ws.response_url(ru)
    refused = await api.post("/_emu/slow-responses", json={"seconds": -1})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_arguments"
    set_up = await api.post("/_emu/slow-responses", json={"seconds": 1.0, "count": 1})
    assert set_up.json() == {"ok": True, "slow_responses": 1}
    held = asyncio.create_task(api.post(url, json={"text": "slow"}))
    for _ in range(200):  # until the emulator has the post
        if not ws.slow_responses_left:
            break
        await asyncio.sleep(0.005)
    assert not held.done() and ws.ephemerals("U0BOB") == []  # held, not shown yet
    assert (await held).json()["ok"] is True
    assert [e.text for e in ws.ephemerals("U0BOB")] == ["slow"]
    quick = await api.post(url, json={"text": "quick"})  # the count is used up
    assert quick.json()["ok"] is True and ws.state()["faults"]["slow_responses"] == 0


async def test_a_fault_scripted_for_response_url_answers_its_next_post_only(
        api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    ru = ws.new_response_url("C0OPS", "U0BOB", "command")
    url = ws.response_url(ru)
    assert (await api.post("/_emu/faults", json={"method": "response_url", "status": 429,
                                                 "error": "ratelimited", "retry_after": 2})
            ).json()["ok"] is True
    # A fault for every method is the Web API's: it leaves response_urls alone.
    await api.post("/_emu/faults", json={"error": "internal_error", "count": 5})
    limited = await api.post(url, json={"text": "too soon"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert ws.ephemerals("U0BOB") == []  # nothing shown
    for i in range(5):  # and no use of the URL spent: all five still work
        assert (await api.post(url, json={"text": f"reply {i}"})).status_code == 200
    assert len(ws.ephemerals("U0BOB")) == 5
