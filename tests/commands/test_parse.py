"""Table-driven tests of `commands.parse`: every command, every error kind, Slack's quirks."""

from __future__ import annotations

from datetime import time

import pytest

import commands
from commands import (
    Approvals,
    Approve,
    Cancel,
    Create,
    Help,
    Images,
    ListJobs,
    ParseError,
    Reject,
    Schedule,
    ScheduleOff,
    Schedules,
    ServerRef,
    Status,
)
from commands.text import slack_escape

WEB1 = ServerRef("web-1", False)
UUID = "0b3c8f4e-2d7a-4c1e-9f5b-7a6d5e4c3b2a"
UUID_REF = ServerRef(UUID, True)

VALID: list[tuple[str, commands.Request]] = [
    # create
    ("create web-1", Create(WEB1)),
    ("create web-1 --now", Create(WEB1, now=True)),
    ("CREATE web-1 --NOW", Create(WEB1, now=True)),
    ("create web-1 --name nightly --note 'before upgrade'",
     Create(WEB1, image_name="nightly", note="before upgrade")),
    ('create web-1 --note "before upgrade" --now --name=nightly',
     Create(WEB1, image_name="nightly", now=True, note="before upgrade")),
    ('create web-1 --note="it\'s before the upgrade"',
     Create(WEB1, note="it's before the upgrade")),
    ("create web-1 --note don't", Create(WEB1, note="don't")),
    ("create --now web-1", Create(WEB1, now=True)),
    ("  create\tweb-1\n--now  ", Create(WEB1, now=True)),
    ("create web-1 --name 'db before 2.0' ", Create(WEB1, image_name="db before 2.0")),
    ("create web-1 --name " + "é" * 127, Create(WEB1, image_name="é" * 127)),  # 254 bytes
    (f"create {UUID.upper()}", Create(UUID_REF)),
    (f"create {UUID}", Create(UUID_REF)),
    ("create web-1 --note -5", Create(WEB1, note="-5")),
    ("create web-1 --note '--now'", Create(WEB1, note="--now")),
    ("create " + "s" * 255, Create(ServerRef("s" * 255, False))),
    # status
    ("status", Status()),
    ("status J17", Status(job_id="J17")),
    ("status j17", Status(job_id="J17")),
    ("status J007", Status(job_id="J7")),
    ("status web-1", Status(server=WEB1)),
    ("status Jupiter", Status(server=ServerRef("Jupiter", False))),
    (f"status {UUID}", Status(server=UUID_REF)),
    # list
    ("list", ListJobs()),
    ("list web-1", ListJobs(server=WEB1)),
    ("list --state failed", ListJobs(state="failed")),
    ("list web-1 --state=RUNNING --limit 50", ListJobs(WEB1, "running", 50)),
    ("list --limit 1", ListJobs(limit=1)),
    ("list --limit 100 --state done", ListJobs(state="done", limit=100)),
    ("list --state cancelled", ListJobs(state="cancelled")),
    ("list web-1 --state=Cancelled", ListJobs(WEB1, "cancelled")),
    # cancel, images
    ("cancel J17", Cancel("J17")),
    ("cancel j3", Cancel("J3")),
    ("images web-1", Images(WEB1)),
    (f"images {UUID}", Images(UUID_REF)),
    # schedule
    ("schedule web-1 daily", Schedule(WEB1, "daily", None, time(0, 0), 7, "UTC")),
    ("schedule web-1 DAILY at 02:30", Schedule(WEB1, "daily", None, time(2, 30), 7, "UTC")),
    ("schedule web-1 daily at 7:05", Schedule(WEB1, "daily", None, time(7, 5), 7, "UTC")),
    ("schedule web-1 daily at 23:59 --keep 65535 --tz Europe/Berlin",
     Schedule(WEB1, "daily", None, time(23, 59), 65535, "Europe/Berlin")),
    ("schedule web-1 daily --tz=america/new_york --keep=1",
     Schedule(WEB1, "daily", None, time(0, 0), 1, "America/New_York")),
    ("schedule web-1 weekly sat", Schedule(WEB1, "weekly", "SATURDAY", time(0), 7, "UTC")),
    ("schedule web-1 weekly SATURDAY at 0:00",
     Schedule(WEB1, "weekly", "SATURDAY", time(0), 7, "UTC")),
    ("schedule web-1 weekly Sat at 23:00 --keep 4",
     Schedule(WEB1, "weekly", "SATURDAY", time(23), 4, "UTC")),
    ("schedule web-1 weekly monday --tz Asia/Kolkata at 05:45",
     Schedule(WEB1, "weekly", "MONDAY", time(5, 45), 7, "Asia/Kolkata")),
    ("schedule web-1 weekly thu", Schedule(WEB1, "weekly", "THURSDAY", time(0), 7, "UTC")),
    ("schedule web-1 daily --tz Etc/GMT+5",
     Schedule(WEB1, "daily", None, time(0), 7, "Etc/GMT+5")),
    ("schedule web-1 off", ScheduleOff(WEB1)),
    ("schedule web-1 OFF", ScheduleOff(WEB1)),
    ("schedules", Schedules()),
    ("schedules web-1", Schedules(WEB1)),
    # approvals
    ("approvals", Approvals()),
    ("approve R4", Approve("R4")),
    ("approve r12", Approve("R12")),
    ("reject R4", Reject("R4")),
    ("reject r4 not during the freeze", Reject("R4", "not during the freeze")),
    ("reject R4 don't — it's \"risky\"", Reject("R4", "don't — it's \"risky\"")),
    ('reject R4 "too risky"', Reject("R4", "too risky")),
    ("reject R4 --now is not an option here", Reject("R4", "--now is not an option here")),
    # help
    ("", Help()),
    ("   \n\t ", Help()),
    ("help", Help()),
    ("help schedule", Help("schedule")),
    ("HELP Create", Help("create")),
    ("help /image", Help()),
    # `/image --help` and `/image -h` are the overview, like `/image help` (issue 19)
    ("--help", Help()),
    ("-h", Help()),
    ("  --HELP ", Help()),
    ("\u2014help", Help()),  # a client's em-dash for `--`
    ("create --help", Help("create")),
    ("schedule web-1 -h", Help("schedule")),
    ("reject --help", Help("reject")),
]

