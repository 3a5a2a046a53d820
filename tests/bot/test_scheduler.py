"""Due-times, DST, catch-up (bot.scheduling.due), busy retries (bot.scheduling.runs) and
retention (bot.scheduling.retention)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import commands
from bot.cloud.models import Image
from bot.errors import InvalidSchedule
from bot.scheduling.due import (
    DAYS,
    DueQueue,
    ScheduleSpec,
    ambiguous_or_missing,
    describe,
    due,
    next_run,
    occurrences_after,
    preview,
)
from bot.scheduling.retention import (
    RetainableImage,
    retainable_from_image,
    select_for_deletion,
    would_delete_at_next_success,
)
from bot.scheduling.rows import spec_of
from bot.scheduling.runs import retry_after_busy


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def daily(hh: int, mm: int, tz: str = "UTC", keep: int = 7) -> ScheduleSpec:
    return ScheduleSpec("daily", None, time(hh, mm), tz, keep)


def weekly(day: str, hh: int, mm: int, tz: str = "UTC", keep: int = 4) -> ScheduleSpec:
    return ScheduleSpec("weekly", day, time(hh, mm), tz, keep)


def runs_between(spec: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    return list(takewhile(lambda t: t < end, occurrences_after(spec, start)))


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, fragment", [
    ({"tz": "Europe/Berlinn"}, "Unknown time zone"),
    ({"tz": "America/New York"}, "Unknown time zone"),
    ({"tz": ""}, "Unknown time zone"),
    ({"keep": 0}, "Retention"),
    ({"keep": 65536}, "Retention"),
    ({"frequency": "hourly"}, "daily or weekly"),
    ({"frequency": "weekly"}, "needs a day"),
    ({"day": "MONDAY"}, "takes no day"),
    ({"frequency": "weekly", "day": "Mon"}, "needs a day"),
])
def test_invalid_specs_are_rejected_at_proposal_time(kwargs: dict[str, object],
                                                    fragment: str) -> None:
    fields: dict[str, object] = {"frequency": "daily", "day": None, "at": time(3, 0),
                                 "tz": "UTC", "keep": 7}
    fields.update(kwargs)
    with pytest.raises(InvalidSchedule, match=fragment):
        ScheduleSpec(**fields)  # type: ignore[arg-type]


def test_the_grammar_normalises_loose_input_into_a_spec() -> None:
    # Loose user input is the grammar's job (the spec itself takes only exact values).
    request = commands.parse("schedule web-1 Weekly mon at 3:05 --tz Europe/Berlin --keep 4")
    assert isinstance(request, commands.Schedule)
    assert spec_of(request) == ScheduleSpec("weekly", "MONDAY", time(3, 5), "Europe/Berlin", 4)
    daily_request = commands.parse("schedule web-1 daily at 23:59 --keep 1")
    assert isinstance(daily_request, commands.Schedule)
    assert spec_of(daily_request).at == time(23, 59)
    for bad in ("weekly T at 03:00", "weekly funday at 03:00", "weekly tue at 25:00",
                "weekly tue at 3pm"):
        with pytest.raises(commands.ParseError):
            commands.parse(f"schedule web-1 {bad} --keep 3")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_run(daily(3, 0), datetime(2025, 1, 1))


# --- plain due-times -------------------------------------------------------------------------


def test_daily_in_utc() -> None:
    spec = daily(3, 0)
    assert list(islice(occurrences_after(spec, utc(2025, 1, 1, 3, 0)), 3)) == [
        utc(2025, 1, 2, 3), utc(2025, 1, 3, 3), utc(2025, 1, 4, 3)]
    assert next_run(spec, utc(2025, 1, 1, 2, 59)) == utc(2025, 1, 1, 3)


@pytest.mark.parametrize("tz, expected_utc", [
    ("Europe/Berlin", utc(2025, 1, 15, 2)),       # CET, +1
    ("America/New_York", utc(2025, 1, 15, 8)),    # EST, -5
    ("Asia/Kolkata", utc(2025, 1, 14, 21, 30)),   # +5:30
    ("Australia/Sydney", utc(2025, 1, 14, 16)),   # AEDT, +11
])
def test_daily_in_several_zones(tz: str, expected_utc: datetime) -> None:
    spec = daily(3, 0, tz)
    assert next_run(spec, expected_utc - timedelta(seconds=1)) == expected_utc
    assert next_run(spec, expected_utc) == expected_utc + timedelta(days=1)


def test_weekly_runs_on_its_local_day() -> None:
    # Monday 01:00 in Sydney is Sunday afternoon UTC.
    spec = weekly("MONDAY", 1, 0, "Australia/Sydney")
    runs = list(islice(occurrences_after(spec, utc(2025, 1, 1)), 4))
    local = [r.astimezone(ZoneInfo("Australia/Sydney")) for r in runs]
    assert all(t.weekday() == 0 and (t.hour, t.minute) == (1, 0) for t in local)
    assert all(r.weekday() == 6 for r in runs)
    assert [b - a for a, b in zip(runs, runs[1:], strict=False)] == [timedelta(days=7)] * 3


@pytest.mark.parametrize("day", DAYS)
def test_weekly_every_day_name(day: str) -> None:
    spec = weekly(day, 12, 0)
    first = next_run(spec, utc(2025, 6, 1))
    assert first.weekday() == DAYS.index(day)
    assert utc(2025, 6, 1) < first <= utc(2025, 6, 8, 12)


# --- DST ---------------------------------------------------------------------------------


def test_berlin_0230_daily_across_spring_forward() -> None:
    spec = daily(2, 30, "Europe/Berlin")
    runs = runs_between(spec, utc(2025, 3, 28), utc(2025, 4, 2))
    assert runs == [
        utc(2025, 3, 28, 1, 30),   # 02:30 CET
        utc(2025, 3, 29, 1, 30),
        utc(2025, 3, 30, 1, 0),    # 02:30 does not exist: first instant after the gap, 03:00 CEST
        utc(2025, 3, 31, 0, 30),   # 02:30 CEST
        utc(2025, 4, 1, 0, 30),
    ]
    berlin = ZoneInfo("Europe/Berlin")
    assert runs[2].astimezone(berlin).strftime("%H:%M %Z") == "03:00 CEST"


def test_berlin_0230_daily_across_fall_back_runs_once() -> None:
    spec = daily(2, 30, "Europe/Berlin")
    runs = runs_between(spec, utc(2025, 10, 24), utc(2025, 10, 29))
    assert runs == [
        utc(2025, 10, 24, 0, 30),
        utc(2025, 10, 25, 0, 30),
        utc(2025, 10, 26, 0, 30),  # the first 02:30 (CEST); the repeated 02:30 CET is not a slot
        utc(2025, 10, 27, 1, 30),
        utc(2025, 10, 28, 1, 30),
    ]


def test_new_york_gap_and_repeat() -> None:
    spec = daily(2, 30, "America/New_York")
    spring = runs_between(spec, utc(2025, 3, 8), utc(2025, 3, 11))
    # 2025-03-09: 02:00 EST jumps to 03:00 EDT = 07:00 UTC.
    assert spring == [utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7, 0), utc(2025, 3, 10, 6, 30)]
    fall = runs_between(spec.__class__("daily", None, time(1, 30), "America/New_York", 7),
                        utc(2025, 11, 1), utc(2025, 11, 4))
    # 2025-11-02: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST); run once, first.
    assert fall == [utc(2025, 11, 1, 5, 30), utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]


def test_whole_year_one_run_per_local_day_in_dst_zones() -> None:
    for tz in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe"):
        spec = daily(2, 30, tz)
        zone = ZoneInfo(tz)
        runs = runs_between(spec, utc(2025, 1, 1), utc(2026, 1, 1))
        days = Counter(r.astimezone(zone).date() for r in runs)
        assert max(days.values()) == 1, tz
        assert len(runs) in (365, 366), tz


def test_weekly_across_dst_keeps_local_time() -> None:
    spec = weekly("SUNDAY", 2, 30, "Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    runs = [r.astimezone(berlin) for r in runs_between(spec, utc(2025, 3, 20), utc(2025, 4, 10))]
    assert [(r.date(), r.strftime("%H:%M")) for r in runs] == [
        (date(2025, 3, 23), "02:30"), (date(2025, 3, 30), "03:00"), (date(2025, 4, 6), "02:30")]


def test_ambiguous_or_missing_flags_dst_slots() -> None:
    notes = ambiguous_or_missing(daily(2, 30, "Europe/Berlin"), 366, now=utc(2025, 1, 1))
    assert [(n.day, n.kind) for n in notes] == [
        (date(2025, 3, 30), "missing"), (date(2025, 10, 26), "repeated")]
    assert "03:00 CEST (01:00 UTC)" in notes[0].text
    assert "once" in notes[1].text and "00:30 UTC" in notes[1].text
    assert ambiguous_or_missing(daily(12, 0, "Europe/Berlin"), 366, now=utc(2025, 1, 1)) == []
    assert ambiguous_or_missing(daily(2, 30, "UTC"), 366, now=utc(2025, 1, 1)) == []
    # A weekly schedule on a day that is not the transition day is unaffected.
    assert ambiguous_or_missing(weekly("MONDAY", 2, 30, "Europe/Berlin"), 366,
                                now=utc(2025, 1, 1)) == []


def test_describe_and_preview() -> None:
    assert describe(daily(3, 0, "Europe/Berlin")) == "daily at 03:00 Europe/Berlin"
    assert describe(weekly("MONDAY", 4, 5, keep=1), with_keep=True) == \
        "weekly on Monday at 04:05 UTC, keeping 1 image"
    pairs = preview(daily(2, 30, "Europe/Berlin"), utc(2025, 3, 29, 12), n=2)
    assert [(loc.strftime("%m-%d %H:%M %Z"), u) for loc, u in pairs] == [
        ("03-30 03:00 CEST", utc(2025, 3, 30, 1)), ("03-31 02:30 CEST", utc(2025, 3, 31, 0, 30))]


@settings(max_examples=60, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1),
                       timezones=st.just(UTC)),
    hh=st.integers(0, 23), mm=st.sampled_from([0, 15, 30, 45, 59]),
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                        "America/Santiago", "Asia/Kolkata", "UTC", "Pacific/Apia"]),
)
def test_property_strictly_increasing_one_per_local_day(start: datetime, hh: int, mm: int,
                                                        tz: str) -> None:
    spec = daily(hh, mm, tz)
    zone = ZoneInfo(tz)
    runs = list(islice(occurrences_after(spec, start), 40))
    assert runs[0] > start
    assert all(a < b for a, b in zip(runs, runs[1:], strict=False))
    local_days = [r.astimezone(zone).date() for r in runs]
    assert len(set(local_days)) == len(local_days)
    # Never more than a day (plus a DST shift) between runs, barring zones that skip a date.
    assert all(b - a <= timedelta(hours=26) for a, b in zip(runs, runs[1:], strict=False)) \
        or tz == "Pacific/Apia"
    # next_run agrees with the iterator from any point.
    assert next_run(spec, runs[3]) == runs[4]


# --- catch-up policy -------------------------------------------------------------------------


def test_not_due_before_the_slot() -> None:
    d = due(daily(3, 0), created_at=utc(2025, 1, 1), last_slot=utc(2025, 1, 5, 3),
            now=utc(2025, 1, 6, 2, 59))
    assert d.action == "wait" and not d.due and d.slot is None
    assert d.next_at == utc(2025, 1, 6, 3)


def test_due_at_the_slot_then_not_again() -> None:
    spec = daily(3, 0)
    d = due(spec, created_at=utc(2025, 1, 1), last_slot=utc(2025, 1, 5, 3),
            now=utc(2025, 1, 6, 3, 0, 5))
    assert d.due and d.slot == utc(2025, 1, 6, 3) and d.missed == 0
    assert d.next_at == utc(2025, 1, 7, 3)
    # A double tick after the slot was recorded: nothing (the slot is the idempotency key).
    again = due(spec, created_at=utc(2025, 1, 1), last_slot=d.slot, now=utc(2025, 1, 6, 3, 0, 6))
    assert again.action == "wait"


def test_three_days_down_gives_one_run_not_three() -> None:
    spec = daily(3, 0)
    d = due(spec, created_at=utc(2025, 1, 1), last_slot=utc(2025, 1, 5, 3),
            now=utc(2025, 1, 8, 4, 0))
    assert d.action == "run"
    assert d.slot == utc(2025, 1, 8, 3)
    assert d.missed == 2  # Jan 6 and 7 were coalesced into this one run
    after = due(spec, created_at=utc(2025, 1, 1), last_slot=d.slot, now=utc(2025, 1, 8, 4, 1))
    assert after.action == "wait" and after.next_at == utc(2025, 1, 9, 3)


def test_slot_older_than_window_is_skipped_and_reported() -> None:
    spec = daily(3, 0)
    d = due(spec, created_at=utc(2025, 1, 1), last_slot=utc(2025, 1, 5, 3),
            now=utc(2025, 1, 8, 9, 30), window=timedelta(hours=6))
    assert d.action == "skip" and d.skipped and not d.due
    assert d.slot == utc(2025, 1, 8, 3)
    assert d.missed == 3  # Jan 6, 7 and 8
    assert d.next_at == utc(2025, 1, 9, 3)
    # Exactly at the edge of the window still runs.
    edge = due(spec, created_at=utc(2025, 1, 1), last_slot=utc(2025, 1, 7, 3),
               now=utc(2025, 1, 8, 9, 0), window=timedelta(hours=6))
    assert edge.action == "run"


def test_weekly_missed_count() -> None:
    spec = weekly("MONDAY", 3, 0)  # 2025-01-06 is a Monday
    d = due(spec, created_at=utc(2025, 1, 1), last_slot=utc(2025, 1, 6, 3),
            now=utc(2025, 1, 27, 3, 30))
    assert d.action == "run" and d.slot == utc(2025, 1, 27, 3) and d.missed == 2


def test_create_just_after_a_slot_is_no_surprise_run() -> None:
    spec = daily(3, 0)
    created = utc(2025, 1, 6, 3, 5)
    d = due(spec, created_at=created, last_slot=None, now=utc(2025, 1, 6, 3, 6))
    assert d.action == "wait" and d.next_at == utc(2025, 1, 7, 3)
    # ... and the first real slot after creation does run.
    first = due(spec, created_at=created, last_slot=None, now=utc(2025, 1, 7, 3, 1))
    assert first.action == "run" and first.slot == utc(2025, 1, 7, 3) and first.missed == 0


def test_change_of_time_just_after_a_slot_is_no_surprise_run() -> None:
    # Changed at 10:00 to "daily at 09:00": the 09:00 slot an hour ago must not fire.
    d = due(daily(9, 0), created_at=utc(2025, 1, 6, 10), last_slot=utc(2025, 1, 6, 3),
            now=utc(2025, 1, 6, 10, 0, 1))
    assert d.action == "wait" and d.next_at == utc(2025, 1, 7, 9)


def test_due_uses_the_zone_across_dst() -> None:
    spec = daily(2, 30, "Europe/Berlin")
    d = due(spec, created_at=utc(2025, 3, 1), last_slot=utc(2025, 3, 29, 1, 30),
            now=utc(2025, 3, 30, 1, 0, 1))
    assert d.action == "run" and d.slot == utc(2025, 3, 30, 1) and d.missed == 0
    fb = due(spec, created_at=utc(2025, 3, 1), last_slot=utc(2025, 10, 26, 0, 30),
             now=utc(2025, 10, 26, 1, 30, 1))  # the repeated 02:30 CET
    assert fb.action == "wait" and fb.next_at == utc(2025, 10, 27, 1, 30)


def test_due_for_100k_schedules_all_wait() -> None:
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
    specs = [ScheduleSpec("daily" if i % 2 else "weekly", None if i % 2 else DAYS[i % 7],
                          time(i % 24, (i * 7) % 60), zones[i % 4], 3) for i in range(1000)]
    now = utc(2025, 6, 1, 12)
    created = utc(2025, 5, 1)
    last = {s: due(s, created_at=created, last_slot=None, now=now).slot for s in specs}
    actions: Counter[str] = Counter()
    for _ in range(100):
        for s in specs:
            actions[due(s, created_at=created, last_slot=last[s], now=now).action] += 1
    assert actions == {"wait": 100_000}


# --- busy retries ----------------------------------------------------------------------------


def test_retry_after_busy_three_tries_an_hour_apart() -> None:
    assert [retry_after_busy(n) for n in (1, 2, 3, 4)] == [
        timedelta(hours=1), timedelta(hours=1), None, None]
    assert retry_after_busy(1, spacing=timedelta(minutes=10), tries=2) == timedelta(minutes=10)
    assert retry_after_busy(2, spacing=timedelta(minutes=10), tries=2) is None
    with pytest.raises(ValueError):
        retry_after_busy(0)


# --- retention -------------------------------------------------------------------------------

SID = "S1"


def img(ident: str, created: datetime, *, status: str = "active", protected: bool = False,
        schedule_id: str | None = SID, name: str = "") -> RetainableImage:
    return RetainableImage(id=ident, status=status, created_at=created, protected=protected,
                           schedule_id=schedule_id, name=name or ident)


def ids(images: list[RetainableImage]) -> list[str]:
    return [i.id for i in images]


def test_retention_orders_by_created_at_across_new_year() -> None:
    # Names sort the wrong way round (day-month-year); created_at decides.
    images = [
        img("a", utc(2024, 12, 30, 3), name="srv-30-12-2024"),
        img("b", utc(2024, 12, 31, 3), name="srv-31-12-2024"),
        img("c", utc(2025, 1, 1, 3), name="srv-01-01-2025"),
        img("d", utc(2025, 1, 2, 3), name="srv-02-01-2025"),
    ]
    assert ids(select_for_deletion(list(reversed(images)), 2, SID)) == ["a", "b"]
    # Unix-timestamp names of different lengths would also sort badly by name.
    ts = [img(str(n), datetime.fromtimestamp(n, UTC)) for n in (999_999_999, 1_000_000_000)]
    assert ids(select_for_deletion(ts, 1, SID)) == ["999999999"]


def test_retention_ignores_everything_not_ours_and_active() -> None:
    base = utc(2025, 1, 1)
    images = [
        img("old-error", base, status="killed"),
        img("saving", base + timedelta(days=9), status="saving"),
        img("queued", base + timedelta(days=9), status="queued"),
        img("manual", base, schedule_id=None),
        img("foreign", base, schedule_id="S2"),
        img("pinned", base, protected=True),
        *[img(f"s{n}", base + timedelta(days=n)) for n in range(1, 6)],
    ]
    chosen = select_for_deletion(images, 3, SID)
    assert ids(chosen) == ["s1", "s2"]
    assert all(i.schedule_id == SID and i.status == "active" and not i.protected
               for i in chosen)


def test_retention_never_selects_the_newest_nor_goes_below_keep() -> None:
    base = utc(2025, 1, 1)
    one = [img("only", base)]
    assert select_for_deletion(one, 1, SID) == []
    many = [img(f"s{n}", base + timedelta(days=n)) for n in range(10)]
    chosen = select_for_deletion(many, 1, SID)
    assert "s9" not in ids(chosen) and len(chosen) == 9
    assert select_for_deletion(many, 10, SID) == []
    assert select_for_deletion(many, 11, SID) == []
    with pytest.raises(ValueError):
        select_for_deletion(many, 0, SID)


def test_retention_lowered_from_7_to_3_deletes_exactly_the_4_oldest() -> None:
    base = utc(2025, 1, 1, 3)
    images = [img(f"d{n}", base + timedelta(days=n)) for n in range(7)]
    assert ids(select_for_deletion(images[::-1], 3, SID)) == ["d0", "d1", "d2", "d3"]


def test_would_delete_at_next_success_accounts_for_the_new_image() -> None:
    base = utc(2025, 1, 1, 3)
    images = [img(f"d{n}", base + timedelta(days=n)) for n in range(6)]
    # Six now, one more at the next success: keep 3 means the 4 oldest go.
    assert ids(would_delete_at_next_success(images, 3, SID)) == ["d0", "d1", "d2", "d3"]
    assert would_delete_at_next_success([], 3, SID) == []
    assert ids(would_delete_at_next_success(images, 7, SID)) == []


def test_retainable_from_image_reads_glance_fields() -> None:
    image = Image(id="i1", name="x", status="ACTIVE", created_at="2025-01-01T03:00:07Z",
                  properties={"imagebot_schedule_id": SID})
    r = retainable_from_image(image)
    assert r is not None
    assert r.created_at == utc(2025, 1, 1, 3, 0, 7) and r.status == "active"
    assert r.schedule_id == SID
    assert retainable_from_image(Image(id="i2", name="y", status="active")) is None


def test_a_local_day_the_zone_skipped_has_no_run() -> None:
    # Samoa moved across the date line: 2011-12-30 never happened in Pacific/Apia.
    spec = ScheduleSpec("daily", None, time(0, 15), "Pacific/Apia", 3)
    start = utc(2011, 12, 27)
    runs = list(islice(occurrences_after(spec, start), 6))
    local_days = [r.astimezone(ZoneInfo("Pacific/Apia")).date() for r in runs]
    assert len(set(local_days)) == len(local_days)
    assert date(2011, 12, 30) not in local_days and date(2011, 12, 31) in local_days
    assert all(r.astimezone(ZoneInfo("Pacific/Apia")).time() == time(0, 15) for r in runs)


def test_due_queue_looks_only_at_new_changed_or_arrived_schedules() -> None:
    queue = DueQueue()
    t0 = utc(2026, 1, 1, 12)
    assert queue.needs_look("S1", "v1", t0)  # never seen
    queue.set("S1", t0 + timedelta(hours=1), "v1")
    queue.set("S2", t0 + timedelta(hours=2), "v1")
    assert not queue.needs_look("S1", "v1", t0)
    assert queue.needs_look("S1", "v2", t0)  # edited: look again whatever the time
    assert queue.needs_look("S1", "v1", t0 + timedelta(hours=1))
    assert queue.due_keys(t0 + timedelta(minutes=90)) == ["S1"]
    queue.set("S2", t0 + timedelta(hours=5), "v1")  # re-set: the old heap entry is stale
    assert queue.due_keys(t0 + timedelta(hours=3)) == []
    queue.forget(["S1"])
    assert queue.needs_look("S2", "v1", t0)
