"""How a Slack request reaches a feature: the one channel-policy lookup (`Channels`), the
`/image` routes the features register by request type (`Router`), the one "answer after the
ack" helper, and the runner that keeps the work after an ack countable for shutdown.

Nothing here knows a feature: `bot.slack.imaging` and `bot.slack.schedules` fill the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.async_runner import AsyncLazyListenerRunner
from slack_bolt.request.async_request import AsyncBoltRequest

import commands
from bot.errors import ImagebotError
from bot.policy import DISABLED_TEXT, ChannelPolicy, GroupResolver, Policy, allowed_all
from bot.slack.directory import ChannelDirectory
from bot.slack.types import FollowUp, Invocation, Reply

log = logging.getLogger(__name__)

# Slack sends these instead of a name in DMs and (older) private channels.
_NO_NAME = frozenset({"directmessage", "privategroup"})

FAILED = ":warning: Something went wrong; it has been logged."


@dataclass
class Channels:
    """The one policy lookup, the same for commands, clicks and alerts: by channel id, or by
    the channel's name (from the payload when it carries a real one, else asked of Slack)."""

    policy: Policy
    # Channel names (for name-keyed policies) and members; None = names from payloads only.
    directory: ChannelDirectory | None = None
    # Which of the given user groups a user belongs to (asked of Slack); None = no groups.
    member_groups: GroupResolver | None = None

    async def name(self, channel: str, known: str | None = None) -> str | None:
        """The channel's name: from the payload when it carries a real one, else from Slack."""
        if known and known not in _NO_NAME:
            if self.directory is not None:
                self.directory.remember(channel, known)
            return known
        if self.directory is None or not channel:
            return None
        return await self.directory.name(channel)

    async def policy_of(self, channel: str, known_name: str | None = None) -> ChannelPolicy:
        """The channel's policy, by id or by name."""
        return self.policy.for_channel(channel, await self.name(channel, known_name))


R = TypeVar("R")
Answer = Callable[[Any, Invocation], Awaitable[Reply]]
Later = Callable[[Any, Invocation], Awaitable[str]]


@dataclass(frozen=True)
class Route:
    """A request type's handlers: `answer` goes into the ack; `later`, for an answer that
    carries a `FollowUp`, runs after the ack and returns the text sent to the requester."""

    answer: Answer
    later: Later | None = None
    failed: str = FAILED  # what the requester sees when `later` breaks unexpectedly


@dataclass
class Router:
    """`/image`: parse, the checks every command shares (disabled channel, `--all`), then the
    route registered for the request's type. Plain methods: tests call them without Bolt."""

    channels: Channels
    routes: dict[type[Any], Route] = field(default_factory=dict)

    def on(self, kind: type[R], answer: Callable[[R, Invocation], Awaitable[Reply]], *,
           later: Callable[[R, Invocation], Awaitable[str]] | None = None,
           failed: str = FAILED) -> None:
        """Route requests of type `kind` (one of `commands`' request classes)."""
        if kind in self.routes:
            raise ValueError(f"{kind.__name__} is routed twice")
        self.routes[kind] = Route(answer, later, failed)

    async def command(self, text: str, who: Invocation) -> Reply:
        """Answer one `/image` invocation; the returned Reply goes into the ack."""
        try:
            request = commands.parse(text)
        except commands.ParseError as exc:
            return Reply(str(exc))
        try:
            return await self._dispatch(request, who)
        except ImagebotError as exc:
            return Reply(f":warning: {exc.user_message()}")

    async def _dispatch(self, request: commands.Request, who: Invocation) -> Reply:
        if isinstance(request, commands.Help):
            return Reply(commands.help_text(request.topic))
        name = await self.channels.name(who.channel, who.channel_name)
        if name != who.channel_name:
            who = dataclasses.replace(who, channel_name=name)
        channel_policy = self.channels.policy.for_channel(who.channel, name)
        if not channel_policy.enabled:
            return Reply(DISABLED_TEXT)  # one line, nothing else, for every command
        if getattr(request, "all", False):
            if not await allowed_all(channel_policy, who.user, self.channels.member_groups):
                return Reply("`--all` is for the admins the channel policy names; without it "
                             "you see this channel's.")
            who = dataclasses.replace(who, everywhere=True)
        route = self.routes.get(type(request))
        if route is None:
            return Reply(f"`{request.name}` is not available yet.")
        return await route.answer(request, who)

    async def follow_up(self, work: FollowUp) -> str:
        """The text of a command's later step (see `answer_after_ack` for its errors)."""
        route = self.routes[type(work.request)]
        if route.later is None:
            raise LookupError(f"{type(work.request).__name__} has no later step")
        return await route.later(work.request, work.who)

    def answer_follow_up(self, work: FollowUp, after: AfterAck) -> None:
        """Run the later step after the ack and send its answer to the requester, whatever
        happens (`AfterAck.answer`)."""
        after.answer(work.who.response_url, self.follow_up(work),
                     failed=self.routes[type(work.request)].failed)


