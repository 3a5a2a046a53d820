"""Block Kit and mrkdwn primitives shared by every feature's messages: pure, no I/O.

Payloads stay within Block Kit limits: section text <= 3000 chars, <= 50 blocks, button text
<= 75, and `text` <= 4000 so `chat.update` accepts it. User-supplied text (server names, notes,
image names, reasons, cloud messages) always goes through `user_text` (or `code`, which uses
it): it cannot mention anyone, format itself, start a quote, add a line, or reorder what follows
it with bidi controls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

SECTION_LIMIT = 3000
TEXT_LIMIT = 4000
BLOCK_LIMIT = 50
BUTTON_TEXT_LIMIT = 75
ELLIPSIS = "…"

_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
# Bidi embeddings/overrides/isolates and marks, zero-width characters and the BOM: invisible,
# they reorder or hide what a name or note seems to say (Trojan Source, CVE-2021-42574).
_INVISIBLE = re.compile("[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                        "\u2066-\u206f\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAKS = re.compile("[\r\n\u0085\u2028\u2029]+")
# Slack's mrkdwn has no escape character (docs.slack.dev "Formatting text"), so the characters
# that format are shown as look-alikes that do not: *bold* _italic_ ~strike~ `code`.
_MRKDWN = str.maketrans({"*": "\u2217", "_": "\uff3f", "~": "\u223c", "`": "\u02cb"})


# --- primitives --------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Escape user text for mrkdwn so `<!channel>` or `<@U1>` cannot ping anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def user_text(text: str, *, one_line: bool = True, mrkdwn: bool = True) -> str:
    """User text for a rich place: invisible bidi/zero-width characters stripped, line breaks
    collapsed to one space (`one_line`, where a line is expected) or kept with `>` at a line
    start shown as `›` (no fake quote), `& < >` escaped (no mention), and with `mrkdwn` the
    formatting characters swapped for look-alikes (no fake *Approved*). `code` spans need no
    swap (Slack does not format inside them): they pass `mrkdwn=False`."""
    text = _INVISIBLE.sub("", text).replace("\t", " ")
    if one_line:
        text = _LINE_BREAKS.sub(" ", text).strip()
    else:
        text = "\n".join(line.rstrip() for line in _LINE_BREAKS.sub("\n", text).split("\n"))
    if mrkdwn:
        text = text.translate(_MRKDWN)
        text = re.sub(r"(?m)^(\s*)>", "\\1\u203a", text)
    return escape(text)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, ending with … when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Do not leave half an entity (&amp;) dangling at the cut.
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp < 6:
        cut = cut[:amp]
    return cut + ELLIPSIS


def user(user_id: str | None) -> str:
    """A mention for a Slack user id; anything else (e.g. `schedule:S3`) as escaped text."""
    if not user_id:
        return "someone"
    if _USER_ID.match(user_id):
        return f"<@{user_id}>"
    return user_text(user_id)


def code(text: str) -> str:
    """User text as inline code, escaped (backticks would end the span, so swap them; a line
    break would end it too, so collapse them)."""
    return "`" + user_text(text.replace("`", "'"), mrkdwn=False) + "`"


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 image`, `7 images`, `0 images` (`many` for irregular plurals)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def human_duration(delta: timedelta | float) -> str:
    """`12 s`, `4 min 3 s`, `2 h 5 min`, `1 d 3 h`."""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    total = max(0, int(round(seconds)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def human_size(size: int | None) -> str:
    """Binary units: `0 bytes`, `512 bytes`, `1.5 KiB`, `20.0 GiB`; `unknown size` for None."""
    if size is None:
        return "unknown size"
    if size < 1024:
        return f"{size} bytes" if size != 1 else "1 byte"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section block, truncated to the section limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def context(text: str) -> dict[str, Any]:
    """A context block with one mrkdwn element."""
    return {"type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    """A button element within Slack's limits."""
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, BUTTON_TEXT_LIMIT), "emoji": True},
        "action_id": action_id,
        "value": value[:2000],
    }
    if style:
        element["style"] = style
    return element


def payload(text: str, blocks: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message payload: fallback text within the update limit, at most 50 blocks."""
    result: dict[str, Any] = {"text": truncate(text, TEXT_LIMIT)}
    if blocks:
        result["blocks"] = list(blocks)[:BLOCK_LIMIT]
    return result
