"""The Web API surface over httpx (in-process): semantics, errors, limits, faults, recording."""

from __future__ import annotations

import json

import httpx
import pytest

from sandbox.slack.model import BOT_USER_ID, SlackWorkspace
from tests.sandbox.slack.conftest import ManualClock


async def call(api: httpx.AsyncClient, method: str, **params: object) -> httpx.Response:
    return await api.post(f"/api/{method}", json=params)


async def test_auth_test_and_tokens(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    r = await api.post("/api/auth.test")
    assert r.json() == {"ok": True, "url": "https://sandbox.slack.com/", "team": "Sandbox",
                        "user": "imagebot", "team_id": "T0001", "user_id": "U0BOT",
                        "bot_id": "B0BOT", "is_enterprise_install": False}
    bad = await api.post("/api/auth.test", headers={"Authorization": "Bearer xoxb-nope"})
    assert bad.json() == {"ok": False, "error": "invalid_auth"}
    none = await api.post("/api/auth.test", headers={"Authorization": ""})
    assert none.json()["error"] == "not_authed"
    # A token form field works too (older clients).
    form = await api.post("/api/auth.test", data={"token": "xoxb-test"},
                          headers={"Authorization": ""})
    assert form.json()["ok"] is True
    assert [c.error for c in ws.calls("auth.test")] == [None, "invalid_auth", "not_authed", None]


async def test_post_thread_and_broadcast(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    ws.limits.enabled = False
    parent = (await call(api, "chat.postMessage", channel="C0OPS", text="parent")).json()
    assert parent["ok"] and parent["channel"] == "C0OPS"
    assert parent["message"]["bot_id"] == "B0BOT" and parent["message"]["user"] == BOT_USER_ID
    r1 = (await call(api, "chat.postMessage", channel="C0OPS", text="step 1",
                     thread_ts=parent["ts"])).json()
    # Replying to a reply lands under the same parent, as in Slack.
    r2 = (await call(api, "chat.postMessage", channel="#ops", text="done",
                     thread_ts=r1["ts"], reply_broadcast=True)).json()
    assert r2["message"]["thread_ts"] == parent["ts"]
    assert r2["message"]["subtype"] == "thread_broadcast"
    assert parent["ts"] < r1["ts"] < r2["ts"]
    assert [m.text for m in ws.channel_messages("C0OPS")] == ["parent", "done"]
    assert [m.text for m in ws.thread("C0OPS", parent["ts"])] == ["step 1", "done"]
    missing = (await call(api, "chat.postMessage", channel="C0OPS", text="x",
                          thread_ts="1.000001")).json()
    assert missing["error"] == "thread_not_found"


async def test_form_encoded_blocks(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    r = await api.post("/api/chat.postMessage",
                       data={"channel": "C0OPS", "text": "hi", "blocks": json.dumps(blocks)})
    assert r.json()["ok"] is True
    assert ws.channel_messages("C0OPS")[0].blocks == blocks
    broken = await api.post("/api/chat.postMessage",
                            data={"channel": "C0OPS", "text": "hi", "blocks": "[{"})
    assert broken.json()["error"] == "invalid_blocks"


async def test_post_errors(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    ws.limits.enabled = False
    async def err(**params: object) -> str:
        body = (await call(api, "chat.postMessage", **params)).json()
        assert body["ok"] is False
        return str(body["error"])

    assert await err(channel="C0NOPE", text="x") == "channel_not_found"
    assert await err(channel="G0SECRET", text="x") == "not_in_channel"
    assert await err(channel="C0OPS") == "no_text"
    assert await err(channel="C0OPS", text="x" * 40_001) == "msg_too_long"
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}
    assert await err(channel="C0OPS", text="x", blocks=[section] * 51) == "invalid_blocks"
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}
    assert await err(channel="C0OPS", text="x", blocks=[long_section]) == "invalid_blocks"
    # The limits themselves are allowed.
    ok = await call(api, "chat.postMessage", channel="C0OPS", text="x" * 40_000,
                    blocks=[section] * 49 + [{"type": "section",
                                              "text": {"type": "mrkdwn", "text": "y" * 3000}}])
    assert ok.json()["ok"] is True
    assert len(ws.channel_messages("C0OPS")) == 1
    assert len(ws.calls("chat.postMessage")) == 7


async def test_public_channel_needs_chat_write_public(api: httpx.AsyncClient,
                                                      ws: SlackWorkspace) -> None:
    ws.channels["C0OPS"].members.discard(BOT_USER_ID)
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).json()["ok"]
    ws.bot_scopes.discard("chat:write.public")
    r = await call(api, "chat.postMessage", channel="C0OPS", text="x")
    assert r.json()["error"] == "not_in_channel"
    ws.channels["G0SECRET"].members.add(BOT_USER_ID)
    assert (await call(api, "chat.postMessage", channel="G0SECRET", text="x")).json()["ok"]


async def test_update_rules(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    posted = (await call(api, "chat.postMessage", channel="C0OPS", text="v1",
                         blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "b1"}}]
                         )).json()
    ts = posted["ts"]
    r = (await call(api, "chat.update", channel="C0OPS", ts=ts, text="v2")).json()
    assert r["ok"] and r["text"] == "v2" and r["ts"] == ts
    # Blocks are kept when only text changes, replaced when given.
    msg = ws.channel_messages("C0OPS")[0]
    assert msg.blocks and msg.blocks[0]["text"]["text"] == "b1"
    await call(api, "chat.update", channel="C0OPS", ts=ts, text="v3", blocks=[])
    assert msg.blocks == [] and [e.text for e in msg.edits] == ["v1", "v2"]
    assert r["message"]["edited"]["user"] == BOT_USER_ID
    too_long = await call(api, "chat.update", channel="C0OPS", ts=ts, text="z" * 4001)
    assert too_long.json()["error"] == "msg_too_long"
    assert msg.text == "v3"
    nope = await call(api, "chat.update", channel="C0OPS", ts="1.000001", text="x")
    assert nope.json()["error"] == "message_not_found"
    human = ws.post_message("C0OPS", text="mine", user="U0ALICE")
    theirs = await call(api, "chat.update", channel="C0OPS", ts=human.ts, text="x")
    assert theirs.json()["error"] == "cant_update_message"
    # Ephemerals cannot be updated.
    eph = (await call(api, "chat.postEphemeral", channel="C0OPS", user="U0BOB",
                      text="psst")).json()
    again = await call(api, "chat.update", channel="C0OPS", ts=eph["message_ts"], text="x")
    assert again.json()["error"] == "message_not_found"


