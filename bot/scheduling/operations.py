"""Schedule operations (issue 18): pause, resume, run-now, skip-next. Pure decisions, no I/O.

Each operation is a change request (`ChangeRequest.operation`), decided like a schedule change;
once approved it writes a few columns of the schedule (`approved_fields`), and the scheduler
loop honours them through `slot_decision`, which wraps the catch-up policy of `due.due`:

- pause: no slot runs while `paused_at` is set (a run already in flight finishes);
- resume: the schedule counts again from the resume time, as a new schedule counts from its
  creation (`due.due`: "slots before the schedule was created never count"): the slots missed
  while paused are neither replayed nor caught up, and a resume just after a slot time never
  fires a surprise run (shared/reference/scheduling.md (b)12, velero#6517);
- skip-next: the one slot named in the request (the next one when it was proposed) is recorded
  as skipped instead of run, once; a skip whose slot went by anyway (the bot was down) is
  dropped, so it never swallows a later slot;
- run-now: one extra run, claimed in `schedule_runs` under the approval time as its slot (the
  idempotency key), after any run in flight; it never moves `last_slot`, so the regular slots
  stay where they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.scheduling.due import DEFAULT_WINDOW, ScheduleSpec, as_utc, due, next_run

OpKind = Literal["pause", "resume", "run-now", "skip-next"]
OP_KINDS: tuple[OpKind, ...] = ("pause", "resume", "run-now", "skip-next")

# The schedule columns an operation writes (m009); cleared when a schedule is turned off.
OP_COLUMNS = ("paused_at", "pause_request", "resumed_at", "skip_slot", "skip_request",
              "run_now_at", "run_now_request")


@dataclass(frozen=True)
class ScheduleOp:
    """What an operation request asks: the operation, the schedule, and for skip-next the
    slot it skips (the next slot when proposed: the approver approves skipping that one)."""

    kind: OpKind
    schedule_id: str
    slot: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ValueError(f"unknown schedule operation {self.kind!r}")
        if (self.kind == "skip-next") != (self.slot is not None):
            raise ValueError("skip-next names exactly one slot; other operations none")

    def detail(self) -> dict[str, Any]:
        """The request's stored `operation_detail`."""
        out: dict[str, Any] = {"schedule_id": self.schedule_id}
        if self.slot is not None:
            out["slot"] = as_utc(self.slot, "slot").isoformat()
        return out

    @classmethod
    def from_stored(cls, kind: str, detail: Mapping[str, Any] | None) -> ScheduleOp:
        """The inverse of `detail` (with the stored `operation`)."""
        data = dict(detail or {})
        slot = datetime.fromisoformat(data["slot"]) if data.get("slot") else None
        return cls(kind, str(data.get("schedule_id", "")), slot)  # type: ignore[arg-type]


def conflicts(older: ScheduleOp | None, newer: ScheduleOp | None) -> bool:
    """Does a newer pending request for a server replace an older one? Schedule changes
    replace changes; an operation replaces the same operation, and pause and resume replace
    each other (the latest word wins); a change and an operation, or two different operations
    (a run-now and a skip-next), stand side by side: each is re-checked when approved."""
    if older is None or newer is None:
        return older is None and newer is None
    return older.kind == newer.kind or {older.kind, newer.kind} == {"pause", "resume"}


@dataclass(frozen=True)
class OpState:
    """The operation columns of one schedule (see `OP_COLUMNS`)."""

    paused_at: datetime | None = None
    pause_request: str | None = None
    resumed_at: datetime | None = None
    skip_slot: datetime | None = None
    skip_request: str | None = None
    run_now_at: datetime | None = None
    run_now_request: str | None = None

    @property
    def paused(self) -> bool:
        """No slot runs while paused."""
        return self.paused_at is not None


@dataclass(frozen=True)
class Timing:
    """What the catch-up policy needs besides the spec: the schedule's floor and last slot."""

    effective_at: datetime
    last_slot: datetime | None
    window: timedelta = DEFAULT_WINDOW


def floor(timing: Timing, state: OpState) -> datetime:
    """The moment before which slots never count: the schedule's start or its last resume."""
    start = as_utc(timing.effective_at, "effective_at")
    if state.resumed_at is not None:
        start = max(start, as_utc(state.resumed_at, "resumed_at"))
    return start


SlotAction = Literal["wait", "paused", "run", "skip", "skip_requested"]


@dataclass(frozen=True)
class SlotDecision:
    """`due.DueDecision` with the operations applied.

    action: "wait" and "run"/"skip" as in `DueDecision`; "paused": nothing runs until resumed;
    "skip_requested": `slot` is the one skip-next named: record it skipped, do not run it.
    `fields`: schedule columns to write with the claim (a skip used up or gone by).
    """

    action: SlotAction
    slot: datetime | None
    missed: int
    next_at: datetime
    fields: Mapping[str, Any] = field(default_factory=dict)


