"""The sandbox console: its own grammar (pure), error detection, unit splitting, and a few
lines executed against the real system."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.store import Store
from sandbox.console.parse import (
    ConsoleSyntaxError,
    faults_help,
    parse_console_line,
    parse_duration,
)
from sandbox.console.run import POLICY, script_lines
from sandbox.console.session import Console, answer_is_error, busy_reasons, split_units
from sandbox.system import running_system

# --- parse_console_line ----------------------------------------------------------------------


@pytest.mark.parametrize("line, kind, text", [
    ("/image create web-1", "slash", "create web-1"),
    ("  /image   create web-1 --now  ", "slash", "create web-1 --now"),
    ("/image", "slash", ""),
    ("/image help", "slash", "help"),
])
def test_slash_lines_keep_the_text_after_the_command(line: str, kind: str, text: str) -> None:
    command = parse_console_line(line)
    assert (command.kind, command.text, command.expect_failure) == (kind, text, False)


def test_bang_marks_expected_failure_and_parses_the_rest() -> None:
    command = parse_console_line("!/image create web-9")
    assert command.kind == "slash" and command.text == "create web-9" and command.expect_failure
    assert parse_console_line("! click 3").button == 3
    with pytest.raises(ConsoleSyntaxError):
        parse_console_line("!")


@pytest.mark.parametrize("line", ["", "   ", "# a comment", "  # indented comment"])
def test_blank_and_comment_lines_are_empty(line: str) -> None:
    assert parse_console_line(line).kind == "empty"


def test_click_needs_one_number() -> None:
    assert parse_console_line("click 2").button == 2
    assert parse_console_line("CLICK 12").button == 12
    for bad in ("click", "click two", "click 1 2", "click -1"):
        with pytest.raises(ConsoleSyntaxError, match="click"):
            parse_console_line(bad)


def test_as_and_in_take_one_name() -> None:
    assert parse_console_line("as bob").args == ("bob",)
    assert parse_console_line("in #ops-alerts").args == ("#ops-alerts",)
    with pytest.raises(ConsoleSyntaxError, match="as bob"):
        parse_console_line("as")
    with pytest.raises(ConsoleSyntaxError, match="in #ops-alerts"):
        parse_console_line("in #a #b")


@pytest.mark.parametrize("line, kind, params", [
    ("fault kill-upload web-1", "upload_fail", {"server": "web-1"}),
    ("fault vanish web-2", "image_deleted", {"server": "web-2"}),
    ("fault stuck web-1", "stuck", {"server": "web-1"}),
    ("fault stuck web-1 image_pending_upload", "stuck",
     {"server": "web-1", "task_state": "image_pending_upload"}),
    ("fault kill-upload web-1 image_pending_upload", "upload_fail",
     {"server": "web-1", "during": "image_pending_upload"}),
    ("fault orphan db-1", "orphan", {"server": "db-1"}),
    ("fault 500 /servers", "http", {"status": 500, "path": "/servers", "count": 1}),
    ("fault 503 '/v2.1/.*/action' 3", "http", {"status": 503, "path": "/v2.1/.*/action",
                                               "count": 3}),
    ("fault slow /images 2.5", "slow", {"path": "/images", "delay": 2.5, "count": 1}),
    ("fault clear", "clear", {}),
    ("fault revoke-tokens", "revoke_tokens", {}),
])
def test_fault_words_map_to_simulator_faults(line: str, kind: str, params: dict) -> None:
    command = parse_console_line(line)
    assert command.kind == "fault"
    assert command.fault == (kind, params)


@pytest.mark.parametrize("line, reason", [
    ("fault", "which fault"),
    ("fault kill-upload", "needs a server"),
    ("fault explode web-1", "unknown fault"),
    ("fault 500", "usage"),
    ("fault 500 ( 2", "bad path regex"),
    ("fault 500 /x zero", "positive whole number"),
    ("fault 500 /x 0", "positive whole number"),
    ("fault slow /x", "usage"),
    ("fault slow /x soon", "number"),
    ("fault 999x /x", "unknown fault"),
])
def test_bad_fault_lines_say_why(line: str, reason: str) -> None:
    with pytest.raises(ConsoleSyntaxError, match=reason):
        parse_console_line(line)


@pytest.mark.parametrize("text, delta", [
    ("+1d", timedelta(days=1)), ("2h", timedelta(hours=2)), ("+30m", timedelta(minutes=30)),
    ("+1d12h", timedelta(days=1, hours=12)), ("+90s", timedelta(seconds=90)),
])
def test_clock_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta
    assert parse_console_line(f"clock {text}").delta == delta


@pytest.mark.parametrize("bad", ["clock", "clock -1d", "clock +0h", "clock tomorrow",
                                 "clock +1d 2h", "clock +1y"])
def test_clock_only_moves_forward_by_a_duration(bad: str) -> None:
    with pytest.raises(ConsoleSyntaxError):
        parse_console_line(bad)


def test_other_commands() -> None:
    assert parse_console_line("show").kind == "show"
    assert parse_console_line("help").kind == "help"
    assert parse_console_line("faults").kind == "faults"
    assert parse_console_line("exit").kind == "exit"
    assert parse_console_line("quit").kind == "exit"
    assert parse_console_line("wait").seconds is None
    assert parse_console_line("wait 5").seconds == 5.0
    with pytest.raises(ConsoleSyntaxError):
        parse_console_line("wait soon")


def test_forgotten_slash_gets_a_suggestion() -> None:
    with pytest.raises(ConsoleSyntaxError, match=r"did you mean `/image create web-1`"):
        parse_console_line("create web-1")
    with pytest.raises(ConsoleSyntaxError, match=r"did you mean `/image status`"):
        parse_console_line("image status")
    with pytest.raises(ConsoleSyntaxError, match="unknown slash command /imgae"):
        parse_console_line("/imgae create web-1")
    with pytest.raises(ConsoleSyntaxError, match="type `help`"):
        parse_console_line("dance")


def test_faults_help_lists_every_fault_word() -> None:
    text = faults_help()
    for word in ("kill-upload", "vanish", "stuck", "orphan", "slow", "revoke-tokens", "clear"):
        assert f"fault {word}" in text


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("command, status, answer, error", [
    ("create web-1", 200, "Job J1: check the quiesce list", False),
    ("create web-1", 200, "You may not create images in this channel.", True),
    ("create web-1", 500, "", True),
    ("create web-1", 200, ":warning: The cloud is unreachable.", True),
    ("frobnicate", 200, "I don't know the command `frobnicate`.", True),
    ("approve R1", 200, ":no_entry: You cannot approve your own request R1", True),
    ("status", 200, "No images are being made right now.", False),
    ("schedule web-1 daily at 03:00", 200, "`schedule` is not available yet.", True),
])
def test_answer_is_error(command: str, status: int, answer: str, error: bool) -> None:
    assert answer_is_error(command, status, answer) is error


def test_split_units_keeps_threads_with_their_parent() -> None:
    text = ("#ops (C0OPS)\n"
            "[10:00:00] you: /image create web-1\n"
            "[10:00:00] imagebot:\n"
            "    *Image of web-1*\n"
            "continued context line\n"
            "    ↳ [10:00:01] imagebot: copying\n"
            "[10:00:02] imagebot (only visible to you): Job J1\n")
    units = split_units(text)
    assert units == [
        "[10:00:00] you: /image create web-1",
        "[10:00:00] imagebot:\n    *Image of web-1*\ncontinued context line\n"
        "    ↳ [10:00:01] imagebot: copying",
        "[10:00:02] imagebot (only visible to you): Job J1",
    ]
    assert split_units("#ops (C0OPS)\n") == []


def test_script_lines_drop_comments_and_blanks() -> None:
    text = "# title\n\n/image create web-1\n   # note\nclick 1  \n"
    assert script_lines(text) == ["/image create web-1", "click 1"]


def test_the_shipped_tour_parses() -> None:
    tour = Path(__file__).resolve().parents[2] / "examples" / "tour.txt"
    lines = script_lines(tour.read_text(encoding="utf-8"))
    kinds = [parse_console_line(line).kind for line in lines]
    assert {"slash", "click", "fault", "as", "in", "clock"} <= set(kinds)


# --- against the running system ---------------------------------------------------------------


async def test_console_lines_against_the_system() -> None:
    out = io.StringIO()
    async with running_system(speed=200, policy_path=POLICY, slack_rate_scale=20) as system:
        console = Console(system, out, timeout=20, settle_each=True)
        assert console.prompt == "alice@#ops> "

        outcome = await console.run_line("click 1")
        assert not outcome.ok and "no button [1]" in outcome.reason

        outcome = await console.run_line("/image create web-1")
        assert outcome.ok, outcome.reason
        assert "[1 Start snapshot] [2 Cancel]" in out.getvalue()
        assert console.buttons[1].action_id == "job_start"

        outcome = await console.run_line("as bob")
        assert outcome.ok and console.prompt == "bob@#ops> "
        outcome = await console.run_line("as mallory")
        assert not outcome.ok and "alice" in outcome.reason
        outcome = await console.run_line("in #nowhere")
        assert not outcome.ok and "#ops-alerts" in outcome.reason

        outcome = await console.run_line("fault kill-upload no-such-server")
        assert not outcome.ok and "no-such-server" in outcome.reason
        outcome = await console.run_line("fault 503 /servers/detail 2")
        assert outcome.ok and len(system.world.http_faults) == 1
        await console.run_line("fault clear")
        assert system.world.http_faults == []

        # A line expected to fail that succeeds is itself a failure.
        outcome = await console.run_line("!/image status")
        assert not outcome.ok and "expected" in outcome.reason
        outcome = await console.run_line("!/image frobnicate")
        assert outcome.ok

        await console.run_line("as alice")
        outcome = await console.run_line("click 1")
        assert outcome.ok, outcome.reason
        assert await busy_reasons(system) == []
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == "succeeded"
        assert ":white_check_mark: Image" in out.getvalue()

        before = system.clock()
        outcome = await console.run_line("clock +2h")
        assert outcome.ok
        assert system.clock() - before >= timedelta(hours=2)


async def test_a_stuck_job_does_not_hang_the_console_and_a_day_later_is_alerted() -> None:
    """`fault stuck web-1`: the cloud holds the upload forever. The create line returns once
    the job only waits on that task (it used to wait the whole timeout and fail); `clock +1d`
    passes the bot's 24 h upload deadline, and the stuck-job alert is waited for and shown."""
    out = io.StringIO()
    async with running_system(speed=200, policy_path=POLICY, slack_rate_scale=20) as system:
        console = Console(system, out, timeout=20, settle_each=True)
        assert (await console.run_line("fault stuck web-1")).ok
        outcome = await console.run_line("/image create web-1 --now")
        assert outcome.ok, outcome.reason
        job = await system.runtime.store.run(Store.get_job, "J1")
        # Waiting on the cloud's held task: the line returned once the disk copy was over, in
        # whichever upload phase the engine last saw (under load it may not have seen the
        # task move from image_pending_upload to image_uploading yet).
        assert job.state in ("pending_upload", "uploading") and job.deadline_at is not None, job
        assert await busy_reasons(system) == []  # waits on the cloud, not on the console
        outcome = await console.run_line("clock +1d")
        assert outcome.ok, outcome.reason
        job = await system.runtime.store.run(Store.get_job, "J1")
        assert job.state == "failed" and job.error_code == "stuck", job
        alerts = system.workspace.channel("#ops-alerts")
        texts = [m.text for m in system.workspace.channel_messages(alerts.id)]
        assert any(":rotating_light:" in t and "J1" in t and "stuck" in t for t in texts), texts


