"""The App Home tab as data -> Block Kit: pure, no I/O (`bot.slack.home` gathers and publishes).

What a person sees on their Home tab, only from the channels they are in whose policy enables
imagebot (`select` scopes; the shell says which channels those are): what is running now (phase
and the "writes may resume" state, a link to the job's thread), the change requests waiting for
their decision (Approve / Reject), their own change requests, the schedules of their channels
with the next run, and the last failures.

Limits (docs.slack.dev/reference/views/home-tab-views, /reference/block-kit/blocks): a Home view
holds at most 100 blocks, a section's text 3,000 characters, a header's 150; each list is capped
and says "and N more" for the rest, and `home_view` never returns more than 100 blocks.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.blocks import (
    SECTION_LIMIT,
    button,
    code,
    context,
    escape,
    section,
    truncate,
    user,
    user_text,
)
from bot.imaging import jobs
from bot.imaging.jobs import Job
from bot.imaging.messages import state_label, state_words
from bot.scheduling.approvals import ApprovalRules, when
from bot.scheduling.due import describe
from bot.scheduling.messages import local_and_utc, spec_text
from bot.scheduling.rows import label, schedule_spec, to_request
from bot.store import RequestRow, ScheduleRow
from bot.vocabulary import RequestStatus

HOME_BLOCK_LIMIT = 100
HEADER_LIMIT = 150

# The Home tab's own buttons: `bot.slack.home` routes them to the schedule buttons' handler
# with `direct=True` (a surface of the clicker's own; no channel to check).
APPROVE_ACTION = "home_cr_approve"
REJECT_ACTION = "home_cr_reject"

MAX_RUNNING = 15  # one section each
MAX_WAITING = 10  # a section and an actions block each
MAX_MINE = 10  # lines of one section, as are the two below
MAX_SCHEDULES = 20
MAX_FAILURES = 8

FOOTER = ("Only the channels you are in show here. This tab follows what changes; "
          "`/image help` in a channel lists every command.")


@dataclass(frozen=True)
class HomeSchedule:
    """A schedule with its next run as (local, UTC), None when it has none."""

    row: ScheduleRow
    next_run: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class HomeData:
    """What one user's Home tab shows, already scoped to them (see `select`)."""

    user: str
    now: datetime
    running: Sequence[Job] = ()
    waiting: Sequence[RequestRow] = ()  # pending, and theirs to decide: with buttons
    mine: Sequence[RequestRow] = ()
    schedules: Sequence[HomeSchedule] = ()
    failures: Sequence[Job] = ()
    workspace_url: str | None = None  # auth.test's url, for thread links
    notice: str | None = None  # the outcome of their last click here (mrkdwn)


def may_decide(request: RequestRow, user_id: str, rules: ApprovalRules,
               user_groups: frozenset[str] = frozenset()) -> bool:
    """Whether `user_id` may approve `request` by the channel's rules (the same reading as
    `approvals.decide`: an approver, and not its requester unless self-approval is allowed).
    Only then does the Home tab offer the buttons; the click is checked again."""
    if request.status != RequestStatus.PENDING:
        return False
    if request.requested_by == user_id and not rules.allow_self_approval:
        return False
    return rules.is_approver(user_id, user_groups)


def _public_or_own(job: Job, user_id: str) -> bool:
    # A job without a public card (a typed create not yet resolved, or failed before it was)
    # has been told only to its requester: nobody else's Home may show it.
    return job.announced_at is not None or job.requested_by == user_id


def select(user_id: str, now: datetime, *, running: Sequence[Job], failures: Sequence[Job],
           requests: Sequence[RequestRow], schedules: Sequence[HomeSchedule],
           visible: Collection[str], decidable: Collection[str],
           workspace_url: str | None = None, notice: str | None = None) -> HomeData:
    """Scope everything to `user_id`: only rows of `visible` channels (those they are in, with
    imagebot enabled), jobs with a public card (or their own), buttons only on the pending
    requests in `decidable` (ids they may decide). `failures` come newest first."""
    seen = frozenset(visible)
    live = [r for r in requests if r.channel in seen]
    return HomeData(
        user=user_id, now=now,
        running=[j for j in running
                 if j.channel in seen and j.state in jobs.IN_FLIGHT and _public_or_own(j, user_id)],
        waiting=[r for r in live if r.status == RequestStatus.PENDING and r.id in decidable
                 and r.expires_at > now],
        mine=sorted((r for r in live if r.requested_by == user_id),
                    key=lambda r: (r.status != RequestStatus.PENDING, -r.created_at.timestamp())),
        schedules=[s for s in schedules if s.row.channel in seen],
        failures=[j for j in failures
                  if j.channel in seen and j.state == jobs.FAILED and _public_or_own(j, user_id)],
        workspace_url=workspace_url, notice=notice)


# --- rendering ---------------------------------------------------------------------------------


def header(text: str) -> dict[str, Any]:
    """A header block (plain text, at most 150 characters)."""
    return {"type": "header",
            "text": {"type": "plain_text", "text": truncate(text, HEADER_LIMIT), "emoji": True}}


def thread_link(job: Job, workspace_url: str | None) -> str | None:
    """The archive link of the job's thread (`https://team.slack.com/archives/C…/p…`), when
    its card was posted in the channel; None otherwise (a response_url card has no ts)."""
    ts = job.thread_ts or ""
    sec, dot, frac = ts.partition(".")
    if not workspace_url or not (sec.isdigit() and dot and frac.isdigit()):
        return None
    return f"{workspace_url.rstrip('/')}/archives/{job.channel}/p{sec}{frac}"


def _at(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%H:%M:%S} UTC"


