"""`/image schedule ... --native` (Rackspace Scheduled Images): what it asks for, and the limits
of the service said plainly (rackerlabs/docs-cloud-servers ext-scheduled-images.rst: daily, or
weekly on a day, and a retention count; nothing else)."""

from __future__ import annotations

import pytest

import commands
from commands.grammar import BY_NAME, Args
from commands.native import refuse_limits
from commands.requests import NativeSchedule, NativeScheduleOff, ServerRef
from commands.text import Token

WEB1 = ServerRef("web-1", False)


@pytest.mark.parametrize(("text", "expected"), [
    ("schedule web-1 daily --keep 7 --native", NativeSchedule(WEB1, "daily", None, 7)),
    ("schedule web-1 weekly sat --keep 4 --native", NativeSchedule(WEB1, "weekly", "SATURDAY", 4)),
    ("schedule web-1 --native weekly Saturday", NativeSchedule(WEB1, "weekly", "SATURDAY", 7)),
    ("schedule web-1 off --native", NativeScheduleOff(WEB1)),
])
def test_native_requests(text: str, expected: object) -> None:
    assert commands.parse(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("schedule web-1 daily at 02:30 --native", "no time of day: the cloud picks the hour"),
    ("schedule web-1 weekly sat at 23:00 --native", "no time of day: the cloud picks the hour"),
    ("schedule web-1 daily --tz Europe/Berlin --native", "no time of day: the cloud picks"),
    ("schedule web-1 daily --verify --native", "drop --verify with --native"),
    ("schedule web-* daily --native", "set per server"),
    ("schedule meta:role=web daily --native", "set per server"),
    ("schedule web-1 off --keep 3 --native", "takes no options"),
    ("schedule web-1 weekly --native", "needs a day"),
    ("schedule web-1 daily --keep 0 --native", "--keep must be from 1"),
])
def test_what_the_native_service_cannot_do_is_refused_plainly(text: str, words: str) -> None:
    with pytest.raises(commands.ParseError) as caught:
        commands.parse(text)
    assert words in caught.value.message


def test_keep_days_is_refused_with_native() -> None:
    # --keep-days (fleet retention by age) comes from the fleet schedules; whatever parses it,
    # the native check says the service keeps a count only.
    spec = BY_NAME["schedule"]
    args = Args([Token("web-1"), Token("daily")], {"--native": True, "--keep-days": "30"})
    with pytest.raises(commands.ParseError, match="not images younger than some days"):
        refuse_limits(spec, args)


def test_without_native_nothing_changes() -> None:
    assert isinstance(commands.parse("schedule web-1 daily at 02:30"), commands.Schedule)
    assert isinstance(commands.parse("schedule web-1 off"), commands.ScheduleOff)
