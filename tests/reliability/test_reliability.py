"""Small versions of the reliability suite (`make reliability` runs the full sizes).

Each case drives the real bot against the simulated cloud and the Slack emulator and reports
what it tried, what survived and what was lost; a test fails on any loss or broken promise.
No timing is asserted."""

from __future__ import annotations

import pytest

from bench import reliability_cases as cases
from bench.hostile import hostile
from bench.kill9 import kill9
from bench.outside_reader import outside_reader


def report(result: cases.CaseResult) -> str:
    return result.line() + "".join(f"\n  - {p}" for p in result.problems[:10])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", ["openstack", "rackspace-legacy"])
async def test_kill_9_of_the_bot_process_loses_nothing_and_repeats_nothing(api: str) -> None:
    result = await kill9(n_jobs=6, kills=3, speed=50.0, max_gap=0.5, seed=2, api=api)
    assert result.tried == 6
    assert result.ok, report(result)


@pytest.mark.timeout(120)
async def test_crash_restart_loses_nothing_and_repeats_nothing() -> None:
    result = await cases.crash_restart(n_jobs=8, kills=5, speed=200.0, max_gap=0.3, seed=3)
    assert result.tried == 8
    assert result.ok, report(result)


@pytest.mark.timeout(120)
async def test_every_cloud_fault_ends_in_the_right_state_with_one_clear_message() -> None:
    result = await cases.cloud_faults(speed=200.0)
    assert result.tried == len(cases.FAULTS)
    assert result.ok, report(result)


@pytest.mark.timeout(120)
async def test_slack_outage_storm_duplicates_and_bad_signatures() -> None:
    result = await cases.slack_side(outage=2.0, storm=6, jobs_each=2)
    assert result.tried == 2 + 2 + 1 + 3
    assert result.ok, report(result)


@pytest.mark.timeout(120)
async def test_fuzzed_texts_are_all_answered_without_a_crash() -> None:
    result = await cases.fuzz(n=300)
    assert result.tried == 300
    assert result.ok, report(result)


@pytest.mark.timeout(120)
async def test_no_secret_leaks_and_the_db_is_private() -> None:
    result = await cases.secrets()
    assert result.tried >= 10
    assert result.ok, report(result)


@pytest.mark.timeout(180)
async def test_hostile_requests_cause_no_outbound_call_no_growth_and_lose_nothing() -> None:
    """Issue 14 against the real `imagebot run --http` process: SSRF, big/slow/forged bodies,
    a flood of connections, another workspace; genuine commands in between."""
    result = await hostile()
    assert result.tried >= 12 + 5 + 20 + 2 + 20 + 3
    assert result.ok, report(result)


def test_fuzz_inputs_cover_junk_long_and_grammar_words() -> None:
    texts = cases.fuzz_texts(300)
    assert texts == cases.fuzz_texts(300)  # deterministic
    assert any(len(t) > 1000 for t in texts)
    assert any("\x00" in t or "\x1b" in t for t in texts)
    assert any(t.startswith("create") for t in texts)


def test_thread_check_catches_a_duplicate_final_message() -> None:
    """The checker itself must be able to fail: two final replies in one thread."""
    from datetime import UTC, datetime
    from pathlib import Path

    from bot.imaging.jobs import Job
    from sandbox.slack.model import SlackWorkspace

    ws = SlackWorkspace(clock=lambda: 1_700_000_000.0)
    now = datetime.now(UTC)
    parent = ws.post_message("C0OPS", text="Image of `web-1` · job J1: succeeded")
    for _ in range(2):
        ws.post_message("C0OPS", text="Job J1: done", thread_ts=parent.ts, reply_broadcast=True)
    job = Job(id="J1", state="succeeded", server_ref="web-1", requested_by="U0ALICE",
              channel="C0OPS", created_at=now, updated_at=now, thread_ts=parent.ts)
    assert len(cases.finals_of(ws, job)) == 2
    assert len(cases.parents_of(ws, job)) == 1
    del Path


@pytest.mark.timeout(180)
async def test_flaky_slack_and_cloud_lose_nothing_and_one_failing_cloud_stops_only_itself(
        ) -> None:
    result = await cases.flaky(jobs_each=2)
    assert result.tried == 2 + 2 + 3
    assert result.ok, report(result)


@pytest.mark.timeout(180)
async def test_outside_readers_and_online_backups_during_load_lose_nothing() -> None:
    # `within` well inside the timeout, so a loss is reported as such, not as a timeout.
    result = await outside_reader(n_jobs=6, batches=3, speed=50.0, within=90.0)
    assert result.tried == 6
    assert result.ok, report(result)
