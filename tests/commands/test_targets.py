"""Fleet targets of `/image schedule` (issue 18): globs and `meta:KEY=VALUE`, parsed and
matched purely, with clear errors for targets that cannot be meant."""

from __future__ import annotations

import pytest

import commands
from commands.targets import FleetTarget, is_fleet_word, matches, parse_target


@pytest.mark.parametrize("word", ["web-*", "web-?", "web-[12]", "meta:role=web", "META:a=b"])
def test_fleet_words_are_recognised(word: str) -> None:
    assert is_fleet_word(word)


@pytest.mark.parametrize("word", ["web-1", "db_2", "3f2a0c1e-0000-4000-8000-000000000001"])
def test_server_names_are_not_fleets(word: str) -> None:
    assert not is_fleet_word(word)


def test_glob_matches_names_fnmatch_style_and_case_sensitively() -> None:
    target = parse_target("web-*")
    assert target == FleetTarget("glob", pattern="web-*") and target.text == "web-*"
    assert matches(target, "web-7", {}) and not matches(target, "Web-7", {})
    assert not matches(target, "db-1", {"role": "web"})
    assert matches(parse_target("web-[12]"), "web-2", {})
    assert not matches(parse_target("web-[12]"), "web-3", {})


def test_metadata_matches_key_and_exact_value() -> None:
    target = parse_target("meta:role=web")
    assert (target.key, target.value, target.text) == ("role", "web", "meta:role=web")
    assert matches(target, "anything", {"role": "web", "tier": "x"})
    assert not matches(target, "web-1", {"role": "webserver"})
    assert not matches(target, "web-1", {})
    # A value may itself hold `=`: only the first one splits.
    assert parse_target("meta:k=a=b").value == "a=b"


@pytest.mark.parametrize(("text", "says"), [
    ("schedule meta:role daily", "has no `=`"),
    ("schedule meta:=web daily", "key is empty"),
    ("schedule meta:role= daily", "is empty"),
    ("schedule meta:ro/le=x daily", "letters, digits"),
    ("schedule * daily", "would match every server"),
    ("schedule ** daily", "would match every server"),
    ("schedule web-[ daily", "unclosed"),
    ("schedule web-[] daily", "empty `[]`"),
    ("schedule daily", "Say how often"),
])
def test_bad_targets_say_why(text: str, says: str) -> None:
    with pytest.raises(commands.ParseError) as caught:
        commands.parse(text)
    assert says in caught.value.message


def test_bad_target_text_is_echoed_safely() -> None:
    with pytest.raises(commands.ParseError) as caught:
        commands.parse("schedule meta:<!here> daily")
    assert "<!here>" not in caught.value.message and "&lt;!here&gt;" in caught.value.message


def test_fleet_schedule_parses_with_keep_and_keep_days() -> None:
    got = commands.parse("schedule web-* weekly sun at 03:00 --keep 3 --keep-days 30 --tz UTC")
    assert isinstance(got, commands.Schedule)
    assert got.target == FleetTarget("glob", pattern="web-*") and got.server.text == "web-*"
    assert (got.keep, got.keep_days, got.day) == (3, 30, "SUNDAY")
    off = commands.parse("schedule meta:role=web off")
    assert isinstance(off, commands.ScheduleOff) and off.target is not None
    # A server stays a server.
    single = commands.parse("schedule web-1 daily")
    assert isinstance(single, commands.Schedule) and single.target is None


def test_retention_default_stays_when_neither_is_given() -> None:
    default = commands.parse("schedule web-* daily")
    assert isinstance(default, commands.Schedule)
    assert (default.keep, default.keep_days) == (7, None)
    by_age = commands.parse("schedule web-1 daily --keep-days 14")
    assert isinstance(by_age, commands.Schedule)
    assert by_age.keep_days == 14 and by_age.keep == 65535  # no count limit: age only
    for bad in ("--keep-days 0", "--keep-days x", "--keep-days 4000"):
        with pytest.raises(commands.ParseError):
            commands.parse(f"schedule web-* daily {bad}")


@pytest.mark.parametrize("operation", ["pause", "resume", "run-now", "skip-next"])
@pytest.mark.parametrize("word", ["web-*", "meta:role=web"])
def test_operations_on_a_fleet_target_name_the_target(operation: str, word: str) -> None:
    request = commands.parse(f"schedule {word} {operation}")
    assert isinstance(request, commands.ScheduleOperation)
    assert request.operation == operation
    assert request.target is not None and request.target.text == word
    assert request.server.text == word
    with pytest.raises(commands.ParseError, match="takes no options"):
        commands.parse(f"schedule {word} {operation} --keep 3")


def test_an_operation_on_one_server_has_no_target() -> None:
    request = commands.parse("schedule web-1 pause")
    assert isinstance(request, commands.ScheduleOperation) and request.target is None
