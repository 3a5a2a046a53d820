"""One home for ids, day names and the keep limit: `commands.ids`, and everything that reads
an id (the grammar, the store, change requests) or a day or keep count agrees with it."""

from __future__ import annotations

from datetime import date, time

import pytest

import commands
from bot.cloud.models import Image
from bot.cloud.rax import RaxSchedule
from bot.errors import ImagebotError, JobError
from bot.imaging.images import JOB_METADATA_KEY
from bot.imaging.job_ids import highest_job_number
from bot.scheduling.due import ScheduleSpec
from bot.store import normalize_job_id, normalize_request_id
from commands import ids

LONGEST = "1" * ids.MAX_ID_DIGITS


@pytest.mark.parametrize(("text", "expected"), [
    ("J17", "J17"), ("j17", "J17"), ("J017", "J17"), ("J0", "J0"), (f"J{LONGEST}", f"J{LONGEST}"),
    (f"J{LONGEST}1", None),  # past a signed 64-bit integer
    ("J", None), ("17", None), ("JJ1", None), ("J1x", None), (" J1", None), ("J1\n", None),
    ("J\u0661\u0667", None),  # Arabic-Indic digits are digits to `\d`, not to us
    ("R4", None), ("S2", None),
])
def test_job_ids_normalise(text: str, expected: str | None) -> None:
    assert ids.job_id(text) == expected


def test_each_kind_reads_only_its_own_letter() -> None:
    assert (ids.job_id("r4"), ids.request_id("r4"), ids.schedule_id("r4")) == (None, "R4", None)
    assert (ids.job_id("s02"), ids.request_id("s02"), ids.schedule_id("s02")) == (None, None, "S2")
    assert ids.id_number(ids.JOB, "j9") == 9 and ids.id_number(ids.REQUEST, "j9") is None


def test_an_overlong_number_still_looks_like_an_id() -> None:
    # The grammar refuses it as a server name, although it is no id either.
    assert ids.looks_like(ids.JOB, f"J{LONGEST}1") and ids.job_id(f"J{LONGEST}1") is None
    assert not ids.looks_like(ids.JOB, "J-1") and not ids.looks_like(ids.JOB, "web-1")
    with pytest.raises(commands.ParseError, match="is a job id, not a server"):
        commands.parse(f"create J{LONGEST}1")


@pytest.mark.parametrize(("text", "canonical"), [
    ("R4", True), ("R1234", True), ("r4", False), ("R04", False), ("R0", False), ("R4\n", False),
    ("J4", False), ("R", False),
])
def test_canonical_request_ids(text: str, canonical: bool) -> None:
    assert ids.is_canonical(ids.REQUEST, text) is canonical


JOB_TEXTS = ["J17", "j017", " J5 ", "J0", f"J{LONGEST}1", "J\u0661", "R4", "x"]
REQUEST_TEXTS = ["R4", "r04", " R9 ", "J4", "R"]


@pytest.mark.parametrize(("prefix", "text"), [(ids.JOB, t) for t in JOB_TEXTS]
                         + [(ids.REQUEST, t) for t in REQUEST_TEXTS])
def test_the_store_and_the_grammar_read_ids_alike(prefix: str, text: str) -> None:
    store_form, word, request, refusal = {
        ids.JOB: (normalize_job_id, "cancel", commands.Cancel, "not a job id"),
        ids.REQUEST: (normalize_request_id, "approve", commands.Approve,
                      "not a change request id"),
    }[prefix]
    expected = ids.normalize(prefix, text.strip())
    if expected is None:
        with pytest.raises(JobError, match=refusal):
            store_form(text)
        return
    assert store_form(text) == expected
    assert commands.parse(f"{word} {text}") == request(expected)


def test_highest_job_number_reads_the_image_tags_as_job_ids() -> None:
    def image(tag: str | None) -> Image:
        return Image(id=f"i-{tag}", name="x", status="active",
                     properties={JOB_METADATA_KEY: tag} if tag is not None else {})
    assert highest_job_number([]) == 0
    assert highest_job_number([image("J3"), image("J12"), image(None), image("web"),
                               image("R40"), image(f"J{LONGEST}1")]) == 12


def test_weekdays_are_in_python_weekday_order() -> None:
    saturday = date(2025, 3, 1)  # a Saturday
    assert ids.WEEKDAYS[saturday.weekday()] == "SATURDAY"
    assert len(set(ids.WEEKDAYS)) == 7 and ids.WEEKDAYS[0] == "MONDAY"
    weekly = commands.parse("schedule web-1 weekly sun")
    assert isinstance(weekly, commands.Schedule) and weekly.day == "SUNDAY"


def test_every_reader_of_a_keep_count_stops_at_the_one_limit() -> None:
    limit = ids.MAX_KEEP
    most = commands.parse(f"schedule web-1 daily --keep {limit}")
    assert isinstance(most, commands.Schedule) and most.keep == limit
    with pytest.raises(commands.ParseError, match=f"from 1 to {limit}"):
        commands.parse(f"schedule web-1 daily --keep {limit + 1}")
    assert ScheduleSpec("daily", None, time(3, 0), "UTC", limit).keep == limit
    with pytest.raises(ImagebotError, match=f"from 1 to {limit}"):  # InvalidSchedule
        ScheduleSpec("daily", None, time(3, 0), "UTC", limit + 1)
    assert RaxSchedule(retention=limit, day_of_week="SUNDAY").retention == limit
    with pytest.raises(ValueError, match=str(limit)):
        RaxSchedule(retention=limit + 1)
    for day in ids.WEEKDAYS:  # Rackspace takes every day the grammar produces
        assert RaxSchedule(retention=1, day_of_week=day).day_of_week == day
