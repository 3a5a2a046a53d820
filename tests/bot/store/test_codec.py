"""RowCodec (bot/store/rows.py): the one way job and verification rows are stored and read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from bot.imaging.verify import VerifyState
from bot.store.rows import JOB_CODEC, RowCodec
from bot.store.verify import VERIFY_CODEC

CODEC = RowCodec(("at", "disks", "seen", "state", "note"), frozenset({"at"}),
                 tuples=frozenset({"disks"}), flags=frozenset({"seen"}),
                 enums={"state": VerifyState})


def test_values_survive_a_round_trip_and_unknown_flags_stay_unknown() -> None:
    at = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    given = {"at": at, "disks": ("vol-1", "vol-2"), "seen": None, "state": VerifyState("booting"),
             "note": "x"}
    stored = {name: CODEC.column(name, value) for name, value in given.items()}
    assert stored == {"at": "2026-03-28T23:30:00.000000+00:00", "disks": '["vol-1", "vol-2"]',
                      "seen": None, "state": "booting", "note": "x"}
    back = CODEC.values(stored)
    assert back == given and back["at"].tzinfo == UTC
    assert type(back["state"]) is VerifyState
    assert CODEC.values({**stored, "seen": 0})["seen"] is False
    assert CODEC.values({**stored, "disks": None})["disks"] == ()


def test_jobs_and_verifications_use_it() -> None:
    assert JOB_CODEC.column("volume_backed", True) == 1
    assert JOB_CODEC.column("data_disks", ["a"]) == '["a"]'
    assert VERIFY_CODEC.column("console_seen", None) is None
    assert VERIFY_CODEC.column("networks", ("n1",)) == '["n1"]'
