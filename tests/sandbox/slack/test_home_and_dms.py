"""The emulator's Home tab (`views.publish`, `app_home_opened` in both transports, clicks on Home
buttons) and DMs (`conversations.open`, messages there), driven by the real slack_sdk client and a
real Bolt app. Slack's rules are cited in sandbox/slack/views.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack.deliver import SOCKET_MODE, Deliverer
from sandbox.slack.model import SlackWorkspace
from sandbox.slack.serve import running_slack
from tests.sandbox.slack.conftest import bolt_http
from tests.sandbox.slack.test_real_clients import eventually

TOKEN = "xoxb-sandbox"
SECRET = "bolt-signing-secret"


def home(*texts: str, **extra: Any) -> dict[str, Any]:
    return {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                     "text": t}}
                                       for t in texts], **extra}


@pytest.fixture
async def client(ws: SlackWorkspace) -> AsyncIterator[AsyncWebClient]:
    ws.limits.enabled = False
    async with running_slack(ws) as url:
        yield AsyncWebClient(token=TOKEN, base_url=url + "/api/")


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as err:
        await call
    return str(err.value.response["error"])


async def test_views_publish_stores_the_home_tab_per_user(ws: SlackWorkspace,
                                                         client: AsyncWebClient) -> None:
    first = await client.views_publish(user_id="U0ALICE", view=home("*2 jobs* running"))
    view = first["view"]
    assert view["type"] == "home" and view["team_id"] == "T0001" and view["hash"]
    assert view["app_id"] == "A0IMAGEBOT" and view["bot_id"] == "B0BOT"
    assert ws.home_views["U0ALICE"]["blocks"][0]["text"]["text"] == "*2 jobs* running"
    assert "U0BOB" not in ws.home_views  # one Home tab per user
    # Republished with the hash it was given: same view id, a new hash.
    again = await client.views_publish(user_id="U0ALICE", view=home("nothing running"),
                                       hash=view["hash"])
    assert again["view"]["id"] == view["id"] and again["view"]["hash"] != view["hash"]
    # The old hash is stale now (someone published in between): hash_conflict, view kept.
    assert await error_of(client.views_publish(user_id="U0ALICE", view=home("late"),
                                               hash=view["hash"])) == "hash_conflict"
    assert ws.home_views["U0ALICE"]["blocks"][0]["text"]["text"] == "nothing running"


@pytest.mark.parametrize(("view", "error"), [
    ({"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": []},
     "invalid_arguments"),
    ({"type": "home"}, "invalid_arguments"),
    (home(*["x"] * 101), "invalid_arguments"),
    (home("x", private_metadata="m" * 3001), "invalid_arguments"),
    (home("x", callback_id="c" * 256), "invalid_arguments"),
    (home("s" * 3001), "invalid_arguments"),  # a section's 3,000 characters, as in messages
    (home(*["t" * 2900] * 90), "view_too_large"),  # 100 blocks or fewer, but over 250 KB
])
async def test_views_publish_refuses_what_slack_refuses(view: dict[str, Any], error: str,
                                                        ws: SlackWorkspace,
                                                        client: AsyncWebClient) -> None:
    assert await error_of(client.views_publish(user_id="U0ALICE", view=view)) == error
    assert ws.home_views == {}


async def test_views_publish_needs_a_user_and_the_home_tab_enabled(
        ws: SlackWorkspace, client: AsyncWebClient) -> None:
    assert await error_of(client.views_publish(user_id="U0NOBODY", view=home("x"))) == \
        "invalid_arguments"
    assert await error_of(client.views_publish(user_id="U0BOT", view=home("x"))) == \
        "invalid_arguments"
    await client.views_publish(user_id="U0ALICE", view=home("x", external_id="home-alice"))
    assert await error_of(client.views_publish(
        user_id="U0BOB", view=home("x", external_id="home-alice"))) == "duplicate_external_id"
    ws.home_tab_enabled = False  # the manifest's features.app_home.home_tab_enabled: false
    assert await error_of(client.views_publish(user_id="U0BOB", view=home("x"))) == \
        "not_enabled"
    assert list(ws.home_views) == ["U0ALICE"]


async def test_conversations_open_gives_the_dm_and_messages_land_there(
        ws: SlackWorkspace, client: AsyncWebClient) -> None:
    ws.bot_scopes.add("im:write")
    opened = await client.conversations_open(users="U0CAROL")
    dm = opened["channel"]["id"]
    assert dm.startswith("D") and "no_op" not in opened.data
    again = await client.conversations_open(users="U0CAROL", return_im=True)
    assert again["no_op"] is True and again["already_open"] is True
    assert again["channel"]["id"] == dm and again["channel"]["is_im"] is True
    assert again["channel"]["user"] == "U0CAROL"
    posted = await client.chat_postMessage(channel=dm, text="Request R1 waits for you")
    # Reading a DM takes the im: scopes (the app requests im:history for its crash lookup).
    ws.bot_scopes.discard("im:history")
    assert await error_of(client.conversations_history(channel=dm)) == "missing_scope"
    ws.bot_scopes |= {"im:history", "im:read"}
    history = await client.conversations_history(channel=dm)
    assert [m["ts"] for m in history["messages"]] == [posted["ts"]]
    assert [m.text for m in ws.channel_messages(dm)] == ["Request R1 waits for you"]
    info = await client.conversations_info(channel=dm)
    assert info["channel"]["is_im"] is True and info["channel"]["is_member"] is True
    # The DM is Carol's and the bot's only.
    assert ws.channel(dm).members == {"U0CAROL", "U0BOT"}
    resumed = await client.conversations_open(channel=dm)
    assert resumed["channel"]["id"] == dm


async def test_conversations_open_refuses_what_slack_refuses(ws: SlackWorkspace,
                                                            client: AsyncWebClient) -> None:
    ws.bot_scopes.discard("im:write")  # an app installed without it
    with pytest.raises(SlackApiError) as err:
        await client.conversations_open(users="U0CAROL")
    assert err.value.response["error"] == "missing_scope"
    assert err.value.response["needed"] == "im:write"
    assert "chat:write" in err.value.response["provided"].split(",")
    ws.bot_scopes.add("im:write")
    # slack_sdk's own check stops an empty conversations_open(); the raw call reaches Slack.
    assert await error_of(client.api_call("conversations.open")) == "users_list_not_supplied"
    assert await error_of(client.conversations_open(users="U0NOBODY")) == "user_not_found"
    assert await error_of(client.conversations_open(users=",".join(["U0ALICE"] * 9))) == \
        "too_many_users"
    assert await error_of(client.conversations_open(channel="C0OPS")) == \
        "method_not_supported_for_channel_type"
    assert await error_of(client.conversations_open(channel="D0NOPE")) == "channel_not_found"
    assert not [c for c in ws.channels.values() if c.is_im]


def home_app(client: AsyncWebClient, seen: list[dict[str, Any]]) -> AsyncApp:
    """A Bolt app that publishes the Home tab on app_home_opened and counts Home clicks."""
    app = AsyncApp(signing_secret=SECRET, client=client)

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        seen.append(event)
        opened = 1 + sum(1 for e in seen if e["user"] == event["user"])
        await client.views_publish(user_id=event["user"], view={
            "type": "home", "blocks": [
                {"type": "section", "text": {"type": "mrkdwn",
                                             "text": f"Opened {opened - 1} time(s)"}},
                {"type": "actions", "elements": [
                    {"type": "button", "action_id": "approve", "value": "R1",
                     "text": {"type": "plain_text", "text": "Approve"}}]}]})

    @app.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        seen.append({"clicked": body["actions"][0]["value"],
                     "container": body["container"]["type"],
                     "response_url": body.get("response_url")})

    return app


async def open_twice_and_click(ws: SlackWorkspace, deliver: Deliverer,
                               seen: list[dict[str, Any]]) -> None:
    first = await deliver.open_home("alice")
    assert first.status_code == 200
    await eventually(lambda: "U0ALICE" in ws.home_views)
    assert "view" not in seen[0]  # nothing published before the first open
    await deliver.open_home("alice")
    await eventually(lambda: ws.home_views["U0ALICE"]["blocks"][0]["text"]["text"]
                     == "Opened 2 time(s)")
    # The second event carries the Home view as it was then.
    assert seen[1]["view"]["blocks"][0]["text"]["text"] == "Opened 1 time(s)"
    assert seen[1]["tab"] == "home" and seen[1]["channel"].startswith("D")
    await deliver.click_home("alice", "approve")
    await eventually(lambda: any("clicked" in s for s in seen))
    assert seen[-1] == {"clicked": "R1", "container": "view", "response_url": None}
    with pytest.raises(LookupError):
        await deliver.click_home("bob", "approve")  # Bob's Home tab was never published


async def test_app_home_opened_over_the_events_api(ws: SlackWorkspace) -> None:
    ws.limits.enabled = False
    seen: list[dict[str, Any]] = []
    async with running_slack(ws) as url:
        app = home_app(AsyncWebClient(token=TOKEN, base_url=url + "/api/"), seen)
        async with bolt_http(app) as http:
            deliver = Deliverer(ws, "http://bot.test/slack/events", SECRET, http=http)
            await open_twice_and_click(ws, deliver, seen)
            sent = deliver.deliveries[0]
            assert json.loads(sent.body)["type"] == "event_callback"
            assert json.loads(sent.body)["event"]["type"] == "app_home_opened"
            forged = await deliver.redeliver(sent, bad_signature=True)
            assert forged.status_code == 401
    assert [c.method for c in ws.calls()].count("views.publish") == 2


async def test_app_home_opened_over_socket_mode(ws: SlackWorkspace) -> None:
    ws.limits.enabled = False
    seen: list[dict[str, Any]] = []
    async with running_slack(ws) as url:
        client = AsyncWebClient(token=TOKEN, base_url=url + "/api/")
        app = home_app(client, seen)
        handler = AsyncSocketModeHandler(app, "xapp-sandbox", web_client=AsyncWebClient(
            token="xapp-sandbox", base_url=url + "/api/"))
        await handler.connect_async()
        try:
            await asyncio.wait_for(ws.socket_hub.connected.wait(), 10)
            await open_twice_and_click(ws, Deliverer(ws, SOCKET_MODE, SECRET), seen)
        finally:
            await handler.close_async()
    assert ws.events[0]["type"] == "event_callback" and len(ws.events) == 2
