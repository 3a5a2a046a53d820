"""A readable text transcript of a channel, as one user would see it in Slack.

Parent messages appear as currently edited, thread replies indented under their parent, Block
Kit as text, and buttons numbered `[1 Start snapshot]`. `render_transcript` is pure and returns
the numbering; `render_channel` also remembers it so `workspace.button(n)` (and
`Deliverer.press(n, user)`) can find the button a number refers to.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.slack.model import (
    Block,
    ButtonRef,
    Ephemeral,
    Message,
    SlackWorkspace,
)

INDENT = "    "
_LINK = re.compile(r"<([^<>]+)>")


@dataclass
class Transcript:
    """Rendered text plus what each button number refers to."""

    text: str
    buttons: dict[int, ButtonRef] = field(default_factory=dict)


def mrkdwn_to_text(ws: SlackWorkspace, text: str) -> str:
    """Slack's `<@U…>`, `<#C…|name>`, `<!subteam^S…>`, `<url|label>` made readable."""

    def repl(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            uid = target[1:]
            return "@" + (label or (ws.users[uid].name if uid in ws.users else uid))
        if target.startswith("#"):
            cid = target[1:]
            return "#" + (label or (ws.channels[cid].name if cid in ws.channels else cid))
        if target.startswith("!subteam^"):
            gid = target.split("^", 1)[1]
            group = ws.usergroups.get(gid)
            return label or ("@" + group.handle if group else "@" + gid)
        if target.startswith("!"):
            return label or "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label else target

    return html.unescape(_LINK.sub(repl, text))


def _plain(ws: SlackWorkspace, obj: Any) -> str:
    if isinstance(obj, Mapping):
        return mrkdwn_to_text(ws, str(obj.get("text", "")))
    return "" if obj is None else mrkdwn_to_text(ws, str(obj))


def _rich_text(element: Any) -> str:
    if isinstance(element, Mapping):
        if "text" in element and isinstance(element["text"], str):
            return element["text"]
        return "".join(_rich_text(e) for e in element.get("elements") or [])
    return ""


class _Numberer:
    def __init__(self, channel: str, start: int) -> None:
        self.channel = channel
        self.next = start
        self.buttons: dict[int, ButtonRef] = {}

    def add(self, ts: str, block_id: str | None, element: Mapping[str, Any],
            ephemeral_for: str | None, ws: SlackWorkspace) -> str:
        n = self.next
        self.next += 1
        label = _plain(ws, element.get("text"))
        self.buttons[n] = ButtonRef(n, self.channel, ts, str(element.get("action_id", "")),
                                    element.get("value"), block_id, label, ephemeral_for)
        return f"[{n} {label}]"


def render_blocks(ws: SlackWorkspace, blocks: Iterable[Block], *, ts: str = "",
                  numberer: _Numberer | None = None,
                  ephemeral_for: str | None = None) -> list[str]:
    """Block Kit as lines of text; buttons numbered through `numberer` when given."""
    numberer = numberer or _Numberer("", 1)
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        bid = block.get("block_id")
        if kind == "header":
            lines.append(f"# {_plain(ws, block.get('text'))}")
        elif kind == "section":
            text = _plain(ws, block.get("text")) if block.get("text") else ""
            accessory = block.get("accessory")
            if isinstance(accessory, Mapping) and accessory.get("type") == "button":
                text = f"{text}  {numberer.add(ts, bid, accessory, ephemeral_for, ws)}".strip()
            if text:
                lines.extend(text.splitlines())
            fields = [_plain(ws, f) for f in block.get("fields") or []]
            if fields:
                lines.append(" | ".join(f.replace("\n", " ") for f in fields))
        elif kind == "context":
            parts = []
            for element in block.get("elements") or []:
                if isinstance(element, Mapping) and element.get("type") == "image":
                    parts.append(f"[{element.get('alt_text', 'image')}]")
                else:
                    parts.append(_plain(ws, element))
            context = ("› " + " · ".join(p for p in parts if p)).splitlines() or ["›"]
            lines.extend([context[0]] + [f"  {line}" for line in context[1:]])
        elif kind == "actions":
            rendered = []
            for element in block.get("elements") or []:
                if isinstance(element, Mapping) and element.get("type") == "button":
                    rendered.append(numberer.add(ts, bid, element, ephemeral_for, ws))
                elif isinstance(element, Mapping):
                    rendered.append(f"[{element.get('type')}]")
            lines.append(" ".join(rendered))
        elif kind == "divider":
            lines.append("---")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            lines.extend(_rich_text(block).splitlines())
        else:
            lines.append(f"[{kind} block]")
    return lines


def _clock(ts: str) -> str:
    seconds = int(ts.partition(".")[0])
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def _name(ws: SlackWorkspace, uid: str) -> str:
    return ws.users[uid].name if uid in ws.users else uid


def _render_one(ws: SlackWorkspace, item: Message | Ephemeral, numberer: _Numberer,
                indent: str, *, note: str = "") -> list[str]:
    eph_for = item.user if isinstance(item, Ephemeral) else None
    author = item.author if isinstance(item, Ephemeral) else item.user
    marks = []
    if isinstance(item, Ephemeral):
        marks.append("only visible to you")
    if item.edits:
        marks.append("edited")
    if note:
        marks.append(note)
    suffix = f" ({', '.join(marks)})" if marks else ""
    if item.blocks:
        body = render_blocks(ws, item.blocks, ts=item.ts, numberer=numberer,
                             ephemeral_for=eph_for)
    else:
        body = mrkdwn_to_text(ws, item.text).splitlines() or [""]
    head = f"{indent}[{_clock(item.ts)}] {_name(ws, author)}{suffix}:"
    if len(body) == 1:
        return [f"{head} {body[0]}"]
    pad = " " * len(indent) + INDENT
    return [head] + [f"{pad}{line}" if line else "" for line in body]


def render_transcript(ws: SlackWorkspace, channel_id: str, *, user: str | None = None,
                      start: int = 1) -> Transcript:
    """The channel as `user` sees it (their ephemerals and commands included); pure."""
    channel = ws.channel(channel_id)
    numberer = _Numberer(channel.id, start)
    uid = ws.user(user).id if user else None
    title = f"@{_name(ws, channel.name)} (DM)" if channel.is_im else f"#{channel.name}"
    lines = [f"{title} ({channel.id})"]
    ephemerals = ws.ephemerals(uid, channel.id) if uid else []
    # Top-level timeline: messages, broadcasts, this user's ephemerals and typed commands.
    timeline: list[tuple[tuple[float, int], str, Any]] = []
    for m in ws.channel_messages(channel.id):
        timeline.append((_key(m.ts), "msg", m))
    for e in ephemerals:
        if not e.thread_ts:
            timeline.append((_key(e.ts), "eph", e))
    for c in ws.commands:
        if uid and c.user == uid and c.channel == channel.id:
            timeline.append(((c.at, -1), "cmd", c))
    timeline.sort(key=lambda item: item[0])
    for _, kind, item in timeline:
        if kind == "cmd":
            stamp = datetime.fromtimestamp(int(item.at), UTC).strftime("%H:%M:%S")
            lines.append(f"[{stamp}] you: {item.command} {item.text}".rstrip())
            continue
        if kind == "eph":
            lines.extend(_render_one(ws, item, numberer, ""))
            continue
        msg: Message = item
        if msg.reply_broadcast:
            lines.extend(_render_one(ws, msg, numberer, "", note="replied to a thread"))
            continue
        lines.extend(_render_one(ws, msg, numberer, ""))
        replies: list[Message | Ephemeral] = list(ws.thread(channel.id, msg.ts))
        replies += [e for e in ephemerals if e.thread_ts == msg.ts]
        replies.sort(key=lambda r: _key(r.ts))
        for reply in replies:
            note = "also sent to the channel" if isinstance(reply, Message) and \
                reply.reply_broadcast else ""
            lines.extend(_render_one(ws, reply, numberer, INDENT + "↳ ", note=note))
    return Transcript("\n".join(lines) + "\n", numberer.buttons)


def render_channel(ws: SlackWorkspace, channel_id: str, *, user: str | None = None) -> str:
    """The transcript text; its button numbering is kept for `ws.button(n)`."""
    transcript = render_transcript(ws, channel_id, user=user)
    ws.last_buttons = dict(transcript.buttons)
    return transcript.text


def _key(ts: str) -> tuple[float, int]:
    sec, _, frac = ts.partition(".")
    return float(int(sec)) + int(frac or 0) / 1_000_000, 0
