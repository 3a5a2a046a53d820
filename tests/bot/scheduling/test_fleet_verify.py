"""`--verify` on a fleet run, the pure parts (issue 18): the digest card shows each server's
restore test (running, booted in N s, failed and why), and the summary counts them ("3 of 3
images ready, 3 verified", "1 failed verify"): a failed restore test is a failed run. Also
the `/image schedules` line of what a fleet matches now."""

from __future__ import annotations

from datetime import timedelta

from bot.imaging import verify
from bot.imaging.verify import Verification
from bot.scheduling.digest import digest_card, run_failed, summary_reply, summary_text
from bot.scheduling.fleet_ops import MAX_NAMED, matches_line
from bot.store import FleetRun
from bot.vocabulary import JobState, RunResult
from tests.bot.scheduling.test_fleet import NOW, job, member

FLEET = FleetRun(1, "S1", "web-*", (), (), None, None)


def check(name: str, state: verify.VerifyState, outcome: str | None = None,
          boot: int | None = None, error: str | None = None) -> Verification:
    started = NOW
    return Verification(id=f"V-{name}", state=state, image_ref=f"{name}-img",
                        requested_by="schedule:S1", channel="C0ALERTS", created_at=NOW,
                        updated_at=NOW, job_id=f"J-{name}", boot_started_at=started,
                        active_at=started + timedelta(seconds=boot) if boot is not None
                        else None, outcome=outcome, error=error)


def test_the_card_shows_each_servers_restore_test() -> None:
    members = [member("web-1", RunResult.SUCCEEDED), member("web-2", RunResult.SUCCEEDED),
               member("web-3"), member("web-4")]
    jobs = {f"J-web-{i}": job(f"web-{i}", JobState.SUCCEEDED) for i in range(1, 5)}
    checks = {"J-web-1": check("web-1", verify.PASSED, "passed", boot=42),
              "J-web-2": check("web-2", verify.FAILED, "failed",
                               error="The server went to ERROR: No valid host"),
              "J-web-3": check("web-3", verify.BOOTING)}
    text = str(digest_card("S1", "web-*", NOW, FLEET, members, jobs, checks)["blocks"])
    assert "2 of 4 servers ready, 1 verified, 1 failed verify" in text
    assert "`web-1`: :white_check_mark: ready: `web-1-img`, verified: booted in 42 s" in text
    assert "`web-2`: :x: `web-2-img` made, restore test failed: The server went to ERROR" in text
    assert "`web-3`: :test_tube: image ready, restore test running" in text
    assert "`web-4`: :test_tube: image ready, restore test queued" in text  # not started yet


def test_without_verify_the_card_says_nothing_of_restore_tests() -> None:
    members = [member("web-1", RunResult.SUCCEEDED), member("web-2")]
    jobs = {"J-web-1": job("web-1", JobState.SUCCEEDED), "J-web-2": job("web-2",
                                                                          JobState.SUCCEEDED)}
    text = str(digest_card("S1", "web-*", NOW, FLEET, members, jobs)["blocks"])
    assert "verif" not in text and "restore test" not in text
    assert ":broom: image ready, retention next" in text


def test_the_summary_counts_the_verifies_and_a_failed_one_fails_the_run() -> None:
    good = [member(f"web-{i}", RunResult.SUCCEEDED) for i in range(1, 4)]
    passed = {f"J-web-{i}": check(f"web-{i}", verify.PASSED, "passed", boot=30)
              for i in range(1, 4)}
    ok = summary_reply("fleet:R1", good, FLEET, 0, "<!here>", passed)
    assert ok["text"].startswith(":white_check_mark: 3 of 3 images ready, 3 verified.")
    assert "<!here>" not in ok["text"] and run_failed(good, passed) == []

    one_bad = passed | {"J-web-2": check("web-2", verify.FAILED, "failed",
                                         error="did not boot")}
    assert summary_text(good, 1, one_bad) == "3 of 3 images ready, 1 retried, 2 verified, " \
                                             "1 failed verify"
    bad = summary_reply("fleet:R1", good, FLEET, 0, "<!here>", one_bad)
    assert "<!here>" in bad["text"]  # a failed run pings as the policy says
    assert "`web-2`: restore test failed: did not boot" in bad["text"]
    assert [m.server_name for m in run_failed(good, one_bad)] == ["web-2"]
    # Without --verify the counts are not said.
    assert summary_text(good, 0) == "3 of 3 images ready"


def test_matches_line_names_at_most_ten_servers_and_counts_the_rest() -> None:
    names = [f"web-{i:02d}" for i in range(1, 16)]
    line = matches_line(names, skipped=("web-admin",))
    assert line.startswith("matches now (15): `web-01`, `web-02`")
    assert line.count("`") == 2 * MAX_NAMED and "and 5 more" in line
    assert "the channel policy skips 1" in line
    assert matches_line([]) == "matches no server now"
    assert "more" not in matches_line(names[:MAX_NAMED])
