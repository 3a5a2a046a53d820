"""The emulator on a loopback port, driven by the real slack_sdk AsyncWebClient and Bolt."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Callable

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack.deliver import Deliverer
from sandbox.slack.model import SlackWorkspace
from sandbox.slack.serve import running_slack
from tests.sandbox.slack.conftest import ManualClock, bolt_http

TOKEN = "xoxb-sandbox"
SECRET = "bolt-signing-secret"


@pytest.fixture
async def slack_url(ws: SlackWorkspace) -> AsyncIterator[str]:
    async with running_slack(ws) as url:
        yield url


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll (Bolt's async listeners finish after the ack)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_web_client_threads_and_updates(ws: SlackWorkspace, slack_url: str) -> None:
    ws.limits.enabled = False
    client = AsyncWebClient(token=TOKEN, base_url=slack_url + "/api/")
    auth = await client.auth_test()
    assert auth["user_id"] == "U0BOT" and auth["bot_id"] == "B0BOT"
    parent = await client.chat_postMessage(channel="C0OPS", text="Snapshot J1 queued",
                                           blocks=[{"type": "section", "text": {
                                               "type": "mrkdwn", "text": "*J1* queued"}}])
    await client.chat_postMessage(channel="C0OPS", thread_ts=parent["ts"], text="uploading")
    await client.chat_postMessage(channel="C0OPS", thread_ts=parent["ts"], text="done",
                                  reply_broadcast=True)
    await client.chat_update(channel="C0OPS", ts=parent["ts"], text="Snapshot J1 done")
    info = await client.conversations_info(channel="C0OPS")
    assert info["channel"]["is_member"] is True
    approvers = await client.usergroups_users_list(usergroup="S0APPROVERS")
    assert approvers["users"] == ["U0ALICE", "U0CAROL"]
    top = ws.channel_messages("C0OPS")
    assert [m.text for m in top] == ["Snapshot J1 done", "done"]
    assert [m.text for m in ws.thread("C0OPS", parent["ts"])] == ["uploading", "done"]
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="G0SECRET", text="x")
    assert err.value.response["error"] == "not_in_channel"
    # Every call went through, recorded with its parameters.
    assert ws.calls("chat.update")[0].params["ts"] == parent["ts"]
    assert ws.calls("usergroups.users.list")[0].params == {"usergroup": "S0APPROVERS"}


async def test_rate_limit_retry_handler_waits_and_succeeds(
        ws: SlackWorkspace, clock: ManualClock, slack_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep_on_the_emulator_clock(seconds: float) -> None:
        # The handler's wait passes on the emulator's clock instead of the wall clock.
        slept.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(builtin_async_handlers, "asyncio",
                        types.SimpleNamespace(sleep=sleep_on_the_emulator_clock))
    client = AsyncWebClient(token=TOKEN, base_url=slack_url + "/api/",
                            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    for i in range(5):
        r = await client.chat_postMessage(channel="C0OPS", text=f"m{i}")
        assert r["ok"] is True
    assert [m.text for m in ws.channel_messages("C0OPS")] == [f"m{i}" for i in range(5)]
    statuses = [c.status for c in ws.calls("chat.postMessage")]
    assert statuses.count(200) == 5 and 429 in statuses
    assert slept and all(1 <= s < 2 for s in slept)  # Retry-After: 1 plus jitter
    # Without the handler the 429 surfaces as an error.
    plain = AsyncWebClient(token=TOKEN, base_url=slack_url + "/api/")
    ws.start_storm(1, retry_after=3)
    with pytest.raises(SlackApiError) as err:
        await plain.chat_postMessage(channel="C0OPS", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "3"


async def test_bolt_app_end_to_end(ws: SlackWorkspace, slack_url: str) -> None:
    """Bolt accepts the signed requests and its say()/respond() land in the emulator."""
    ws.limits.enabled = False
    app = AsyncApp(signing_secret=SECRET,
                   client=AsyncWebClient(token=TOKEN, base_url=slack_url + "/api/"))

    @app.command("/image")
    async def on_image(ack, command, say):  # type: ignore[no-untyped-def]
        await ack(f"Got it, <@{command['user_id']}>")
        await say(channel=command["channel_id"], text="Approve J1?", blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": "Approve *J1*?"}},
            {"type": "actions", "block_id": "approval", "elements": [
                {"type": "button", "action_id": "approve", "value": "J1",
                 "text": {"type": "plain_text", "text": "Approve"}}]}])

    @app.action("approve")
    async def on_approve(ack, body, respond):  # type: ignore[no-untyped-def]
        await ack()
        await respond(replace_original=True,
                      text=f"J1 approved by <@{body['user']['id']}>")

    async with bolt_http(app) as http:
        deliver = Deliverer(ws, "http://bot.test/slack/events", SECRET, http=http)
        r = await deliver.slash_command("bob", "C0OPS", "create web-1")
        assert r.status_code == 200
        assert [e.text for e in ws.ephemerals("U0BOB")] == ["Got it, <@U0BOB>"]
        await eventually(lambda: len(ws.channel_messages("C0OPS")) == 1)
        msg = ws.channel_messages("C0OPS")[0]
        r = await deliver.click("alice", "C0OPS", msg.ts, "approve", "J1")
        assert r.status_code == 200
        await eventually(lambda: msg.text == "J1 approved by <@U0ALICE>")
        assert msg.blocks is None
        rejected = await deliver.slash_command("bob", "C0OPS", "create web-1",
                                               bad_signature=True)
        assert rejected.status_code == 401
        stale = await deliver.slash_command("bob", "C0OPS", "create web-1", stale=True)
        assert stale.status_code == 401
    assert len(ws.channel_messages("C0OPS")) == 1
