"""Issue 17, the ack path: every request's Slack signature (and its timestamp window) is
checked exactly once, at the HTTP edge or, for a request handed to Bolt some other way, by
`SignatureCheckedOnce` in the place of Bolt's own check; a bad one is refused on every path.
And every request shares the app's one Web API client (no AsyncWebClient per request)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.slack.app import SIGNATURE_CHECKED, SignatureCheckedOnce
from bot.store import Store
from sandbox.slack.deliver import SOCKET_MODE, Deliverer, sign
from sandbox.slack.model import APP_ID, TEAM_ID
from sandbox.system import SIGNING_SECRET, System, running_system


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every signature check anywhere (slack_sdk's verifier), by the timestamp it checked."""
    seen: list[str] = []
    original = SignatureVerifier.is_valid

    def counted(self: SignatureVerifier, body: Any, timestamp: str, signature: str) -> bool:
        seen.append(timestamp)
        return original(self, body, timestamp, signature)

    monkeypatch.setattr(SignatureVerifier, "is_valid", counted)
    yield seen


def in_bolt(system: System) -> SignatureCheckedOnce:
    check = system.runtime.app._async_before_authorize
    assert isinstance(check, SignatureCheckedOnce)
    return check


def command_form(system: System, text: str, **extra: str) -> str:
    ws = system.workspace
    user, channel = ws.user("alice"), ws.channel("#ops")
    ru = ws.new_response_url(channel.id, user.id, "command")
    return urlencode({"command": "/image", "text": text, "team_id": TEAM_ID,
                      "user_id": user.id, "channel_id": channel.id, "channel_name": channel.name,
                      "api_app_id": APP_ID, "response_url": ws.response_url(ru),
                      "trigger_id": ws.new_trigger_id(), **extra})


def bolt_request(body: str, *, secret: str = SIGNING_SECRET, age: float = 0.0,
                 timestamp: str | None = None) -> AsyncBoltRequest:
    stamp = timestamp or str(int(time.time() - age))
    return AsyncBoltRequest(body=body, headers={
        "content-type": ["application/x-www-form-urlencoded"],
        "x-slack-request-timestamp": [stamp],
        "x-slack-signature": [sign(secret, stamp, body)]})


async def test_over_http_the_edge_checks_the_signature_and_bolt_does_not_again(
        checks: list[str]) -> None:
    async with running_system(speed=200) as system:
        answer = await system.command("alice", "#ops", "create web-1 --now")
        assert "J1" in answer.text
        assert len(checks) == 1  # the edge's; Bolt's own check is off
        assert in_bolt(system).checked == 0
        bad = await system.deliverer.slash_command("alice", "#ops", "create web-2 --now",
                                                   bad_signature=True)
        stale = await system.deliverer.slash_command("alice", "#ops", "create web-3 --now",
                                                     stale=True)
        assert (bad.status_code, stale.status_code) == (401, 401)
        assert [j.server_ref for j in await system.runtime.store.run(Store.list_jobs)] == [
            "web-1"]


async def test_a_request_handed_to_bolt_directly_is_checked_there_once(
        checks: list[str]) -> None:
    async with running_system(speed=200) as system:
        app = system.runtime.app
        good = await app.async_dispatch(bolt_request(command_form(system, "create web-1 --now")))
        assert good.status == 200 and "J1" in good.body
        assert len(checks) == 1 and in_bolt(system).checked == 1
        refused = [
            await app.async_dispatch(bolt_request(command_form(system, "create web-2 --now"),
                                                  secret="not-the-secret")),
            await app.async_dispatch(bolt_request(command_form(system, "create web-3 --now"),
                                                  age=6 * 60)),  # outside Slack's 5 minutes
            await app.async_dispatch(bolt_request(command_form(system, "create web-4 --now"),
                                                  timestamp="soon")),
            # A body cannot claim the edge checked it: only our handler sets that context key.
            await app.async_dispatch(bolt_request(
                command_form(system, "create web-5 --now", **{SIGNATURE_CHECKED: "true"}),
                secret="not-the-secret")),
        ]
        assert [r.status for r in refused] == [401] * 4
        assert [j.server_ref for j in await system.runtime.store.run(Store.list_jobs)] == [
            "web-1"]


async def test_over_socket_mode_nothing_is_checked_the_link_is_authenticated(
        checks: list[str]) -> None:
    from bot.serve import connect_socket_mode

    async with running_system(speed=200) as system:
        handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
        try:
            await system.workspace.socket_hub.connected.wait()
            over_socket = Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET)
            answer = await over_socket.slash_command("alice", "#ops", "create web-1 --now")
        finally:
            await handler.close_async()
        assert "J1" in answer.json()["text"]
        assert checks == [] and in_bolt(system).checked == 0


async def test_every_request_shares_the_apps_one_web_client() -> None:
    async with running_system(speed=200) as system:
        app = system.runtime.app
        seen: list[dict[str, Any]] = []

        async def record(context: Any, next: Any) -> None:
            seen.append({k: context.get(k) for k in ("client", "token", "logger",
                                                     "listener_runner")})
            await next()

        app.middleware(record)
        await system.command("alice", "#ops", "help")
        await system.command("alice", "#ops", "status")
        assert len(seen) == 2
        for context in seen:
            assert context["client"] is app.client  # not a new AsyncWebClient per request
            assert context["token"] == app.client.token
            assert context["logger"] is not None
            assert context["listener_runner"] is app.listener_runner
