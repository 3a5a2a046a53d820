"""Fleet schedules: which servers a run images and each member's next step. Pure, no I/O.

A fleet schedule's target (`web-*`, `meta:role=web`) is resolved at each run from one server
listing (`resolve`): servers the target matches and the channel policy may touch are the run's
members; matched servers the policy may not touch are skipped (and said so); servers of the
previous run that the target no longer matches (deleted, renamed, re-tagged) are dropped (and
said so). The bot's own restore-test servers are never members.

`fleet_step` looks at the members and their jobs and says what the shell
(`bot.scheduling.fleet`) does next: member results to commit (busy retries as for one server),
the servers whose disk copy ended since the last tick ("writes may resume", one combined reply),
the members whose image is ready (retention), and whether the run is over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.cloud.models import Server
from bot.imaging import jobs
from bot.imaging.jobs import Job
from bot.imaging.verify import SERVER_METADATA_KEY
from bot.scheduling.runs import BUSY_SPACING, BUSY_TRIES, retry_after_busy
from bot.store import FleetMember
from bot.vocabulary import FailureCode, JobState, RunResult
from commands.targets import FleetTarget, matches

FLEET_PREFIX = "fleet:"
_ENDED = frozenset({RunResult.SUCCEEDED, RunResult.FAILED})
# The job's thread marker for "no thread of its own" (bot.slack.notifier.NO_THREAD): a fleet
# member's job posts nothing itself, the run's digest card speaks for all of them.
NO_THREAD = "fallback"


def fleet_key(target: FleetTarget | str) -> str:
    """The `server_id` a fleet schedule is stored under (one schedule per target)."""
    return FLEET_PREFIX + str(target)


def is_fleet_key(server_id: str) -> bool:
    """True for the `server_id` of a fleet schedule (see `fleet_key`)."""
    return server_id.startswith(FLEET_PREFIX)


def digest_key(run_id: int) -> str:
    """The outbox thread_key of a fleet run's digest card (its ts: `Store.posted_message`)."""
    return f"fleet:R{run_id}"


@dataclass(frozen=True)
class Resolution:
    """A target resolved against today's servers."""

    members: tuple[Server, ...]  # by name
    skipped: tuple[str, ...]  # matched, but the channel policy may not touch them
    dropped: tuple[str, ...]  # in the previous run, no longer matched (or gone)


def resolve(target: FleetTarget, servers: Sequence[Server], may_touch: Callable[[str], bool],
            previous: Sequence[FleetMember] = ()) -> Resolution:
    """The members, skipped and dropped servers of a run of `target` (see the module doc)."""
    matched = sorted((s for s in servers
                      if SERVER_METADATA_KEY not in s.metadata  # our own verify servers
                      and matches(target, s.name, s.metadata)),
                     key=lambda s: (s.name, s.id))
    members = tuple(s for s in matched if may_touch(s.name))
    skipped = tuple(s.name for s in matched if not may_touch(s.name))
    now_ids = {s.id for s in matched}
    dropped = tuple(sorted({m.server_name for m in previous if m.server_id not in now_ids}))
    return Resolution(members, skipped, dropped)


def member_job(base: Mapping[str, Any], server: Server | FleetMember, now: datetime,
               note: str) -> dict[str, Any]:
    """The job of one member, from the schedule's `runs.job_values` (`base`): the member's
    server, no card of its own (the digest speaks for it), announced at once."""
    server_id = server.id if isinstance(server, Server) else server.server_id
    name = server.name if isinstance(server, Server) else server.server_name
    values = {k: v for k, v in base.items() if k != "outbox"}
    return values | {"server_ref": server_id, "server_id": server_id, "server_name": name,
                     "thread_ts": NO_THREAD, "announced_at": now, "note": note}


@dataclass(frozen=True)
class FleetStep:
    """What to do for one fleet run now."""

    # (server_id, expected result, fields) for members whose job ended badly or must retry
    results: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    restart: tuple[FleetMember, ...] = ()  # busy members whose retry is due: a new job each
    resumed: tuple[FleetMember, ...] = ()  # their disk copy ended: "writes may resume"
    ready: tuple[FleetMember, ...] = ()  # image made: retention, then succeeded
    done: bool = False  # every member is succeeded or failed
    wake_at: datetime | None = None
    retried: int = 0  # members that needed more than one attempt
    failed: tuple[tuple[str, str], ...] = field(default=())  # (server, reason) of failures


def fleet_step(members: Sequence[FleetMember], job_of: Mapping[str, Job], *, now: datetime,
               busy_tries: int = BUSY_TRIES,
               busy_spacing: timedelta = BUSY_SPACING) -> FleetStep:
    """The next step of a fleet run from its members and their jobs (see the module doc)."""
    results: list[tuple[str, str, dict[str, Any]]] = []
    restart: list[FleetMember] = []
    resumed: list[FleetMember] = []
    ready: list[FleetMember] = []
    wakes: list[datetime] = []
    for m in members:
        job = job_of.get(m.job_id or "")
        if m.result == RunResult.RETRY_WAIT:
            if m.next_attempt_at is not None and m.next_attempt_at > now:
                wakes.append(m.next_attempt_at)
            else:
                restart.append(m)
            continue
        if m.result != RunResult.RUNNING:
            continue
        if job is None:
            continue
        if job.snapshot_ended_at is not None and not m.resumed:
            resumed.append(m)
        if job.state not in jobs.TERMINAL:
            continue
        if job.state == JobState.SUCCEEDED:
            ready.append(m)
            continue
        reason = job.error or str(job.state)
        if job.state == JobState.FAILED and job.error_code == FailureCode.BUSY:
            delay = retry_after_busy(m.attempts, tries=busy_tries, spacing=busy_spacing)
            if delay is not None:
                results.append((m.server_id, RunResult.RUNNING,
                                {"result": RunResult.RETRY_WAIT, "next_attempt_at": now + delay,
                                 "detail": f"server busy (attempt {m.attempts})"}))
                wakes.append(now + delay)
                continue
        results.append((m.server_id, RunResult.RUNNING,
                        {"result": RunResult.FAILED, "detail": reason[:500]}))
    done = all(m.result in _ENDED for m in members)  # no members: nothing to wait for
    failed = tuple((m.server_name, m.detail or "failed") for m in members
                   if m.result == RunResult.FAILED)
    return FleetStep(tuple(results), tuple(restart), tuple(resumed), tuple(ready), done=done,
                     wake_at=min(wakes, default=None),
                     retried=sum(1 for m in members if m.attempts > 1), failed=failed)
