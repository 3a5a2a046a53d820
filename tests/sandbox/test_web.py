"""The sandbox web view's JSON API and page, over the running system (no browser)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

import httpx
import pytest

from bot.store import Store
from sandbox.console.run import POLICY
from sandbox.system import running_system
from sandbox.web.app import create_web_app, running_web
from sandbox.web.view import channel_view, emojify


def test_emojify_known_shortcodes_only() -> None:
    assert emojify(":white_check_mark: done :x: :not_an_emoji:") == "✅ done ❌ :not_an_emoji:"


async def test_web_api_creates_and_starts_an_image() -> None:
    async with running_system(speed=200, policy_path=POLICY, slack_rate_scale=20) as system:
        transport = httpx.ASGITransport(app=create_web_app(system))
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as web:
            page = await web.get("/")
            assert page.status_code == 200 and "<title>imagebot sandbox</title>" in page.text
            assert "default-src 'self'" in page.headers["content-security-policy"]

            view = (await web.get("/api/view", params={"user": "alice",
                                                        "channel": "ops"})).json()
            assert view["user"] == "alice" and view["channel_id"] == "C0OPS"
            assert {"ops", "ops-alerts"} <= {c["name"] for c in view["channels"]}
            assert {"alice", "bob", "carol"} <= {u["name"] for u in view["users"]}
            assert view["messages"] == []

            sent = await web.post("/api/command", json={"user": "alice", "channel": "ops",
                                                        "text": "/image create web-1"})
            assert sent.json() == {"ok": True, "status": 200}
            await system.wait_for(lambda: any(
                b.get("action_id") == "job_start"
                for m in system.workspace.channel_messages("C0OPS") for b in _buttons(m)))
            view = (await web.get("/api/view", params={"user": "alice",
                                                        "channel": "ops"})).json()
            assert view["messages"][0].get("command") and \
                view["messages"][0]["text"] == "/image create web-1"
            parent = next(m for m in view["messages"] if m["blocks"])
            buttons = [e for b in parent["blocks"] for e in b.get("elements", [])
                       if e.get("kind") == "button"]
            assert [b["label"] for b in buttons] == ["Start snapshot", "Cancel"]
            # Bob sees the channel message but not Alice's ephemeral answer.
            bob = (await web.get("/api/view", params={"user": "bob", "channel": "ops"})).json()
            assert not any(m["ephemeral"] for m in bob["messages"])
            assert any(m["ephemeral"] for m in view["messages"])

            start = buttons[0]
            clicked = await web.post("/api/click", json={
                "user": "alice", "channel": "ops", "ts": start["ts"],
                "action_id": start["action_id"], "value": start["value"],
                "block_id": start["block_id"]})
            assert clicked.json()["ok"] is True
            await system.settle(20)
            job = await system.runtime.store.run(Store.get_job, "J1")
            assert job.state == "succeeded"
            view = (await web.get("/api/view", params={"user": "alice",
                                                        "channel": "ops"})).json()
            parent = next(m for m in view["messages"] if m["blocks"])
            assert parent["edited"]
            assert any(_all_text(r).startswith("✅ Image") for r in parent["replies"])


def _all_text(view: dict) -> str:
    """A message view's text, or its blocks' texts when it has blocks."""
    if not view["blocks"]:
        return view["text"]
    return "\n".join(b.get("text", "") for b in view["blocks"])


def _buttons(message):  # type: ignore[no-untyped-def]
    for block in message.blocks or []:
        yield from [e for e in block.get("elements") or [] if e.get("type") == "button"]


@pytest.mark.parametrize("path, body, content_type, status, error", [
    ("/api/command", '{"user": "alice", "channel": "ops", "text": "status"}',
     "application/x-www-form-urlencoded", 400, "application/json"),
    ("/api/command", "not json", "application/json", 400, "not JSON"),
    ("/api/command", "[1]", "application/json", 400, "JSON object"),
    ("/api/command", '{"user": "", "channel": "ops"}', "application/json", 400, "`user`"),
    ("/api/command", '{"user": "mallory", "channel": "ops", "text": "x"}', "application/json",
     404, "user_not_found"),
    ("/api/command", '{"user": "alice", "channel": "nowhere", "text": "x"}',
     "application/json", 404, "channel_not_found"),
    ("/api/click", '{"user": "alice", "channel": "ops", "ts": "1.2", "action_id": "job_start"}',
     "application/json", 404, "no message"),
    ("/api/click", '{"user": "alice", "channel": "ops", "ts": 5, "action_id": "a"}',
     "application/json", 400, "`ts`"),
])
async def test_web_api_rejects_bad_requests(path: str, body: str, content_type: str,
                                            status: int, error: str) -> None:
    async with running_system(speed=200, policy_path=POLICY) as system:
        transport = httpx.ASGITransport(app=create_web_app(system))
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as web:
            response = await web.post(path, content=body,
                                      headers={"Content-Type": content_type})
            assert response.status_code == status
            assert error in response.json()["error"]
        assert system.workspace.commands == []


async def test_view_keeps_untrusted_text_as_data_and_page_never_uses_html_sinks() -> None:
    async with running_system(speed=200, policy_path=POLICY) as system:
        # As Slack stores what a person typed: <, > and & escaped as entities.
        evil = '&lt;img src=x onerror="alert(1)"&gt; &lt;b&gt; :x:'
        system.workspace.post_message("C0OPS", text=evil, user="U0BOB")
        view = channel_view(system.workspace, "ops", "alice")
        # Entities are decoded to the characters they stand for; they stay plain text.
        assert view["messages"][-1]["text"] == '<img src=x onerror="alert(1)"> <b> ❌'
        async with running_web(system, port=0) as url:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
            async with httpx.AsyncClient() as client:
                page = (await client.get(url)).text
                got = (await client.get(url + "api/view?user=alice&channel=ops")).json()
        assert got["messages"][-1]["text"] == view["messages"][-1]["text"]
        script = page[page.index("<script>"):]
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script


async def test_web_view_shows_each_user_their_home_tab_and_their_dms_only() -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from sandbox.system import BOT_TOKEN

    async with running_system(speed=200) as system:
        ws = system.workspace
        ws.bot_scopes.add("im:write")
        slack = AsyncWebClient(token=BOT_TOKEN, base_url=system.slack_url + "/api/")
        transport = httpx.ASGITransport(app=create_web_app(system))
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as web:
            async def view(user: str, channel: str = "ops") -> httpx.Response:
                return await web.get("/api/view", params={"user": user, "channel": channel})

            async def home(user: str) -> dict[str, object]:
                return (await web.get("/api/home", params={"user": user})).json()

            assert await home("alice") == {"user": "alice", "published": False, "blocks": []}
            # Opening the tab is Slack's app_home_opened, sent to the bot as Slack sends it;
            # the page learns what the bot answered.
            opened = await web.post("/api/home/open", json={"user": "alice"})
            assert opened.status_code == 200 and isinstance(opened.json()["status"], int)
            assert ws.events[-1]["event"]["type"] == "app_home_opened"
            assert ws.events[-1]["event"]["user"] == "U0ALICE"

            # What a bot publishes for Alice (views.publish) is her Home tab, not Bob's.
            await slack.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Running now"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "J1 <@U0BOB>: web-1"}},
                {"type": "actions", "elements": [
                    {"type": "button", "action_id": "approve", "value": "R1",
                     "text": {"type": "plain_text", "text": "Approve"}}]}]})
            alice_home = await home("alice")
            assert alice_home["published"] is True
            blocks = alice_home["blocks"]
            assert isinstance(blocks, list)
            assert [b.get("text") for b in blocks[:2]] == ["Running now", "J1 @bob: web-1"]
            assert blocks[2]["elements"][0]["label"] == "Approve"
            assert (await home("bob"))["published"] is False
            assert (await view("alice")).json()["home"] == {"published": True}
            click = await web.post("/api/click", json={"user": "alice", "view": "home",
                                                      "action_id": "approve", "value": "R1"})
            assert click.status_code == 200
            sent = system.deliverer.last
            payload = json.loads(dict(parse_qsl(sent.body))["payload"])
            assert sent.kind == "block_actions" and payload["container"]["type"] == "view"
            assert payload["actions"][0]["value"] == "R1" and "response_url" not in payload
            assert (await web.post("/api/click", json={
                "user": "bob", "view": "home", "action_id": "approve"})).status_code == 404

            # A DM the bot opened with Carol is in Carol's sidebar, and only hers.
            dm = (await slack.conversations_open(users="U0CAROL"))["channel"]["id"]
            await slack.chat_postMessage(channel=dm, text="Request R1 waits for you")
            carol = (await view("carol")).json()
            assert carol["dms"] == [{"id": dm, "name": "imagebot", "messages": 1}]
            assert dm not in {c["id"] for c in carol["channels"]}
            in_dm = (await view("carol", dm)).json()
            assert in_dm["is_dm"] is True and in_dm["channel"] == "imagebot"
            assert [m["text"] for m in in_dm["messages"]] == ["Request R1 waits for you"]
            # Alice has the DM that opening the app's Home gave her (the event named it).
            alice_dms = (await view("alice")).json()["dms"]
            assert alice_dms == [{"id": ws.events[0]["event"]["channel"], "name": "imagebot",
                                  "messages": 0}]
            assert (await view("alice", dm)).status_code == 404  # Carol's: not hers to read
            # Naming a user does not open a DM behind anyone's back.
            assert (await view("bob", "U0BOB")).status_code == 404
            assert not [c for c in ws.channels.values() if c.is_im and "U0BOB" in c.members]
