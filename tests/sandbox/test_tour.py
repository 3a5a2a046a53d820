"""`imagebot sandbox --script`: the shipped tour passes end to end, and failing scripts fail
with a reason. Everything is real (signed Slack HTTP, the cloud over HTTP, SQLite); only the
simulated cloud's clock and Slack's rate limits run faster."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from bot.cli import main

TOUR = Path(__file__).resolve().parents[2] / "examples" / "tour.txt"
FAST = ["--speed", "200", "--slack-rate", "20", "--timeout", "20"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sandbox", *args, *FAST])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _section(out: str, prompt_line: str) -> str:
    """The transcript printed after one echoed script line (up to the next prompt)."""
    start = out.index(prompt_line)
    rest = out[start + len(prompt_line):]
    following = re.search(r"^\w+@#[\w-]+> ", rest, flags=re.MULTILINE)
    return rest[:following.start()] if following else rest


def test_the_tour_runs_and_its_transcript_shows_each_step(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--script", str(TOUR))
    assert code == 0, err + out[-3000:]

    # 1. Create with quiesce confirmation, then Start snapshot: every phase and the ✅.
    created = _section(out, "alice@#ops> /image create web-1\n")
    assert "Before you press Start snapshot" in created
    assert "[1 Start snapshot] [2 Cancel]" in created
    started = _section(out, "alice@#ops> click 1\n")
    # Whoever pressed Start read "stop writes" on the card: the thread says "writes may
    # resume" and the result, in that order; the copy, packaging and uploading are card edits.
    # (The edited card shows the outcome too, above its thread: look for the reply after.)
    writes = started.find("Writes may resume now")
    assert writes >= 0 and "(also sent to the channel): :white_check_mark: Image `web-1-" in \
        started[writes:], started
    for phase in ("Copying the disk now", "Packaging the image", "Uploading the image"):
        assert phase not in started, phase

    # 2. The killed upload fails and says why.
    failed = _section(out, "alice@#ops> /image create web-2 --now\n")
    assert "(fault kill-upload armed for web-2" in out
    assert ":x: The upload failed" in failed and "`killed`" in failed

    # 3. Carol is refused (an expected failure).
    assert "You may not create images in this channel" in _section(
        out, "carol@#ops> !/image create web-1\n")

    # 4. Alice requests a schedule, cannot approve it herself, Bob approves.
    requested = _section(out, "alice@#ops> /image schedule web-1 daily at 03:00 --keep 1\n")
    assert "Schedule change R1" in requested and "[1 Approve] [2 Reject]" in requested
    assert "cannot approve your own request" in _section(out, "alice@#ops> !click 1\n")
    assert "*Approved* by @bob" in _section(out, "bob@#ops> click 1\n")

    # 5. A day later the scheduled run images web-1; results go to #ops-alerts.
    alerts = _section(out, "bob@#ops> in #ops-alerts\n")
    assert "Scheduled run of S1" in alerts and ":white_check_mark: Image `web-1-" in alerts
    assert "Retention: nothing to delete" in alerts

    # 6. The second run's retention deletes the first run's image.
    second = _section(out, "bob@#ops-alerts> clock +1d\n")
    assert "deleted 1 old image" in second
    assert "J4 web-1 succeeded" in out
    assert re.search(r"J1 web-1 succeeded, J2 web-2 failed, J3 web-1 succeeded", out)

    # 9. A pause approved by Bob; `schedules` says so; a night passes without a run (no J6);
    #    the resume, approved by Bob, says the missed night is not caught up.
    ops = out[out.index("alice@#ops> /image schedule web-1 pause\n"):]
    paused = _section(ops, "alice@#ops> /image schedule web-1 pause\n")
    assert "*Pause* S1 (`web-1`, daily at 03:00 UTC): no runs until resumed" in paused
    assert "S1 is paused" in _section(ops, "bob@#ops> click 1\n")
    assert "paused since" in _section(ops, "bob@#ops> /image schedules\n")
    resumed = ops[ops.index("alice@#ops> /image schedule web-1 resume\n"):]
    assert "not caught up" in _section(resumed, "alice@#ops> /image schedule web-1 resume\n")
    assert "S1 runs again" in _section(resumed, "bob@#ops> click 1\n")
    listing = _section(resumed, "bob@#ops> /image schedules\n")
    assert "paused" not in listing and "next: " in listing
    assert "J6" not in out[:out.index("alice@#ops> /image schedule web-* daily")]

    # 10. A fleet schedule (web-*): the approval lists the servers it matches today; its run
    #    is one digest card in #ops-alerts with one combined "writes may resume" reply and a
    #    summary, not one thread per server.
    fleet = _section(out, "alice@#ops> /image schedule web-* daily at 04:00 --keep 1\n")
    assert "Schedule change R4 for `web-*`" in fleet  # R2, R3: the pause and the resume
    assert "*Matches today (2):* `web-1`, `web-2`" in fleet
    digest = out[out.index("*Scheduled images S2 of `web-*`*"):]
    assert digest.startswith("*Scheduled images S2 of `web-*`* for ")
    assert "2 of 2 servers ready" in digest.splitlines()[0]
    # One combined reply per scheduler tick: both servers usually end their copy in the
    # same tick, but under load they may not, and then each is named in its own tick's reply.
    resumed = [line for line in digest.splitlines() if "Writes may resume on " in line]
    assert 1 <= len(resumed) <= 2, digest
    assert all(sum(f"`{n}`" in line for line in resumed) == 1 for n in ("web-1", "web-2"))
    assert ":white_check_mark: 2 of 2 images ready." in digest
    assert "Image of `web-2` · job J8" not in out  # no card of its own

    # 11. The protected image of the first fleet run survives the next run's retention
    #     (keep 1), next to the new image.
    assert "is protected" in _section(out, "alice@#ops> /image protect J8\n")
    images = _section(out, "alice@#ops> /image images web-2\n")
    assert images.count("· active ·") == 2 and ":lock: protected" in images


def test_unknown_console_command_fails_before_anything_runs(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "bad.txt"
    script.write_text("/image create web-1\n\nclick 1\nteleport web-1\n", encoding="utf-8")
    code, out, err = _run(capsys, "--script", str(script))
    assert code == 1
    assert "script line 3: 'teleport web-1'" in err and "unknown console command" in err
    assert "/image create web-1" not in out  # checked before the first line ran


def test_a_refusal_without_bang_fails_the_script(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("as carol\n/image create web-1\n/image list\n"))
    code, out, err = _run(capsys, "--script", "-")
    assert code == 1
    assert "script line 2: '/image create web-1'" in err
    assert "the bot said no: You may not create images" in err
    assert "carol@#ops> /image list" not in out  # stops at the first failure


def test_a_job_still_running_after_the_timeout_fails_the_script(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A real-time cloud (the image takes minutes). A `fault stuck` job no longer counts: it
    # waits on the cloud until `clock` passes its deadline (tests/sandbox/test_console.py).
    script = tmp_path / "slow.txt"
    script.write_text("/image create web-1 --now\n", encoding="utf-8")
    code = main(["sandbox", "--script", str(script), "--speed", "1", "--slack-rate", "20",
                 "--timeout", "1.5"])
    err = capsys.readouterr().err
    assert code == 1
    assert "still running after 1.5s" in err and "J1 (web-1" in err


def test_a_missing_script_file_is_reported(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    code, _, err = _run(capsys, "--script", str(tmp_path / "nope.txt"))
    assert code == 2 and "cannot read" in err
