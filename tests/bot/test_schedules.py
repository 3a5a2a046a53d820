"""ScheduleService (bot.scheduling.service) over a real AsyncStore on a tmp file, a fake clock and fakes for
the cloud and Slack: proposals, decisions (incl. concurrent clicks), expiry, policy denial, slot
claims (double tick, two instances, downtime), busy retries, retention and message rewrites."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

import commands
from bot.cloud.models import Image, Server
from bot.errors import JobError, NoSuchRequest, NoSuchSchedule, NotFound, PermissionDenied
from bot.imaging import jobs
from bot.policy import Policy
from bot.scheduling.due import ScheduleSpec, next_run
from bot.scheduling.rows import spec_from_dict, spec_of, spec_to_dict
from bot.scheduling.service import ScheduleService
from bot.store import AsyncStore, Store, StoreError
from tests.helpers import Clock

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday; 03:00 Berlin is 02:00 UTC (CET)
POLICY = """
[default]
approval_expiry = "24h"

[channels.C0OPS]
servers = ["web-*"]
creators = ["U0ALICE", "U0BOB"]
approvers = ["U0BOB", "U0CAROL"]
notify_channel = "C0ALERTS"
mention = "<!here>"
"""


class FakeCloud:
    """The three calls the service makes, over a dict of images."""

    def __init__(self) -> None:
        self.servers = {"web-1": Server(id="srv-web-1", name="web-1", status="ACTIVE",
                                        vm_state="active", task_state=None)}
        self.images: dict[str, Image] = {}
        self.deleted: list[str] = []

    async def find_server(self, ref: str) -> Server:
        for server in self.servers.values():
            if ref in (server.name, server.id):
                return server
        raise NotFound("server", ref)

    async def list_images(self, server_id: str | None = None,
                          properties: Mapping[str, str] | None = None) -> list[Image]:
        return [i for i in self.images.values()
                if server_id is None or i.properties.get("instance_uuid") == server_id]

    async def delete_image(self, image_id: str) -> None:
        if image_id not in self.images:
            raise NotFound("image", image_id)
        self.deleted.append(image_id)
        del self.images[image_id]

    def add(self, image_id: str, created: datetime, *, schedule: str | None = "S1",
            protected: bool = False, status: str = "active") -> None:
        props = {"instance_uuid": "srv-web-1"}
        if schedule:
            props["imagebot_schedule_id"] = schedule
        self.images[image_id] = Image(id=image_id, name=f"img-{image_id}", status=status,
                                      created_at=created.isoformat().replace("+00:00", "Z"),
                                      protected=protected, properties=props)


class FakeWeb:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str, str, list[dict[str, Any]] | None]] = []
        self.responses: list[str] = []

    async def update_message(self, channel: str, ts: str, text: str,
                             blocks: list[dict[str, Any]] | None = None) -> None:
        self.updates.append((channel, ts, text, blocks))

    async def respond(self, response_url: str, text: str,
                      blocks: list[dict[str, Any]] | None = None, *,
                      in_channel: bool = False, replace_original: bool = False) -> None:
        self.responses.append(text)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[AsyncStore]:
    s = await AsyncStore.open(tmp_path / "imagebot.db", clock=clock)
    yield s
    await s.close()


@pytest.fixture
def web() -> FakeWeb:
    return FakeWeb()


def make_service(store: AsyncStore, cloud: FakeCloud, clock: Clock, web: FakeWeb | None = None,
                 policy: str = POLICY) -> ScheduleService:
    return ScheduleService(store, cloud, Policy.loads(policy), clock=clock, web=web)


@pytest.fixture
def service(store: AsyncStore, cloud: FakeCloud, clock: Clock, web: FakeWeb) -> ScheduleService:
    return make_service(store, cloud, clock, web)


async def propose(service: ScheduleService, text: str, user: str = "U0ALICE",
                  channel: str = "C0OPS") -> str:
    request = commands.parse(text)
    assert isinstance(request, commands.Schedule | commands.ScheduleOff)
    row = await service.propose(request, user=user, channel=channel)
    return row.id


async def approved_schedule(service: ScheduleService,
                            text: str = "schedule web-1 daily at 03:00 --keep 2 "
                                        "--tz Europe/Berlin") -> str:
    rid = await propose(service, text)
    outcome = await service.decide(rid, actor="U0BOB", action="approve")
    assert outcome.accepted
    [schedule] = await service.store.run(Store.list_schedules)
    return schedule.id


async def finish(store: AsyncStore, job_id: str, *, ok: bool, image_id: str = "new",
                 error_code: str = "busy") -> None:
    await store.run(Store.transition, job_id, expected=jobs.QUEUED, target=jobs.SUBMITTING, event="t")
    if ok:
        await store.run(Store.transition, job_id, expected=jobs.SUBMITTING, target=jobs.SUCCEEDED,
                               event="t", fields={"image_id": image_id})
    else:
        await store.run(Store.transition, job_id, expected=jobs.SUBMITTING, target=jobs.FAILED, event="t",
                               fields={"error_code": error_code, "error": "Server is busy"})


def actions(rows: list[Any]) -> list[str]:
    return [r.action for r in rows]


# --- spec round trip -------------------------------------------------------------------------


def parsed_spec(text: str) -> ScheduleSpec:
    """The spec of `/image schedule <text>`, through the grammar like a user's command."""
    request = commands.parse(f"schedule web-1 {text}")
    assert isinstance(request, commands.Schedule)
    return spec_of(request)


