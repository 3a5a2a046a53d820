"""Pause, resume, skip-next and run-now as pure decisions (bot.scheduling.operations): the clock
is an argument, nothing sleeps. The loop that carries them out is in test_operation_loop.py and
the Slack flow in tests/e2e/test_schedule_operations.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.scheduling.due import DAYS, ScheduleSpec, next_run, occurrences_after
from bot.scheduling.operations import (
    OP_COLUMNS,
    OpState,
    ScheduleOp,
    SlotDecision,
    Timing,
    after_change,
    approved_fields,
    conflicts,
    next_run_slot,
    next_slot,
    refusal,
    slot_decision,
)

DAILY = ScheduleSpec("daily", None, time(3, 0), "UTC", 7)
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # the schedule's effective_at
SLOT1 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
SLOT2 = SLOT1 + timedelta(days=1)
SLOT3 = SLOT2 + timedelta(days=1)


def decide(state: OpState, now: datetime, last_slot: datetime | None = None,
           spec: ScheduleSpec = DAILY) -> SlotDecision:
    return slot_decision(spec, state, Timing(START, last_slot), now=now)


def test_a_paused_schedule_runs_no_slot_however_late_it_is() -> None:
    paused = OpState(paused_at=START + timedelta(hours=1), pause_request="R2")
    for now in (SLOT1 + timedelta(minutes=1), SLOT3 + timedelta(hours=1)):
        decision = decide(paused, now)
        assert decision.action == "paused" and decision.slot is None
        assert decision.next_at == next_run(DAILY, now)


def test_resume_counts_from_the_resume_like_a_new_schedule_no_catch_up_no_surprise_run() -> None:
    # Paused through three slots, resumed one minute after the third (inside the 6 h
    # catch-up window): the policy of due.due for a schedule created then is to wait, so
    # neither the missed slots nor the one just gone run (velero#6517's surprise run).
    resumed = OpState(resumed_at=SLOT3 + timedelta(minutes=1))
    decision = decide(resumed, SLOT3 + timedelta(minutes=2), last_slot=None)
    assert decision.action == "wait" and decision.next_at == SLOT3 + timedelta(days=1)
    # The next slot after the resume runs as usual.
    later = decide(resumed, SLOT3 + timedelta(days=1, minutes=1))
    assert (later.action, later.slot, later.missed) == ("run", SLOT3 + timedelta(days=1), 0)


def test_skip_next_skips_its_slot_once_then_the_schedule_runs_as_usual() -> None:
    state = OpState(skip_slot=SLOT1, skip_request="R3")
    decision = decide(state, SLOT1 + timedelta(minutes=1))
    assert decision.action == "skip_requested" and decision.slot == SLOT1
    assert decision.fields == {"skip_slot": None, "skip_request": None}
    # Once recorded (last_slot = the slot, skip cleared), the next slot runs.
    after = decide(OpState(), SLOT2 + timedelta(minutes=1), last_slot=SLOT1)
    assert (after.action, after.slot) == ("run", SLOT2)
    # Before its slot nothing happens, and the skip stays.
    early = decide(state, SLOT1 - timedelta(minutes=1))
    assert early.action == "wait" and early.fields == {}


def test_a_skip_whose_slot_went_by_while_the_bot_was_down_never_swallows_a_later_slot() -> None:
    state = OpState(skip_slot=SLOT1, skip_request="R3")
    # Down across SLOT1, back at SLOT2 + 1 min: the catch-up run of SLOT2 happens (SLOT1 was
    # missed anyway) and the spent skip is cleared with it.
    decision = decide(state, SLOT2 + timedelta(minutes=1))
    assert (decision.action, decision.slot, decision.missed) == ("run", SLOT2, 1)
    assert decision.fields == {"skip_slot": None, "skip_request": None}


def test_next_slot_and_next_run_slot_see_pause_and_skip() -> None:
    timing = Timing(START, None)
    now = START + timedelta(hours=1)
    assert next_slot(DAILY, OpState(), timing, now=now) == SLOT1
    assert next_slot(DAILY, OpState(paused_at=now), timing, now=now) is None
    skipping = OpState(skip_slot=SLOT1)
    assert next_slot(DAILY, skipping, timing, now=now) == SLOT1  # what skip-next would name
    assert next_run_slot(DAILY, skipping, timing, now=now) == SLOT2  # what makes an image
    # A slot due but not yet claimed is the next one.
    assert next_slot(DAILY, OpState(), timing, now=SLOT1 + timedelta(minutes=5)) == SLOT1


@pytest.mark.parametrize(("kind", "state", "upcoming", "asked", "fragment"), [
    ("pause", OpState(paused_at=START, pause_request="R2"), None, None, "already paused (by R2)"),
    ("resume", OpState(), SLOT1, None, "not paused"),
    ("skip-next", OpState(paused_at=START), None, None, "is paused"),
    ("skip-next", OpState(skip_slot=SLOT1, skip_request="R4"), SLOT1, None, "already skips"),
    ("skip-next", OpState(), SLOT2, SLOT1, "no longer S1's next one"),
    ("run-now", OpState(run_now_at=START, run_now_request="R5"), SLOT1, None, "already queued"),
])
def test_operations_that_cannot_apply_are_refused_with_a_clear_answer(
        kind: str, state: OpState, upcoming: datetime | None, asked: datetime | None,
        fragment: str) -> None:
    why = refusal(kind, state, schedule_id="S1", server="web-1",  # type: ignore[arg-type]
                  upcoming=upcoming, asked_slot=asked)
    assert why is not None and fragment in why


@pytest.mark.parametrize(("kind", "state"), [
    ("pause", OpState()),
    ("resume", OpState(paused_at=START)),
    ("skip-next", OpState()),
    ("run-now", OpState()),
    ("run-now", OpState(paused_at=START)),  # one deliberate run; the schedule stays paused
])
def test_operations_that_apply_are_not_refused(kind: str, state: OpState) -> None:
    assert refusal(kind, state, schedule_id="S1", server="web-1",  # type: ignore[arg-type]
                   upcoming=SLOT1, asked_slot=SLOT1 if kind == "skip-next" else None) is None


def test_approved_fields_and_what_a_schedule_change_resets() -> None:
    now = START
    assert approved_fields(ScheduleOp("pause", "S1"), "R2", now) == {
        "paused_at": now, "pause_request": "R2"}
    assert approved_fields(ScheduleOp("resume", "S1"), "R3", now) == {
        "paused_at": None, "pause_request": None, "resumed_at": now}
    assert approved_fields(ScheduleOp("skip-next", "S1", SLOT1), "R4", now) == {
        "skip_slot": SLOT1, "skip_request": "R4"}
    assert approved_fields(ScheduleOp("run-now", "S1"), "R5", now) == {
        "run_now_at": now, "run_now_request": "R5"}
    assert after_change("off", "active") == dict.fromkeys(OP_COLUMNS)
    assert after_change("set", "off") == dict.fromkeys(OP_COLUMNS)  # starts anew
    assert after_change("set", "active") == {"skip_slot": None, "skip_request": None}


def test_which_pending_requests_a_newer_one_supersedes() -> None:
    pause, resume = ScheduleOp("pause", "S1"), ScheduleOp("resume", "S1")
    run_now, skip = ScheduleOp("run-now", "S1"), ScheduleOp("skip-next", "S1", SLOT1)
    assert conflicts(None, None)  # schedule changes, as before
    assert not conflicts(None, pause) and not conflicts(pause, None)
    assert conflicts(pause, resume) and conflicts(resume, pause) and conflicts(skip, skip)
    assert not conflicts(run_now, skip) and not conflicts(pause, run_now)


def test_an_operation_is_stored_and_read_back() -> None:
    op = ScheduleOp("skip-next", "S3", SLOT1)
    assert ScheduleOp.from_stored("skip-next", op.detail()) == op
    assert ScheduleOp.from_stored("pause", ScheduleOp("pause", "S3").detail()) == \
        ScheduleOp("pause", "S3")
    with pytest.raises(ValueError):
        ScheduleOp("skip-next", "S3")
    with pytest.raises(ValueError):
        ScheduleOp("stop", "S3")  # type: ignore[arg-type]


# --- properties: the loop simulated over the decisions ------------------------------------

specs = st.builds(
    lambda day, at, tz: ScheduleSpec("weekly" if day else "daily", day, at, tz, 3),
    st.none() | st.sampled_from(DAYS),
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)


def simulate(spec: ScheduleSpec, state: OpState, start: datetime, steps: list[int],
             events: dict[int, OpState] | None = None) -> list[tuple[str, datetime]]:
    """Tick like the loop at `start + cumulative steps` (minutes), applying each decision as
    the loop does; `events[i]` replaces the operation state before tick i. Returns (what,
    slot) for each slot taken up."""
    now, last_slot, taken = start, None, []
    for i, step in enumerate(steps):
        if events and i in events:
            state = events[i]
        now += timedelta(minutes=step)
        decision = slot_decision(spec, state, Timing(start, last_slot), now=now)
        if decision.slot is None:
            continue
        taken.append((decision.action, decision.slot))
        last_slot = decision.slot
        state = dataclasses.replace(state, **decision.fields)
    return taken


@given(spec=specs, steps=st.lists(st.integers(1, 300), min_size=50, max_size=120))
def test_skip_next_skips_exactly_the_named_slot_once_and_every_other_slot_runs(
        spec: ScheduleSpec, steps: list[int]) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    first = next_run(spec, start)
    taken = simulate(spec, OpState(skip_slot=first, skip_request="R2"), start, steps)
    end = start + timedelta(minutes=sum(steps))
    # Ticks at most 5 h apart, inside the 6 h window: every slot is taken up, in order, once.
    expected = []
    for slot in occurrences_after(spec, start):
        if slot > end:
            break
        expected.append(slot)
    assert [slot for _, slot in taken] == expected
    if taken:
        assert taken[0] == ("skip_requested", first)
        assert all(action == "run" for action, _ in taken[1:])


@given(spec=specs, steps=st.lists(st.integers(1, 300), min_size=60, max_size=120),
       pause_at=st.integers(5, 25), pause_for=st.integers(1, 30))
def test_nothing_runs_while_paused_and_resume_never_catches_up(
        spec: ScheduleSpec, steps: list[int], pause_at: int, pause_for: int) -> None:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    ticks = [start + timedelta(minutes=sum(steps[:i + 1])) for i in range(len(steps))]
    resume_at = pause_at + pause_for
    paused_from, resumed = ticks[pause_at - 1], ticks[resume_at - 1]
    events = {pause_at: OpState(paused_at=paused_from),
              resume_at: OpState(resumed_at=resumed)}
    taken = simulate(spec, OpState(), start, steps, events)
    assert all(action == "run" for action, _ in taken)
    slots = [slot for _, slot in taken]
    assert len(slots) == len(set(slots))  # never twice
    # No slot between the pause and the resume ever runs, then or later (no catch-up).
    assert not [s for s in slots if paused_from < s <= resumed]
