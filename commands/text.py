"""From Slack's `text` field to tokens: undo Slack's formatting quirks, then split words.

Slack escapes `&`, `<` and `>` as entities, wraps things that look like links in `<url|label>`,
and some clients turn quotes into “smart” quotes and `--` into an em-dash. `normalise` undoes
all of that; `tokenize` then splits on whitespace with chat-friendly quoting rules.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_LENGTH = 4000

# Scheme-prefixed Slack links only: `<@U123>` mentions and `<#C1|x>` channels are left alone.
_LINK = re.compile(r"<((?:https?|mailto):[^|<>]*)(?:\|([^<>]*))?>", re.IGNORECASE)
_SCHEME = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_QUOTES = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
})
# Clients turn `--` into an em-dash (sometimes an en-dash) at the start of an option.
DASHES = ("\u2014", "\u2013")
# Whitespace inside a command is fine; other C0/C1 controls are never meant.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


@dataclass(frozen=True)
class Token:
    """One word of the command; `quoted` when it began with a quote (so it is never an option)."""

    text: str
    quoted: bool = False


def bad_character(text: str) -> str | None:
    """Describe the first character that may not appear in a command at all, or None."""
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return "an invalid character (a lone surrogate)"
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            return f"a control character (U+{ord(char):04X})"
    return None


def has_control(text: str) -> bool:
    """True if `text` holds any control character or lone surrogate (tabs and newlines too)."""
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _link(match: re.Match[str]) -> str:
    url, label = match.group(1), match.group(2)
    if label:
        return label
    return _SCHEME.sub("", url).rstrip("/")


def normalise(text: str) -> str:
    """Undo Slack's link markup, entities and smart quotes (entities last, so `&amp;lt;` stays
    `&lt;`)."""
    text = _LINK.sub(_link, text)
    text = _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)
    return text.translate(_QUOTES)


class UnbalancedQuote(ValueError):
    """A quote opened a value and nothing closed it; `fragment` is the text from the quote on."""

    def __init__(self, fragment: str) -> None:
        self.fragment = fragment
        super().__init__(fragment)


def tokenize(text: str) -> list[Token]:
    """Split on whitespace; `"..."` or `'...'` groups words.

    A quote opens only at the start of a word or right after `=` (`--note="a b"`), and closes
    only where it is followed by whitespace or the end, so apostrophes (`don't`) need no escaping.
    """
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        parts: list[str] = []
        quoted = False
        while i < n and not text[i].isspace():
            char = text[i]
            if char in "\"'" and (i == start or text[i - 1] == "="):
                close = i + 1
                while True:
                    close = text.find(char, close)
                    if close == -1:
                        raise UnbalancedQuote(text[i:])
                    if close + 1 == n or text[close + 1].isspace():
                        break
                    close += 1
                parts.append(text[i + 1:close])
                quoted = quoted or i == start
                i = close + 1
                break
            parts.append(char)
            i += 1
        tokens.append(Token("".join(parts), quoted))
    return tokens


def option_word(token: Token) -> str | None:
    """The token as an option (`--name=x`, em-dash normalised to `--`), or None for a value."""
    if token.quoted:
        return None
    text = token.text
    if text.startswith(DASHES) and len(text) > 1:
        return "--" + text[1:]
    if text.startswith("--") and len(text) > 2:
        return text
    if len(text) > 1 and text[0] == "-" and text[1].isalpha():
        return text
    return None


def slack_escape(text: str) -> str:
    """Slack's mrkdwn escaping: `&`, `<` and `>` become entities, so placeholders such as
    `<server>` show as written instead of being read as links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
