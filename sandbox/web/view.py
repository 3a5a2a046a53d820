"""The emulated workspace as JSON for the web view, as one user sees one channel (pure).

Text is made readable on the server (`<@U…>` → `@alice`, entities decoded, common emoji
shortcodes turned into emoji) but never turned into HTML: the page puts every string into the
DOM as text, so whatever a message says stays text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox.slack.model import BOT_NAME, ApiError, Ephemeral, Message, SlackWorkspace
from sandbox.slack.render import mrkdwn_to_text

EMOJI = {
    "white_check_mark": "✅", "x": "❌", "warning": "⚠️", "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳", "camera": "📷", "unlock": "🔓", "lock": "🔒",
    "package": "📦", "arrow_up": "⬆️", "clock3": "🕒", "calendar": "📅", "wastebasket": "🗑️",
    "no_entry": "⛔", "no_entry_sign": "🚫", "heavy_check_mark": "✔️", "rotating_light": "🚨",
    "information_source": "ℹ️", "stopwatch": "⏱️", "recycle": "♻️", "bell": "🔔",
    "thumbsup": "👍", "+1": "👍", "question": "❓", "floppy_disk": "💾", "broom": "🧹",
    "repeat": "🔁", "zzz": "💤", "ok": "🆗", "hammer_and_wrench": "🛠️", "mag": "🔍",
}
_SHORTCODE = re.compile(r":([a-z0-9_+\-]+):")
HOME = "home"  # the `ts` of buttons on the Home tab: they sit on a view, not a message


def emojify(text: str) -> str:
    """`:white_check_mark:` → ✅ for the shortcodes the bot uses; others stay as typed."""
    return _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def readable(ws: SlackWorkspace, obj: Any) -> str:
    """A text object (or string) as display text."""
    text = obj.get("text", "") if isinstance(obj, Mapping) else obj
    return emojify(mrkdwn_to_text(ws, "" if text is None else str(text)))


def _stamp(ts: str) -> str:
    return datetime.fromtimestamp(int(ts.partition(".")[0]), UTC).strftime("%H:%M:%S")


def block_view(ws: SlackWorkspace, block: Mapping[str, Any], ts: str) -> dict[str, Any]:
    """One Block Kit block, simplified: `type`, `text`, `fields`, `elements` (text/buttons)."""
    kind = str(block.get("type", ""))
    out: dict[str, Any] = {"type": kind, "block_id": block.get("block_id")}
    if kind in ("section", "header"):
        out["text"] = readable(ws, block.get("text")) if block.get("text") else ""
        out["fields"] = [readable(ws, f) for f in block.get("fields") or []]
        accessory = block.get("accessory")
        if isinstance(accessory, Mapping) and accessory.get("type") == "button":
            out["elements"] = [_button(ws, block, accessory, ts)]
    elif kind == "context":
        out["elements"] = [
            {"kind": "text", "text": f"[{e.get('alt_text', 'image')}]"
             if isinstance(e, Mapping) and e.get("type") == "image" else readable(ws, e)}
            for e in block.get("elements") or []]
    elif kind == "actions":
        out["elements"] = [_button(ws, block, e, ts) if isinstance(e, Mapping)
                           and e.get("type") == "button" else {"kind": "text",
                                                               "text": f"[{e.get('type')}]"}
                           for e in block.get("elements") or [] if isinstance(e, Mapping)]
    elif kind == "image":
        out["text"] = f"[image: {block.get('alt_text', '')}]"
    elif kind == "rich_text":
        out["text"] = _rich_text(block)
    return out


def _rich_text(element: Any) -> str:
    if isinstance(element, Mapping):
        if isinstance(element.get("text"), str):
            return str(element["text"])
        return "".join(_rich_text(e) for e in element.get("elements") or [])
    return ""


def _button(ws: SlackWorkspace, block: Mapping[str, Any], element: Mapping[str, Any],
            ts: str) -> dict[str, Any]:
    return {"kind": "button", "label": readable(ws, element.get("text")),
            "action_id": str(element.get("action_id", "")), "value": element.get("value"),
            "block_id": block.get("block_id"), "style": element.get("style"), "ts": ts}


def message_view(ws: SlackWorkspace, item: Message | Ephemeral, *,
                 note: str = "") -> dict[str, Any]:
    """One message (or ephemeral) for the page."""
    ephemeral = isinstance(item, Ephemeral)
    author = item.author if isinstance(item, Ephemeral) else item.user
    user = ws.users.get(author)
    return {
        "ts": item.ts, "time": _stamp(item.ts), "author": user.name if user else author,
        "is_bot": bool(user and user.is_bot), "text": readable(ws, item.text),
        "blocks": [block_view(ws, b, item.ts) for b in item.blocks or []],
        "edited": bool(item.edits), "ephemeral": ephemeral, "note": note, "replies": [],
    }


def channel_view(ws: SlackWorkspace, channel_ref: str, user_ref: str) -> dict[str, Any]:
    """Everything the page shows: users, channels, the user's DMs with the bot, and the
    channel's timeline for one user. Someone else's DM is not there to see."""
    user = ws.user(user_ref)
    if channel_ref in ws.users:  # ws.channel() would open a DM: looking opens nothing
        raise ApiError("channel_not_found")
    channel = ws.channel(channel_ref)
    if channel.is_im and user.id not in channel.members:
        raise ApiError("channel_not_found")
    ephemerals = ws.ephemerals(user.id, channel.id)
    timeline: list[tuple[float, dict[str, Any]]] = []
    for msg in ws.channel_messages(channel.id):
        view = message_view(ws, msg, note="replied to a thread" if msg.reply_broadcast else "")
        if not msg.reply_broadcast:
            replies: list[Message | Ephemeral] = list(ws.thread(channel.id, msg.ts))
            replies += [e for e in ephemerals if e.thread_ts == msg.ts]
            replies.sort(key=lambda r: _key(r.ts))
            view["replies"] = [message_view(ws, r, note="also sent to the channel"
                                            if isinstance(r, Message) and r.reply_broadcast
                                            else "") for r in replies]
        timeline.append((_key(msg.ts), view))
    for eph in ephemerals:
        if not eph.thread_ts:
            timeline.append((_key(eph.ts), message_view(ws, eph)))
    for run in ws.commands:
        if run.user == user.id and run.channel == channel.id:
            timeline.append((run.at - 1e-7, {
                "ts": f"cmd-{run.trigger_id}", "time": _stamp(f"{int(run.at)}"),
                "author": user.name, "is_bot": False, "command": True,
                "text": f"{run.command} {run.text}".rstrip(), "blocks": [], "edited": False,
                "ephemeral": True, "note": "", "replies": []}))
    timeline.sort(key=lambda item: item[0])
    humans = [u for u in ws.users.values() if not u.is_bot]
    return {
        "user": user.name, "channel": BOT_NAME if channel.is_im else channel.name,
        "channel_id": channel.id, "is_dm": channel.is_im,
        "users": [{"id": u.id, "name": u.name, "real_name": u.real_name} for u in humans],
        "channels": [{"id": c.id, "name": c.name, "private": c.is_private,
                      "member": user.id in c.members,
                      "messages": len(ws.all_messages(c.id))}
                     for c in ws.channels.values() if not c.is_im],
        "dms": [{"id": c.id, "name": BOT_NAME, "messages": len(ws.all_messages(c.id))}
                for c in ws.channels.values() if c.is_im and user.id in c.members],
        "home": {"published": user.id in ws.home_views},
        "messages": [view for _, view in timeline],
    }


def home_view(ws: SlackWorkspace, user_ref: str) -> dict[str, Any]:
    """The app's Home tab as `user` sees it: the view last published for them (views.publish),
    or nothing yet (Slack then shows the app's placeholder)."""
    user = ws.user(user_ref)
    view = ws.home_views.get(user.id)
    if view is None:
        return {"user": user.name, "published": False, "blocks": []}
    return {"user": user.name, "published": True, "hash": view["hash"],
            "blocks": [block_view(ws, b, HOME) for b in view["blocks"]]}


def _key(ts: str) -> float:
    sec, _, frac = ts.partition(".")
    return int(sec) + int(frac or 0) / 1_000_000
