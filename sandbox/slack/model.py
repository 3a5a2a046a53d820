"""State of the emulated Slack workspace: users, channels, messages, ephemerals, response_urls.

Pure data plus an injected clock (`Callable[[], float]`, seconds since the epoch). Operations
raise `ApiError(code)` with Slack's error code; `sandbox.slack.app` turns that into
`{"ok": false, "error": code}`. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.slack.limits import RateLimiter

Clock = Callable[[], float]
Block = dict[str, Any]

TEAM_ID = "T0001"
TEAM_NAME = "Sandbox"
TEAM_DOMAIN = "sandbox"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_NAME = "imagebot"
APP_ID = "A0IMAGEBOT"
SLACKBOT_ID = "USLACKBOT"

# Slack's numbers (see the module docstring of sandbox.slack.app for sources).
MAX_POST_TEXT = 40_000
MAX_UPDATE_TEXT = 4_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_ID_LEN = 255
# What manifest.yml requests (tests/test_manifest.py keeps the two equal): the emulated app is
# installed with the app's scopes, so a method the manifest does not cover fails here too
# (sandbox.slack.scopes says which method needs which).
DEFAULT_BOT_SCOPES = ("commands", "chat:write", "chat:write.public", "channels:history",
                      "groups:history", "channels:read", "groups:read", "users:read",
                      "usergroups:read", "im:write", "im:history")
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
TRIGGER_TTL = 3.0


class ApiError(Exception):
    """A Slack error answer: `code` is Slack's error string, `status` the HTTP status."""

    def __init__(self, code: str, status: int = 200, detail: str | None = None) -> None:
        self.code = code
        self.status = status
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


@dataclass
class User:
    """A workspace member (or bot user)."""

    id: str
    name: str
    real_name: str
    is_bot: bool = False
    bot_id: str | None = None
    tz: str = "UTC"

    def to_api(self) -> dict[str, Any]:
        """The `user` object of users.info."""
        return {
            "id": self.id, "team_id": TEAM_ID, "name": self.name, "real_name": self.real_name,
            "deleted": False, "is_bot": self.is_bot, "is_app_user": False, "tz": self.tz,
            "profile": {"real_name": self.real_name, "display_name": self.name,
                        **({"bot_id": self.bot_id} if self.bot_id else {})},
        }


@dataclass
class UserGroup:
    """A user group (`@approvers`); `users` are user ids."""

    id: str
    handle: str
    name: str
    users: list[str] = field(default_factory=list)


@dataclass
class Channel:
    """A public or private channel, or a DM (`is_im`); `members` holds user ids."""

    id: str
    name: str
    is_private: bool = False
    members: set[str] = field(default_factory=set)
    is_im: bool = False
    created: int = 0

    def to_api(self, viewer: str = BOT_USER_ID) -> dict[str, Any]:
        """The `channel` object of conversations.info."""
        return {
            "id": self.id, "name": self.name, "is_channel": not self.is_private and not self.is_im,
            "is_group": self.is_private, "is_im": self.is_im, "is_private": self.is_private,
            "is_archived": False, "is_general": False, "created": self.created,
            "is_member": viewer in self.members, "num_members": len(self.members),
            **({"user": self.name} if self.is_im else {}),
        }


@dataclass
class Edit:
    """A previous version of a message, kept when it is edited."""

    at: float
    by: str
    text: str
    blocks: list[Block] | None


@dataclass
class Message:
    """A channel message or thread reply. `edits` holds the versions before the current one."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[Block] | None = None
    thread_ts: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    edits: list[Edit] = field(default_factory=list)
    deleted: bool = False
    via: str = "chat.postMessage"
    metadata: dict[str, Any] | None = None  # Slack message metadata (event_type, payload)

    @property
    def is_reply(self) -> bool:
        """True for a thread reply (including a broadcast one)."""
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def reply_broadcast(self) -> bool:
        """True when the reply was also sent to the channel."""
        return self.subtype == "thread_broadcast"

    def to_api(self) -> dict[str, Any]:
        """The message object as Slack returns it."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user,
                               "text": self.text, "team": TEAM_ID}
        if self.bot_id:
            out["bot_id"] = self.bot_id
            out["app_id"] = APP_ID
        if self.blocks is not None:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.subtype:
            out["subtype"] = self.subtype
        if self.edits:
            out["edited"] = {"user": self.edits[-1].by, "ts": self.ts}
        if self.metadata is not None:
            out["metadata"] = copy.deepcopy(self.metadata)
        return out


