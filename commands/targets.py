"""Fleet targets of `/image schedule`: a glob over server names or a server metadata match.

Pure and stdlib-only. `parse_target` reads the target word; `matches` says whether a server
(its name and Nova server `metadata`) belongs to a target. A target is resolved again at each
run, so the servers it matches may change between runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, TypeAlias

TargetKind: TypeAlias = Literal["glob", "meta"]

META_PREFIX = "meta:"
GLOB_CHARS = frozenset("*?[")
# Nova caps server metadata keys and values at 255 characters (compute api-ref, "Server
# metadata": "Maximum length is 255 characters").
MAX_META = 255
_META_KEY = re.compile(r"[A-Za-z0-9_.:\-]+", re.ASCII)


class BadTarget(ValueError):
    """The word is meant as a fleet target but is not a valid one (the message says why)."""


@dataclass(frozen=True)
class FleetTarget:
    """Servers chosen by name pattern (`web-*`, fnmatch-style) or by metadata (`role=web`)."""

    kind: TargetKind
    pattern: str = ""  # for "glob"
    key: str = ""  # for "meta"
    value: str = ""  # for "meta"

    @property
    def text(self) -> str:
        """The target as the user writes it (and as it is stored)."""
        return self.pattern if self.kind == "glob" else f"{META_PREFIX}{self.key}={self.value}"

    def __str__(self) -> str:
        return self.text


def _echo(word: str) -> str:
    """User text inside a message: short, code-formatted, no live Slack markup."""
    word = word[:40] + ("…" if len(word) > 40 else "")
    word = word.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"`{word}`"


def is_fleet_word(word: str) -> bool:
    """True when `word` is meant as a fleet target (a glob, or `meta:...`)."""
    return word.lower().startswith(META_PREFIX) or any(c in GLOB_CHARS for c in word)


def parse_target(word: str) -> FleetTarget:
    """The fleet target a word names; `BadTarget` with a clear reason when it is not valid."""
    if word.lower().startswith(META_PREFIX):
        rest = word[len(META_PREFIX):]
        key, eq, value = rest.partition("=")
        if not eq:
            raise BadTarget(f"A metadata target is `meta:KEY=VALUE`, e.g. `meta:role=web`; "
                            f"{_echo(word)} has no `=`.")
        if not key:
            raise BadTarget("The metadata key is empty; write e.g. `meta:role=web`.")
        if not value:
            raise BadTarget(f"The value of {_echo(key)} is empty; write e.g. `meta:role=web`.")
        if len(key) > MAX_META or len(value) > MAX_META:
            raise BadTarget(f"Metadata keys and values are at most {MAX_META} characters.")
        if not _META_KEY.fullmatch(key):
            raise BadTarget("A metadata key has letters, digits and `_ . : -` only.")
        return FleetTarget("meta", key=key, value=value)
    if not word.strip("*?"):
        raise BadTarget(f"{_echo(word)} would match every server; name a pattern such as "
                        "`web-*`.")
    if word.count("[") != word.count("]"):
        raise BadTarget(f"{_echo(word)} has an unclosed `[`; write e.g. `web-[12]`.")
    if "[]" in word:
        raise BadTarget(f"{_echo(word)} has an empty `[]`, which matches nothing.")
    return FleetTarget("glob", pattern=word)


def matches(target: FleetTarget, name: str, metadata: Mapping[str, str]) -> bool:
    """Does a server with this name and metadata belong to `target`? (case-sensitive, as
    server names and metadata are)."""
    if target.kind == "glob":
        return fnmatchcase(name, target.pattern)
    return metadata.get(target.key) == target.value


def target_from_text(text: str) -> FleetTarget:
    """A stored target back (the inverse of `FleetTarget.text`)."""
    return parse_target(text)