def test_spec_round_trip() -> None:
    spec = parsed_spec("weekly sat at 04:30 --tz America/New_York --keep 5")
    assert spec == ScheduleSpec("weekly", "SATURDAY", time(4, 30), "America/New_York", 5)
    assert spec_from_dict(spec_to_dict(spec)) == spec


# --- proposals and decisions -------------------------------------------------------------------


async def test_proposal_is_a_pending_request_with_an_approval_message(
        service: ScheduleService, store: AsyncStore) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00 --keep 7 --tz Europe/Berlin")
    assert rid == "R1"
    row = await store.run(Store.get_change_request, "R1")
    assert row.status == "pending" and row.server_id == "srv-web-1" and row.old_spec is None
    assert row.new_spec == {"frequency": "daily", "day": None, "at": "03:00",
                            "tz": "Europe/Berlin", "keep": 7}
    assert row.expires_at == T0 + timedelta(hours=24)
    assert await store.run(Store.list_schedules) == []  # a request, not a schedule
    [item, *dms] = await store.run(Store.pending_outbox, T0)
    assert item.kind == "channel_post" and item.channel == "C0OPS" and item.thread_key == "R1"
    # Each named approver is also asked directly (a DM copy each; issue 19).
    assert [(d.kind, d.channel, d.thread_key) for d in dms] == [
        ("dm_copy", "U0BOB", "R1:dm:U0BOB"), ("dm_copy", "U0CAROL", "R1:dm:U0CAROL")]
    elements = [e["action_id"] for b in item.payload["blocks"] if b["type"] == "actions"
                for e in b["elements"]]
    assert elements == ["cr_approve", "cr_reject"]
    assert actions(await store.run(Store.audit_rows, "R1")) == ["request_created"]


async def test_requester_and_non_approver_are_refused_then_an_approver_wins(
        service: ScheduleService, store: AsyncStore) -> None:
    rid = await propose(service, "schedule web-1 weekly sat at 04:00 --keep 3")
    mine = await service.decide(rid, actor="U0ALICE", action="approve")
    assert not mine.accepted and "own request" in mine.message
    stranger = await service.decide(rid, actor="U0DAVE", action="approve")
    assert not stranger.accepted and "<@U0BOB>" in stranger.message
    assert (await store.run(Store.get_change_request, rid)).status == "pending"
    ok = await service.decide(rid, actor="U0CAROL", action="approve")
    assert ok.accepted and ok.request.status == "approved" and ok.request.decided_by == "U0CAROL"
    [schedule] = await store.run(Store.list_schedules)
    assert (schedule.id, schedule.frequency, schedule.day, schedule.keep) == \
        ("S1", "weekly", "SATURDAY", 3)
    assert schedule.effective_at == T0 and schedule.approved_by == "U0CAROL"
    assert actions(await store.run(Store.audit_rows, "R1")) == [
        "request_created", "decision_refused", "decision_refused", "request_approved"]


