"""Who the bot is in Slack (workspace, app, bot user), learned once from `auth.test`.

Until `auth.test` has answered (it may fail at start with a 5xx, a 429 or a transient ok:false),
commands are answered "starting up" and the call is retried with back-off. Once known, only
requests from that workspace and that app are served, in both transports: an app installed in
two workspaces, or a signing secret shared between apps, must not let a second workspace create
jobs here.

`auth.test` names the team, the bot user and the bot id; the app id comes from `auth.test` when
Slack includes it, else from `bots.info` (its `bot.app_id`; "Use the app_id field to identify
whether a bot belongs to your Slack app", docs.slack.dev/reference/methods/bots.info, scope
users:read, which the manifest has).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

STARTING_UP = ":hourglass: imagebot is starting up; try again in a moment."
FOREIGN = "This bot does not serve this workspace."


@dataclass(frozen=True)
class BotIdentity:
    """The workspace and app the bot token belongs to."""

    team_id: str
    bot_id: str | None = None
    bot_user_id: str | None = None
    app_id: str | None = None
    enterprise_id: str | None = None
    is_enterprise_install: bool = False
    # For the start-up banner and log line only (auth.test's `team` and `user`).
    team_name: str | None = None
    bot_user_name: str | None = None
    # auth.test's `url` ("https://team.slack.com/"): thread links on the App Home.
    workspace_url: str | None = None

    def refusal(self, *, team_id: str | None, enterprise_id: str | None,
                api_app_id: str | None) -> str | None:
        """Why a (verified) request from this team/app is not ours to serve, or None."""
        if self.app_id and api_app_id != self.app_id:
            return f"app {api_app_id!r} is not {self.app_id!r}"
        if self.is_enterprise_install:
            if enterprise_id != self.enterprise_id:
                return f"organisation {enterprise_id!r} is not {self.enterprise_id!r}"
            return None
        if team_id != self.team_id:
            return f"workspace {team_id!r} is not {self.team_id!r}"
        return None


def _field(data: Any, key: str) -> Any:
    try:
        return data.get(key)
    except AttributeError:
        return None


class Identity:
    """Learns the `BotIdentity` in the background (`start()`), with back-off on failure."""

    def __init__(self, client: AsyncWebClient, *,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 first_delay: float = 0.5, max_delay: float = 60.0) -> None:
        self.client = client
        self.sleep = sleep
        self.first_delay, self.max_delay = first_delay, max_delay
        self.current: BotIdentity | None = None
        self.attempts = 0
        self._known = asyncio.Event()
        self._task: asyncio.Task[BotIdentity] | None = None

    def start(self) -> None:
        """Begin learning the identity (once; needs a running event loop)."""
        if self._task is None and self.current is None:
            self._task = asyncio.ensure_future(self._establish())

    async def stop(self) -> None:
        """Cancel an attempt still running."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None

    async def wait(self, within: float) -> BotIdentity | None:
        """The identity, waiting up to `within` seconds for an attempt under way."""
        if self.current is not None:
            return self.current
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._known.wait(), within)
        return self.current

    async def _establish(self) -> BotIdentity:
        delay = self.first_delay
        last_problem = ""
        while True:
            self.attempts += 1
            try:
                identity = await self._ask()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is worth another try; the log says which
                problem = _describe(exc)
                if problem != last_problem:
                    log.warning("auth.test failed (%s); retrying with back-off, commands are "
                                "answered 'starting up' meanwhile", problem)
                    last_problem = problem
                await self.sleep(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            self.current = identity
            self._known.set()
            log.info("serving workspace %s (%s) as @%s (%s), app %s", identity.team_name or "?",
                     identity.team_id, identity.bot_user_name or "?",
                     identity.bot_user_id or "?", identity.app_id or "?")
            return identity

    async def _ask(self) -> BotIdentity:
        auth = await self.client.auth_test()
        team_id = _field(auth, "team_id")
        if not team_id:
            raise ValueError("auth.test named no team_id")
        bot_id = _field(auth, "bot_id")
        app_id = _field(auth, "app_id")
        if not app_id and bot_id:
            info = await self.client.bots_info(bot=bot_id)
            app_id = _field(_field(info, "bot") or {}, "app_id")
        return BotIdentity(team_id=str(team_id), bot_id=bot_id,
                           bot_user_id=_field(auth, "user_id"), app_id=app_id,
                           enterprise_id=_field(auth, "enterprise_id"),
                           is_enterprise_install=bool(_field(auth, "is_enterprise_install")),
                           team_name=_field(auth, "team"), bot_user_name=_field(auth, "user"),
                           workspace_url=_field(auth, "url"))


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        status = getattr(response, "status_code", "?")
        error = _field(response, "error") or ""
        return f"HTTP {status} {error}".strip()
    return type(exc).__name__
