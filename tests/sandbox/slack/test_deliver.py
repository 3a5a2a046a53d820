"""Signed delivery of slash commands and clicks, checked with slack_sdk's SignatureVerifier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from slack_sdk.signature import Clock as VerifierClock
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.slack.deliver import STALE_BY, Deliverer
from sandbox.slack.model import SlackWorkspace
from tests.sandbox.slack.conftest import ManualClock

SECRET = "s3cret-signing"
BUTTONS = [{"type": "actions", "block_id": "job_J1", "elements": [
    {"type": "button", "action_id": "job_start", "value": "J1", "style": "primary",
     "text": {"type": "plain_text", "text": "Start snapshot"}},
    {"type": "button", "action_id": "job_cancel", "value": "J1",
     "text": {"type": "plain_text", "text": "Cancel"}}]}]


@dataclass
class FakeBot:
    """Records what reaches the bot's /slack/events and answers with `reply`."""

    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    reply: Response = field(default_factory=lambda: Response(b"", 200))

    def app(self) -> Starlette:
        async def events(request: Request) -> Response:
            self.requests.append((await request.body(), dict(request.headers)))
            return self.reply

        return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


class FixedClock(VerifierClock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


@pytest.fixture
def bot() -> FakeBot:
    return FakeBot()


@pytest.fixture
async def deliverer(ws: SlackWorkspace, bot: FakeBot,
                    clock: ManualClock) -> AsyncIterator[Deliverer]:
    ws.base_url = "http://slack.test"
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=bot.app()))
    async with http:
        yield Deliverer(ws, "http://bot.test/slack/events", SECRET, http=http, clock=clock)


def verifier_at(now: float) -> SignatureVerifier:
    return SignatureVerifier(SECRET, FixedClock(now))


async def test_slash_command_is_signed_like_slack(deliverer: Deliverer, bot: FakeBot,
                                                  ws: SlackWorkspace, clock: ManualClock) -> None:
    r = await deliverer.slash_command("bob", "#ops", "create web-1")
    assert r.status_code == 200
    body, headers = bot.requests[0]
    assert verifier_at(clock()).is_valid_request(body, headers)
    assert headers["x-slack-request-timestamp"] == str(int(clock()))
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert (form["user_id"], form["user_name"], form["channel_id"], form["channel_name"]) == \
        ("U0BOB", "bob", "C0OPS", "ops")
    assert (form["command"], form["text"], form["team_id"]) == ("/image", "create web-1", "T0001")
    rid = form["response_url"].removeprefix("http://slack.test/response/")
    assert ws.response_urls[rid].user == "U0BOB" and ws.response_urls[rid].kind == "command"
    await deliverer.slash_command("bob", "C0OPS", "list")
    second = {k: v[0] for k, v in parse_qs(bot.requests[1][0].decode()).items()}
    assert second["trigger_id"] != form["trigger_id"]
    assert second["response_url"] != form["response_url"]
    assert [c.text for c in ws.commands] == ["create web-1", "list"]


async def test_bad_signature_and_stale_timestamp(deliverer: Deliverer, bot: FakeBot,
                                                 clock: ManualClock) -> None:
    await deliverer.slash_command("bob", "C0OPS", "x", bad_signature=True)
    body, headers = bot.requests[-1]
    assert not verifier_at(clock()).is_valid_request(body, headers)
    await deliverer.slash_command("bob", "C0OPS", "x", stale=True)
    body, headers = bot.requests[-1]
    stamp = int(headers["x-slack-request-timestamp"])
    assert stamp == int(clock() - STALE_BY)
    assert not verifier_at(clock()).is_valid_request(body, headers)
    # Signed correctly, only too old: a verifier living at that moment accepts it.
    assert verifier_at(stamp).is_valid_request(body, headers)


async def test_redelivery_keeps_trigger_id(deliverer: Deliverer, bot: FakeBot,
                                           clock: ManualClock) -> None:
    await deliverer.slash_command("bob", "C0OPS", "create web-1")
    clock.advance(3)
    await deliverer.redeliver(retry_num=1, retry_reason="http_timeout")
    (first, h1), (again, h2) = bot.requests
    assert first == again
    assert "x-slack-retry-num" not in h1
    assert (h2["x-slack-retry-num"], h2["x-slack-retry-reason"]) == ("1", "http_timeout")
    assert int(h2["x-slack-request-timestamp"]) == int(h1["x-slack-request-timestamp"]) + 3
    assert verifier_at(clock()).is_valid_request(again, h2)
    # Forcing a trigger_id on a fresh send works too.
    tid = deliverer.last.trigger_id
    await deliverer.slash_command("bob", "C0OPS", "create web-1", trigger_id=tid)
    assert parse_qs(bot.requests[-1][0].decode())["trigger_id"] == [tid]