SLACK_QUIRKS: list[tuple[str, commands.Request]] = [
    # HTML entities (Slack escapes & < > in user text)
    ("create web-1 --note &lt;b&gt;&amp;&lt;/b&gt;", Create(WEB1, note="<b>&</b>")),
    ("create web-1 --note a&amp;lt;b", Create(WEB1, note="a&lt;b")),  # unescaped once only
    # smart quotes act as quotes
    ("create web-1 --note “before upgrade”", Create(WEB1, note="before upgrade")),
    ("create web-1 --note ‘before upgrade’", Create(WEB1, note="before upgrade")),
    ("create web-1 --note „before upgrade“", Create(WEB1, note="before upgrade")),
    ("create web-1 --note=“before upgrade”", Create(WEB1, note="before upgrade")),
    ("create web-1 --note “don’t touch”", Create(WEB1, note="don't touch")),
    # links become their label, or the URL without scheme
    ("create <http://web-1|web-1> --now", Create(WEB1, now=True)),
    ("images <https://web-1.example.com|web-1.example.com>",
     Images(ServerRef("web-1.example.com", False))),
    ("images <http://web-1.example.com>", Images(ServerRef("web-1.example.com", False))),
    ("images <HTTPS://x.y/>", Images(ServerRef("x.y", False))),
    ("create web-1 --note <mailto:a@b.c|a@b.c>", Create(WEB1, note="a@b.c")),
    ("create web-1 --note <mailto:a@b.c>", Create(WEB1, note="a@b.c")),
    ("create web-1 --note “ask <mailto:a@b.c|a@b.c> first”",
     Create(WEB1, note="ask a@b.c first")),
    # em-dash (and en-dash) for --
    ("create web-1 —now", Create(WEB1, now=True)),
    ("create web-1 –now", Create(WEB1, now=True)),
    ("create web-1 —name=nightly —note “a — b”", Create(WEB1, image_name="nightly", note="a — b")),
    ("schedule web-1 weekly sat —keep 3 —tz UTC",
     Schedule(WEB1, "weekly", "SATURDAY", time(0), 3, "UTC")),
    ("list —state failed —limit 5", ListJobs(state="failed", limit=5)),
    # non-breaking spaces separate words too
    ("create\u00a0web-1\u00a0--now", Create(WEB1, now=True)),
]


@pytest.mark.parametrize(("text", "expected"), VALID + SLACK_QUIRKS)
def test_parse_valid(text: str, expected: commands.Request) -> None:
    assert commands.parse(text) == expected