async def test_ephemeral(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    parent = (await call(api, "chat.postMessage", channel="C0OPS", text="p")).json()
    r = (await call(api, "chat.postEphemeral", channel="C0OPS", user="U0BOB", text="psst",
                    thread_ts=parent["ts"])).json()
    assert r["ok"] and r["message_ts"] > parent["ts"]
    [eph] = ws.ephemerals("U0BOB")
    assert (eph.channel, eph.text, eph.thread_ts) == ("C0OPS", "psst", parent["ts"])
    assert ws.ephemerals("U0ALICE") == []
    assert ws.channel_messages("C0OPS")[0].text == "p" and len(ws.all_messages("C0OPS")) == 1
    ws.add_user(ws.users["U0BOB"].__class__("U0DAVE", "dave", "Dave"))
    out = await call(api, "chat.postEphemeral", channel="C0OPS", user="U0DAVE", text="x")
    assert out.json()["error"] == "user_not_in_channel"
    secret = await call(api, "chat.postEphemeral", channel="G0SECRET", user="U0BOB", text="x")
    assert secret.json()["error"] == "not_in_channel"


async def test_lookups(api: httpx.AsyncClient) -> None:
    info = (await api.get("/api/conversations.info", params={"channel": "C0OPS"})).json()
    assert info["channel"]["name"] == "ops" and info["channel"]["is_member"] is True
    secret = (await api.get("/api/conversations.info", params={"channel": "G0SECRET"})).json()
    assert secret == {"ok": False, "error": "channel_not_found"}
    user = (await api.get("/api/users.info", params={"user": "U0CAROL"})).json()
    assert user["user"]["name"] == "carol" and user["user"]["is_bot"] is False
    assert (await api.get("/api/users.info", params={"user": "U0X"})).json()["error"] == \
        "user_not_found"
    group = (await api.get("/api/usergroups.users.list",
                           params={"usergroup": "S0APPROVERS"})).json()
    assert group == {"ok": True, "users": ["U0ALICE", "U0CAROL"]}
    nogroup = await api.get("/api/usergroups.users.list", params={"usergroup": "S0NO"})
    assert nogroup.json()["error"] == "no_such_subteam"
    assert (await api.post("/api/chat.delete")).json()["error"] == "unknown_method"


async def test_post_message_rate_limit_per_channel(api: httpx.AsyncClient, ws: SlackWorkspace,
                                                   clock: ManualClock) -> None:
    statuses = [(await call(api, "chat.postMessage", channel="C0OPS", text="x")).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await call(api, "chat.postMessage", channel="C0OPS", text="x")
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    # Another channel has its own bucket; names and ids share one.
    assert (await call(api, "chat.postMessage", channel="C0ALERTS", text="x")).status_code == 200
    assert (await call(api, "chat.postMessage", channel="#ops", text="x")).status_code == 429
    clock.advance(1.0)
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).status_code == 200
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).status_code == 429
    assert len(ws.channel_messages("C0OPS")) == 4
    assert [c.status for c in ws.calls("chat.postMessage")].count(429) == 4


