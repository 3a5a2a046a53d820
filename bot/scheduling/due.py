"""Schedules, due-times and catch-up: pure decisions, no I/O.

Every function takes the clock as an argument. Times going in may be any aware datetime; times
coming out are aware UTC datetimes. Wall times are resolved in the schedule's IANA zone with these
DST rules (cron's, minus its double runs):

- a wall time inside a spring-forward gap runs at the first instant after the gap
  (02:30 Europe/Berlin on the spring-forward day runs at 03:00 CEST = 01:00 UTC);
- a wall time repeated at fall-back runs once, at its first occurrence (fold=0);
- so there is exactly one slot per local day (daily) or per local week (weekly).

The catch-up policy (`due`) never replays missed slots: one run for the latest slot if it is
still inside the window, else a reported skip. Slots before the schedule was created never count.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Collection, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import InvalidSchedule
from commands.ids import MAX_KEEP
from commands.ids import WEEKDAYS as DAYS

FREQUENCIES = ("daily", "weekly")
DEFAULT_WINDOW = timedelta(hours=6)

Frequency = Literal["daily", "weekly"]


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name (cached); `InvalidSchedule` when unknown or tzdata missing."""
    if not name or name != name.strip():
        raise InvalidSchedule(f"Unknown time zone {name!r}.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidSchedule(
            f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC."
        ) from exc


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule says: how often, when (wall time in `tz`), and how many images to keep."""

    frequency: Frequency
    day: str | None  # MONDAY..SUNDAY for weekly, None for daily
    at: time
    tz: str
    keep: int
    keep_days: int | None = None  # `--keep-days`: images older than this may go too
    # Rackspace Scheduled Images (`--native`): the cloud's own schedule, which has no time of
    # day (`at`/`tz` are placeholders, 00:00 UTC) and never goes through due(); see
    # bot/scheduling/native.py.
    native: bool = False
    # Derived once so hot paths (due() over 100k schedules) avoid recomputing them.
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _step: timedelta = field(init=False, repr=False, compare=False)
    _weekday: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise InvalidSchedule(f"Frequency must be daily or weekly, not {self.frequency!r}.")
        if self.frequency == "weekly":
            if self.day not in DAYS:
                raise InvalidSchedule(f"A weekly schedule needs a day (MONDAY..SUNDAY), "
                                      f"not {self.day!r}.")
        elif self.day is not None:
            raise InvalidSchedule("A daily schedule takes no day; use weekly for one day a week.")
        if self.at.tzinfo is not None:
            raise InvalidSchedule("The time of day must be a wall time; give the zone in tz.")
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) \
                or not 1 <= self.keep <= MAX_KEEP:
            raise InvalidSchedule(f"Retention must be a whole number from 1 to {MAX_KEEP}, "
                                  f"not {self.keep!r}.")
        # Reject unknown zones at proposal time, not at 03:00.
        object.__setattr__(self, "_zone", zone(self.tz))
        object.__setattr__(self, "_step", timedelta(days=self.period_days))
        object.__setattr__(self, "_weekday", DAYS.index(self.day) if self.day else None)

    @property
    def period_days(self) -> int:
        """Days between slots."""
        return 1 if self.frequency == "daily" else 7

    @property
    def weekday(self) -> int | None:
        """Python weekday (Monday=0) of a weekly schedule."""
        return self._weekday


# --- resolving one slot ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resolved:
    utc: datetime
    kind: Literal["normal", "missing", "repeated", "no_day"]


def _find_transition(tz: tzinfo, lo: datetime, hi: datetime) -> datetime:
    """The first UTC instant in (lo, hi] whose offset equals hi's (a binary search in seconds)."""
    target = hi.astimezone(tz).utcoffset()
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


@functools.lru_cache(maxsize=65536)
def _resolve(day: date, at: time, tz: str) -> _Resolved:
    """The UTC instant of wall time `at` on local date `day` in zone `tz` (DST rules above)."""
    tzi = zone(tz)
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tzi, fold=0)
    second = wall.replace(tzinfo=tzi, fold=1)
    u0 = first.astimezone(UTC)
    u1 = second.astimezone(UTC)
    if u0 == u1:
        return _Resolved(u0, "normal")
    if u0.astimezone(tzi).replace(tzinfo=None) != wall:
        # A gap: fold=0 applies the old offset (lands after the transition), fold=1 the new one
        # (lands before it). The transition instant itself is the first wall time after the gap.
        lo, hi = min(u0, u1), max(u0, u1)
        instant = _find_transition(tzi, lo, hi)
        if instant.astimezone(tzi).date() != day:
            # The whole local day is missing (Pacific/Apia skipped 2011-12-30): no slot that day.
            return _Resolved(instant, "no_day")
        return _Resolved(instant, "missing")
    return _Resolved(min(u0, u1), "repeated")