def test_request_classes_know_their_command_word() -> None:
    assert [type(commands.parse(t)).command for t in
            ("create a", "status", "list", "cancel J1", "images a", "schedule a daily",
             "schedule a off", "schedules", "approvals", "approve R1", "reject R1", "help")] == [
        "create", "status", "list", "cancel", "images", "schedule", "schedule", "schedules",
        "approvals", "approve", "reject", "help"]
    assert Status.name == "status" and ListJobs.name == "list" and Help.name == "help"


def test_requests_are_frozen() -> None:
    request = commands.parse("create web-1")
    with pytest.raises(AttributeError):
        request.now = True  # type: ignore[misc, union-attr]


# (text, fragments the message must contain, the command whose usage must be attached or None)
ERRORS: list[tuple[str, tuple[str, ...], str | None]] = [
    # unknown command, with suggestions
    ("crate web-1", ("`crate`", "did you mean `create`"), None),
    ("stauts J17", ("did you mean `status`",), None),
    ("schedul web-1 daily", ("did you mean `schedule`",), None),
    ("frobnicate", ("`frobnicate`", "Commands: create"), None),
    # unknown option, with suggestions
    ("create web-1 --nmae x", ("Unknown option `--nmae`", "did you mean `--name`"), "create"),
    ("create web-1 --keep 3", ("Unknown option `--keep`", "create takes `--name`"), "create"),
    ("list --sate failed", ("did you mean `--state`",), "list"),
    ("schedule web-1 daily --kep 3", ("did you mean `--keep`",), "schedule"),
    # `approvals` took no options before `--all` (issue 13): other options are still refused.
    ("approvals --mine", ("Unknown option `--mine`",), "approvals"),
    ("approve R4 --all", ("takes no options",), "approve"),
    ("create web-1 -n x", ("Unknown option `-n`",), "create"),
    # repeated option
    ("create web-1 --now --now", ("--now is given twice",), "create"),
    ("create web-1 --name a --name=b", ("--name is given twice",), "create"),
    ("create web-1 --note a —note b", ("--note is given twice",), "create"),
    # option values
    ("create web-1 --name", ("--name needs a value",), "create"),
    ("create web-1 --name --now", ("--name needs a value",), "create"),
    ("create web-1 --now=yes", ("--now is a switch",), "create"),
    ("create web-1 --name ''", ("image name (--name) is empty",), "create"),
    ("create web-1 --name " + "é" * 128, ("256 bytes", "limit is 255"), "create"),
    ("create web-1 --name 'a\tb'", ("control characters",), "create"),
    ("create web-1 --note ''", ("note (--note) is empty",), "create"),
    ("create web-1 --note " + "n" * 256, ("256 characters", "limit is 255"), "create"),
    # missing / extra arguments
    ("create", ("needs a server",), "create"),
    ("create web-1 web-2", ("Unexpected argument `web-2`",), "create"),
    ("create web-1 now", ("Unexpected argument `now`", "did you mean `--now`"), "create"),
    ("images", ("needs a server",), "images"),
    ("images web-1 extra", ("Unexpected argument `extra`",), "images"),
    ("status J17 web-1", ("Unexpected argument `web-1`",), "status"),
    ("list web-1 web-2", ("Unexpected argument",), "list"),
    ("list J17", ("job id, not a server",), "list"),
    ("approvals R4", ("Unexpected argument `R4`",), "approvals"),
    ("approve R4 R5", ("Unexpected argument `R5`",), "approve"),
    ("schedules web-1 web-2", ("Unexpected argument",), "schedules"),
    ("help create status", ("Unexpected argument `status`",), "help"),
    # server names
    ("create 'web 1'", ("cannot contain spaces",), "create"),
    ("create ''", ("server name is empty",), "create"),
    ("create " + "s" * 256, ("256 characters", "limit is 255"), "create"),
    ("create J17", ("job id, not a server", "status J17"), "create"),
    ("images R4", ("change-request id, not a server",), "images"),
    ("status R4", ("is a change request",), "status"),
    # ids
    ("cancel", ("needs a job id",), "cancel"),
    ("cancel web-1", ("`web-1` is not a job id",), "cancel"),
    ("cancel R4", ("is not a job id",), "cancel"),
    ("cancel J" + "1" * 19, ("is not a job id",), "cancel"),
    ("approve", ("needs a change-request id",), "approve"),
    ("approve J17", ("`J17` is not a change-request id",), "approve"),
    ("reject", ("needs a change-request id",), "reject"),
    ("reject web-1 because", ("`web-1` is not a change-request id",), "reject"),
    # list values
    ("list --state runing", ("--state must be running, done, failed or cancelled",
                             "did you mean `running`"), "list"),
    ("list --limit 0", ("--limit must be from 1 to 100",), "list"),
    ("list --limit 101", ("--limit must be from 1 to 100",), "list"),
    ("list --limit ten", ("--limit must be a whole number",), "list"),
    ("list --limit 10.5", ("whole number",), "list"),
    ("list --limit ٣", ("whole number",), "list"),  # non-ASCII digits are refused
    ("list --limit " + "9" * 3000, ("--limit must be from 1 to 100",), "list"),
    # schedule shapes
    ("schedule web-1", ("Say how often",), "schedule"),
    ("schedule web-1 dialy", ("`dialy` is not daily, weekly or off", "did you mean `daily`"),
     "schedule"),
    ("schedule web-1 weekly", ("weekly schedule needs a day",), "schedule"),
    ("schedule web-1 weekly at 02:00", ("weekly schedule needs a day",), "schedule"),
    ("schedule web-1 weekly satur", ("`satur` is not a day", "did you mean `saturday`"),
     "schedule"),
    ("schedule web-1 weekly funday", ("not a day of the week",), "schedule"),
    ("schedule web-1 daily sat", ("daily schedule takes no day", "weekly sat"), "schedule"),
    ("schedule web-1 daily 02:00", ("Put `at` before the time",), "schedule"),
    ("schedule web-1 daily at", ("`at` needs a time",), "schedule"),
    ("schedule web-1 daily at 02:00 extra", ("Unexpected argument `extra`",), "schedule"),
    ("schedule web-1 daily at 02:00 keep", ("did you mean `--keep`",), "schedule"),
    ("schedule web-1 off --keep 3", ("takes no options",), "schedule"),
    ("schedule web-1 off now", ("Unexpected argument `now`",), "schedule"),
    # times
    ("schedule web-1 daily at 24:00", ("24:00 is not a time of day", "00:00"), "schedule"),
    ("schedule web-1 daily at 7pm", ("24-hour", "at 19:00"), "schedule"),
    ("schedule web-1 daily at 12am", ("at 00:00",), "schedule"),
    ("schedule web-1 daily at 7:30AM", ("at 07:30",), "schedule"),
    ("schedule web-1 daily at 25:00", ("out of range",), "schedule"),
    ("schedule web-1 daily at 12:60", ("out of range",), "schedule"),
    ("schedule web-1 daily at 1230", ("not a time", "HH:MM"), "schedule"),
    ("schedule web-1 daily at 02:3", ("not a time",), "schedule"),
    ("schedule web-1 daily at noon", ("not a time",), "schedule"),
    # keep
    ("schedule web-1 daily --keep 0", ("--keep must be from 1 to 65535",), "schedule"),
    ("schedule web-1 daily --keep 65536", ("--keep must be from 1 to 65535",), "schedule"),
    ("schedule web-1 daily --keep -1", ("--keep must be from 1 to 65535",), "schedule"),
    ("schedule web-1 daily --keep lots", ("--keep must be a whole number",), "schedule"),
    # zones
    ("schedule web-1 daily --tz Mars/Olympus", ("not a time zone",), "schedule"),
    ("schedule web-1 daily --tz Europe/Berln", ("did you mean `Europe/Berlin`",), "schedule"),
    ("schedule web-1 daily --tz ../../etc/passwd", ("not a time zone",), "schedule"),
    ("schedule web-1 daily --tz /etc/localtime", ("not a time zone",), "schedule"),
    ("schedule web-1 daily --tz ''", ("--tz needs a time zone name",), "schedule"),
    ("schedule web-1 daily --tz 'Europe/Berlin '", ("not a time zone",), "schedule"),
    ("schedule web-1 daily --tz Europe", ("not a time zone",), "schedule"),
    # quoting and characters
    ('create web-1 --note "before upgrade', ("A quote is not closed", '`"before upgrade`'),
     "create"),
    ("create web-1 --note 'x", ("A quote is not closed",), "create"),
    ("create web-1 --note “unclosed", ("A quote is not closed",), "create"),
    ("create web-1\x00", ("control character (U+0000)",), None),
    ("create web-1 \x1b[31m", ("control character (U+001B)",), None),
    ("create web-\ud800", ("lone surrogate",), None),
    ("create " + "x" * 4000, ("4007 characters", "limit is 4000"), None),
    ("help frobnicate", ("no command `frobnicate`",), "help"),
    # issue 19: an empty zone says the zone is missing; a repeated `at` says it is repeated
    ('schedule web-1 daily --tz ""', ("--tz needs a time zone name", "it was empty"),
     "schedule"),
    ("schedule web-1 daily --tz=", ("--tz needs a time zone name",), "schedule"),
    ("schedule web-1 daily at 02:00 at 03:00", ("`at` is repeated", "give `at HH:MM` once"),
     "schedule"),
    ("schedule web-1 weekly sat at 02:00 at 02:00", ("`at` is repeated",), "schedule"),
    ("--help me", ("I don't know the command `--help`",), None),
    ("help shedule", ("did you mean `schedule`",), "help"),
]