async def test_concurrent_clicks_from_two_users_make_exactly_one_decision(
        service: ScheduleService, store: AsyncStore) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00")
    bob, carol = await asyncio.gather(
        service.decide(rid, actor="U0BOB", action="approve"),
        service.decide(rid, actor="U0CAROL", action="approve"))
    assert [bob.accepted, carol.accepted].count(True) == 1
    loser = carol if bob.accepted else bob
    winner = "U0BOB" if bob.accepted else "U0CAROL"
    assert f"already approved by <@{winner}>" in loser.message
    assert actions(await store.run(Store.audit_rows, "R1")).count("request_approved") == 1
    assert len(await store.run(Store.list_schedules)) == 1


async def test_two_services_on_one_database_also_decide_once(
        tmp_path: Path, store: AsyncStore, cloud: FakeCloud, clock: Clock) -> None:
    other_store = await AsyncStore.open(tmp_path / "imagebot.db", clock=clock)
    try:
        one = make_service(store, cloud, clock)
        two = make_service(other_store, cloud, clock)
        rid = await propose(one, "schedule web-1 daily at 03:00")
        results = await asyncio.gather(one.decide(rid, actor="U0BOB", action="approve"),
                                       two.decide(rid, actor="U0CAROL", action="reject"))
        assert [r.accepted for r in results].count(True) == 1
    finally:
        await other_store.close()


async def test_reject_with_reason_and_withdrawal(service: ScheduleService,
                                                 store: AsyncStore) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00")
    out = await service.decide(rid, actor="U0CAROL", action="reject", reason="freeze")
    assert out.accepted and out.request.status == "rejected" and out.request.reason == "freeze"
    assert await store.run(Store.list_schedules) == []
    late = await service.decide(rid, actor="U0BOB", action="approve")
    assert not late.accepted and "already rejected by <@U0CAROL>" in late.message
    again = await propose(service, "schedule web-1 daily at 04:00")
    withdrawn = await service.decide(again, actor="U0ALICE", action="reject")
    assert withdrawn.accepted and "withdrew" in withdrawn.message


async def test_expiry_sweep_then_click_is_refused(service: ScheduleService, store: AsyncStore,
                                                  clock: Clock) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00")
    clock.advance(hours=23, minutes=30)
    await service.tick()  # inside the last hour: one warning to the notification channel
    await service.tick()
    warnings = [i for i in await store.run(Store.pending_outbox, clock.now) if i.thread_key == "R1:warn"]
    assert len(warnings) == 1 and warnings[0].channel == "C0ALERTS"
    assert warnings[0].payload["text"].startswith("<!here>")
    clock.advance(hours=1)
    await service.tick()
    row = await store.run(Store.get_change_request, rid)
    assert row.status == "expired" and row.decided_at == row.expires_at
    out = await service.decide(rid, actor="U0BOB", action="approve")
    assert not out.accepted and "expired" in out.message
    assert await store.run(Store.list_schedules) == []
    assert "request_expired" in actions(await store.run(Store.audit_rows, "R1"))


async def test_click_after_expiry_marks_it_expired_without_a_sweep(
        service: ScheduleService, store: AsyncStore, clock: Clock) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00")
    clock.advance(hours=25)
    out = await service.decide(rid, actor="U0BOB", action="approve")
    assert not out.accepted and out.request.status == "expired"
    assert (await store.run(Store.get_change_request, rid)).status == "expired"


async def test_unknown_or_foreign_requests_and_schedules_have_their_own_errors(
        service: ScheduleService, store: AsyncStore) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00")
    with pytest.raises(NoSuchRequest, match="There is no change request R99"):
        await service.decide("R99", actor="U0BOB", action="approve")
    with pytest.raises(NoSuchRequest, match="R99"):  # typed in a channel: said the same way
        await service.decide("r99", actor="U0BOB", action="approve", channel="C0OPS")
    with pytest.raises(NoSuchRequest, match=rid):  # another channel's request is not there
        await service.decide(rid, actor="U0BOB", action="approve", channel="C0OTHER")
    with pytest.raises(NoSuchSchedule, match="There is no schedule S9"):
        await store.run(Store.get_schedule, "S9")
    # Not job errors: code that drops work on a JobError must not drop it for these.
    assert not issubclass(NoSuchRequest, JobError) and not issubclass(NoSuchSchedule, JobError)
    assert (await store.run(Store.get_change_request, rid)).status == "pending"


