"""Fleet schedules, the pure parts (issue 18): resolving a target at each run, each member's
next step, retention by count and age, and the digest's words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.cloud.models import Server
from bot.imaging.jobs import Job
from bot.scheduling.age_retention import preview_by_count_and_age, select_by_count_and_age
from bot.scheduling.digest import digest_card, resume_reply, summary_reply
from bot.scheduling.fleet_plan import fleet_step, member_job, resolve
from bot.scheduling.retention import RetainableImage
from bot.store import FleetMember, FleetRun
from bot.vocabulary import FailureCode, JobState, RunResult
from commands.targets import parse_target

NOW = datetime(2026, 3, 4, 3, 1, tzinfo=UTC)


def server(name: str, **meta: str) -> Server:
    return Server(id=f"id-{name}", name=name, status="ACTIVE", vm_state="active",
                  task_state=None, metadata=meta)


def member(name: str, result: str = RunResult.RUNNING, attempts: int = 1,
           resumed: bool = False, next_at: datetime | None = None,
           detail: str | None = None) -> FleetMember:
    return FleetMember(run_id=1, server_id=f"id-{name}", server_name=name, job_id=f"J-{name}",
                       attempts=attempts, result=result, next_attempt_at=next_at, detail=detail,
                       resumed=resumed, deleted=0)


def job(name: str, state: str, *, copied: bool = False, code: str | None = None) -> Job:
    return Job(id=f"J-{name}", state=JobState(state), server_ref=f"id-{name}",
               requested_by="schedule:S1", channel="C0ALERTS", created_at=NOW, updated_at=NOW,
               server_id=f"id-{name}", server_name=name, image_name=f"{name}-img",
               snapshot_ended_at=NOW if copied else None, error_code=code,
               error="it failed" if state == JobState.FAILED else None, schedule_id="S1")


# --- resolution -------------------------------------------------------------------------------


def test_resolve_includes_new_servers_drops_gone_ones_and_skips_what_the_policy_forbids() -> None:
    servers = [server("web-1"), server("web-7"), server("db-1"), server("web-admin")]
    previous = [member("web-1"), member("web-2")]
    got = resolve(parse_target("web-*"), servers, lambda n: n != "web-admin", previous)
    assert [s.name for s in got.members] == ["web-1", "web-7"]  # web-7 is new: included
    assert got.skipped == ("web-admin",)
    assert got.dropped == ("web-2",)  # deleted since the last run: said dropped


def test_resolve_by_metadata_and_never_our_own_verify_servers() -> None:
    servers = [server("a", role="web"), server("b", role="db"),
               server("imagebot-verify-J1", role="web", imagebot_verify_id="V1")]
    got = resolve(parse_target("meta:role=web"), servers, lambda n: True)
    assert [s.name for s in got.members] == ["a"] and got.dropped == ()


def test_member_job_has_no_card_of_its_own() -> None:
    base = {"server_ref": "web-*", "outbox": ["card"], "schedule_id": "S1", "note": "n"}
    values = member_job(base, server("web-1"), NOW, "n (web-1)")
    assert "outbox" not in values and values["thread_ts"] == "fallback"
    assert values["server_id"] == values["server_ref"] == "id-web-1"
    assert values["announced_at"] == NOW and values["note"] == "n (web-1)"


# --- fleet_step -------------------------------------------------------------------------------


def test_writes_may_resume_is_said_once_per_server_in_one_combined_step() -> None:
    members = [member("web-1"), member("web-2"), member("web-3", resumed=True)]
    jobs = {"J-web-1": job("web-1", JobState.UPLOADING, copied=True),
            "J-web-2": job("web-2", JobState.SUCCEEDED, copied=True),
            "J-web-3": job("web-3", JobState.UPLOADING, copied=True)}
    got = fleet_step(members, jobs, now=NOW)
    assert [m.server_name for m in got.resumed] == ["web-1", "web-2"]  # web-3: said before
    assert [m.server_name for m in got.ready] == ["web-2"] and not got.done


def test_busy_members_retry_then_fail_and_the_run_ends_when_all_ended() -> None:
    members = [member("web-1"), member("web-2", attempts=3), member("web-3", RunResult.SUCCEEDED)]
    jobs = {"J-web-1": job("web-1", JobState.FAILED, code=FailureCode.BUSY),
            "J-web-2": job("web-2", JobState.FAILED, code=FailureCode.BUSY)}
    got = fleet_step(members, jobs, now=NOW, busy_tries=3, busy_spacing=timedelta(hours=1))
    fields = {sid: f for sid, _, f in got.results}
    assert fields["id-web-1"]["result"] == RunResult.RETRY_WAIT
    assert fields["id-web-1"]["next_attempt_at"] == NOW + timedelta(hours=1)
    assert fields["id-web-2"]["result"] == RunResult.FAILED  # third try: no more
    assert got.wake_at == NOW + timedelta(hours=1) and not got.done
    waiting = [member("web-1", RunResult.RETRY_WAIT, next_at=NOW - timedelta(seconds=1))]
    assert [m.server_name for m in fleet_step(waiting, {}, now=NOW).restart] == ["web-1"]
    ended = [member("web-1", RunResult.SUCCEEDED, attempts=2),
             member("web-2", RunResult.FAILED, detail="it failed")]
    final = fleet_step(ended, {}, now=NOW)
    assert final.done and final.retried == 1 and final.failed == (("web-2", "it failed"),)
    assert fleet_step([], {}, now=NOW).done  # a target matching nothing ends at once


# --- retention by count and age ---------------------------------------------------------------


def image(iid: str, age_days: float, *, sid: str | None = "S1", status: str = "active",
          protected: bool = False) -> RetainableImage:
    return RetainableImage(id=iid, status=status, created_at=NOW - timedelta(days=age_days),
                           protected=protected, schedule_id=sid, name=iid)


def pick(images: list[RetainableImage], keep: int, days: int | None,
         bad: set[str] | None = None) -> list[str]:
    return [i.id for i in select_by_count_and_age(images, keep=keep, keep_days=days,
                                                  schedule_id="S1", now=NOW,
                                                  failed_verify=bad or set())]


def test_count_and_age_combine_and_only_own_unprotected_active_images_go() -> None:
    images = [image("a", 40), image("b", 20), image("c", 10), image("d", 1),
              image("pinned", 90, protected=True), image("manual", 99, sid=None),
              image("other", 99, sid="S9"), image("saving", 60, status="saving")]
    assert pick(images, 3, None) == ["a"]  # count only
    assert pick(images, 65535, 15) == ["a", "b"]  # age only
    assert pick(images, 3, 15) == ["a", "b"]  # both: the union
    assert pick(images, 1, None) == ["a", "b", "c"]


def test_the_newest_good_image_stays_even_when_everything_is_old() -> None:
    images = [image("a", 40), image("b", 35)]
    assert pick(images, 65535, 7) == ["a"]  # b is the newest good one
    # b failed its restore test: a is the newest good one and stays; b may go by age.
    assert pick(images, 65535, 7, bad={"b"}) == ["b"]
    # A protected image is never deleted, but is not what keeps the newest good one either.
    assert pick([image("p", 50, protected=True), image("a", 40)], 65535, 7) == []


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans(), st.booleans(), st.booleans()),
                max_size=12),
       st.integers(1, 4), st.one_of(st.none(), st.integers(1, 60)))
def test_property_never_protected_never_foreign_never_the_newest_good(
        specs: list[tuple[float, bool, bool, bool]], keep: int, days: int | None) -> None:
    images = [image(f"i{n}", age, protected=prot, sid="S1" if own else "S2")
              for n, (age, prot, own, _) in enumerate(specs)]
    bad = {f"i{n}" for n, (*_, failed) in enumerate(specs) if failed}
    doomed = set(pick(images, keep, days, bad))
    by_id = {i.id: i for i in images}
    assert not any(by_id[i].protected or by_id[i].schedule_id != "S1" for i in doomed)
    good = sorted((i for i in images if i.schedule_id == "S1" and i.id not in bad),
                  key=lambda i: (i.created_at, i.id))
    if good:
        assert good[-1].id not in doomed


def test_preview_counts_the_next_image() -> None:
    images = [image("a", 3), image("b", 2)]
    assert [i.id for i in preview_by_count_and_age(images, keep=2, keep_days=None,
                                                   schedule_id="S1", now=NOW)] == ["a"]
    assert [i.id for i in preview_by_count_and_age(images, keep=65535, keep_days=30,
                                                   schedule_id="S1", now=NOW)] == []


# --- the digest -------------------------------------------------------------------------------


def test_digest_card_shows_each_server_phase_and_who_was_dropped_or_skipped() -> None:
    fleet = FleetRun(1, "S1", "web-*", ("web-2",), ("web-admin",), None, None)
    members = [member("web-1", RunResult.SUCCEEDED), member("web-3"),
               member("web-4", RunResult.FAILED, detail="killed")]
    jobs = {"J-web-1": job("web-1", JobState.SUCCEEDED),
            "J-web-3": job("web-3", JobState.SNAPSHOTTING)}
    card = digest_card("S1", "web-*", NOW, fleet, members, jobs)
    text = str(card["blocks"])
    assert "1 of 3 servers ready" in text
    assert "`web-1`: :white_check_mark: ready: `web-1-img`" in text
    assert "`web-3`: :camera: copying the disk" in text and "`web-4`: :x: failed: killed" in text
    assert "Dropped since the last run" in text and "`web-2`" in text
    assert "may not image `web-admin`" in text


def test_replies_go_under_the_card_and_the_summary_names_failures() -> None:
    resumed = resume_reply("fleet:R1", ["web-1", "web-2"])
    assert resumed["thread_of"] == "fleet:R1"
    assert "Writes may resume on `web-1`, `web-2`" in resumed["text"]
    fleet = FleetRun(1, "S1", "web-*", (), (), None, None)
    ok = summary_reply("fleet:R1", [member(f"w{i}", RunResult.SUCCEEDED) for i in range(12)],
                       fleet, 1, "<!here>")
    assert ok["text"].startswith(":white_check_mark: 12 of 12 images ready, 1 retried")
    assert "<!here>" not in ok["text"]  # nobody is pinged for a good run
    bad = summary_reply("fleet:R1", [member("w1", RunResult.SUCCEEDED),
                                     member("w2", RunResult.FAILED, detail="killed")],
                        fleet, 0, "<!here>")
    assert "1 of 2 images ready" in bad["text"] and "`w2` failed: killed" in bad["text"]
    assert bad["text"].startswith("<!here>")