@pytest.mark.parametrize(("text", "fragments", "command"), ERRORS)
def test_parse_errors(text: str, fragments: tuple[str, ...], command: str | None) -> None:
    with pytest.raises(ParseError) as caught:
        commands.parse(text)
    error = caught.value
    for fragment in fragments:
        assert fragment in error.message
    shown = str(error)
    assert shown.startswith(error.message.replace("<", "&lt;").replace(">", "&gt;"))
    assert "Usage:" in shown
    if command is None:
        assert error.usage == "/image <command> [arguments]"
    else:
        assert error.usage.startswith(f"/image {command}")
        # every usage line of the command is shown to the user
        for line in error.usage.splitlines():
            assert f"`{slack_escape(line)}`" in shown
    # Slack would read a raw <...> as a link or mention: placeholders go out escaped.
    assert "<" not in shown and ">" not in shown


def test_error_echo_cannot_ping_the_channel() -> None:
    # Entities are unescaped for parsing; echoing must not turn them into live Slack markup.
    with pytest.raises(ParseError) as caught:
        commands.parse("cancel &lt;!channel&gt;")
    assert "<!channel>" not in str(caught.value)
    assert "&lt;!channel&gt;" in str(caught.value)


def test_error_echo_is_shortened() -> None:
    with pytest.raises(ParseError) as caught:
        commands.parse("cancel " + "x" * 500)
    assert len(caught.value.message) < 200