async def test_one_clock_for_bot_cloud_and_slack_after_clock_plus_1d() -> None:
    """After `clock +1d` the image's name (the bot's clock), its Glance `created_at` (the
    cloud's), the approval-free create's Slack messages (the emulator's) and the job's own
    times all say the same day: one shiftable clock, not three."""
    out = io.StringIO()
    async with running_system(speed=200, policy_path=POLICY, slack_rate_scale=20) as system:
        console = Console(system, out, timeout=20, settle_each=True)
        assert (await console.run_line("clock +1d")).ok
        outcome = await console.run_line("/image create web-1 --now")
        assert outcome.ok, outcome.reason
        now = system.clock()
        assert now - datetime.now(UTC) > timedelta(hours=23)  # the clock really moved
        job = await system.runtime.store.run(Store.get_job, "J1")
        assert job.state == "succeeded" and job.image_name and job.image_id
        assert f"-{now:%Y%m%d}-" in job.image_name
        image = system.world.images[job.image_id]
        created = datetime.fromtimestamp(image.created_at, UTC)
        assert abs(created - job.created_at) < timedelta(minutes=1), (created, job.created_at)
        ops = system.workspace.channel("#ops")
        last = system.workspace.channel_messages(ops.id)[-1]
        posted = datetime.fromtimestamp(float(last.ts), UTC)
        assert abs(posted - now) < timedelta(minutes=1), (posted, now)
