"""Socket Mode end to end: the bot opens its link through apps.connections.open on the Slack
emulator (the app-level token), commands and clicks arrive as envelopes, acks carry the reply."""

from __future__ import annotations

import httpx
import pytest

from bot.serve import connect_socket_mode
from bot.store import Store
from sandbox.slack.deliver import SOCKET_MODE, Deliverer
from sandbox.system import SIGNING_SECRET, running_system
from tests.e2e.helpers import OPS, parents, thread_texts


async def test_create_and_click_over_socket_mode() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
        try:
            await system.workspace.socket_hub.connected.wait()
            over_socket = Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET)
            answer = await over_socket.slash_command("alice", "#ops", "create web-1")
            assert "J1" in answer.json()["text"]
            parent = await system.wait_for(lambda: parents(system))
            await over_socket.click("alice", OPS, parent[0].ts, "job_start", "J1")
            await system.settle()
            job = await system.runtime.store.run(Store.get_job, "J1")
            assert job.state == "succeeded"
            replies = thread_texts(system, parent[0].ts)
            assert ":white_check_mark:" in replies[-1]
            opened = system.workspace.calls("apps.connections.open")
            assert [c.status for c in opened] == [200]
        finally:
            await handler.close_async()


async def test_only_the_app_token_opens_a_socket() -> None:
    async with running_system(speed=200) as system:
        async with httpx.AsyncClient(base_url=system.slack_url) as client:
            refused = await client.post("/api/apps.connections.open",
                                        headers={"Authorization": "Bearer xoxb-sandbox"})
            granted = await client.post("/api/apps.connections.open",
                                        headers={"Authorization": "Bearer xapp-sandbox"})
        assert refused.json() == {"ok": False, "error": "invalid_auth"}
        assert granted.json()["url"].startswith("ws://")
        with pytest.raises(RuntimeError):  # nobody connected: nothing to deliver to
            await Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET).slash_command(
                "alice", "#ops", "help")