def test_parse_error_str_with_single_and_multi_line_usage() -> None:
    assert str(ParseError("Bad.", "/image cancel <job-id>")) == (
        "Bad.\nUsage: `/image cancel &lt;job-id&gt;`")
    assert str(ParseError("Give a <server>.", "")) == "Give a &lt;server&gt;."
    assert str(ParseError("Bad.", "/image a\n/image b")) == (
        "Bad.\nUsage:\n• `/image a`\n• `/image b`")
    assert str(ParseError("Bad.", "")) == "Bad."
    error = ParseError("Bad.", "/image x")
    assert (error.message, error.usage) == ("Bad.", "/image x")
    assert error.user_message() == str(error)


def test_non_text_input_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        commands.parse(None)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        commands.parse(b"create web-1")  # type: ignore[arg-type]


def test_length_cap_is_exactly_4000() -> None:
    text = "create web-1 --note " + "'" + "n" * 200 + "'"
    padded = text + " " * (4000 - len(text))
    assert commands.parse(padded) == Create(WEB1, note="n" * 200)
    with pytest.raises(ParseError, match="limit is 4000"):
        commands.parse(padded + " ")


@pytest.mark.parametrize("text, expected", [
    ("list --all", commands.ListJobs(all=True)),
    ("list web-1 --all --state failed",
     commands.ListJobs(server=commands.ServerRef("web-1", False), state="failed", all=True)),
    ("status --all", commands.Status(all=True)),
    ("status J17 --all", commands.Status(job_id="J17", all=True)),
    ("schedules --all", commands.Schedules(all=True)),
    ("approvals --all", commands.Approvals(all=True)),
    ("approvals", commands.Approvals()),
    ("list", commands.ListJobs()),
])
def test_all_switch_where_it_applies(text: str, expected: object) -> None:
    # issue 13: answers are scoped to the channel; `--all` asks for every channel.
    assert commands.parse(text) == expected
