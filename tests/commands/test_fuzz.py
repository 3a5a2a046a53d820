"""Property tests: no input, however strange, raises anything but ParseError, and every request
that comes out satisfies the grammar's invariants."""

from __future__ import annotations

import re
import zoneinfo
from datetime import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

import commands
from commands import (
    Approve,
    Cancel,
    Create,
    ListJobs,
    ParseError,
    Reject,
    Schedule,
    ScheduleOff,
    Schedules,
    ServerRef,
    Status,
)
from commands.grammar import BY_NAME, TABLE

COMMAND_WORDS = [spec.name for spec in TABLE]
OPTION_WORDS = sorted({opt.flag for spec in TABLE for opt in spec.options})
ODD_PIECES = [
    "web-1", "J17", "j0", "R4", "r99999999999999999999", "0b3c8f4e-2d7a-4c1e-9f5b-7a6d5e4c3b2a",
    "daily", "weekly", "off", "at", "sat", "SATURDAY", "02:30", "24:00", "7pm", "UTC",
    "Europe/Berlin", "../x", "/etc/passwd", "\x00", "\ud800", "\udfff", "--", "-", "—", "–",
    "—now", "--help", "-h", "=", "--name=", "--note=\"", '"', "'", "“", "”", "‘", "’", "„",
    "&amp;", "&lt;", "&gt;", "&amp;lt;", "<http://web-1|web-1>", "<https://x.y>", "<mailto:a@b.c>",
    "<", ">", "|", "<http://", "<!channel>", "\u00a0", "\u2028", "\t", "\n", "\r", "é" * 200,
    "9" * 5000, "x" * 300, "`", "\\", "/image", "+1", "-1", "0", "65535", "65536", "100", "101",
]
SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "", "="])

any_char = st.characters(exclude_categories=())  # includes control chars and lone surrogates
arbitrary = st.text(alphabet=any_char, max_size=200)
long_text = st.builds(lambda s, n: (s or "x") * n, st.text(alphabet=any_char, max_size=20),
                      st.integers(min_value=150, max_value=10_000))
structured = st.builds(
    lambda first, parts, seps: first + "".join(s + p for s, p in zip(seps, parts, strict=False)),
    st.sampled_from(COMMAND_WORDS + [w.upper() for w in COMMAND_WORDS] + ["", "crate"]),
    st.lists(st.one_of(st.sampled_from(ODD_PIECES + OPTION_WORDS), st.text(max_size=8)),
             max_size=12),
    st.lists(SEPARATORS, min_size=12, max_size=12),
)

