"""The App Home tab's shell: `app_home_opened` -> gather from the store -> `views.publish`.

- Opening the tab (`app_home_opened`, tab "home") only remembers the user and wakes the Home
  loop: the listener returns at once (Slack wants the event acked within 3 s; Bolt answers
  after the listener with `process_before_response`), and the view is built and published by
  the loop (`HomeTabs.run`, started by `Runtime.start`).
- Refreshed when something changes (`changed()`, called by the runtime's `poke` and the
  engine's change hook: it only marks the users and sets an event, so it never blocks the
  notifier or an ack): each user is at most once in the queue (a burst of changes makes one
  publish per user), the view is built from the state at publish time and published only if it
  differs from the last one, and publishes are paced under `views.publish`'s limit (Tier 4,
  "100+ per minute": docs.slack.dev/reference/methods/views.publish). A slow backstop pass
  refreshes times that move on their own (next runs, expiries).
- Who is refreshed: the users who opened the tab, remembered IN MEMORY (for `HOME_TTL`, at most
  `MAX_VIEWERS`). Slack sends `app_home_opened` every time someone opens the tab, so after a
  restart a tab is rebuilt the moment it is looked at again; only a tab left open across the
  restart misses live refreshes until then. A table would keep who looks at the bot, for no
  gain a person would notice.
- Scope: only channels the user is a member of (`ChannelDirectory.members`, cached) whose
  policy enables imagebot; a private channel's rows are so seen only by its members.
- Approve / Reject on the tab go to the schedule buttons' handler (`ScheduleCommands.on_click`,
  the channel card's path and its permission check) with `direct=True`; the outcome is shown at
  the top of the tab (a Home click has no response_url), and the channel card is rewritten by
  the schedule loop as for any decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.blocks import user_text
from bot.errors import ImagebotError, MembershipUnknown, SlackUnavailable
from bot.imaging import jobs
from bot.loops import run_until
from bot.scheduling.approvals import ApprovalRules
from bot.scheduling.due import DEFAULT_WINDOW, due, zone
from bot.scheduling.messages import APPROVE_ACTION as CARD_APPROVE
from bot.scheduling.messages import REJECT_ACTION as CARD_REJECT
from bot.scheduling.rows import schedule_spec
from bot.scheduling.service import ScheduleService
from bot.slack.directory import ApiCaller
from bot.slack.home_view import (
    APPROVE_ACTION,
    REJECT_ACTION,
    HomeSchedule,
    home_view,
    may_decide,
    select,
)
from bot.slack.identity import Identity
from bot.slack.pacing import TokenBucket
from bot.slack.routing import AfterAck, Channels, ClickHandler, button_listener
from bot.slack.types import Reply
from bot.store import AsyncStore, RequestRow, ScheduleRow, Store
from bot.vocabulary import RequestStatus

log = logging.getLogger(__name__)

BUTTONS = re.compile(f"^(?:{re.escape(APPROVE_ACTION)}|{re.escape(REJECT_ACTION)})$")

HOME_TTL = timedelta(hours=24)  # a tab not opened for a day is not refreshed any more
MAX_VIEWERS = 1000
NOTICE_TTL = timedelta(minutes=10)
GROUPS_TTL = timedelta(seconds=60)
UNKNOWN_TTL = timedelta(seconds=60)  # a channel whose members Slack would not tell
_NEVER = datetime.min.replace(tzinfo=UTC)
# A tenth under Tier 4's 100 a minute, with a small burst (as bot.slack.pacing does).
PUBLISH_RATE = 0.9 * 100 / 60
PUBLISH_BURST = 5.0
SETTLE = 0.25  # seconds: changes arriving together make one rebuild
BACKSTOP = 60.0  # seconds between passes that refresh every tab anyway
RETRY = 5.0  # seconds to wait after Slack was unavailable without a Retry-After
FAILURES_READ = 50
MINE_READ = 20


@dataclass
class _Pass:
    """What every tab of one pass shares, read once."""

    running: list[jobs.Job]
    failures: list[jobs.Job]
    pending: list[RequestRow]
    schedules: list[HomeSchedule]
    # `HomeTabs._generation` when the reads began: a change marked after them (a decision, a
    # click's outcome) is shown by a new pass, never with data read before it.
    generation: int = 0


@dataclass
class HomeTabs:
    """The Home tabs of the users who opened one: remembered, rebuilt and published."""

    store: AsyncStore
    web: ApiCaller
    channels: Channels
    clock: Callable[[], datetime]
    schedules: ScheduleService | None = None
    identity: Identity | None = None
    # The schedule buttons' click handler (`ScheduleCommands.on_click`); None: no buttons work.
    decide: ClickHandler | None = None
    scale: float = 1.0  # multiplies the publish rate (the sandbox runs Slack's clock faster)
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    settle: float = SETTLE
    backstop: float = BACKSTOP
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    publishes: int = 0
    _viewers: dict[str, datetime] = field(default_factory=dict)  # user -> last opened
    # Ordered: who is refreshed next, with the `_generation` of the change that marked them.
    _dirty: dict[str, int] = field(default_factory=dict)
    _published: dict[str, str] = field(default_factory=dict)  # user -> last view (JSON)
    _notices: dict[str, tuple[datetime, str, int]] = field(default_factory=dict)
    _generation: int = 0  # bumped whenever a tab is marked to refresh, to order reads
    _groups: dict[tuple[str, frozenset[str]], tuple[datetime, frozenset[str]]] = \
        field(default_factory=dict)
    _unknown: dict[str, datetime] = field(default_factory=dict)  # channel -> when refused
    _bucket: TokenBucket | None = None
    _paused_until: float = 0.0
    _last_sweep: float = 0.0

    # --- what the rest of the bot calls (never blocks) -------------------------------------

    def opened(self, user: str) -> None:
        """`user` opened their Home tab: remember them and publish theirs first."""
        self._viewers.pop(user, None)
        self._viewers[user] = self.clock()
        while len(self._viewers) > MAX_VIEWERS:
            oldest = next(iter(self._viewers))
            self._forget(oldest)
        self._notices.pop(user, None)  # a fresh look starts without the last click's outcome
        self._mark(user, first=True)
        self.wake.set()

    def changed(self) -> None:
        """Something a tab may show changed: refresh every remembered tab (coalesced)."""
        for user in self._viewers:
            self._mark(user)
        if self._viewers:
            self.wake.set()

    def tell(self, user: str, text: str) -> None:
        """Show `text` (mrkdwn) at the top of `user`'s tab for a while, and republish it."""
        self._notices[user] = (self.clock(), text, self._generation + 1)
        if user in self._viewers:
            self._mark(user, first=True)
            self.wake.set()
        else:
            self._generation += 1

    def _mark(self, user: str, *, first: bool = False) -> None:
        """Queue `user`'s tab for a refresh (`first`: ahead of the others), as of a new
        generation: a pass that read the store before it publishes that user again."""
        self._generation += 1
        if first:
            self._dirty = {user: self._generation,
                           **{u: g for u, g in self._dirty.items() if u != user}}
        else:
            self._dirty[user] = self._generation

    @property
    def viewers(self) -> frozenset[str]:
        """The users whose tab is kept fresh."""
        return frozenset(self._viewers)

    async def on_click(self, action_id: str, value: str, user: str, *, channel: str = "",
                       channel_name: str | None = None,
                       response_url: str | None = None) -> Reply | None:
        """Approve / Reject on the Home tab: the channel card's handler with `direct=True`;
        its answer goes to the top of the tab (there is no response_url to answer with)."""
        if self.decide is None:
            return None
        approve = action_id == APPROVE_ACTION
        reply = await self.decide(CARD_APPROVE if approve else CARD_REJECT, value, user,
                                  channel=channel, channel_name=channel_name,
                                  response_url=response_url, direct=True)
        done = ":white_check_mark:" if approve else ":x:"
        self.tell(user, reply.text if reply is not None else
                  f"{done} You {'approved' if approve else 'rejected'} "
                  f"{user_text(value)}; its message in the channel says so too.")
        self.changed()
        return None

    # --- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Publish what is due until `stop` is set; `wake` (set by `opened`, `changed`) ends
        the wait early."""
        await run_until(stop, self.wake, self.step, name="home", fallback=self.backstop)

    async def step(self) -> float:
        """One pass: publish the queued tabs the rate allows; seconds until the next pass."""
        now = asyncio.get_running_loop().time()
        if self._bucket is None:
            self._bucket = TokenBucket(rate=PUBLISH_RATE * self.scale, burst=PUBLISH_BURST)
            self._last_sweep = now
        if now - self._last_sweep >= self.backstop:
            self._last_sweep = now
            self.changed()
        self._forget_stale()
        if not self._dirty:
            return self.backstop
        if now < self._paused_until:
            return self._paused_until - now
        await self.sleep(self.settle)  # let a burst of changes land: one build for all
        shared = await self._read_pass()
        again: dict[str, int] = {}  # marked after this pass read: refreshed by the next one
        try:
            return await self._publish_due(shared, again)
        finally:
            for user, marked in again.items():
                self._dirty.setdefault(user, marked)

    async def _publish_due(self, shared: _Pass, again: dict[str, int]) -> float:
        assert self._bucket is not None
        while self._dirty:
            wait = self._bucket.delay(asyncio.get_running_loop().time())
            if wait > 0:
                return wait
            user, marked = next(iter(self._dirty.items()))
            del self._dirty[user]
            if marked > shared.generation:
                again[user] = marked  # this pass still publishes it: progress under changes
            try:
                await self._refresh(user, shared)
            except SlackUnavailable as exc:
                self._dirty = {user: marked, **self._dirty}  # first again, not starved
                pause = exc.retry_after or RETRY
                self._paused_until = asyncio.get_running_loop().time() + pause
                log.warning("could not publish a Home tab (%s); again in %.0f s", exc, pause)
                return pause
            except ImagebotError as exc:  # refused (not_enabled, a view Slack will not take)
                log.warning("could not publish %s's Home tab: %s", user, exc)
        return 0.0 if again else self.backstop

    async def _refresh(self, user: str, shared: _Pass) -> None:
        view = await self.build(user, shared)
        body = json.dumps(view, sort_keys=True)
        if self._published.get(user) == body:
            return  # unchanged: no call spent
        assert self._bucket is not None
        self._bucket.take(asyncio.get_running_loop().time())
        await self.web._call("views.publish", user_id=user, view=view)
        self._published[user] = body
        self.publishes += 1

    def _forget(self, user: str) -> None:
        self._viewers.pop(user, None)
        self._dirty.pop(user, None)
        self._published.pop(user, None)
        self._notices.pop(user, None)

    def _forget_stale(self) -> None:
        now = self.clock()
        for user, at in list(self._viewers.items()):
            if now - at > HOME_TTL:
                self._forget(user)
        for user, (at, _, _) in list(self._notices.items()):
            if now - at > NOTICE_TTL:
                del self._notices[user]

    # --- gathering -------------------------------------------------------------------------

    async def _read_pass(self) -> _Pass:
        store, now, generation = self.store, self.clock(), self._generation
        running = await store.run(Store.in_flight_jobs)
        failures = await store.run(Store.list_jobs, states=[jobs.FAILED], limit=FAILURES_READ)
        pending = await store.run(Store.list_change_requests, statuses=[RequestStatus.PENDING])
        window = self.schedules.loop.window if self.schedules is not None else DEFAULT_WINDOW
        schedules: list[HomeSchedule] = []
        for row in await store.run(Store.list_schedules, status="active"):
            spec = schedule_spec(row)
            decision = due(spec, created_at=row.effective_at, last_slot=row.last_slot, now=now,
                           window=window)
            nxt = decision.slot if decision.action == "run" else decision.next_at
            schedules.append(HomeSchedule(row, (nxt.astimezone(zone(spec.tz)), nxt)
                                          if nxt else None))
        return _Pass(running, failures, pending, schedules, generation)

    async def build(self, user: str, shared: _Pass | None = None) -> dict[str, Any]:
        """`user`'s Home view from the store as it is now."""
        shared = shared or await self._read_pass()
        now = self.clock()
        mine = await self.store.run(Store.list_change_requests, requested_by=user,
                                    newest_first=True, limit=MINE_READ)
        requests = {r.id: r for r in [*shared.pending, *mine]}
        names: dict[str, str | None] = {}
        rows: list[jobs.Job | RequestRow | ScheduleRow] = [
            *shared.running, *shared.failures, *requests.values(),
            *(s.row for s in shared.schedules)]
        for row in rows:
            names.setdefault(row.channel, row.channel_name)
        visible = {c for c, name in names.items() if await self._sees(user, c, name)}
        decidable: set[str] = set()
        for r in shared.pending:
            if r.channel in visible:
                rules = (await self.channels.policy_of(r.channel, r.channel_name)
                         ).approval_rules()
                if may_decide(r, user, rules, await self._user_groups(user, rules)):
                    decidable.add(r.id)
        known = self.identity.current if self.identity is not None else None
        notice = self._notices.get(user)
        if notice is not None and notice[2] > shared.generation:
            notice = None  # told after this pass read the store: shown by the next pass
        data = select(user, now, running=shared.running, failures=shared.failures,
                      requests=list(requests.values()), schedules=shared.schedules,
                      visible=visible, decidable=decidable,
                      workspace_url=known.workspace_url if known else None,
                      notice=notice[1] if notice else None)
        return home_view(data)

    async def _sees(self, user: str, channel: str, name: str | None) -> bool:
        """Is `user` in `channel`, with imagebot enabled there? Unknown membership: no."""
        if not (await self.channels.policy_of(channel, name)).enabled:
            return False
        directory = self.channels.directory
        if directory is None:
            return False
        now = self.clock()
        if now - self._unknown.get(channel, _NEVER) < UNKNOWN_TTL:
            return False
        try:
            return user in await directory.members(channel)
        except MembershipUnknown:
            # Not asked again for a while: a channel the bot is not in answers the same for
            # every tab of every pass (the directory caches only answers).
            self._unknown[channel] = now
            return False

    async def _user_groups(self, user: str, rules: ApprovalRules) -> frozenset[str]:
        resolver = self.channels.member_groups
        if not rules.approver_groups or resolver is None:
            return frozenset()
        key, now = (user, rules.approver_groups), self.clock()
        cached = self._groups.get(key)
        if cached and now - cached[0] < GROUPS_TTL:
            return cached[1]
        found = await resolver(user, rules.approver_groups)
        self._groups[key] = (now, found)
        return found


def register(app: AsyncApp, home: HomeTabs, after: AfterAck) -> HomeTabs:
    """Listen for `app_home_opened` and the Home tab's Approve / Reject buttons."""

    async def on_opened(event: dict[str, Any]) -> None:
        # app_home_opened also fires for the Messages tab (`tab: "messages"`): nothing to do.
        if event.get("tab", "home") == "home" and event.get("user"):
            home.opened(str(event["user"]))

    app.event("app_home_opened")(on_opened)
    app.action(BUTTONS)(button_listener(home.on_click, after))
    return home


async def close(home: HomeTabs | None) -> None:
    """Close the Home tab's own store connection."""
    if home is not None:
        with contextlib.suppress(Exception):
            await home.store.close()
