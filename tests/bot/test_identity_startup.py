"""Issue 14: Slack says no to `auth.test` for a while at start-up, with transient ok:false
answers (`internal_error`, then Slack's real rate-limit answer, HTTP 429 `ratelimited` with
Retry-After). Through the real app in both transports: the bot retries with growing waits,
commands meanwhile hear "starting up" (never Bolt's "please reinstall"), the log says each kind
of failure once, and commands work as soon as auth.test succeeds."""

from __future__ import annotations

import logging

import httpx
import pytest

from bot.serve import connect_socket_mode
from bot.slack.identity import STARTING_UP
from bot.store import Store
from sandbox.slack.deliver import SOCKET_MODE, Deliverer
from sandbox.slack.model import ApiFault, SlackWorkspace
from sandbox.system import SIGNING_SECRET, System, running_system


def flaky_auth_test(workspace: SlackWorkspace) -> None:
    """Two transient ok:false, then 429s enough to outlast the client's own two retries."""
    workspace.add_fault(ApiFault("auth.test", "internal_error", remaining=2))
    workspace.add_fault(ApiFault("auth.test", "ratelimited", status=429, retry_after=1,
                                 remaining=3))


def answer_text(response: httpx.Response) -> str:
    """The ack's text: a plain body over HTTP, `{"text": ...}` over Socket Mode."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("text", "")) if isinstance(body, dict) else str(body)


async def type_create(system: System, deliverer: Deliverer) -> str:
    return answer_text(await deliverer.slash_command("alice", "#ops", "create web-1 --now"))


@pytest.mark.parametrize("transport", ["http", "socket"])
async def test_transient_auth_test_failures_are_retried_while_commands_hear_starting_up(
        transport: str, caplog: pytest.LogCaptureFixture) -> None:
    workspace = SlackWorkspace()
    flaky_auth_test(workspace)
    caplog.set_level(logging.WARNING, logger="bot.slack.identity")
    async with running_system(speed=200, workspace=workspace) as system:
        identity = system.runtime.identity
        assert identity is not None
        handler = None
        deliverer = system.deliverer
        if transport == "socket":
            handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
            await workspace.socket_hub.connected.wait()
            deliverer = Deliverer(workspace, SOCKET_MODE, SIGNING_SECRET)
        try:
            early = await type_create(system, deliverer)
            assert early == STARTING_UP
            # Still failing a moment later (the 429s are being waited out): same answer.
            await system.wait_for(lambda: any(c.error == "ratelimited"
                                              for c in workspace.calls("auth.test")), within=30)
            assert identity.current is None
            assert await type_create(system, deliverer) == STARTING_UP
            assert await system.runtime.store.run(Store.list_jobs, limit=10) == []

            await system.wait_for(lambda: identity.current, within=30)
            later = await type_create(system, deliverer)
        finally:
            if handler is not None:
                await handler.close_async()
        assert "J1" in later

    calls = workspace.calls("auth.test")
    assert [c.error for c in calls] == ["internal_error", "internal_error", "ratelimited",
                                        "ratelimited", "ratelimited", None]
    # Back-off: the bot's own attempts wait longer each time (0.5 s, 1 s, 2 s); the client's
    # two Retry-After waits sit inside the third attempt.
    attempts = [calls[0], calls[1], calls[2], calls[5]]
    gaps = [later.at - earlier.at for earlier, later in zip(attempts, attempts[1:], strict=False)]
    gap_after_third = calls[5].at - calls[4].at
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gap_after_third >= 1.9, gaps
    assert identity.attempts == 4
    # Said once per kind of failure, not once per attempt.
    said = [r.getMessage() for r in caplog.records if "auth.test failed" in r.getMessage()]
    assert len(said) == 2 and "internal_error" in said[0] and "429" in said[1], said
    assert not any("reinstall" in (e.text or "").lower() for e in workspace.ephemeral_messages)