def _aligned(spec: ScheduleSpec, moment: datetime) -> date:
    """The latest slot date of `spec` on or before the local date of `moment`."""
    d = moment.astimezone(spec._zone).date()
    wd = spec._weekday
    if wd is None:
        return d
    return d - timedelta(days=(d.weekday() - wd) % 7)


def as_utc(moment: datetime, what: str) -> datetime:
    """`moment` in UTC; ValueError (naming `what`) for a naive datetime."""
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _slot(spec: ScheduleSpec, day: date) -> datetime | None:
    """The slot on local date `day`, or None when the zone skipped that whole day."""
    resolved = _resolve(day, spec.at, spec.tz)
    return None if resolved.kind == "no_day" else resolved.utc


def _latest_at_or_before(spec: ScheduleSpec, moment: datetime) -> tuple[date, datetime]:
    """The latest slot <= moment, as (local date, utc)."""
    d = _aligned(spec, moment)
    slot = _slot(spec, d)
    while slot is None or slot > moment:
        d -= spec._step
        slot = _slot(spec, d)
    return d, slot


def _first_after(spec: ScheduleSpec, moment: datetime) -> tuple[date, datetime]:
    """The earliest slot > moment, as (local date, utc)."""
    d = _aligned(spec, moment)
    slot = _slot(spec, d)
    while slot is None or slot <= moment:
        d += spec._step
        slot = _slot(spec, d)
    return d, slot