async def answer_after_ack(work: Awaitable[str], deliver: Callable[[str], Awaitable[Any]], *,
                           failed: str = FAILED) -> None:
    """The one error handling for an answer prepared after the ack: a known error is told to
    the requester in its own words, anything else is logged and told as "went wrong"; a
    delivery that fails is logged (the ack already answered)."""
    try:
        text = await work
    except ImagebotError as exc:
        text = f":warning: {exc.user_message()}"
    except Exception:
        log.exception("a command's answer after the ack failed")
        text = failed
    try:
        await deliver(text)
    except Exception as exc:
        log.warning("could not answer the requester after the ack: %s", exc)


class LazyWork(AsyncLazyListenerRunner):
    """Bolt's asyncio lazy-listener runner, but it keeps each task: Bolt's own starts them
    with a bare `asyncio.ensure_future` (nothing holds a reference, and nothing can wait for
    them), while the runtime must know what is still owed to Slack and finish it on stop."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, function: Callable[..., Awaitable[None]], request: AsyncBoltRequest) -> None:
        """Run one lazy listener in the background (as Bolt's `AsyncioLazyListenerRunner`)."""
        task = asyncio.ensure_future(to_runnable_function(
            internal_func=function, logger=self.logger, request=request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run `work` (a command's answer after its ack) in the background, counted and
        drained like a lazy listener. `/image` uses this instead of a Bolt lazy listener: Bolt
        starts those with a deep copy of the whole request (`AsyncBoltRequest.to_copyable` and
        `copy.deepcopy`, slack_bolt/listener/asyncio_runner.py `_build_lazy_request`), for
        every command, even one with nothing to do after its ack; under a burst of creates
        that copy was half of Bolt's time per request (bench figure 1 profile)."""

        async def run() -> None:
            await work

        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def pending(self) -> int:
        """Lazy listeners and spawned answers still running."""
        return len(self.tasks)

    async def drain(self, within: float) -> None:
        """Let running lazy listeners finish for up to `within` seconds, then cancel the rest
        (before the stores they write to are closed)."""
        if not self.tasks:
            return
        _, late = await asyncio.wait(set(self.tasks), timeout=within)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# Send `text` as an ephemeral answer to a response_url (wiring: `SlackWeb.answer`).
SendToResponseUrl = Callable[[str, str], Awaitable[Any]]


@dataclass(frozen=True)
class AfterAck:
    """Answers a requester gets after the ack: sent on the bot's own Web API session
    (`send`, which retries what Slack did not take), in a task `runner` counts and drains
    on stop.

    Not Bolt's `respond`: with `process_before_response` Bolt answers Slack's HTTP request
    only when the listener returns, so a `respond()` awaited inside it held the ack back by a
    whole round trip to Slack; and Bolt's `AsyncRespond` builds an `AsyncWebhookClient` with
    no session, so slack_sdk opens a new aiohttp session (a new TLS connection) per answer
    (slack_bolt/context/respond/async_respond.py, slack_sdk/webhook/async_client.py)."""

    runner: LazyWork
    send: SendToResponseUrl

    def answer(self, response_url: str | None, work: Awaitable[str], *,
               failed: str = FAILED) -> None:
        """Prepare `work` (the answer's text) and send it, both after the ack; errors are
        handled as `answer_after_ack` says."""
        if not response_url:
            # A Home tab click carries no response_url (there is no message to answer).
            log.warning("an answer after the ack has no response_url to go to; dropped")
            _discard(work)
            return
        url = response_url

        async def deliver(text: str) -> None:
            await self.send(url, text)

        self.runner.spawn(answer_after_ack(work, deliver, failed=failed))

    def reply(self, response_url: str | None, text: str) -> None:
        """Send a text already decided, after the ack."""

        async def ready() -> str:
            return text

        self.answer(response_url, ready())


def _discard(work: Awaitable[str]) -> None:
    close = getattr(work, "close", None)  # a coroutine never awaited would warn
    if close is not None:
        close()


ClickHandler = Callable[..., Awaitable[Reply | None]]


def button_listener(handler: ClickHandler, after: AfterAck) -> Callable[..., Awaitable[None]]:
    """A Bolt action listener around a plain click handler `handler(action_id, value, user, *,
    channel, channel_name, response_url) -> Reply | None`: ack, decide (a row write, no slow
    work), and the clicker's ephemeral answer, if any, through the click's response_url after
    the ack (`after`): Slack gets its HTTP answer as soon as the decision is committed."""

    async def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        where = body.get("channel") or {}
        response_url = body.get("response_url")
        reply = await handler(action.get("action_id", ""), action.get("value", ""),
                              body.get("user", {}).get("id", ""), channel=where.get("id", ""),
                              channel_name=where.get("name"), response_url=response_url)
        if reply is not None:
            after.reply(response_url, reply.text)

    return on_click