async def test_update_tier3_and_scale(api: httpx.AsyncClient, ws: SlackWorkspace,
                                      clock: ManualClock) -> None:
    ws.limits.enabled = False
    ts = (await call(api, "chat.postMessage", channel="C0OPS", text="x")).json()["ts"]
    ws.limits.enabled = True
    ok = 0
    while (await call(api, "chat.update", channel="C0OPS", ts=ts, text="y")).status_code == 200:
        ok += 1
    assert ok == 10  # tier 3 burst
    r = await call(api, "chat.update", channel="C0OPS", ts=ts, text="y")
    assert r.headers["Retry-After"] == "2"  # 50/min refills one call every 1.2 s
    clock.advance(1.2)
    assert (await call(api, "chat.update", channel="C0OPS", ts=ts, text="y")).status_code == 200
    # Tighter scale: a tenth of the rate means a 12 s wait.
    ws.limits.scale = 0.1
    r = await call(api, "chat.update", channel="C0OPS", ts=ts, text="y")
    assert r.status_code == 429 and r.headers["Retry-After"] == "12"
    control = await api.post("/_emu/ratelimits", json={"enabled": False})
    assert control.json()["enabled"] is False
    assert (await call(api, "chat.update", channel="C0OPS", ts=ts, text="y")).status_code == 200


async def test_the_workspace_post_cap_is_set_over_the_control_plane(
        api: httpx.AsyncClient, ws: SlackWorkspace, clock: ManualClock) -> None:
    for wrong in ({"workspace_posts_per_minute": 0},
                  {"workspace_posts_per_minute": 60, "workspace_burst": 0.5}):
        bad = await api.post("/_emu/ratelimits", json=wrong)
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_arguments"
    assert ws.limits.workspace_posts is None
    on = await api.post("/_emu/ratelimits", json={"workspace_posts_per_minute": 60,
                                                  "workspace_burst": 1})
    assert on.json()["workspace_posts_per_minute"] == 60
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).status_code == 200
    capped = await call(api, "chat.postMessage", channel="C0ALERTS", text="x")
    assert capped.status_code == 429 and capped.headers["Retry-After"] == "1"
    clock.advance(1.0)
    assert (await call(api, "chat.postMessage", channel="C0ALERTS", text="x")).status_code == 200
    off = await api.post("/_emu/ratelimits", json={"workspace_posts_per_minute": None})
    assert off.json()["workspace_posts_per_minute"] is None
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).status_code == 200


async def test_outage_and_storm(api: httpx.AsyncClient, ws: SlackWorkspace,
                                clock: ManualClock) -> None:
    r = await api.post("/_emu/outage", json={"seconds": 30})
    assert r.json()["ok"] is True
    down = await call(api, "auth.test")
    assert down.status_code == 503 and down.headers["Retry-After"] == "30"
    clock.advance(29.5)
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).status_code == 503
    clock.advance(0.5)
    assert (await call(api, "auth.test")).status_code == 200
    await api.post("/_emu/ratelimit-storm", json={"calls": 2, "retry_after": 7})
    first = await call(api, "auth.test")
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert (await call(api, "users.info", user="U0BOB")).status_code == 429
    assert (await call(api, "users.info", user="U0BOB")).status_code == 200
    assert ws.channel_messages("C0OPS") == []
    assert [c.status for c in ws.calls()] == [503, 503, 200, 429, 429, 200]