_SKIP_DONE = {"skip_slot": None, "skip_request": None}


def slot_decision(spec: ScheduleSpec, state: OpState, timing: Timing, *,
                  now: datetime) -> SlotDecision:
    """What the loop does with the schedule's slots now, pause and skip-next included."""
    now = as_utc(now, "now")
    if state.paused:
        return SlotDecision("paused", None, 0, next_run(spec, now))
    decision = due(spec, created_at=floor(timing, state), last_slot=timing.last_slot, now=now,
                   window=timing.window)
    if decision.action == "wait" or decision.slot is None:
        return SlotDecision("wait", None, 0, decision.next_at)
    fields: Mapping[str, Any] = {}
    if state.skip_slot is not None:
        skip = as_utc(state.skip_slot, "skip_slot")
        if decision.action == "run" and decision.slot == skip:
            return SlotDecision("skip_requested", decision.slot, decision.missed,
                                decision.next_at, _SKIP_DONE)
        if decision.slot >= skip:  # the slot to skip went by unrun (missed): the skip is spent
            fields = _SKIP_DONE
    return SlotDecision(decision.action, decision.slot, decision.missed, decision.next_at,
                        fields)


def next_slot(spec: ScheduleSpec, state: OpState, timing: Timing, *,
              now: datetime) -> datetime | None:
    """The next slot the loop will take up (run or skip on request); None while paused."""
    if state.paused:
        return None
    decision = due(spec, created_at=floor(timing, state), last_slot=timing.last_slot, now=now,
                   window=timing.window)
    return decision.slot if decision.action == "run" and decision.slot else decision.next_at


def next_run_slot(spec: ScheduleSpec, state: OpState, timing: Timing, *,
                  now: datetime) -> datetime | None:
    """The next slot that will make an image (past a skip-next); None while paused."""
    slot = next_slot(spec, state, timing, now=now)
    if slot is not None and state.skip_slot is not None and \
            slot == as_utc(state.skip_slot, "skip_slot"):
        return next_run(spec, slot)
    return slot


def refusal(kind: OpKind, state: OpState, *, schedule_id: str, server: str,
            upcoming: datetime | None, asked_slot: datetime | None = None) -> str | None:
    """Why `kind` cannot apply to the schedule as it is now (a private answer), or None.

    `upcoming` is `next_slot` now; `asked_slot`, at approval time, the slot a skip-next
    request named (it is out of date once another slot is next)."""
    resume = f"`/image schedule {server} resume`"
    if kind == "pause" and state.paused:
        return (f"{schedule_id} is already paused ({_by(state.pause_request)}); {resume} "
                "resumes it.")
    if kind == "resume" and not state.paused:
        return f"{schedule_id} is not paused; there is nothing to resume."
    if kind == "skip-next":
        if state.paused:
            return (f"{schedule_id} is paused, so it has no next run to skip; {resume} "
                    "first.")
        if state.skip_slot is not None and (upcoming is None or
                                            as_utc(state.skip_slot, "skip_slot") >= upcoming):
            return (f"{schedule_id} already skips its next slot ({_by(state.skip_request)}); "
                    "only the next one can be skipped.")
        if asked_slot is not None and upcoming != as_utc(asked_slot, "slot"):
            return (f"The slot this request would skip is no longer {schedule_id}'s next one "
                    "(it has passed). Propose `skip-next` again.")
    if kind == "run-now" and state.run_now_at is not None:
        return f"A run-now of {schedule_id} is already queued ({_by(state.run_now_request)})."
    return None


def _by(request_id: str | None) -> str:
    return f"by {request_id}" if request_id else "by an earlier request"


def approved_fields(op: ScheduleOp, request_id: str, now: datetime) -> dict[str, Any]:
    """The schedule columns an approved operation writes (with the request's compare-and-set)."""
    if op.kind == "pause":
        return {"paused_at": now, "pause_request": request_id}
    if op.kind == "resume":
        return {"paused_at": None, "pause_request": None, "resumed_at": now}
    if op.kind == "skip-next":
        return {"skip_slot": op.slot, "skip_request": request_id}
    return {"run_now_at": now, "run_now_request": request_id}


def after_change(kind: str, previous_status: str | None) -> dict[str, Any]:
    """The operation columns a schedule change resets: all of them when the schedule is turned
    off or starts anew (none was active), else the pending skip-next only (its slot may not be
    a slot of the new schedule); a pause stays until someone resumes."""
    if kind == "off" or previous_status != "active":
        return dict.fromkeys(OP_COLUMNS)
    return dict(_SKIP_DONE)