async def test_policy_denials(service: ScheduleService, store: AsyncStore,
                              cloud: FakeCloud) -> None:
    with pytest.raises(PermissionDenied):
        await propose(service, "schedule web-1 daily at 03:00", user="U0CAROL")  # no creator
    cloud.servers["db-1"] = Server(id="srv-db-1", name="db-1", status="ACTIVE", vm_state=None,
                                   task_state=None)
    with pytest.raises(PermissionDenied):
        await propose(service, "schedule db-1 daily at 03:00")  # not in servers
    with pytest.raises(NotFound):
        await propose(service, "schedule web-9 daily at 03:00")
    assert await store.run(Store.list_change_requests) == []


async def test_self_approval_when_the_policy_allows_it(store: AsyncStore, cloud: FakeCloud,
                                                       clock: Clock) -> None:
    service = make_service(store, cloud, clock, policy="[default]\nallow_self_approval = true\n")
    rid = await propose(service, "schedule web-1 daily at 03:00")
    assert (await service.decide(rid, actor="U0ALICE", action="approve")).accepted


async def test_newer_request_supersedes_the_pending_one(service: ScheduleService,
                                                        store: AsyncStore) -> None:
    first = await propose(service, "schedule web-1 daily at 03:00")
    second = await propose(service, "schedule web-1 daily at 05:00", user="U0BOB")
    assert (await store.run(Store.get_change_request, first)).status == "superseded"
    out = await service.decide(first, actor="U0CAROL", action="approve")
    assert not out.accepted and second in out.message
    assert (await service.decide(second, actor="U0CAROL", action="approve")).accepted


async def test_off_request_turns_the_schedule_off(service: ScheduleService, store: AsyncStore,
                                                  clock: Clock) -> None:
    await approved_schedule(service)
    rid = await propose(service, "schedule web-1 off")
    row = await store.run(Store.get_change_request, rid)
    assert row.kind == "off" and row.old_spec is not None
    assert (await service.decide(rid, actor="U0BOB", action="approve")).accepted
    assert await store.run(Store.list_schedules) == []
    clock.advance(days=2)
    await service.tick()
    assert await store.run(Store.list_jobs) == []


async def test_decided_message_is_rewritten_without_buttons(
        service: ScheduleService, store: AsyncStore, web: FakeWeb) -> None:
    rid = await propose(service, "schedule web-1 daily at 03:00")
    [item, *_] = await store.run(Store.pending_outbox, T0)  # the channel card, then DM copies
    await store.run(Store.mark_sent, item.id, result_ts="111.222")  # as the notifier would
    await service.decide(rid, actor="U0BOB", action="approve", reason="ok")
    await service.tick()
    [(channel, ts, text, blocks)] = web.updates
    assert (channel, ts) == ("C0OPS", "111.222") and "approved" in text
    assert blocks is not None and not [b for b in blocks if b["type"] == "actions"]
    await service.tick()
    assert len(web.updates) == 1  # clean now


async def test_audit_is_append_only(service: ScheduleService, store: AsyncStore) -> None:
    await propose(service, "schedule web-1 daily at 03:00")
    with pytest.raises((sqlite3.Error, StoreError)):
        await store._run(store.store.db.execute, "DELETE FROM audit")
    with pytest.raises((sqlite3.Error, StoreError)):
        await store._run(store.store.db.execute, "UPDATE audit SET actor = 'x'")


# --- the scheduler loop ------------------------------------------------------------------------


async def to_slot(service: ScheduleService, clock: Clock, spec_text: str) -> datetime:
    spec = parsed_spec(spec_text)
    slot = next_run(spec, clock.now)
    clock.now = slot + timedelta(minutes=1)
    return slot


BERLIN = "daily at 03:00 --tz Europe/Berlin --keep 2"


