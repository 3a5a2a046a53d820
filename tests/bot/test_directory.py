"""`ChannelDirectory` against the Slack emulator on a loopback port, through the bot's own
`SlackWeb` (slack_sdk's AsyncWebClient). conversations.members is paginated and strict as
Slack's (https://docs.slack.dev/reference/methods/conversations.members: `limit` default 100,
`response_metadata.next_cursor`, errors invalid_limit / invalid_cursor / channel_not_found)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MembershipUnknown
from bot.metrics import Metrics
from bot.slack.directory import ChannelDirectory
from bot.slack.web import SlackWeb, make_web_client
from sandbox.slack.model import BOT_USER_ID, Channel, SlackWorkspace, User
from sandbox.slack.serve import running_slack
from tests.helpers import Clock

TOKEN = "xoxb-sandbox"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackWorkspace, str]]:
    ws = SlackWorkspace()
    many = {f"U{n:05d}X" for n in range(450)}
    for uid in many:
        ws.add_user(User(uid, uid.lower(), uid))
    ws.add_channel(Channel("C0BIG", "big", members=many | {BOT_USER_ID}))
    async with running_slack(ws, bot_token=TOKEN) as url:
        yield ws, url


async def test_members_follow_every_page_and_are_cached_for_the_ttl(
        slack: tuple[SlackWorkspace, str]) -> None:
    ws, url = slack
    clock = Clock(NOW)
    directory = ChannelDirectory(SlackWeb(make_web_client(TOKEN, f"{url}/api/"), Metrics()),
                                 clock, ttl=timedelta(seconds=60))
    members = await directory.members("C0BIG")
    assert len(members) == 451 and BOT_USER_ID in members
    pages = ws.calls("conversations.members")
    assert len(pages) == 3  # 200 + 200 + 51
    await directory.members("C0BIG")
    clock.now += timedelta(seconds=59)
    await directory.members("C0BIG")
    assert len(ws.calls("conversations.members")) == 3  # cached
    ws.channels["C0BIG"].members.discard("U00000X")  # someone leaves
    clock.now += timedelta(seconds=2)
    assert "U00000X" not in await directory.members("C0BIG")
    assert len(ws.calls("conversations.members")) == 6


async def test_unknown_members_refuse_and_names_come_from_conversations_info(
        slack: tuple[SlackWorkspace, str]) -> None:
    ws, url = slack
    directory = ChannelDirectory(SlackWeb(make_web_client(TOKEN, f"{url}/api/"), Metrics()),
                                 Clock(NOW))
    with pytest.raises(MembershipUnknown, match="could not check"):
        await directory.members("G0SECRET")  # private, the bot is not in it
    assert await directory.name("C0OPS") == "ops"
    assert await directory.name("C0OPS") == "ops"
    assert len(ws.calls("conversations.info")) == 1
    assert await directory.name("C0NOPE") is None
    directory.remember("C0X", "#x")
    assert await directory.name("C0X") == "x"


@pytest.mark.parametrize("params, error", [
    ({"limit": 0}, "invalid_limit"), ({"limit": 1001}, "invalid_limit"),
    ({"limit": "many"}, "invalid_limit"), ({"cursor": "not-a-cursor!"}, "invalid_cursor"),
    ({"cursor": "Zm9vOmJhcg=="}, "invalid_cursor"),  # base64 of "foo:bar"
])
async def test_the_emulator_is_as_strict_as_slack(slack: tuple[SlackWorkspace, str],
                                                  params: dict[str, object],
                                                  error: str) -> None:
    _, url = slack
    client = AsyncWebClient(token=TOKEN, base_url=f"{url}/api/")
    with pytest.raises(SlackApiError) as raised:
        await client.conversations_members(channel="C0BIG", **params)  # type: ignore[arg-type]
    assert raised.value.response["error"] == error


async def test_the_emulator_pages_like_slack(slack: tuple[SlackWorkspace, str]) -> None:
    _, url = slack
    client = AsyncWebClient(token=TOKEN, base_url=f"{url}/api/")
    first = await client.conversations_members(channel="C0BIG")
    assert len(first["members"]) == 100  # Slack's default limit
    seen = list(first["members"])
    cursor = first["response_metadata"]["next_cursor"]
    while cursor:
        page = await client.conversations_members(channel="C0BIG", limit=150, cursor=cursor)
        seen += page["members"]
        cursor = page["response_metadata"]["next_cursor"]
    assert len(seen) == len(set(seen)) == 451
