"""The router (routes by request type, the shared checks), the one "answer after the ack"
error handling, the lazy-work runner, and the button adapter, without Bolt's HTTP layer."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

import commands
from bot.errors import ImagebotError
from bot.policy import DISABLED_TEXT, Policy
from bot.slack.routing import (
    FAILED,
    AfterAck,
    Channels,
    LazyWork,
    Router,
    answer_after_ack,
    button_listener,
)
from bot.slack.types import FollowUp, Invocation, Reply

WHO = Invocation(user="U1", channel="C0OPS", channel_name="ops", trigger_id=None,
                 response_url=None)


def router(policy: str = "") -> Router:
    return Router(Channels(Policy.loads(policy) if policy else Policy.default()))


async def test_requests_go_to_the_route_of_their_type_and_unrouted_ones_are_not_available(
        ) -> None:
    seen: list[Any] = []

    async def status(request: commands.Status, who: Invocation) -> Reply:
        seen.append(request)
        return Reply("status here")

    r = router()
    r.on(commands.Status, status)
    assert (await r.command("status J1", WHO)).text == "status here"
    assert isinstance(seen[0], commands.Status) and seen[0].job_id == "J1"
    assert "not available yet" in (await r.command("list", WHO)).text
    assert "/image create" in (await r.command("help", WHO)).text
    with pytest.raises(ValueError, match="routed twice"):
        r.on(commands.Status, status)


async def test_a_disabled_channel_answers_one_line_before_any_route() -> None:
    async def never(request: Any, who: Invocation) -> Reply:
        raise AssertionError("routed in a disabled channel")

    r = router('[channels.C0OPS]\nenabled = false\n')
    r.on(commands.Status, never)
    assert (await r.command("status", WHO)).text == DISABLED_TEXT


async def test_all_is_for_admins_and_widens_the_scope() -> None:
    scopes: list[str | None] = []

    async def listing(request: commands.ListJobs, who: Invocation) -> Reply:
        scopes.append(who.scope)
        return Reply("ok")

    r = router('[default]\nadmins = ["U0ADMIN"]\n')
    r.on(commands.ListJobs, listing)
    assert "admins" in (await r.command("list --all", WHO)).text
    await r.command("list --all", Invocation("U0ADMIN", "C0OPS", "ops", None, None))
    await r.command("list", WHO)
    assert scopes == [None, "C0OPS"]


async def test_a_known_error_in_a_route_is_the_ack() -> None:
    async def broken(request: Any, who: Invocation) -> Reply:
        raise ImagebotError("the cloud said no")

    r = router()
    r.on(commands.Status, broken)
    assert (await r.command("status", WHO)).text == ":warning: the cloud said no"


async def test_the_follow_up_runs_the_routes_later_step_with_the_same_request() -> None:
    async def images(request: commands.Images, who: Invocation) -> Reply:
        return Reply("looking", follow_up=FollowUp(request, who))

    async def later(request: commands.Images, who: Invocation) -> str:
        return f"images of {request.server.text} for {who.user}"

    r = router()
    r.on(commands.Images, images, later=later)
    who = dataclasses.replace(WHO, response_url="https://hooks.example/2")
    reply = await r.command("images web-1", who)
    assert reply.follow_up is not None
    told: list[tuple[str, str]] = []

    async def send(response_url: str, text: str) -> None:
        told.append((response_url, text))

    runner = LazyWork(logging.getLogger("test"))
    r.answer_follow_up(reply.follow_up, AfterAck(runner, send))
    assert told == [] and runner.pending == 1  # after the ack, not inside it
    await runner.drain(1.0)
    assert told == [("https://hooks.example/2", "images of web-1 for U1")]


async def test_answer_after_ack_tells_known_errors_hides_others_and_survives_delivery(
        caplog: pytest.LogCaptureFixture) -> None:
    told: list[str] = []

    async def deliver(text: str) -> None:
        told.append(text)

    async def known() -> str:
        raise ImagebotError("No server web-9.")

    async def bug() -> str:
        raise KeyError("secret internals")

    await answer_after_ack(known(), deliver)
    with caplog.at_level(logging.ERROR):
        await answer_after_ack(bug(), deliver)
        await answer_after_ack(bug(), deliver, failed="listing failed")
    assert told == [":warning: No server web-9.", FAILED, "listing failed"]
    assert all("secret internals" not in t for t in told)
    assert "KeyError" in caplog.text  # logged with its traceback, not shown

    async def unreachable(text: str) -> None:
        raise OSError("response_url down")

    async def fine() -> str:
        return "done"

    with caplog.at_level(logging.WARNING):
        await answer_after_ack(fine(), unreachable)  # does not raise
    assert "response_url down" in caplog.text


async def test_lazy_work_is_counted_while_it_runs_and_drained_or_cancelled_on_stop() -> None:
    work = LazyWork(logging.getLogger("test"))
    release = asyncio.Event()
    ran: list[str] = []

    async def quick() -> None:
        await release.wait()
        ran.append("quick")

    async def hung() -> None:
        await asyncio.Event().wait()

    request = AsyncBoltRequest(body={"type": "block_actions"}, mode="socket_mode")
    work.start(quick, request)
    work.start(hung, request)
    await asyncio.sleep(0)
    assert work.pending == 2
    release.set()
    await work.drain(0.2)
    assert ran == ["quick"] and work.pending == 0


async def test_spawned_work_is_counted_and_drained_or_cancelled_on_stop() -> None:
    # `/image`'s answers after the ack are spawned (no Bolt lazy listener, no request copy):
    # the same counting and draining as lazy listeners.
    work = LazyWork(logging.getLogger("test"))
    release = asyncio.Event()
    ran: list[str] = []
    cancelled: list[str] = []

    async def quick() -> None:
        await release.wait()
        ran.append("quick")

    async def hung() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("hung")
            raise

    work.spawn(quick())
    work.spawn(hung())
    await asyncio.sleep(0)
    assert work.pending == 2
    release.set()
    await work.drain(0.2)
    assert ran == ["quick"] and cancelled == ["hung"] and work.pending == 0


async def test_a_button_acks_then_answers_the_clicker_alone_after_the_ack() -> None:
    calls: list[tuple[Any, ...]] = []

    async def handler(action_id: str, value: str, user: str, **where: Any) -> Reply | None:
        calls.append((action_id, value, user, where))
        return Reply("no") if user == "U2" else None

    events: list[Any] = []

    async def send(response_url: str, text: str) -> None:
        events.append((response_url, text))

    runner = LazyWork(logging.getLogger("test"))
    listener = button_listener(handler, AfterAck(runner, send))

    async def ack() -> None:
        events.append("ack")

    body = {"user": {"id": "U2"}, "channel": {"id": "C1", "name": "ops"},
            "response_url": "https://hooks.example/1"}
    await listener(ack=ack, body=body, action={"action_id": "job_start", "value": "J1"})
    assert calls == [("job_start", "J1", "U2", {"channel": "C1", "channel_name": "ops",
                                                "response_url": "https://hooks.example/1"})]
    # The listener returned (so Bolt can answer Slack) before the answer went out.
    assert events == ["ack"] and runner.pending == 1
    await runner.drain(1.0)
    assert events == ["ack", ("https://hooks.example/1", "no")]
    await listener(ack=ack, body=body | {"user": {"id": "U1"}},
                   action={"action_id": "job_start", "value": "J1"})
    assert events[2:] == ["ack"] and runner.pending == 0


async def test_an_answer_with_no_response_url_is_dropped_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []

    async def send(response_url: str, text: str) -> None:
        sent.append(text)

    runner = LazyWork(logging.getLogger("test"))
    AfterAck(runner, send).reply(None, "approved")  # a Home tab click has no response_url
    assert runner.pending == 0 and sent == []
    assert "no response_url" in caplog.text