async def test_double_tick_and_a_second_instance_make_one_job_per_slot(
        tmp_path: Path, service: ScheduleService, store: AsyncStore, cloud: FakeCloud,
        clock: Clock) -> None:
    await approved_schedule(service)
    assert await store.run(Store.list_jobs) == []
    await service.tick()
    assert await store.run(Store.list_jobs) == []  # not due yet
    slot = await to_slot(service, clock, BERLIN)
    assert slot == datetime(2025, 3, 4, 2, 0, tzinfo=UTC)
    other_store = await AsyncStore.open(tmp_path / "imagebot.db", clock=clock)
    try:
        other = make_service(other_store, cloud, clock)
        await asyncio.gather(service.tick(), service.tick(), other.tick())
    finally:
        await other_store.close()
    [job] = await store.run(Store.list_jobs)
    assert job.state == jobs.QUEUED and job.schedule_id == "S1"
    assert job.requested_by == "schedule:S1" and job.channel == "C0ALERTS"
    assert job.server_id == "srv-web-1" and job.confirmed_at == clock.now
    [run] = await store.run(Store.runs_for_schedule, "S1")
    assert run.slot == slot and run.job_id == job.id and run.attempts == 1
    parents = [i for i in await store.run(Store.pending_outbox, clock.now) if i.kind == "post_parent"]
    assert [(p.channel, p.job_id) for p in parents] == [("C0ALERTS", job.id)]


async def test_three_days_down_gives_one_catch_up_run(service: ScheduleService,
                                                      store: AsyncStore, clock: Clock) -> None:
    await approved_schedule(service)
    await to_slot(service, clock, BERLIN)
    await service.tick()
    [first] = await store.run(Store.list_jobs)
    await finish(store, first.id, ok=True)
    await service.tick()
    clock.advance(days=3)  # down for three slots; back one minute after the third
    await service.tick()
    await service.tick()
    runs = await store.run(Store.runs_for_schedule, "S1")
    assert len(runs) == 2 and runs[1].missed == 2
    assert len(await store.run(Store.list_jobs)) == 2
    assert "missed" in str((await store.run(Store.get_job, str(runs[1].job_id))).note)


async def test_down_past_the_window_skips_and_says_so(service: ScheduleService,
                                                      store: AsyncStore, clock: Clock) -> None:
    await approved_schedule(service)
    await to_slot(service, clock, BERLIN)
    clock.advance(hours=10)  # the slot is 10 h old: outside the 6 h catch-up window
    await service.tick()
    assert await store.run(Store.list_jobs) == []
    [run] = await store.run(Store.runs_for_schedule, "S1")
    assert run.result == "skipped"
    notes = [i for i in await store.run(Store.pending_outbox, clock.now) if i.channel == "C0ALERTS"]
    assert notes and "skipped" in notes[0].payload["text"]


async def test_busy_server_retries_then_alerts(service: ScheduleService, store: AsyncStore,
                                               clock: Clock) -> None:
    await approved_schedule(service)
    await to_slot(service, clock, BERLIN)
    await service.tick()
    for attempt in (1, 2, 3):
        [job] = await store.run(Store.list_jobs, limit=1)
        await finish(store, job.id, ok=False)
        await service.tick()
        [run] = await store.run(Store.runs_for_schedule, "S1")
        assert run.attempts == attempt
        if attempt < 3:
            assert run.result == "retry_wait"
            assert run.next_attempt_at == clock.now + timedelta(hours=1)
            await service.tick()
            assert len(await store.run(Store.list_jobs)) == attempt  # not before the hour is up
            clock.advance(hours=1)
            await service.tick()
            assert len(await store.run(Store.list_jobs)) == attempt + 1
    assert run.result == "failed"
    alerts = [i for i in await store.run(Store.pending_outbox, clock.now)
              if i.kind == "channel_post" and i.channel == "C0ALERTS"]
    assert len(alerts) == 1 and alerts[0].payload["text"].startswith("<!here>")
    assert "after 3 attempt" in alerts[0].payload["text"]
    audit = actions(await store.run(Store.audit_rows, "S1"))
    assert audit.count("run_busy") == 2 and audit.count("run_retry") == 2
    assert audit[-1] == "run_failed"