_COPIED = {jobs.PENDING_UPLOAD: ":package: packaging the image",
           jobs.UPLOADING: ":arrow_up: uploading the image"}


def phase(job: Job) -> str:
    """The job's phase with the "writes may resume" state, said once and with its time."""
    if job.snapshot_ended_at is not None and job.state in _COPIED:
        return f"{_COPIED[job.state]} · writes may resume since {_at(job.snapshot_ended_at)}"
    if job.state == jobs.SNAPSHOTTING and job.submitted_at is not None:
        return f"{state_label(job)} since {_at(job.submitted_at)}"
    return state_label(job)


def _where(job: Job, workspace_url: str | None) -> str:
    link = thread_link(job, workspace_url)
    return f"<#{job.channel}>" + (f" · <{link}|thread>" if link else "")


def running_line(job: Job, workspace_url: str | None) -> str:
    """One running job: id, server, phase (with the writes state), channel and thread."""
    who = (f"scheduled run of {user_text(job.schedule_id)}" if job.schedule_id
           else f"by {user(job.requested_by)}")
    return truncate(f"*{job.id}* {code(job.server_label)} · {phase(job)}\n"
                    f"{_where(job, workspace_url)} · {who}", SECTION_LIMIT)


def _change(request: RequestRow) -> str:
    if request.kind == "off":
        return "turn the schedule off"
    return escape(spec_text(to_request(request).new))


def waiting_line(request: RequestRow, now: datetime) -> str:
    """A request waiting for the reader's decision."""
    return (f"*{request.id}* {code(label(request))}: {_change(request)}\n"
            f"asked by {user(request.requested_by)} in <#{request.channel}> · expires "
            f"{when(request.expires_at, now)}")


def mine_line(request: RequestRow, now: datetime) -> str:
    """One of the reader's own requests and where it stands."""
    head = f"• *{request.id}* {code(label(request))}: {_change(request)} in <#{request.channel}>"
    if request.status == RequestStatus.PENDING:
        return f"{head} — waiting for a decision (expires {when(request.expires_at, now)})"
    at = f" at {when(request.decided_at, now)}" if request.decided_at else ""
    by = f" by {user(request.decided_by)}" if request.decided_by else ""
    status = request.status.value
    if request.status == RequestStatus.REJECTED and request.decided_by == request.requested_by:
        status, by = "withdrawn", ""
    return f"{head} — {escape(status)}{by}{at}"


def schedule_line(item: HomeSchedule) -> str:
    """A schedule with its next run."""
    row = item.row
    text = (f"• *{row.id}* {code(label(row))}: {escape(describe(schedule_spec(row), with_keep=True))}"
            f" in <#{row.channel}>")
    if item.next_run:
        text += f" — next {local_and_utc(*item.next_run)}"
    return text


def failure_line(job: Job, workspace_url: str | None, now: datetime) -> str:
    """A failed job with its cause in a few words."""
    at = f" at {when(job.finished_at, now)}" if job.finished_at else ""
    return (f"• *{job.id}* {code(job.server_label)} — {escape(state_words(job))}{at} · "
            f"{_where(job, workspace_url)}")


def _more(count: int) -> dict[str, Any]:
    return context(f"… and {count} more")


def lines_section(lines: Sequence[str], cap: int, empty: str) -> list[dict[str, Any]]:
    """Up to `cap` lines in one section within its 3,000 characters, then "and N more"."""
    shown: list[str] = []
    used = 0
    for line in lines[:cap]:
        if used + len(line) + 1 > SECTION_LIMIT:
            break
        shown.append(line)
        used += len(line) + 1
    if not shown:
        return [context(empty if not lines else f"{len(lines)} items; too long to show here.")]
    blocks = [section("\n".join(shown))]
    if len(lines) > len(shown):
        blocks.append(_more(len(lines) - len(shown)))
    return blocks


def home_view(data: HomeData) -> dict[str, Any]:
    """The Home tab view (`views.publish`'s `view`) for `data`."""
    now, url = data.now, data.workspace_url
    blocks: list[dict[str, Any]] = []
    if data.notice:
        blocks.append(context(data.notice))
    blocks.append(header("Running now"))
    if data.running:
        blocks += [section(running_line(j, url)) for j in data.running[:MAX_RUNNING]]
        if len(data.running) > MAX_RUNNING:
            blocks.append(_more(len(data.running) - MAX_RUNNING))
    else:
        blocks.append(context("Nothing is running in your channels."))
    blocks.append(header("Waiting for your decision"))
    if data.waiting:
        for r in data.waiting[:MAX_WAITING]:
            blocks.append(section(waiting_line(r, now)))
            blocks.append({"type": "actions", "block_id": f"home_cr:{r.id}",
                           "elements": [button("Approve", APPROVE_ACTION, r.id, "primary"),
                                        button("Reject", REJECT_ACTION, r.id, "danger")]})
        if len(data.waiting) > MAX_WAITING:
            blocks.append(_more(len(data.waiting) - MAX_WAITING))
    else:
        blocks.append(context("No change request waits for you."))
    blocks.append(header("Your change requests"))
    blocks += lines_section([mine_line(r, now) for r in data.mine], MAX_MINE,
                            "You have no change requests.")
    blocks.append(header("Schedules in your channels"))
    blocks += lines_section([schedule_line(s) for s in data.schedules], MAX_SCHEDULES,
                            "No schedules in your channels.")
    blocks.append(header("Last failures"))
    blocks += lines_section([failure_line(j, url, now) for j in data.failures], MAX_FAILURES,
                            "No failures in your channels.")
    blocks.append({"type": "divider"})
    blocks.append(context(FOOTER))
    return {"type": "home", "blocks": blocks[:HOME_BLOCK_LIMIT]}
