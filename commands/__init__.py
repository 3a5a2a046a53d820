"""The `/image` grammar: text in, a frozen request dataclass (or `ParseError`) out.

Pure and stdlib-only. `parse(text)` returns one of the classes in `commands.requests`;
`help_text()` and `reference_markdown()` are generated from the same command table
(`commands.grammar.TABLE`).
"""

from __future__ import annotations

from commands.errors import ParseError
from commands.grammar import parse
from commands.help import help_text, reference_markdown
from commands.requests import (
    Approvals,
    Approve,
    Cancel,
    Create,
    Help,
    Images,
    ListJobs,
    NativeSchedule,
    NativeScheduleOff,
    Protect,
    Reject,
    Request,
    Schedule,
    ScheduleOff,
    ScheduleOperation,
    Schedules,
    ServerRef,
    Status,
    Unprotect,
    Verify,
)
from commands.targets import FleetTarget

__all__ = [
    "Approvals",
    "Approve",
    "Cancel",
    "Create",
    "FleetTarget",
    "Help",
    "Images",
    "ListJobs",
    "NativeSchedule",
    "NativeScheduleOff",
    "Protect",
    "ParseError",
    "Reject",
    "Request",
    "Schedule",
    "ScheduleOff",
    "ScheduleOperation",
    "Schedules",
    "ServerRef",
    "Status",
    "Unprotect",
    "Verify",
    "help_text",
    "parse",
    "reference_markdown",
]
