"""The sandbox web view's JSON API and page, over the running system (no browser)."""

from __future__ import annotations

import re

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