async def test_inspection(api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    parent = (await call(api, "chat.postMessage", channel="C0OPS", text="p")).json()
    await call(api, "chat.postMessage", channel="C0OPS", text="r", thread_ts=parent["ts"])
    await call(api, "chat.postEphemeral", channel="C0OPS", user="U0BOB", text="e")
    got = (await api.get("/_emu/messages", params={"channel": "C0OPS"})).json()
    assert [m["text"] for m in got["messages"]] == ["p", "r"]
    assert got["ephemerals"][0]["for"] == "U0BOB"
    state = (await api.get("/_emu/state")).json()
    assert {c["id"]: c["messages"] for c in state["channels"]}["C0OPS"] == 2
    assert state["calls"] == 3 and state["ephemerals"] == 1
    assert (await api.get("/_emu/messages", params={"channel": "C0NO"})).status_code == 404


async def test_views_open_trigger_rules(api: httpx.AsyncClient, ws: SlackWorkspace,
                                        clock: ManualClock) -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Reason"}, "blocks": []}
    tid = ws.new_trigger_id()
    r = await api.post("/api/views.open", data={"trigger_id": tid, "view": json.dumps(modal)})
    assert r.json()["ok"] is True and r.json()["view"]["id"].startswith("V")
    again = await call(api, "views.open", trigger_id=tid, view=modal)
    assert again.json()["error"] == "exchanged_trigger_id"
    late = ws.new_trigger_id()
    clock.advance(3.5)
    assert (await call(api, "views.open", trigger_id=late, view=modal)).json()["error"] == \
        "expired_trigger_id"
    assert (await call(api, "views.open", trigger_id="1.2.x", view=modal)).json()["error"] == \
        "invalid_trigger_id"
    assert len(ws.views) == 1 and ws.views[0]["trigger_id"] == tid


async def test_metadata_and_history_find_a_message_again(api: httpx.AsyncClient,
                                                         ws: SlackWorkspace) -> None:
    meta = {"event_type": "imagebot_outbox", "event_payload": {"outbox_id": 7}}
    parent = (await call(api, "chat.postMessage", channel="C0OPS", text="parent",
                         metadata=meta)).json()
    reply = (await call(api, "chat.postMessage", channel="C0OPS", text="reply",
                        thread_ts=parent["ts"],
                        metadata={"event_type": "imagebot_outbox",
                                  "event_payload": {"outbox_id": 8}})).json()
    history = (await call(api, "conversations.history", channel="C0OPS",
                          include_all_metadata="true")).json()
    assert [m["ts"] for m in history["messages"]] == [parent["ts"]]  # replies stay in threads
    assert history["messages"][0]["metadata"] == meta
    plain = (await call(api, "conversations.history", channel="C0OPS")).json()
    assert "metadata" not in plain["messages"][0]
    thread = (await call(api, "conversations.replies", channel="C0OPS", ts=parent["ts"],
                         include_all_metadata="true")).json()
    assert [m["ts"] for m in thread["messages"]] == [parent["ts"], reply["ts"]]
    assert thread["messages"][1]["metadata"]["event_payload"] == {"outbox_id": 8}
    bad = (await call(api, "chat.postMessage", channel="C0OPS", text="x",
                      metadata={"event_payload": {}})).json()
    assert bad == {"ok": False, "error": "invalid_metadata_schema"}
    hidden = (await call(api, "conversations.history", channel="G0SECRET")).json()
    assert hidden["error"] == "channel_not_found"


async def test_scripted_faults_answer_ok_false_or_a_page_then_stop(
        api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    r = await api.post("/_emu/faults", json={"method": "chat.postMessage",
                                             "error": "internal_error", "count": 2})
    assert r.json() == {"ok": True, "scripted": 2}
    await api.post("/_emu/faults", json={"method": "chat.postMessage", "body": "html",
                                         "status": 502})
    assert (await call(api, "auth.test")).json()["ok"] is True  # other methods unaffected
    for _ in range(2):
        got = await call(api, "chat.postMessage", channel="C0OPS", text="x")
        assert got.status_code == 200 and got.json() == {"ok": False, "error": "internal_error"}
    page = await call(api, "chat.postMessage", channel="C0OPS", text="x")
    assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
    assert (await call(api, "chat.postMessage", channel="C0OPS", text="x")).json()["ok"]
    assert len(ws.channel_messages("C0OPS")) == 1
    assert (await api.post("/_emu/faults", json={"body": "xml"})).status_code == 400
    await api.post("/_emu/faults", json={"error": "fatal_error", "count": 5})
    assert (await api.delete("/_emu/faults")).json()["ok"]
    assert (await call(api, "auth.test")).json()["ok"] is True


async def test_faults_reach_every_method_auth_test_and_socket_mode_included(
        api: httpx.AsyncClient, ws: SlackWorkspace) -> None:
    """A bot's start-up calls fail like any other: auth.test with a transient ok:false and then
    Slack's real rate-limit shape (HTTP 429 + Retry-After), apps.connections.open with 503."""
    await api.post("/_emu/faults", json={"method": "auth.test", "error": "internal_error"})
    await api.post("/_emu/faults", json={"method": "auth.test", "error": "ratelimited",
                                         "status": 429, "retry_after": 2})
    await api.post("/_emu/faults", json={"method": "apps.connections.open",
                                         "error": "service_unavailable", "status": 503})
    first = await call(api, "auth.test")
    assert first.status_code == 200 and first.json() == {"ok": False, "error": "internal_error"}
    limited = await call(api, "auth.test")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert (await call(api, "auth.test")).json()["user_id"] == "U0BOT"
    app_level = {"Authorization": "Bearer xapp-sandbox"}
    down = await api.post("/api/apps.connections.open", headers=app_level)
    assert down.status_code == 503 and down.json()["error"] == "service_unavailable"
    up = await api.post("/api/apps.connections.open", headers=app_level)
    assert up.json()["ok"] is True and up.json()["url"].startswith("ws://")
    # The fault is taken only by a call that would otherwise reach the method.
    await api.post("/_emu/faults", json={"method": "apps.connections.open"})
    wrong = await api.post("/api/apps.connections.open")  # the bot token: refused first
    assert wrong.json()["error"] == "invalid_auth" and ws.state()["faults"]["scripted"] == 1
    # A misspelt method would script nothing: refused.
    typo = await api.post("/_emu/faults", json={"method": "auth.tset"})
    assert typo.status_code == 400 and "auth.tset" in typo.text
    assert [c.error for c in ws.calls("auth.test")] == ["internal_error", "ratelimited", None]


@pytest.mark.parametrize(("method", "params", "needed"), [
    ("conversations.info", {"channel": "C0OPS"}, "channels:read"),
    ("conversations.members", {"channel": "G0SECRET"}, "groups:read"),
    ("conversations.history", {"channel": "C0OPS"}, "channels:history"),
    ("conversations.replies", {"channel": "G0SECRET", "ts": "1.0"}, "groups:history"),
    ("users.info", {"user": "U0ALICE"}, "users:read"),
    ("bots.info", {"bot": "B0BOT"}, "users:read"),
    ("usergroups.users.list", {"usergroup": "S0APPROVERS"}, "usergroups:read"),
    ("chat.postMessage", {"channel": "C0OPS", "text": "x"}, "chat:write"),
])
async def test_a_method_without_its_scope_is_missing_scope(
        method: str, params: dict[str, str], needed: str, api: httpx.AsyncClient,
        ws: SlackWorkspace) -> None:
    """docs.slack.dev/reference/methods/<method>, "Required scopes": a conversation method
    needs the scope of the conversation's kind (channels:* public, groups:* private)."""
    ws.channel("G0SECRET").members.add("U0BOT")
    ws.bot_scopes.discard(needed)
    refused = (await call(api, method, **params)).json()
    assert refused["ok"] is False and refused["error"] == "missing_scope"
    assert refused["needed"] == needed and needed not in refused["provided"].split(",")
    ws.bot_scopes.add(needed)
    again = (await call(api, method, **params)).json()
    assert again.get("error") != "missing_scope"