async def test_retention_deletes_only_old_own_images(service: ScheduleService,
                                                     store: AsyncStore, cloud: FakeCloud,
                                                     clock: Clock) -> None:
    await approved_schedule(service)  # keep 2
    await to_slot(service, clock, BERLIN)
    for n, days in enumerate((5, 4, 3, 2), start=1):
        cloud.add(f"own{n}", clock.now - timedelta(days=days))
    cloud.add("pinned", clock.now - timedelta(days=9), protected=True)
    cloud.add("manual", clock.now - timedelta(days=10), schedule=None)
    cloud.add("other", clock.now - timedelta(days=8), schedule="S7")
    cloud.add("broken", clock.now - timedelta(days=7), status="killed")
    await service.tick()
    [job] = await store.run(Store.list_jobs)
    cloud.add("new", clock.now)
    await finish(store, job.id, ok=True, image_id="new")
    await service.tick()
    assert sorted(cloud.deleted) == ["own1", "own2", "own3"]
    assert {"own4", "new", "pinned", "manual", "other", "broken"} <= set(cloud.images)
    [run] = await store.run(Store.runs_for_schedule, "S1")
    assert run.result == "succeeded"
    [reply] = [i for i in await store.run(Store.pending_outbox, clock.now)
               if i.kind == "reply" and "Retention" in i.payload["text"]]
    assert reply.job_id == job.id and "img-own1" in reply.payload["text"]
    schedule = await store.run(Store.get_schedule, "S1")
    assert schedule.last_result is not None and schedule.last_result.startswith("succeeded")
    assert actions(await store.run(Store.audit_rows, "S1")).count("retention_deleted") == 3
    await service.tick()  # nothing more happens for a finished run
    assert len(cloud.deleted) == 3


async def test_answers_list_schedules_and_pending_requests(service: ScheduleService) -> None:
    await approved_schedule(service)
    await propose(service, "schedule web-1 weekly mon at 01:00")
    text = await service.schedules_answer()
    assert "S1" in text and "next:" in text and "UTC" in text and "R2" in text
    assert "R2" in await service.approvals_answer()
    assert "No schedules" in await service.schedules_answer("web-2")


class Members:
    """A channel directory that knows who is in which channel."""

    def __init__(self, members: Mapping[str, frozenset[str]]) -> None:
        self.by_channel = members

    async def members(self, channel: str) -> frozenset[str]:
        return self.by_channel.get(channel, frozenset())


async def test_a_direct_decision_needs_no_channel_but_an_approver(
        store: AsyncStore, cloud: FakeCloud, clock: Clock, web: FakeWeb) -> None:
    """From a DM copy or the App Home (`direct=True`) the request's own channel cannot hold; the
    actor must be an approver by the policy: named, or with none named a member of the channel."""
    service = make_service(store, cloud, clock, web)
    rid = await propose(service, "schedule web-1 daily at 03:00")
    refused = await service.decide(rid, actor="U0DAVE", action="approve", channel="D0DAVE",
                                   direct=True)
    assert not refused.accepted and "not an approver" in refused.message
    with pytest.raises(NoSuchRequest):  # typed in someone's DM without `direct`: not there
        await service.decide(rid, actor="U0CAROL", action="approve", channel="D0CAROL")
    ok = await service.decide(rid, actor="U0CAROL", action="approve", channel="D0CAROL",
                              direct=True)
    assert ok.accepted and ok.request.decided_by == "U0CAROL"

    open_policy = POLICY.replace('approvers = ["U0BOB", "U0CAROL"]\n', "")
    anyone = make_service(store, cloud, clock, web, policy=open_policy)
    rid2 = await propose(anyone, "schedule web-1 daily at 04:00")
    nobody_known = await anyone.decide(rid2, actor="U0BOB", action="approve", direct=True)
    assert not nobody_known.accepted  # no directory: membership unknown admits no one
    members = Members({"C0OPS": frozenset({"U0ALICE", "U0BOB"})})
    listed = ScheduleService(store, cloud, Policy.loads(open_policy), clock=clock, web=web,
                             directory=members)
    outsider = await listed.decide(rid2, actor="U0EVE", action="approve", direct=True)
    assert not outsider.accepted
    member = await listed.decide(rid2, actor="U0BOB", action="approve", direct=True)
    assert member.accepted