def occurrences_after(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """Every slot strictly after `after`, in order, as aware UTC datetimes (endless)."""
    d, first = _first_after(spec, as_utc(after, "after"))
    step = spec._step
    slot: datetime | None = first
    previous: datetime | None = None
    while True:
        if slot is not None and (previous is None or slot > previous):
            yield slot  # (the guard above skips odd zone histories that step backwards)
            previous = slot
        d += step
        slot = _slot(spec, d)


def next_run(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first slot strictly after `after` (aware UTC)."""
    return _first_after(spec, as_utc(after, "after"))[1]


# --- the catch-up policy --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueDecision:
    """What the scheduler loop should do with one schedule right now.

    action:
      - "wait": nothing to do; sleep until `next_at`.
      - "run":  take one image for `slot` (the idempotency key: claim it with compare-and-set on
                last_slot before creating the image). `missed` older slots are coalesced into it.
      - "skip": the latest slot (`slot`) is older than the window; record it as last_slot and
                report `missed` skipped slots (including `slot`). Nothing is replayed.
    `next_at` is the first slot after `now` (after this run/skip).
    """

    action: Literal["wait", "run", "skip"]
    slot: datetime | None
    missed: int
    next_at: datetime

    @property
    def due(self) -> bool:
        """True when an image should be taken now."""
        return self.action == "run"

    @property
    def skipped(self) -> bool:
        """True when the latest slot was too old and is to be reported as skipped."""
        return self.action == "skip"


def _period_index(spec: ScheduleSpec, d: date) -> int:
    # Slot dates of a weekly schedule share a weekday, so ordinal // 7 numbers them consecutively.
    return d.toordinal() // spec.period_days


def due(spec: ScheduleSpec, *, created_at: datetime, last_slot: datetime | None, now: datetime,
        window: timedelta = DEFAULT_WINDOW) -> DueDecision:
    """Decide whether `spec` should run now (see `DueDecision`).

    Only slots after `last_slot` (the last slot run or skipped) and after `created_at` count, so
    creating or changing a schedule just after a slot time never triggers a surprise run.
    """
    now = as_utc(now, "now")
    floor = as_utc(created_at, "created_at")
    if last_slot is not None:
        floor = max(floor, as_utc(last_slot, "last_slot"))
    latest_day, latest = _latest_at_or_before(spec, now)
    following = _resolve(latest_day + spec._step, spec.at, spec.tz).utc
    if following <= now:  # only in odd zone histories; be exact rather than fast
        following = _first_after(spec, now)[1]
    if latest <= floor:
        return DueDecision("wait", None, 0, following)
    first_day, _ = _first_after(spec, floor)
    count = _period_index(spec, latest_day) - _period_index(spec, first_day) + 1
    if now - latest <= window:
        return DueDecision("run", latest, max(count - 1, 0), following)
    return DueDecision("skip", latest, max(count, 1), following)


# --- describing a schedule -------------------------------------------------------------------


def describe(spec: ScheduleSpec, *, with_keep: bool = False) -> str:
    """Human text: "daily at 03:00 Europe/Berlin", "weekly on Monday at 03:00 UTC"."""
    when = "daily" if spec.frequency == "daily" else f"weekly on {(spec.day or '').title()}"
    text = f"{when} at {spec.at.strftime('%H:%M')} {spec.tz}"
    if spec.native:  # the cloud picks the hour
        text = f"{when} by Rackspace Scheduled Images"
    if with_keep and spec.keep < MAX_KEEP:  # MAX_KEEP: no count, age only (`--keep-days`)
        text += f", keeping {spec.keep} image{'s' if spec.keep != 1 else ''}"
        if spec.keep_days is not None:
            text += f" and none older than {spec.keep_days} days"
    elif with_keep and spec.keep_days is not None:
        text += f", keeping images for {spec.keep_days} days"
    return text


def preview(spec: ScheduleSpec, now: datetime, n: int = 3) -> list[tuple[datetime, datetime]]:
    """The next `n` runs after `now` as (local time in the schedule's zone, UTC) pairs."""
    tzi = zone(spec.tz)
    out: list[tuple[datetime, datetime]] = []
    for slot in occurrences_after(spec, now):
        if len(out) >= n:
            break
        out.append((slot.astimezone(tzi), slot))
    return out


@dataclass(frozen=True, slots=True)
class DstNote:
    """A slot that DST moves: its wall time does not exist ("missing") or happens twice."""

    day: date
    kind: Literal["missing", "repeated"]
    local: datetime  # when it actually runs, in the schedule's zone
    utc: datetime
    text: str


def ambiguous_or_missing(spec: ScheduleSpec, within_days: int = 366, *,
                         now: datetime) -> list[DstNote]:
    """Slots in the next `within_days` days whose wall time DST skips or repeats (for warnings)."""
    now = as_utc(now, "now")
    end = now + timedelta(days=within_days)
    tzi = zone(spec.tz)
    hhmm = spec.at.strftime("%H:%M")
    notes: list[DstNote] = []
    d, _ = _first_after(spec, now)
    step = spec._step
    while True:
        resolved = _resolve(d, spec.at, spec.tz)
        if resolved.utc > end:
            break
        if resolved.kind != "normal":
            local = resolved.utc.astimezone(tzi)
            runs = f"{local.strftime('%H:%M %Z')} ({resolved.utc.strftime('%H:%M')} UTC)"
            if resolved.kind == "no_day":
                text = f"{d.isoformat()} does not exist in {spec.tz}; there is no run that day."
            elif resolved.kind == "missing":
                text = (f"On {d.isoformat()} {hhmm} does not exist in {spec.tz} (clocks spring "
                        f"forward); that run happens at {runs}.")
            else:
                text = (f"On {d.isoformat()} {hhmm} happens twice in {spec.tz} (clocks fall "
                        f"back); the image is taken once, at the first: {runs}.")
            kind: Literal["missing", "repeated"] = (
                "repeated" if resolved.kind == "repeated" else "missing")
            notes.append(DstNote(d, kind, local, resolved.utc, text))
        d += step
    return notes


# --- the due queue -----------------------------------------------------------------------------


@dataclass
class DueQueue:
    """Schedules ordered by the next moment their decision can change.

    `due()` answers "wait until next_at" for almost every schedule almost every tick; a tick
    only needs to look at those whose `next_at` has come. `version` is whatever identifies the
    schedule's current state (spec, last slot...): a changed version is always re-evaluated.
    """

    _heap: list[tuple[datetime, str]] = field(default_factory=list)
    _known: dict[str, tuple[datetime, Hashable]] = field(default_factory=dict)

    def set(self, key: str, at: datetime, version: Hashable) -> None:
        """Remember that `key` needs no look before `at` while its version stays `version`."""
        self._known[key] = (at, version)
        heapq.heappush(self._heap, (at, key))

    def needs_look(self, key: str, version: Hashable, now: datetime) -> bool:
        """True when `key` is new, changed, or its time has come."""
        known = self._known.get(key)
        return known is None or known[1] != version or known[0] <= now

    def due_keys(self, now: datetime) -> list[str]:
        """Keys whose remembered time has come (each once; stale heap entries are dropped)."""
        out: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            known = self._known.get(key)
            if known is not None and known[0] == at:
                out.append(key)
        return out

    def forget(self, keep: Collection[str]) -> None:
        """Drop keys that no longer exist."""
        for key in set(self._known) - set(keep):
            del self._known[key]