@dataclass
class Ephemeral:
    """A message only `user` sees, in `channel` (maybe in a thread)."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[Block] | None = None
    thread_ts: str | None = None
    author: str = BOT_USER_ID
    via: str = "chat.postEphemeral"
    deleted: bool = False
    edits: list[Edit] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """A message-shaped dict (as in a block_actions payload's container)."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.author,
                               "text": self.text, "is_ephemeral": True}
        if self.blocks is not None:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        return out


@dataclass
class ResponseUrl:
    """A `response_url` handed out with a slash command or block action.

    For actions, `message_ts` / `is_ephemeral` name the message the button sat on, which
    `replace_original` / `delete_original` act on. For commands the "original" is the last
    message posted through this url (including the ack body).
    """

    id: str
    channel: str
    user: str
    kind: str  # "command" | "action"
    created_at: float
    message_ts: str | None = None
    is_ephemeral: bool = False
    thread_ts: str | None = None
    uses: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Call:
    """One Web API call as the emulator saw it."""

    method: str
    params: dict[str, Any]
    status: int
    at: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when Slack would have answered ok."""
        return self.status == 200 and self.error is None


@dataclass
class CommandRun:
    """A slash command a user typed (what the Deliverer sent)."""

    user: str
    channel: str
    command: str
    text: str
    at: float
    trigger_id: str
    response_url_id: str


@dataclass
class ApiFault:
    """A scripted answer to the next `remaining` calls of `method` (None: every method).

    `error` is Slack's ok:false code (`internal_error`, `fatal_error`, `service_unavailable`,
    `request_timeout`, `ratelimited`, or a permanent one like `msg_too_long`); `body="html"`
    answers a non-JSON page instead (what a proxy in front of Slack sends when it fails)."""

    method: str | None
    error: str = "internal_error"
    status: int = 200
    remaining: int = 1
    retry_after: int | None = None
    body: str = "json"  # "json" | "html"


@dataclass(frozen=True)
class ButtonRef:
    """A button seen in a rendered transcript: what clicking it would send."""

    n: int
    channel: str
    message_ts: str
    action_id: str
    value: str | None
    block_id: str | None
    text: str
    ephemeral_for: str | None = None


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _text_of(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return str(obj.get("text", ""))
    return "" if obj is None else str(obj)


def validate_blocks(blocks: Any, *, max_blocks: int = MAX_BLOCKS) -> list[Block]:
    """Check Block Kit limits the way Slack does; raise `ApiError("invalid_blocks")`.
    Messages hold 50 blocks, views (modals, the Home tab) 100."""
    if not isinstance(blocks, list):
        raise ApiError("invalid_blocks", detail="blocks must be a list")
    if len(blocks) > max_blocks:
        raise ApiError("invalid_blocks", detail=f"more than {max_blocks} blocks")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise ApiError("invalid_blocks", detail=f"{where} has no type")
        if len(str(block.get("block_id", ""))) > MAX_ID_LEN:
            raise ApiError("invalid_blocks", detail=f"{where}.block_id too long")
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                raise ApiError("invalid_blocks", detail=f"{where} needs text or fields")
            if len(_text_of(block.get("text"))) > MAX_SECTION_TEXT:
                raise ApiError("invalid_blocks", detail=f"{where}.text over {MAX_SECTION_TEXT}")
            fields = block.get("fields") or []
            if len(fields) > MAX_FIELDS or any(len(_text_of(f)) > MAX_FIELD_TEXT for f in fields):
                raise ApiError("invalid_blocks", detail=f"{where}.fields over limits")
            if isinstance(block.get("accessory"), Mapping):
                _validate_element(block["accessory"], f"{where}.accessory")
        elif kind == "header":
            if len(_text_of(block.get("text"))) > MAX_HEADER_TEXT:
                raise ApiError("invalid_blocks", detail=f"{where}.text over {MAX_HEADER_TEXT}")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_ACTIONS_ELEMENTS:
                raise ApiError("invalid_blocks", detail=f"{where} needs 1-25 elements")
            for j, element in enumerate(elements):
                _validate_element(element, f"{where}.elements[{j}]")
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                raise ApiError("invalid_blocks", detail=f"{where} needs 1-10 elements")
    return [dict(b) for b in blocks]


def _validate_element(element: Any, where: str) -> None:
    if not isinstance(element, Mapping) or "type" not in element:
        raise ApiError("invalid_blocks", detail=f"{where} has no type")
    if len(str(element.get("action_id", ""))) > MAX_ID_LEN:
        raise ApiError("invalid_blocks", detail=f"{where}.action_id too long")
    if element["type"] == "button":
        if len(_text_of(element.get("text"))) > MAX_BUTTON_TEXT:
            raise ApiError("invalid_blocks", detail=f"{where}.text over {MAX_BUTTON_TEXT}")
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            raise ApiError("invalid_blocks", detail=f"{where}.value over {MAX_BUTTON_VALUE}")


def iter_buttons(blocks: Iterable[Block] | None) -> Iterable[tuple[str | None, Block]]:
    """(block_id, button element) for every button in `blocks`, in display order."""
    for block in blocks or []:
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif block.get("type") == "section" and isinstance(block.get("accessory"), Mapping):
            candidates = [block["accessory"]]
        for element in candidates:
            if isinstance(element, Mapping) and element.get("type") == "button":
                yield block.get("block_id"), dict(element)


class SlackWorkspace:
    """One emulated workspace with one bot. See the module docstring."""

    def __init__(self, clock: Clock | None = None, *, seed: bool = True,
                 rate_limits: RateLimiter | None = None,
                 bot_scopes: Iterable[str] = DEFAULT_BOT_SCOPES,
                 base_url: str = "http://slack.sandbox") -> None:
        self.clock: Clock = clock or time.time
        self.limits = rate_limits if rate_limits is not None else RateLimiter()
        self.socket_hub: Any = None  # set by the app: Socket Mode connections (I/O, not data)
        self.bot_scopes = set(bot_scopes)
        # Where response_urls point; running_slack() sets the real loopback address.
        self.base_url = base_url
        self.users: dict[str, User] = {}
        self.usergroups: dict[str, UserGroup] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, list[Message]] = {}
        self.ephemeral_messages: list[Ephemeral] = []
        self.response_urls: dict[str, ResponseUrl] = {}
        self.call_log: list[Call] = []
        self.commands: list[CommandRun] = []
        self.trigger_ids: dict[str, float] = {}
        self.used_triggers: set[str] = set()
        self.views: list[dict[str, Any]] = []
        # The Home tab (sandbox.slack.views): on as manifest.yml has it; the view each user
        # was last published, by user id; events sent to the app (app_home_opened, ...).
        self.home_tab_enabled = True
        self.home_views: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.outage_until: float = 0.0
        self.storm_remaining: int = 0
        self.storm_retry_after: int = 1
        self.api_faults: list[ApiFault] = []
        # The next `slow_responses_left` posts to a response_url wait `slow_response_seconds`
        # before they are shown and answered (a slow hooks endpoint; `slow_responses`).
        self.slow_response_seconds: float = 0.0
        self.slow_responses_left: int = 0
        self.last_buttons: dict[int, ButtonRef] = {}
        self._last_us = 0
        self._counter = itertools.count(1)
        self.add_user(User(BOT_USER_ID, BOT_NAME, "Image Bot", is_bot=True, bot_id=BOT_ID))
        self.add_user(User(SLACKBOT_ID, "slackbot", "Slackbot", is_bot=True))
        if seed:
            self._seed()

    # --- setup ---------------------------------------------------------------------------

    def _seed(self) -> None:
        for uid, name, real in (("U0ALICE", "alice", "Alice Admin"),
                                ("U0BOB", "bob", "Bob Builder"),
                                ("U0CAROL", "carol", "Carol Checker")):
            self.add_user(User(uid, name, real))
        humans = {"U0ALICE", "U0BOB", "U0CAROL"}
        self.add_channel(Channel("C0OPS", "ops", members=humans | {BOT_USER_ID}))
        self.add_channel(Channel("C0ALERTS", "ops-alerts", members=humans | {BOT_USER_ID}))
        self.add_channel(Channel("G0SECRET", "secret", is_private=True,
                                 members={"U0ALICE", "U0BOB"}))
        self.add_usergroup(UserGroup("S0APPROVERS", "approvers", "Image approvers",
                                     ["U0ALICE", "U0CAROL"]))

    def add_user(self, user: User) -> User:
        """Add or replace a user."""
        self.users[user.id] = user
        return user

    def add_channel(self, channel: Channel) -> Channel:
        """Add or replace a channel."""
        if not channel.created:
            channel.created = int(self.clock())
        self.channels[channel.id] = channel
        self.messages.setdefault(channel.id, [])
        return channel

    def add_load_channels(self, count: int) -> list[Channel]:
        """`count` more public channels, #load-0 … #load-<count-1> (ids C0LOAD<i>), with the
        seed's people and the bot in them (load tests spread their jobs over them)."""
        members = {"U0ALICE", "U0BOB", BOT_USER_ID}
        return [self.add_channel(Channel(f"C0LOAD{i}", f"load-{i}", members=set(members)))
                for i in range(count)]

    def add_usergroup(self, group: UserGroup) -> UserGroup:
        """Add or replace a user group."""
        self.usergroups[group.id] = group
        return group

    # --- lookups -------------------------------------------------------------------------

    def user(self, ref: str) -> User:
        """A user by id or name (with or without `@`); `ApiError("user_not_found")`."""
        if ref in self.users:
            return self.users[ref]
        name = ref.lstrip("@")
        for user in self.users.values():
            if user.name == name:
                return user
        raise ApiError("user_not_found")

    def channel(self, ref: str) -> Channel:
        """A channel by id or name (with or without `#`). A user id opens the DM with the bot."""
        if ref in self.channels:
            return self.channels[ref]
        if ref in self.users:
            return self.dm(ref)
        name = ref.lstrip("#")
        for channel in self.channels.values():
            if channel.name == name and not channel.is_im:
                return channel
        raise ApiError("channel_not_found")

    def dm(self, user_id: str) -> Channel:
        """The bot's DM with a user (`D…`), opened on first use as Slack opens the App Home's
        Messages tab."""
        dm_id = "D" + user_id[1:]
        if dm_id not in self.channels:
            self.add_channel(Channel(dm_id, user_id, is_im=True, members={user_id, BOT_USER_ID}))
        return self.channels[dm_id]

    def find_message(self, channel_id: str, ts: str) -> Message:
        """The (not deleted) message `ts` in `channel_id`; `ApiError("message_not_found")`."""
        for message in self.messages.get(channel_id, []):
            if message.ts == ts and not message.deleted:
                return message
        raise ApiError("message_not_found")

    def find_ephemeral(self, ts: str) -> Ephemeral:
        """The live ephemeral with `ts`; `ApiError("message_not_found")`."""
        for eph in self.ephemeral_messages:
            if eph.ts == ts and not eph.deleted:
                return eph
        raise ApiError("message_not_found")

    def bot_can_post(self, channel: Channel) -> bool:
        """Whether chat.postMessage as the bot may post into `channel`."""
        if BOT_USER_ID in channel.members:
            return True
        return not channel.is_private and not channel.is_im and \
            "chat:write.public" in self.bot_scopes

    # --- ids -----------------------------------------------------------------------------

    def next_ts(self) -> str:
        """A unique, strictly increasing message ts like `1764370000.000100`."""
        us = max(int(self.clock() * 1_000_000), self._last_us + 1)
        self._last_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def new_trigger_id(self) -> str:
        """A fresh trigger_id in Slack's shape."""
        tid = f"{next(self._counter)}.{int(self.clock())}.{secrets.token_hex(16)}"
        self.trigger_ids[tid] = self.clock()
        return tid

    def new_response_url(self, channel: str, user: str, kind: str, *,
                         message_ts: str | None = None, is_ephemeral: bool = False,
                         thread_ts: str | None = None) -> ResponseUrl:
        """Hand out a response_url (5 uses, 30 minutes)."""
        rid = f"{TEAM_ID}/{next(self._counter)}/{secrets.token_hex(12)}"
        ru = ResponseUrl(rid, channel, user, kind, self.clock(), message_ts=message_ts,
                         is_ephemeral=is_ephemeral, thread_ts=thread_ts)
        self.response_urls[rid] = ru
        return ru

    def response_url(self, ru: ResponseUrl) -> str:
        """The absolute URL of a response_url."""
        return f"{self.base_url.rstrip('/')}/response/{ru.id}"

    # --- Web API operations ------------------------------------------------------------------

    def post_message(self, channel_ref: str, *, text: str | None = None,
                     blocks: Any = None, thread_ts: str | None = None,
                     reply_broadcast: Any = False, user: str = BOT_USER_ID,
                     via: str = "chat.postMessage", check_membership: bool = True,
                     metadata: Any = None) -> Message:
        """chat.postMessage semantics (threads, broadcast, membership, text/blocks limits)."""
        channel = self.channel(channel_ref)
        if check_membership and user == BOT_USER_ID and not self.bot_can_post(channel):
            raise ApiError("not_in_channel")
        text, blocks = _post_body(text, blocks)
        parent_ts: str | None = None
        if thread_ts:
            # Slack threads a reply to a reply under the same parent.
            parent = self.find_thread_parent(channel.id, str(thread_ts))
            parent_ts = parent.ts
        message = Message(
            channel=channel.id, ts=self.next_ts(), user=user, text=text, blocks=blocks,
            thread_ts=parent_ts,
            subtype="thread_broadcast" if parent_ts and _to_bool(reply_broadcast) else None,
            bot_id=self.users[user].bot_id if user in self.users else None, via=via,
            metadata=_metadata(metadata),
        )
        self.messages[channel.id].append(message)
        return message

    def history(self, channel_ref: str, *, oldest: float = 0.0, latest: float | None = None,
                limit: int = 100, with_metadata: bool = False) -> list[dict[str, Any]]:
        """conversations.history: top-level messages (and broadcasts), newest first."""
        channel = self._readable(channel_ref)
        found = [m for m in self.messages[channel.id]
                 if not m.deleted and (not m.is_reply or m.reply_broadcast)
                 and float(m.ts) >= oldest and (latest is None or float(m.ts) <= latest)]
        found.sort(key=lambda m: float(m.ts), reverse=True)
        return [_api_view(m, with_metadata) for m in found[:max(1, min(limit, 999))]]

    def replies(self, channel_ref: str, ts: str, *, limit: int = 1000,
                with_metadata: bool = False) -> list[dict[str, Any]]:
        """conversations.replies: the parent, then its replies, oldest first."""
        channel = self._readable(channel_ref)
        parent = self.find_thread_parent(channel.id, ts)
        thread = [parent] + [m for m in self.messages[channel.id]
                             if m.thread_ts == parent.ts and m.ts != parent.ts and not m.deleted]
        thread.sort(key=lambda m: float(m.ts))
        return [_api_view(m, with_metadata) for m in thread[:max(1, min(limit, 1000))]]

    def _readable(self, channel_ref: str) -> Channel:
        channel = self.channel(channel_ref)
        if (channel.is_private or channel.is_im) and BOT_USER_ID not in channel.members:
            raise ApiError("channel_not_found")
        return channel

    def find_thread_parent(self, channel_id: str, thread_ts: str) -> Message:
        """The top-level message a thread_ts points at; `ApiError("thread_not_found")`."""
        try:
            message = self.find_message(channel_id, thread_ts)
        except ApiError:
            raise ApiError("thread_not_found") from None
        if message.is_reply:
            return self.find_message(channel_id, message.thread_ts or "")
        return message

    def update_message(self, channel_ref: str, ts: str, *, text: str | None = None,
                       blocks: Any = None, by: str = BOT_USER_ID,
                       max_text: int = MAX_UPDATE_TEXT, any_author: bool = False) -> Message:
        """chat.update semantics: only the bot's own messages; blocks kept unless given."""
        channel = self.channel(channel_ref)
        message = self.find_message(channel.id, ts)
        if not any_author and message.user != by:
            raise ApiError("cant_update_message")
        if blocks is not None:
            blocks = validate_blocks(blocks)
        if text is not None and len(str(text)) > max_text:
            raise ApiError("msg_too_long")
        if text is None and blocks is None:
            raise ApiError("no_text")
        message.edits.append(Edit(self.clock(), by, message.text, message.blocks))
        if text is not None:
            message.text = str(text)
        if blocks is not None:
            message.blocks = blocks
        return message

    def post_ephemeral(self, channel_ref: str, user_ref: str, *, text: str | None = None,
                       blocks: Any = None, thread_ts: str | None = None,
                       via: str = "chat.postEphemeral", check_membership: bool = True,
                       author: str = BOT_USER_ID) -> Ephemeral:
        """chat.postEphemeral semantics (the user must be in the channel)."""
        channel = self.channel(channel_ref)
        user = self.user(user_ref)
        if check_membership:
            if not self.bot_can_post(channel):
                raise ApiError("not_in_channel")
            if user.id not in channel.members:
                raise ApiError("user_not_in_channel")
        text, blocks = _post_body(text, blocks)
        eph = Ephemeral(channel.id, user.id, self.next_ts(), text, blocks,
                        thread_ts=str(thread_ts) if thread_ts else None, via=via, author=author)
        self.ephemeral_messages.append(eph)
        return eph

    def open_view(self, trigger_id: str, view: Any, user: str | None = None) -> dict[str, Any]:
        """views.open: a trigger_id works once, within 3 seconds of the click or command."""
        issued = self.trigger_ids.get(trigger_id)
        if issued is None:
            raise ApiError("invalid_trigger_id")
        if trigger_id in self.used_triggers:
            raise ApiError("exchanged_trigger_id")
        if self.clock() - issued > TRIGGER_TTL:
            raise ApiError("expired_trigger_id")
        if not isinstance(view, Mapping) or view.get("type") not in ("modal", "home"):
            raise ApiError("invalid_arguments", detail="view must be a modal")
        blocks = view.get("blocks") or []
        if not isinstance(blocks, list) or len(blocks) > 100:
            raise ApiError("invalid_arguments", detail="a modal holds at most 100 blocks")
        self.used_triggers.add(trigger_id)
        opened = {**copy.deepcopy(dict(view)), "id": f"V{next(self._counter):08d}",
                  "team_id": TEAM_ID, "trigger_id": trigger_id, "user": user}
        self.views.append(opened)
        return opened

    # --- response_url ------------------------------------------------------------------------

    def respond(self, rid: str, payload: Mapping[str, Any], *, counts: bool = True) -> None:
        """A POST to a response_url. `counts=False` for the slash-command ack body."""
        ru = self.response_urls.get(rid)
        if ru is None:
            raise ApiError("invalid_url", status=404)
        if self.clock() - ru.created_at > RESPONSE_URL_TTL:
            raise ApiError("expired_url", status=404)
        if counts and ru.uses >= RESPONSE_URL_USES:
            raise ApiError("used_url", status=404)
        if not isinstance(payload, Mapping):
            raise ApiError("invalid_payload", status=400)
        text = payload.get("text")
        blocks = payload.get("blocks")
        if blocks is not None:
            try:
                blocks = validate_blocks(blocks)
            except ApiError as exc:
                raise ApiError("invalid_blocks", status=400, detail=exc.detail) from None
        delete = _to_bool(payload.get("delete_original", False))
        replace = _to_bool(payload.get("replace_original", False))
        if not delete and not text and not blocks:
            raise ApiError("no_text", status=400)
        if counts:
            ru.uses += 1
        ru.posts.append({"at": self.clock(), **dict(payload)})
        if delete:
            self._delete_original(ru)
            return
        if replace and ru.message_ts and self._replace_original(ru, text, blocks):
            return
        in_channel = payload.get("response_type") == "in_channel"
        thread_ts = payload.get("thread_ts") or ru.thread_ts
        if in_channel:
            # response_urls post even where the bot is not a member (that is their point).
            msg = self.post_message(ru.channel, text=text, blocks=blocks, thread_ts=thread_ts,
                                    via="response_url", check_membership=False)
            new_ts, is_eph = msg.ts, False
        else:
            eph = self.post_ephemeral(ru.channel, ru.user, text=text, blocks=blocks,
                                      thread_ts=thread_ts, via="response_url",
                                      check_membership=False)
            new_ts, is_eph = eph.ts, True
        if ru.kind == "command":
            ru.message_ts, ru.is_ephemeral = new_ts, is_eph

    def _replace_original(self, ru: ResponseUrl, text: Any, blocks: Any) -> bool:
        try:
            if ru.is_ephemeral:
                eph = self.find_ephemeral(ru.message_ts or "")
                eph.edits.append(Edit(self.clock(), "response_url", eph.text, eph.blocks))
                eph.text = "" if text is None else str(text)
                eph.blocks = blocks
            else:
                msg = self.find_message(ru.channel, ru.message_ts or "")
                msg.edits.append(Edit(self.clock(), "response_url", msg.text, msg.blocks))
                msg.text = "" if text is None else str(text)
                msg.blocks = blocks
        except ApiError:
            return False
        return True

    def _delete_original(self, ru: ResponseUrl) -> None:
        if not ru.message_ts:
            return
        try:
            if ru.is_ephemeral:
                self.find_ephemeral(ru.message_ts).deleted = True
            else:
                self.find_message(ru.channel, ru.message_ts).deleted = True
        except ApiError:
            pass

    # --- faults --------------------------------------------------------------------------

    def start_outage(self, seconds: float) -> float:
        """Answer every Web API call with 503 for `seconds` of the clock; returns the end."""
        self.outage_until = self.clock() + max(0.0, float(seconds))
        return self.outage_until

    def start_storm(self, calls: int, retry_after: int = 1) -> None:
        """Answer the next `calls` Web API calls with 429 + `Retry-After: retry_after`."""
        self.storm_remaining = max(0, int(calls))
        self.storm_retry_after = max(1, int(retry_after))

    def add_fault(self, fault: ApiFault) -> None:
        """Queue a scripted ok:false (or non-JSON) answer; see `ApiFault`."""
        if fault.body not in ("json", "html"):
            raise ValueError("body must be json or html")
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        self.api_faults.append(fault)

    def slow_responses(self, seconds: float, count: int = 1) -> None:
        """Hold each of the next `count` response_url posts for `seconds` (wall time) before
        it is shown and answered."""
        if seconds < 0 or count < 0:
            raise ValueError("seconds and count must not be negative")
        self.slow_response_seconds, self.slow_responses_left = float(seconds), int(count)

    def take_response_delay(self) -> float:
        """How long this response_url post waits (0 once the slow ones are used up)."""
        if self.slow_responses_left <= 0:
            return 0.0
        self.slow_responses_left -= 1
        return self.slow_response_seconds

    def take_fault(self, method: str, *, exact: bool = False) -> ApiFault | None:
        """The first scripted fault for `method`, consuming one of its uses (`exact`: only
        one scripted for `method` by name, not one for every method)."""
        for fault in self.api_faults:
            if fault.method == method or (fault.method is None and not exact):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.api_faults.remove(fault)
                return fault
        return None

    # --- recording and assertions -------------------------------------------------------------

    def record(self, method: str, params: Mapping[str, Any], status: int,
               error: str | None = None) -> Call:
        """Log one Web API call."""
        call = Call(method, dict(params), status, self.clock(), error)
        self.call_log.append(call)
        return call

    def calls(self, method: str | None = None) -> list[Call]:
        """Recorded Web API calls, oldest first, optionally of one method."""
        return [c for c in self.call_log if method is None or c.method == method]

    def all_messages(self, channel_id: str) -> list[Message]:
        """Every live message in the channel (top-level and replies), in ts order."""
        live = [m for m in self.messages.get(channel_id, []) if not m.deleted]
        return sorted(live, key=lambda m: _ts_key(m.ts))

    def channel_messages(self, channel_id: str) -> list[Message]:
        """What the channel shows: top-level messages and broadcast replies, in ts order."""
        return [m for m in self.all_messages(channel_id)
                if not m.is_reply or m.reply_broadcast]

    def thread(self, channel_id: str, ts: str) -> list[Message]:
        """The replies under parent `ts` (the parent itself excluded), in ts order."""
        return [m for m in self.all_messages(channel_id) if m.is_reply and m.thread_ts == ts]

    def ephemerals(self, user: str, channel_id: str | None = None) -> list[Ephemeral]:
        """Live ephemerals shown to `user` (optionally in one channel), in ts order."""
        found = [e for e in self.ephemeral_messages if e.user == user and not e.deleted
                 and (channel_id is None or e.channel == channel_id)]
        return sorted(found, key=lambda e: _ts_key(e.ts))

    def button(self, n: int) -> ButtonRef:
        """Button number `n` of the last rendered transcript."""
        try:
            return self.last_buttons[n]
        except KeyError:
            raise KeyError(f"no button [{n}] in the last transcript") from None

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot for `/_emu/state`."""
        now = self.clock()
        return {
            "now": now,
            "team": {"id": TEAM_ID, "name": TEAM_NAME, "domain": TEAM_DOMAIN},
            "bot": {"user_id": BOT_USER_ID, "bot_id": BOT_ID, "name": BOT_NAME,
                    "scopes": sorted(self.bot_scopes)},
            "users": [u.to_api() for u in self.users.values()],
            "usergroups": [{"id": g.id, "handle": g.handle, "name": g.name, "users": g.users}
                           for g in self.usergroups.values()],
            "channels": [{**c.to_api(), "members": sorted(c.members),
                          "messages": len(self.all_messages(c.id))}
                         for c in self.channels.values()],
            "ephemerals": len([e for e in self.ephemeral_messages if not e.deleted]),
            "calls": len(self.call_log),
            "faults": {"outage_for": max(0.0, self.outage_until - now),
                       "storm_remaining": self.storm_remaining,
                       "scripted": sum(f.remaining for f in self.api_faults),
                       "slow_responses": self.slow_responses_left},
            "rate_limits": {"enabled": self.limits.enabled, "scale": self.limits.scale},
        }


def _ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    return int(sec), int(frac or 0)


def _metadata(value: Any) -> dict[str, Any] | None:
    """Slack's `metadata` argument: {"event_type": str, "event_payload": object} or JSON text."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError("invalid_metadata_format") from None
    if not isinstance(value, dict) or not isinstance(value.get("event_type"), str) or \
            not isinstance(value.get("event_payload", {}), dict):
        raise ApiError("invalid_metadata_schema")
    return {"event_type": value["event_type"], "event_payload": value.get("event_payload", {})}


def _api_view(message: Message, with_metadata: bool) -> dict[str, Any]:
    out = message.to_api()
    if not with_metadata:
        out.pop("metadata", None)
    return out


def _post_body(text: Any, blocks: Any) -> tuple[str, Any]:
    """The text and blocks of a new message, checked as chat.postMessage/postEphemeral do."""
    text = "" if text is None else str(text)
    if blocks is not None:
        blocks = validate_blocks(blocks)
    if not text and not blocks:
        raise ApiError("no_text")
    if len(text) > MAX_POST_TEXT:
        raise ApiError("msg_too_long")
    return text, blocks
