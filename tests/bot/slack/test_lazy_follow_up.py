"""A command's work after its ack runs in a task of the runtime's `LazyWork`, the same over
HTTP and Socket Mode: the ack answers at once, the later answer follows through the
response_url, and the runtime counts that work while it runs (what `settle` and shutdown wait
for).

It is not a Bolt lazy listener: Bolt starts those with a deep copy of the request
(slack_bolt/listener/asyncio_runner.py `_build_lazy_request`: `create_copy(request.to_copyable())`)
for every command, which was half of Bolt's time per ack under a burst (bench figure 1); the ack
listener starts the task itself, only for a command that has a later step."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import commands
from bot.serve import connect_socket_mode
from sandbox.slack.deliver import SOCKET_MODE, Deliverer
from sandbox.system import SIGNING_SECRET, System, running_system


def said(response: httpx.Response) -> str:
    """The ack text (plain text, or JSON with blocks / over Socket Mode)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json()["text"])
    return response.text


Command = Callable[[str, str, str], Awaitable[httpx.Response]]


def answers(system: System, user: str = "U0ALICE") -> list[str]:
    return [e.text or "" for e in system.workspace.ephemerals(user) if e.via == "response_url"]


async def _images_follow_up(system: System, command: Command) -> None:
    # The image listing answers slowly: the ack must not wait for it.
    system.world.inject("slow", path=r"/images", method="GET", delay=1.0, count=10)
    started = time.monotonic()
    ack = await command("alice", "#ops", "images web-1")
    assert time.monotonic() - started < 1.0
    assert "Looking up the images of web-1" in said(ack)
    assert await system.runtime.background_work() >= 1  # the lazy listener, still running
    table = await system.wait_for(lambda: [t for t in answers(system) if "web-1" in t
                                           and "Looking up" not in t], within=30)
    assert "images" in table[-1].lower() or "no images" in table[-1].lower()
    await system.settle()
    assert await system.runtime.background_work() == 0


@contextlib.asynccontextmanager
async def commands_over(system: System, over: str) -> AsyncIterator[Command]:
    """Slash commands as signed HTTP posts, or as envelopes over the bot's Socket Mode link."""
    if over == "http":
        yield system.command
        return
    handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
    try:
        await system.workspace.socket_hub.connected.wait()
        yield Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET).slash_command
    finally:
        await handler.close_async()


@pytest.mark.parametrize("over", ["http", "socket"])
async def test_images_answer_follows_the_ack(over: str) -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system, \
            commands_over(system, over) as command:
        await _images_follow_up(system, command)


@pytest.mark.parametrize("over", ["http", "socket"])
async def test_a_change_request_is_answered_after_the_ack(over: str) -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system, \
            commands_over(system, over) as command:
        ack = await command("alice", "#ops", "schedule web-1 daily at 03:00")
        assert "Preparing the change request" in said(ack)
        [told] = await system.wait_for(lambda: [t for t in answers(system)
                                                if "Change request R1 is posted" in t])
        assert "may be approved by" in told


async def test_a_command_refused_in_its_ack_gets_nothing_after_it(tmp_path: Path) -> None:
    policy = tmp_path / "imagebot.toml"
    policy.write_text('[channels.C0OPS]\nservers = ["web-*"]\n')
    async with running_system(speed=200, slack_rate_scale=20, policy_path=policy) as system:
        acks = [said(await system.command("alice", "#ops", text))
                for text in ("images db-1", "schedule db-1 daily at 03:00", "status")]
        assert "may not image `db-1`" in acks[0] and "Preparing" not in acks[1]
        await system.settle()
        # Only a command with a later step starts one; a refused one sends nothing more:
        # the requester saw the three acks and no more.
        assert answers(system) == acks
        assert not system.workspace.calls("chat.postMessage")


async def test_a_follow_up_that_breaks_tells_the_requester_and_no_traceback() -> None:
    # The later step raises something unexpected: the ack already answered, the requester
    # then gets the route's "went wrong" line through the response_url, never the traceback.
    async with running_system(speed=200, slack_rate_scale=20) as system:
        router = system.runtime.router
        route = router.routes[commands.Images]

        async def boom(request: Any, who: Any) -> str:
            raise RuntimeError("internal detail /srv/secret.py line 3")

        router.routes[commands.Images] = dataclasses.replace(route, later=boom)
        ack = await system.command("alice", "#ops", "images web-1")
        assert "Looking up the images of web-1" in said(ack)
        [told] = await system.wait_for(lambda: [t for t in answers(system)
                                                if "Looking up" not in t])
        assert told == route.failed
        assert "Traceback" not in told and "secret" not in told
        await system.settle()
        assert system.runtime.lazy is not None and system.runtime.lazy.pending == 0


async def test_creates_start_no_work_after_their_ack() -> None:
    # Only commands with a later step start a task (a create is answered by its ack alone).
    async with running_system(speed=200, slack_rate_scale=20) as system:
        lazy = system.runtime.lazy
        assert lazy is not None
        started: list[Any] = []
        spawn = lazy.spawn

        def counting(work: Any) -> None:
            started.append(work)
            spawn(work)

        lazy.spawn = counting  # type: ignore[method-assign]
        ack = await system.command("alice", "#ops", "create web-1 --now")
        assert "Job J1" in said(ack)
        assert started == []
        await system.command("alice", "#ops", "images web-1")
        assert len(started) == 1
        await system.settle()
