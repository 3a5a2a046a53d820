"""The channel policy (`imagebot.toml`): which cloud, servers, creators and approvers per channel.

The file (path in `IMAGEBOT_POLICY`) has a `[default]` table and one table per channel under
`[channels]`, keyed by channel id (`[channels.C0OPS]`) or name (`[channels."#ops"]`). A channel
table overrides the keys it sets and inherits the rest from `[default]`; channels without a table
get `[default]`. See examples/imagebot.toml for every key.

Without a file, `Policy.default()` applies: any channel, the default cloud, anyone may create,
any member other than the requester may approve.

Every mistake raises `PolicyError` naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from bot.blocks import escape
from bot.errors import PolicyError
from bot.scheduling.approvals import DEFAULT_EXPIRY, ApprovalRules

ENV_VAR = "IMAGEBOT_POLICY"
CHANNEL_KEYS = ("enabled", "cloud", "servers", "creators", "approvers", "allow_self_approval",
                "approval_expiry", "notify_channel", "mention", "admins")
# The one line a disabled channel answers to every command (help excepted).
DISABLED_TEXT = "imagebot is disabled in this channel."
TOP_KEYS = ("default", "channels")
MIN_EXPIRY = timedelta(minutes=1)
MAX_EXPIRY = timedelta(days=30)

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_CHANNEL_NAME = re.compile(r"^#[a-z0-9][a-z0-9_\-]{0,79}$")
_USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,})(\|[^>]*)?>$")
_GROUP_MENTION = re.compile(r"^<!subteam\^(S[A-Z0-9]{2,})(\|[^>]*)?>$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)")


@dataclass(frozen=True)
class ChannelPolicy:
    """The effective rules for one channel ([default] merged with the channel's own table)."""

    name: str = "default"  # the table it came from: "default", "C0OPS" or "#ops"
    enabled: bool = True
    cloud: str | None = None  # clouds.yaml entry; None = the bot's default cloud
    servers: tuple[str, ...] = ("*",)  # fnmatch patterns (case-sensitive) on server names
    creators: frozenset[str] = frozenset()  # user ids; empty (with no groups) = anyone
    creator_groups: frozenset[str] = frozenset()  # user-group ids (S...)
    approvers: frozenset[str] = frozenset()  # empty (with no groups) = any other member
    approver_groups: frozenset[str] = frozenset()
    allow_self_approval: bool = False
    approval_expiry: timedelta = DEFAULT_EXPIRY
    notify_channel: str | None = None  # "#ops-alerts" or an id; None = the request's channel
    mention: str | None = None  # e.g. "<!here>"; None = mention nobody
    # Who may ask for other channels' jobs, schedules and requests (`--all`); empty = nobody.
    admins: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()

    def may_create(self, user: str, user_groups: frozenset[str] = frozenset()) -> bool:
        """May `user` (member of `user_groups`) create images and propose schedules here?"""
        if not self.enabled:
            return False
        if not self.creators and not self.creator_groups:
            return True
        return user in self.creators or bool(self.creator_groups & user_groups)

    def is_admin(self, user: str, user_groups: frozenset[str] = frozenset()) -> bool:
        """May `user` use `--all` here? Only people the policy names (never "anyone")."""
        return self.enabled and (user in self.admins or bool(self.admin_groups & user_groups))

    def may_touch(self, server_name: str) -> bool:
        """Does some `servers` pattern match this server name?"""
        return self.enabled and any(fnmatchcase(server_name, p) for p in self.servers)

    def approval_rules(self) -> ApprovalRules:
        """The approval rules for change requests made in this channel."""
        return ApprovalRules(approvers=self.approvers, approver_groups=self.approver_groups,
                             allow_self_approval=self.allow_self_approval,
                             expiry=self.approval_expiry)

    def who_may_create(self) -> str:
        """Slack mrkdwn naming who may create here (for refusal messages)."""
        if not self.enabled:
            return "nobody (imagebot is disabled in this channel)"
        names = [f"<@{u}>" for u in sorted(self.creators)]
        names += [f"members of <!subteam^{g}>" for g in sorted(self.creator_groups)]
        return ", ".join(names) if names else "anyone"


@dataclass(frozen=True)
class Policy:
    """All channel policies; `for_channel` picks the effective one."""

    fallback: ChannelPolicy = field(default_factory=ChannelPolicy)  # [default]
    channels: Mapping[str, ChannelPolicy] = field(default_factory=dict)
    path: str | None = None

    @classmethod
    def default(cls) -> Policy:
        """The policy without a file: any channel, default cloud, anyone creates, any other
        member approves."""
        return cls()

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read and validate a policy file; `PolicyError` names file, line and key."""
        name = str(path)
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            raise PolicyError("the policy file does not exist", path=name) from None
        except OSError as exc:
            raise PolicyError(f"cannot read the policy file: {exc.strerror or exc}",
                              path=name) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("the policy file is not UTF-8 text", path=name) from None
        return cls.loads(text, path=name)

    @classmethod
    def loads(cls, text: str, *, path: str = "<policy>") -> Policy:
        """Parse policy TOML text (`path` is only used in error messages)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = _TOML_WHERE.search(str(exc))
            message = _TOML_WHERE.sub("", str(exc)).strip()
            line = None
            if match and match.group(1):
                line = int(match.group(1))
                message += f" (column {match.group(2)})"
            elif match:
                line = len(text.splitlines()) or None
                message += " (at the end of the file)"
            key = None
            if line is not None and line <= len(text.splitlines()):
                named = re.match(r"^\s*([A-Za-z0-9_\-.\"#]+)\s*=", text.splitlines()[line - 1])
                key = named.group(1) if named else None
            raise PolicyError(f"not valid TOML: {message}", path=path, line=line,
                              key=key) from None
        return _Parser(text, path).policy(data)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        """Load the file named by IMAGEBOT_POLICY, or the default policy when it is unset."""
        env = os.environ if env is None else env
        value = env.get(ENV_VAR, "").strip()
        return cls.load(value) if value else cls()

    def for_channel(self, channel_id: str, channel_name: str | None = None) -> ChannelPolicy:
        """The policy of a channel, by id first, then by name (with or without '#')."""
        found = self.channels.get(channel_id)
        if found is None and channel_name:
            found = self.channels.get("#" + channel_name.lstrip("#").lower())
        return found or self.fallback


def parse_duration(text: str) -> timedelta | None:
    """ "24h", "90m", "2d", "1d12h" -> timedelta; None when malformed or zero."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match:
        return None
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes)
    return value if value else None


def _quote(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_\-]+", key) else f'"{key}"'


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser:
    """Validates the parsed TOML and finds line numbers in the text for errors."""

    def __init__(self, text: str, path: str) -> None:
        self.lines = text.splitlines()
        self.path = path

    # --- locating keys ---------------------------------------------------------------------

    def _header(self, line: str) -> tuple[str, ...] | None:
        stripped = line.strip()
        if not stripped.startswith("[") or stripped.startswith("[["):
            return None
        try:
            node: Any = tomllib.loads(stripped)
        except tomllib.TOMLDecodeError:
            return None
        path: list[str] = []
        while isinstance(node, dict) and len(node) == 1:
            key = next(iter(node))
            path.append(key)
            node = node[key]
        return tuple(path)

    def locate(self, table: tuple[str, ...], key: str | None = None,
               value: str | None = None) -> int | None:
        """1-based line of `key` in `table` (or the table header), then of `value` after it."""
        current: tuple[str, ...] = ()
        key_re = re.compile(r"^\s*(" + re.escape(key) + r'|"' + re.escape(key) + r'")\s*=') \
            if key else None
        header_line = sub_table_line = None
        for number, line in enumerate(self.lines, start=1):
            header = self._header(line)
            if header is not None:
                current = header
                if header == table and header_line is None:
                    header_line = number
                if key and header == (*table, key) and sub_table_line is None:
                    sub_table_line = number  # the key is itself a table: [table.key]
                continue
            if current == table and key_re and key_re.match(line):
                return self._value_line(number, value) if value else number
        if sub_table_line is not None:
            return sub_table_line
        if header_line is not None or key is None:
            return header_line
        # Dotted keys or inline tables: settle for the first line naming the key.
        for number, line in enumerate(self.lines, start=1):
            if key and re.search(r"(^|[\s.{,\"])" + re.escape(key) + r'"?\s*=', line):
                return number
        return None

    def _value_line(self, start: int, value: str) -> int:
        """The line holding `"value"` in a (maybe multi-line) array starting at line `start`."""
        for number in range(start, min(start + 200, len(self.lines)) + 1):
            line = self.lines[number - 1]
            if number > start and (re.match(r"^\s*[A-Za-z0-9_\-\"]+\s*=", line)
                                   or self._header(line) is not None):
                break
            if f'"{value}"' in line or f"'{value}'" in line:
                return number
        return start

    def error(self, message: str, table: tuple[str, ...], key: str | None = None,
              value: str | None = None) -> PolicyError:
        dotted = ".".join(_quote(k) for k in (*table, *([key] if key else [])))
        return PolicyError(message, path=self.path, key=dotted or None,
                           line=self.locate(table, key, value))

    # --- validating ------------------------------------------------------------------------

    def policy(self, data: dict[str, Any]) -> Policy:
        for key, value in data.items():
            if key not in TOP_KEYS:
                hint = _suggest(key, TOP_KEYS)
                if not hint and isinstance(value, dict):
                    hint = (f'; channel tables go under channels, e.g. [channels."#{key}"] '
                            f"or [channels.C0123]")
                raise self.error(f"unknown key {key!r}{hint}", (key,) if
                                 isinstance(value, dict) else (), None if
                                 isinstance(value, dict) else key)
        default_table = data.get("default", {})
        if not isinstance(default_table, dict):
            raise self.error("must be a table: [default]", (), "default")
        default = self.section(default_table, ("default",), ChannelPolicy(name="default"))
        channels_table = data.get("channels", {})
        if not isinstance(channels_table, dict):
            raise self.error('must be a table of channels: [channels."#ops"]', (), "channels")
        channels: dict[str, ChannelPolicy] = {}
        for raw_name, table in channels_table.items():
            where = ("channels", raw_name)
            name = raw_name.strip()
            if name.startswith("#"):
                name = name.lower()
                if not _CHANNEL_NAME.match(name):
                    raise self.error(f"{raw_name!r} is not a channel name (lower-case letters, "
                                     "digits, - and _)", where)
            elif not _CHANNEL_ID.match(name):
                raise self.error(f"{raw_name!r} is neither a channel id (C0123ABC) nor a "
                                 "#channel-name (quote it: [channels.\"#ops\"])", where)
            if not isinstance(table, dict):
                raise self.error("a channel entry must be a table of settings", ("channels",),
                                 raw_name)
            if name in channels:
                raise self.error(f"channel {name} is listed twice", where)
            base = ChannelPolicy(**{**default.__dict__, "name": name})
            channels[name] = self.section(table, where, base)
        return Policy(fallback=default, channels=channels, path=self.path)

    def section(self, table: dict[str, Any], where: tuple[str, ...],
                base: ChannelPolicy) -> ChannelPolicy:
        values: dict[str, Any] = dict(base.__dict__)
        for key, value in table.items():
            if key not in CHANNEL_KEYS:
                raise self.error(f"unknown key {key!r}{_suggest(key, CHANNEL_KEYS)}", where, key)
            if key in ("enabled", "allow_self_approval"):
                if not isinstance(value, bool):
                    raise self.error("must be true or false", where, key)
                values[key] = value
            elif key == "cloud":
                values[key] = self.text(value, where, key, "a clouds.yaml cloud name")
            elif key == "servers":
                values[key] = self.patterns(value, where, key)
            elif key in ("creators", "approvers", "admins"):
                users, groups = self.people(value, where, key)
                values[key] = users
                values[key[:-1] + "_groups"] = groups
            elif key == "approval_expiry":
                values[key] = self.expiry(value, where, key)
            elif key == "notify_channel":
                name = self.text(value, where, key, 'a channel such as "#ops-alerts"')
                if name.startswith("#"):
                    name = name.lower()
                if not (_CHANNEL_NAME.match(name) or _CHANNEL_ID.match(name)):
                    raise self.error(f"{value!r} is not a #channel-name or a channel id", where,
                                     key)
                values[key] = name
            elif key == "mention":
                values[key] = self.mention(value, where, key)
        return ChannelPolicy(**values)

    def text(self, value: object, where: tuple[str, ...], key: str, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"must be {what} (a non-empty string)", where, key)
        return value.strip()

    def patterns(self, value: object, where: tuple[str, ...], key: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.error('must be a list of name patterns, e.g. ["web-*", "db-1"]', where,
                             key)
        out: list[str] = []
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{item!r} is not a name pattern (a non-empty string)", where,
                                 key)
            out.append(item.strip())
        return tuple(out)

    def people(self, value: object, where: tuple[str, ...],
               key: str) -> tuple[frozenset[str], frozenset[str]]:
        if not isinstance(value, list):
            raise self.error('must be a list of Slack ids, e.g. ["U0ALICE", "S0OPSTEAM"]',
                             where, key)
        users: set[str] = set()
        groups: set[str] = set()
        for item in value:
            text = item.strip() if isinstance(item, str) else ""
            if m := _USER_MENTION.match(text):
                text = m.group(1)
            elif m := _GROUP_MENTION.match(text):
                text = m.group(1)
            if _USER_ID.match(text):
                users.add(text)
            elif _GROUP_ID.match(text):
                groups.add(text)
            else:
                raise self.error(
                    f"{item!r} is not a Slack user id (U...) or user-group id (S...); copy it "
                    "from the profile's \u22ee menu (Copy member ID)", where, key,
                    value=item if isinstance(item, str) else None)
        return frozenset(users), frozenset(groups)

    def expiry(self, value: object, where: tuple[str, ...], key: str) -> timedelta:
        duration = parse_duration(value) if isinstance(value, str) else None
        if duration is None:
            raise self.error(f'{value!r} is not a duration; write e.g. "24h", "90m" or "2d"',
                             where, key)
        if not MIN_EXPIRY <= duration <= MAX_EXPIRY:
            raise self.error(f"{value!r} is out of range (1m to 30d)", where, key)
        return duration

    def mention(self, value: object, where: tuple[str, ...], key: str) -> str | None:
        if not isinstance(value, str):
            raise self.error('must be a string such as "<!here>" (or "" for no mention)', where,
                             key)
        text = value.strip()
        if not text:
            return None
        if text in ("<!here>", "<!channel>") or _USER_MENTION.match(text) \
                or _GROUP_MENTION.match(text):
            return text
        hint = f' (write "<!{text.lstrip("@!")}>")' if text.lstrip("@!") in ("here",
                                                                           "channel") else ""
        raise self.error(f"{value!r} is not a Slack mention: use \"<!here>\", \"<!channel>\", "
                         f"\"<@U...>\" or \"<!subteam^S...>\"{hint}", where, key)


GroupResolver = Callable[[str, frozenset[str]], Awaitable[frozenset[str]]]


async def allowed_to_create(policy: ChannelPolicy, user: str,
                            member_groups: GroupResolver | None) -> bool:
    """`policy.may_create`, asking (through `member_groups`) which of the rule's user groups
    the user is in, and only when the rule names groups."""
    groups: frozenset[str] = frozenset()
    if policy.creator_groups and member_groups is not None:
        groups = await member_groups(user, policy.creator_groups)
    return policy.may_create(user, groups)


async def allowed_all(policy: ChannelPolicy, user: str,
                      member_groups: GroupResolver | None) -> bool:
    """`policy.is_admin`, resolving the admin groups the user is in (only when some are named)."""
    groups: frozenset[str] = frozenset()
    if policy.admin_groups and member_groups is not None:
        groups = await member_groups(user, policy.admin_groups)
    return policy.is_admin(user, groups)


def not_here(kind: str, ref: str) -> str:
    """The answer for a job or request of another channel: the same words as for one that does
    not exist, so nothing leaks about other channels."""
    return f"There is no {kind} {ref} in this channel."


def same_channel(channel: str, asked_in: str, asked_name: str | None = None) -> bool:
    """Is a row of `channel` (an id, or a #name for scheduled runs announced by name) the
    channel asked in (`asked_in` id, `asked_name` its name)?"""
    if channel == asked_in:
        return True
    return bool(asked_name) and channel.startswith("#") and \
        channel[1:] == (asked_name or "").lstrip("#")


async def refuse(policy: ChannelPolicy, user: str, server: str,
                 member_groups: GroupResolver | None, *, doing: str) -> str | None:
    """Why the channel policy refuses `user` `doing` something to `server`, or None."""
    if not await allowed_to_create(policy, user, member_groups):
        return f"You may not {doing} in this channel ({policy.who_may_create()} may)."
    if not policy.may_touch(server):
        return (f"This channel may not image `{escape(server)}` (not in the channel's "
                "server list).")
    return None
