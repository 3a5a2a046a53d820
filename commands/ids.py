"""Ids, day names and limits that the grammar, the store and the schedule code share.

Pure and stdlib-only, so `commands/` keeps importing nothing but the standard library, and
`bot/` takes these from here instead of keeping copies of its own.

Job, change-request and schedule ids are a letter and a number: `J17`, `R4`, `S2`. People may
type the letter in either case and the number with leading zeros (`j017`); the canonical form,
the one the store writes, is the upper-case letter and the number without them.
"""

from __future__ import annotations

import re

JOB = "J"
REQUEST = "R"
SCHEDULE = "S"
MAX_ID_DIGITS = 18  # fits a signed 64-bit integer (an SQLite INTEGER)

# Python's `date.weekday()` order (MONDAY is 0); schedules store the full upper-case name, the
# enumeration Rackspace's scheduled images take for `day_of_week` (Cloud Servers v2, "Scheduled
# Images Extension").
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
# The most images a schedule may keep: Rackspace's limit for a server's image schedule
# (retention 1..65535); a larger count is certainly a typo.
MAX_KEEP = 65535

_ID = re.compile(r"([A-Za-z])([0-9]+)", re.ASCII)


def _digits(prefix: str, text: str) -> str | None:
    match = _ID.fullmatch(text)
    return match.group(2) if match is not None and match.group(1).upper() == prefix else None


def looks_like(prefix: str, text: str) -> bool:
    """True when `text` has the shape of a `<prefix><n>` id, however long the number (the
    grammar refuses such words as server names)."""
    return _digits(prefix, text) is not None


def id_number(prefix: str, text: str) -> int | None:
    """The number of a `<prefix><n>` id (the letter in either case, ASCII digits, at most
    `MAX_ID_DIGITS` of them), else None."""
    digits = _digits(prefix, text)
    if digits is None or len(digits) > MAX_ID_DIGITS:
        return None
    return int(digits)


def normalize(prefix: str, text: str) -> str | None:
    """The canonical form of a `<prefix><n>` id (`j017` -> `J17`), else None."""
    number = id_number(prefix, text)
    return None if number is None else f"{prefix}{number}"


def job_id(text: str) -> str | None:
    """`J17` for a job id in any case (leading zeros dropped), else None."""
    return normalize(JOB, text)


def request_id(text: str) -> str | None:
    """`R4` for a change-request id in any case (leading zeros dropped), else None."""
    return normalize(REQUEST, text)


def schedule_id(text: str) -> str | None:
    """`S2` for a schedule id in any case (leading zeros dropped), else None."""
    return normalize(SCHEDULE, text)


def is_canonical(prefix: str, text: str) -> bool:
    """True for an id exactly as the store writes it: the upper-case letter and a number from
    1 without leading zeros (`R4`; not `r4`, `R04` or `R0`)."""
    number = id_number(prefix, text)
    return number is not None and number > 0 and text == f"{prefix}{number}"