async def test_click_payload(deliverer: Deliverer, bot: FakeBot, ws: SlackWorkspace,
                             clock: ManualClock) -> None:
    msg = ws.post_message("C0OPS", text="Start?", blocks=BUTTONS)
    await deliverer.click("alice", "C0OPS", msg.ts, "job_start", None)
    body, headers = bot.requests[-1]
    assert verifier_at(clock()).is_valid_request(body, headers)
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0ALICE" and payload["channel"]["id"] == "C0OPS"
    assert payload["container"] == {"type": "message", "message_ts": msg.ts,
                                    "channel_id": "C0OPS", "is_ephemeral": False}
    assert payload["message"]["ts"] == msg.ts and payload["message"]["blocks"] == BUTTONS
    [action] = payload["actions"]
    assert (action["action_id"], action["value"], action["block_id"], action["style"]) == \
        ("job_start", "J1", "job_J1", "primary")
    assert action["text"]["text"] == "Start snapshot"
    rid = payload["response_url"].removeprefix("http://slack.test/response/")
    assert ws.response_urls[rid].message_ts == msg.ts
    assert payload["trigger_id"] in ws.trigger_ids
    with pytest.raises(LookupError):
        await deliverer.click("alice", "C0OPS", "1.000001", "job_start", "J1")


async def test_click_on_ephemeral(deliverer: Deliverer, bot: FakeBot,
                                  ws: SlackWorkspace) -> None:
    eph = ws.post_ephemeral("C0OPS", "U0BOB", text="confirm?", blocks=BUTTONS)
    await deliverer.click("bob", "C0OPS", eph.ts, "job_cancel", "J1")
    payload = json.loads(parse_qs(bot.requests[-1][0].decode())["payload"][0])
    assert payload["container"]["is_ephemeral"] is True and "message" not in payload
    assert payload["actions"][0]["block_id"] == "job_J1"


async def test_buttons_on_a_response_url_message_are_clickable_by_its_recipient_only(
        deliverer: Deliverer, bot: FakeBot, ws: SlackWorkspace) -> None:
    # Slack delivers block_actions for buttons in response_url messages like any other; an
    # ephemeral is shown to its recipient alone, so nobody else can click it.
    ru = ws.new_response_url("G0SECRET", "U0ALICE", "command")
    ws.respond(ru.id, {"text": "card", "blocks": BUTTONS})
    [card] = ws.ephemerals("U0ALICE")
    assert card.via == "response_url"
    await deliverer.click("alice", "G0SECRET", card.ts, "job_start", "J1")
    payload = json.loads(parse_qs(bot.requests[-1][0].decode())["payload"][0])
    assert payload["container"] == {"type": "message", "message_ts": card.ts,
                                    "channel_id": "G0SECRET", "is_ephemeral": True}
    assert payload["actions"][0]["action_id"] == "job_start" and payload["response_url"]
    with pytest.raises(LookupError):
        await deliverer.click("bob", "G0SECRET", card.ts, "job_start", "J1")


async def test_ack_body_is_shown(deliverer: Deliverer, bot: FakeBot,
                                 ws: SlackWorkspace) -> None:
    bot.reply = Response(json.dumps({"text": "Queued J1"}), 200,
                         media_type="application/json")
    await deliverer.slash_command("bob", "C0OPS", "create web-1")
    assert [e.text for e in ws.ephemerals("U0BOB")] == ["Queued J1"]
    bot.reply = Response(json.dumps({"response_type": "in_channel", "text": "Everyone: J2"}),
                         200, media_type="application/json")
    await deliverer.slash_command("bob", "C0OPS", "create web-2")
    assert [m.text for m in ws.channel_messages("C0OPS")] == ["Everyone: J2"]
    bot.reply = Response(b"boom", 500)
    await deliverer.slash_command("bob", "C0OPS", "create web-3")
    last = ws.ephemerals("U0BOB")[-1]
    assert last.text == '/image failed with the error "dispatch_failed"'
    assert last.author == "USLACKBOT"
    # The ack body does not use up the response_url.
    assert all(ru.uses == 0 for ru in ws.response_urls.values())