_ID = re.compile(r"[JR](0|[1-9][0-9]*)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_server(server: ServerRef | None) -> None:
    if server is None:
        return
    assert isinstance(server, ServerRef)
    if server.is_uuid:
        assert _UUID.fullmatch(server.text)
    else:
        assert 0 < len(server.text) <= 255
        assert not any(c.isspace() or ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF
                       for c in server.text)
        assert not re.fullmatch(r"[JjRr][0-9]+", server.text)


def check_invariants(request: commands.Request) -> None:
    """What every parsed request promises its consumers."""
    _check_server(getattr(request, "server", None))
    if isinstance(request, Create):
        if request.image_name is not None:
            assert 0 < len(request.image_name.encode("utf-8")) <= 255
        assert request.note is None or 0 < len(request.note) <= 255
    elif isinstance(request, Status):
        assert request.job_id is None or request.server is None
        assert request.job_id is None or _ID.fullmatch(request.job_id)
    elif isinstance(request, ListJobs):
        assert request.state in (None, "running", "done", "failed", "cancelled")
        assert 1 <= request.limit <= 100
    elif isinstance(request, Cancel):
        assert _ID.fullmatch(request.job_id) and request.job_id[0] == "J"
    elif isinstance(request, Approve | Reject):
        assert _ID.fullmatch(request.request_id) and request.request_id[0] == "R"
        if isinstance(request, Reject):
            assert request.reason is None or request.reason.strip()
    elif isinstance(request, Schedule):
        assert request.frequency in ("daily", "weekly")
        assert (request.day is None) == (request.frequency == "daily")
        assert request.day is None or request.day.isupper()
        assert isinstance(request.at, time) and request.at.tzinfo is None
        assert 1 <= request.keep <= 65535
        zoneinfo.ZoneInfo(request.tz)
    elif isinstance(request, ScheduleOff | Schedules):
        pass
    elif isinstance(request, commands.Help):
        assert request.topic is None or request.topic in BY_NAME


def as_slack_text(message: str) -> str:
    """A ParseError message as it goes to Slack: user text in it is escaped already where it
    is quoted, what is left of < and > are placeholders."""
    return message.replace("<", "&lt;").replace(">", "&gt;")


def parse_or_error(text: str) -> None:
    """Parse; a request must satisfy the invariants, an error must be showable."""
    try:
        request = commands.parse(text)
    except ParseError as error:
        shown = str(error)
        # What is shown is Slack text: the placeholders in the message (`weekly <day>`) go out
        # as &lt;day&gt;, because Slack reads a raw < or > as the start of a link or mention
        # (api.slack.com/reference/surfaces/formatting#escaping). So the premise is "starts
        # with the message as Slack text", not "with the message" (Hypothesis: SCHEDULE web-1).
        assert error.message and shown.startswith(as_slack_text(error.message))
        assert "<" not in shown and ">" not in shown
        assert "Usage:" in shown and error.usage.startswith("/image ")
        assert len(error.message) < 700  # echoes are shortened, however long the input
        return
    check_invariants(request)
    assert commands.parse(text) == request  # deterministic


@settings(max_examples=400, deadline=None)
@given(arbitrary)
@example("create web-1 --note \"unbalanced")
@example("x" * 10_000)
@example("create " + "\x00" * 10)
@example("schedule web-1 daily --tz ../x")
@example("schedule web-1 daily --tz 'Europe/Berlin\x00'")
@example("schedule web-1 daily --tz " + "a/" * 40)
def test_arbitrary_text(text: str) -> None:
    parse_or_error(text)


@settings(max_examples=40, deadline=None)
@given(long_text)
def test_long_text(text: str) -> None:
    parse_or_error(text)


@settings(max_examples=600, deadline=None)
@given(structured)
@example("SCHEDULE web-1")  # found by Hypothesis: the shown error escapes `weekly <day>`
@example("schedule web-1 weekly")
def test_structured_text(text: str) -> None:
    parse_or_error(text)


# Characters that Slack normalisation rewrites (quotes, entities, links) stay out of these.
_REWRITTEN = set('"\'“”‘’„‚‛‟«»&<>')
_visible = st.characters(exclude_categories=("C", "Z"), exclude_characters=_REWRITTEN)
server_names = st.text(alphabet=_visible, min_size=1, max_size=30).filter(
    lambda s: not re.fullmatch(r"[JjRr][0-9]+", s) and s[0] not in "-—–"
    and not _UUID.fullmatch(s.lower()))
plain_words = st.text(alphabet=_visible, min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(server=server_names, name=st.none() | plain_words, now=st.booleans(),
       note=st.none() | st.lists(plain_words, min_size=1, max_size=4).map(" ".join),
       order=st.permutations(range(3)), equals=st.booleans(),
       dash=st.sampled_from(["--", "—"]))
def test_create_round_trip(server: str, name: str | None, now: bool, note: str | None,
                           order: list[int], equals: bool, dash: str) -> None:
    options = []
    sep = "=" if equals else " "
    if name is not None:
        options.append(f'{dash}name{sep}"{name}"')
    if now:
        options.append(f"{dash}now")
    if note is not None:
        options.append(f'{dash}note{sep}"{note}"')
    options = [options[i] for i in order if i < len(options)]
    text = " ".join(["create", server, *options])
    assert commands.parse(text) == Create(ServerRef(server, False), name, now, note)


@settings(max_examples=200, deadline=None)
@given(day=st.none() | st.sampled_from(["MONDAY", "WEDNESDAY", "SATURDAY", "SUNDAY"]),
       short=st.booleans(), case=st.sampled_from([str.lower, str.upper, str.title]),
       at=st.none() | st.times().map(lambda t: t.replace(second=0, microsecond=0)),
       keep=st.none() | st.integers(min_value=1, max_value=65535),
       tz=st.none() | st.sampled_from(["UTC", "Europe/Berlin", "America/Sao_Paulo"]),
       swap=st.booleans())
def test_schedule_round_trip(day: str | None, short: bool, case: object, at: time | None,
                             keep: int | None, tz: str | None, swap: bool) -> None:
    assert callable(case)
    words = ["schedule", "web-1", "weekly" if day else "daily"]
    if day:
        words.append(case(day[:3] if short else day))
    if at is not None:
        words += ["at", f"{at.hour}:{at.minute:02d}"]
    options = ([f"--keep {keep}"] if keep else []) + ([f"--tz={tz}"] if tz else [])
    if swap:
        options.reverse()
    expected = Schedule(ServerRef("web-1", False), "weekly" if day else "daily", day,
                        at or time(0), keep or 7, tz or "UTC")
    assert commands.parse(" ".join(words + options)) == expected
