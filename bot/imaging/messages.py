"""Slack message rendering: pure functions from jobs (and a clock reading) to payloads.

Every payload is `{"text": fallback, "blocks": [...]}` within Block Kit limits: section text
<= 3000 chars, <= 50 blocks, button text <= 75, and `text` <= 4000 so `chat.update` accepts it.
User-supplied text (server names, notes, image names, reasons, cloud messages) always goes
through `user_text` (or `code`, which uses it): it cannot mention anyone, format itself, start
a quote, add a line, or reorder what follows it with bidi controls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.blocks import (
    BLOCK_LIMIT,
    SECTION_LIMIT,
    button,
    code,
    context,
    escape,
    human_duration,
    human_size,
    payload,
    section,
    truncate,
    user,
    user_text,
)
from bot.cloud.models import Image
from bot.imaging import jobs
from bot.imaging.jobs import Job
from bot.vocabulary import FailureCode

START_ACTION = "job_start"
CANCEL_ACTION = "job_cancel"

FACT_NO_MEMORY = "An image copies the system disk only (no memory)."
FACT_VOLUME = ("This server boots from a volume: the image will be 0 bytes and point at volume "
               "snapshots.")
FACT_NOT_BACKUP = "An image is not a backup."

QUIESCE_CHECKLIST = (
    "*Before you press Start snapshot:*\n"
    "• Stop writes (pause the app, jobs and cron that write to disk).\n"
    "• Flush application state to disk (databases: checkpoint or flush tables).\n"
    "• Ready? Press *Start snapshot*. I will tell you in the thread when writes may resume."
)

_STATE_LABEL = {
    jobs.AWAITING_CONFIRMATION: ":hourglass: waiting for *Start snapshot*",
    jobs.QUEUED: ":arrow_forward: queued",
    jobs.SUBMITTING: ":arrow_forward: asking the cloud for an image",
    jobs.SNAPSHOTTING: ":camera: copying the disk (keep writes stopped)",
    jobs.PENDING_UPLOAD: ":package: packaging the image (writes may resume)",
    jobs.UPLOADING: ":arrow_up: uploading the image (writes may resume)",
    jobs.SUCCEEDED: ":white_check_mark: done",
    jobs.FAILED: ":x: failed",
    jobs.CANCELLED: ":no_entry_sign: cancelled",
}

# A state in plain words (lists, status, fallback texts). Success is "done" everywhere, as in
# `/image list --state done`; a cancelled job is its own state, never a failure.
STATE_WORDS: Mapping[str, str] = {
    jobs.AWAITING_CONFIRMATION: "waiting for Start snapshot",
    jobs.QUEUED: "queued",
    jobs.SUBMITTING: "starting",
    jobs.SNAPSHOTTING: "copying the disk",
    jobs.PENDING_UPLOAD: "packaging",
    jobs.UPLOADING: "uploading",
    jobs.SUCCEEDED: "done",
    jobs.FAILED: "failed",
    jobs.CANCELLED: "cancelled",
}


def state_label(job: Job) -> str:
    """The card's state line (mrkdwn, with its emoji). A scheduled run asked nobody to stop
    writes, so its copy is "the copy window", not "keep writes stopped"."""
    if job.state == jobs.SNAPSHOTTING and job.schedule_id:
        return ":camera: copying the disk (the copy window)"
    return _STATE_LABEL.get(job.state, escape(job.state))


def state_words(job: Job) -> str:
    """The job's state in plain words; a failure with its cause (`failed: server not found`)."""
    words = STATE_WORDS.get(job.state, job.state.replace("_", " "))
    if job.state == jobs.FAILED and job.error_code:
        words += ": " + FAILURE_WORDS.get(job.error_code, job.error_code.replace("_", " "))
    return words

# --- jobs ----------------------------------------------------------------------------------


def quiesce_window(job: Job) -> tuple[datetime, datetime | None] | None:
    """(start, end or None while it runs) of the disk copy during which writes must be stopped.

    It starts when the cloud was asked for the image (`submitted_at`: from then on the disk may
    be read; the "copying" reply is about this state) and ends when the end of the copy was
    observed (`snapshot_ended_at`). The card and the "writes may resume" reply both use it, so
    they agree with each other. `snapshot_started_at` is only when createImage returned.
    """
    start = job.submitted_at or job.snapshot_started_at
    if start is None or job.snapshot_started_at is None:
        return None
    return start, job.snapshot_ended_at


def span(delta: timedelta) -> str:
    """A phase's length; under a second is said so (a sub-second copy is not "0 s")."""
    return "under 1 s" if timedelta(0) < delta < timedelta(seconds=1) else human_duration(delta)


def _phase_times(job: Job, now: datetime) -> list[tuple[str, timedelta, bool]]:
    """(label, duration, running) for each phase the job has entered so far."""
    end = job.finished_at or now
    running = job.state not in jobs.TERMINAL
    out: list[tuple[str, timedelta, bool]] = []
    if job.confirmed_at and job.confirmed_at > job.created_at:
        out.append(("waiting for confirmation", job.confirmed_at - job.created_at, False))
    elif job.state == jobs.AWAITING_CONFIRMATION:
        out.append(("waiting for confirmation", now - job.created_at, True))
    window = quiesce_window(job)
    if window is not None:
        start, stop = window
        out.append(("disk copy (quiesce window)", (stop or end) - start,
                    running and stop is None))
    if job.snapshot_ended_at and (job.upload_started_at is None
                                  or job.upload_started_at > job.snapshot_ended_at):
        stop = job.upload_started_at or end
        if job.upload_started_at or job.state == jobs.PENDING_UPLOAD:
            out.append(("packaging", stop - job.snapshot_ended_at,
                        running and job.upload_started_at is None))
    if job.upload_started_at:
        out.append(("upload", end - job.upload_started_at, running))
    started = job.submitted_at or job.snapshot_started_at
    if started and len(out) > 1:
        out.append(("total", end - started, running))
    return out


def _facts(job: Job) -> list[str]:
    lines = [FACT_NO_MEMORY]
    if job.data_disks:
        disks = ", ".join(user_text(d) for d in job.data_disks)
        lines.append(f"Data disks are not included: {disks}")
    if job.volume_backed:
        lines.append(FACT_VOLUME)
    lines.append(FACT_NOT_BACKUP)
    return lines


def _headline(job: Job) -> str:
    return f"Image of {code(job.server_label)} · job {job.id}"


def parent_message(job: Job, now: datetime) -> dict[str, Any]:
    """The thread parent for a job: who, what, state, phase times, facts, and (while awaiting
    confirmation) the quiesce checklist with Start snapshot / Cancel buttons."""
    if job.schedule_id:
        who = user_text(scheduled_line(job))
    else:
        who = f"Requested by {user(job.requested_by)}"
        if job.confirmed_by and job.confirmed_by != job.requested_by:
            who += f" · started by {user(job.confirmed_by)}"
    head_lines = [f"*{_headline(job)}*", who]
    if job.server_id and job.server_name and job.server_id != job.server_ref:
        head_lines.append(f"Server id {code(job.server_id)}")
    if job.image_name:
        head_lines.append(f"Image name {code(job.image_name)}")
    blocks: list[dict[str, Any]] = [section("\n".join(head_lines))]

    state_line = f"*State:* {state_label(job)}"
    phases = _phase_times(job, now)
    if phases:
        state_line += "\n" + " · ".join(
            f"{label} {span(d)}{' (running)' if live else ''}"
            for label, d, live in phases)
    blocks.append(section(state_line))
    if job.state in jobs.TERMINAL:
        blocks.append(section(_outcome_line(job, now)))
    if job.note and not job.schedule_id:  # a scheduled run's note is its "who" line
        blocks.append(section("*Note:* " + user_text(job.note)))
    blocks.append(context("\n".join(_facts(job))))
    if job.state == jobs.AWAITING_CONFIRMATION:
        blocks.append(section(QUIESCE_CHECKLIST))
        blocks.append({
            "type": "actions",
            "block_id": f"job_actions:{job.id}",
            "elements": [
                button("Start snapshot", START_ACTION, job.id, "primary"),
                button("Cancel", CANCEL_ACTION, job.id, "danger"),
            ],
        })
    by = (f"scheduled run of {user_text(job.schedule_id)}" if job.schedule_id
          else f"requested by {user(job.requested_by)}")
    text = f"{_headline(job)}: {state_words(job)} ({by})"
    return payload(text, blocks)


def scheduled_line(job: Job) -> str:
    """"Scheduled run of S1 (daily at 03:00 Europe/Berlin) for …" (plain text): the run's note,
    which the scheduler writes, else just the schedule's id."""
    if job.note and job.note.startswith("Scheduled run of "):
        return job.note
    return f"Scheduled run of {job.schedule_id}"


_PHASE_REPLIES = {
    "phase:snapshotting": ":camera: Copying the disk now — keep writes stopped.",
    "phase:pending_upload": ":package: Packaging the image (pending upload).",
    "phase:uploading": (":arrow_up: Uploading the image. This is usually the longest part; "
                        "I will post here when it is done."),
}


def _at(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%H:%M:%S} UTC"


def _window_words(job: Job) -> str:
    """"lasted 35 s (from 03:00:05 to 03:00:40 UTC)": the measured quiesce window."""
    window = quiesce_window(job)
    if window is None:
        return ""
    start, end = window
    if end is None:
        return ""
    return (f"lasted {span(end - start)} (from the image request at "
            f"{_at(start)} until the copy was seen done at {_at(end)})")


def phase_reply(job: Job, event: str, now: datetime) -> dict[str, Any] | None:
    """The thread reply for one engine event, or None when the event needs no reply
    (outcomes are covered by `final_reply`).

    A scheduled run asked nobody to stop writes, so its thread says when the copy window starts
    and ends instead (for apps that quiesce themselves: cron, hooks)."""
    if event == "writes_may_resume":
        lasted = _window_words(job)
        if job.schedule_id:
            text = ":unlock: The copy window is over: the disk is copied."
            if lasted:
                text += f" It {lasted}."
        else:
            text = ":unlock: The disk is copied. Writes may resume now."
            if lasted:
                text += f" The quiesce window {lasted}."
        return payload(text, [section(text)])
    if event == "phase:snapshotting" and job.schedule_id:
        window = quiesce_window(job)
        began = f" at {_at(window[0])}" if window else ""
        text = (f":camera: The copy window began{began}: the cloud is copying the disk now. I "
                "will post here when it ends; apps that stop their own writes (cron, hooks) "
                "should stay stopped until then.")
        return payload(text, [section(text)])
    reply = _PHASE_REPLIES.get(event)
    if reply is None:
        return None
    return payload(reply, [section(reply)])


# Each failure cause once, in plain words, then the next step; `{task}`, `{server}` and
# `{detail}` (the cloud's own words, only where they are the cause) are filled in, escaped.
_FAILURE_TEXT: Mapping[str, str] = {
    FailureCode.BUSY: ("The server was busy (task state {task}), so the cloud refused a new "
                       "image. Try again when its current task is done."),
    FailureCode.KILLED: ("The upload failed: the cloud marked the image `killed`. Try again; if "
                         "it repeats, check the cloud's image service."),
    FailureCode.VANISHED: ("The image vanished: it was deleted before it finished. Try again, "
                           "and check that nothing else deletes this server's images."),
    FailureCode.STUCK: ("I gave up: the image was stuck in task state {task} past the deadline. "
                        "Check the server in the cloud's console, then try again."),
    FailureCode.DENIED: ("Permission denied: {detail}. Ask the cloud's admin for the right to "
                         "image this server, then try again."),
    FailureCode.UNREACHABLE: ("The cloud was unreachable after several retries. Check the "
                              "cloud's status page, then try again."),
    FailureCode.NOT_FOUND: ("Server {server} was not found{hint}. Check the name, or give the "
                            "server's UUID."),
    FailureCode.AMBIGUOUS: ("Several servers are named {server}{hint}. Give the UUID of the "
                            "one you mean instead."),
    FailureCode.DUPLICATE: ("Another job of mine is already imaging this server, so I did not "
                            "start this one. Try again when that job is done."),
    FailureCode.ORPHANED: ("The image was orphaned: the server stopped working on it and it "
                           "never finished (the compute service probably restarted). Try "
                           "again."),
    FailureCode.REJECTED: ("The cloud rejected the request: {detail}. Fix what it says, then "
                           "try again."),
}
_NO_DETAIL = {FailureCode.DENIED: "the cloud refused to let me do this",
              FailureCode.REJECTED: "it gave no reason"}
_DETAIL_LIMIT = 300
# The facts a server lookup's error adds to its cause (bot.errors.NotFound / Ambiguous word
# them so): the names it could have meant, the ids that share the name.
_HINTS = {FailureCode.NOT_FOUND: re.compile(r"\((did you mean [^()]*\?)\)"),
          FailureCode.AMBIGUOUS: re.compile(r" are named .*?: (.+?)\. Use the id")}

# `/image list`: a failed job in a few words.
FAILURE_WORDS: Mapping[str, str] = {
    FailureCode.BUSY: "busy",
    FailureCode.KILLED: "upload failed",
    FailureCode.VANISHED: "image vanished",
    FailureCode.STUCK: "stuck",
    FailureCode.DENIED: "permission denied",
    FailureCode.UNREACHABLE: "cloud unreachable",
    FailureCode.NOT_FOUND: "server not found",
    FailureCode.AMBIGUOUS: "several servers match",
    FailureCode.DUPLICATE: "already being imaged",
    FailureCode.ORPHANED: "image orphaned",
    FailureCode.REJECTED: "rejected by the cloud",
}


def failure_text(job: Job) -> str:
    """The cause of a failed job, said once, and what to do next (escaped mrkdwn, one line)."""
    code_ = FailureCode(job.error_code) if job.error_code in set(FailureCode) else \
        FailureCode.REJECTED
    task = user_text(job.task_state or "unknown", mrkdwn=False)
    raw = (job.error or "").strip().rstrip(".")
    if code_ == FailureCode.DUPLICATE and raw:  # `busy_here`: which job, its phase, what to do
        return user_text(truncate(raw, _DETAIL_LIMIT)) + "."
    detail = user_text(truncate(raw, _DETAIL_LIMIT)) if raw else _NO_DETAIL.get(code_, "")
    found = _HINTS[code_].search(raw) if code_ in _HINTS else None
    hint = f" ({user_text(truncate(found.group(1), _DETAIL_LIMIT))})" if found else ""
    return _FAILURE_TEXT[code_].format(task=task, server=code(job.server_ref), detail=detail,
                                       hint=hint)


def _took(job: Job, now: datetime) -> timedelta:
    start = job.submitted_at or job.confirmed_at or job.created_at
    return (job.finished_at or now) - start


def _outcome_line(job: Job, now: datetime) -> str:
    if job.state == jobs.SUCCEEDED:
        size = human_size(job.image_size)
        if job.volume_backed and not job.image_size:
            size += " (volume-backed: the data is in volume snapshots)"
        parts = [f":white_check_mark: Image {code(job.image_name or '?')} is ready",
                 f"id {code(job.image_id or '?')}", size, f"took {human_duration(_took(job, now))}"]
        return " · ".join(parts)
    if job.state == jobs.CANCELLED:
        return ":no_entry_sign: " + cancelled_line(job)
    text = ":x: " + failure_text(job)
    if job.snapshot_started_at and job.snapshot_ended_at is None:
        text += ("\nIf an app stopped its writes for this run, it can resume them now."
                 if job.schedule_id else
                 "\nIf you stopped writes for this image, you can resume them now.")
    return text


def cancelled_line(job: Job) -> str:
    """Who cancelled and when in the job's life (a job is cancelled only before the cloud
    was asked for anything: while waiting for Start snapshot, or queued after it)."""
    who = f" by {user(job.cancelled_by)}" if job.cancelled_by else ""
    if job.confirmed_at is not None and job.confirmed_by != job.cancelled_by:
        started = f", after {user(job.confirmed_by)} pressed Start," if job.confirmed_by else ""
        return f"Cancelled{who}{started} before anything was sent to the cloud."
    return f"Cancelled{who} before anything was sent to the cloud."


def final_reply(job: Job, now: datetime) -> dict[str, Any]:
    """The last thread reply: ✅ name, id, size, time taken; or ❌ with the cause."""
    line = _outcome_line(job, now)
    text = f"Job {job.id} ({user_text(job.server_label)}): " + line
    return payload(text, [section(line)])


def already_decided(job: Job) -> str:
    """Ephemeral answer for a late click on Start snapshot / Cancel."""
    if job.state == jobs.CANCELLED:
        return f"Job {job.id} was already cancelled."
    if job.confirmed_by:
        return f"Job {job.id} was already started by {user(job.confirmed_by)}."
    return f"Job {job.id} is already {state_words(job)}."


# --- ephemeral answers ------------------------------------------------------------------------

def busy_here(running: Job, now: datetime, *, server: str, channel: str) -> str:
    """Why a new create for `server` is refused: `running` (in flight) is imaging it already.
    Plain text (escape it for mrkdwn). The job is named only to its own channel; elsewhere it is
    "another job" (channels see only their own jobs)."""
    phase = STATE_WORDS.get(running.state, running.state.replace("_", " "))
    since = running.submitted_at or running.confirmed_at or running.created_at
    who = running.id if running.channel == channel else "another job (in another channel)"
    return (f"{server} is being imaged by {who} ({phase}, {human_duration(now - since)} "
            "in). A server takes one image at a time: try again when it is done.")


def private_failure(job: Job) -> dict[str, Any]:
    """The requester's private answer for a job that failed before its card was posted (the
    server was not found, ambiguous, already being imaged, ...): nothing went to the channel."""
    line = f":warning: Job {job.id} did not start. " + failure_text(job)
    line += "\nNothing was posted in the channel."
    return payload(line, [section(line)])


NOT_A_MEMBER = ("I am not a member of this channel, so I cannot keep a thread here. Invite me "
                "with `/invite @imagebot` to get live updates; I will send the final result "
                "here.")


def fallback_card(job: Job, now: datetime) -> dict[str, Any]:
    """The job's card for a channel the bot is not in, sent through the response_url: the same
    blocks (Start snapshot / Cancel while awaiting confirmation) plus how to invite the bot."""
    message = parent_message(job, now)
    blocks = list(message.get("blocks") or [])[: BLOCK_LIMIT - 1] + [context(NOT_A_MEMBER)]
    return payload(message["text"] + "\n" + NOT_A_MEMBER, blocks)


def job_status_text(job: Job, now: datetime) -> str:
    """`/image status` for one job: one short mrkdwn paragraph."""
    by = (user_text(scheduled_line(job)) if job.schedule_id
          else f"Requested by {user(job.requested_by)}")
    lines = [f"*{_headline(job)}*: {state_label(job)}",
             f"{by} · {human_duration(now - job.created_at)} ago"]
    phases = _phase_times(job, now)
    if phases:
        lines.append(" · ".join(f"{label} {span(d)}" for label, d, _ in phases))
    if job.state in jobs.TERMINAL:
        lines.append(_outcome_line(job, now))
    elif job.task_state:
        lines.append(f"Cloud task state {code(job.task_state)}")
    return truncate("\n".join(lines), SECTION_LIMIT)


def _table(lines: Iterable[str], empty: str) -> str:
    out: list[str] = []
    used = 0
    rows = list(lines)
    for index, line in enumerate(rows):
        if used + len(line) + 1 > SECTION_LIMIT - 40:
            out.append(f"… and {len(rows) - index} more")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out) if out else empty


def jobs_table(jobs_: Sequence[Job], now: datetime) -> str:
    """`/image list`: one line per job, newest first as given."""
    def line(job: Job) -> str:
        age = human_duration(now - job.created_at)
        extra = ""
        if job.state == jobs.SUCCEEDED and job.image_name:
            extra = f" → {code(job.image_name)}"
        by = (f"schedule {user_text(job.schedule_id)}" if job.schedule_id
              else user(job.requested_by))
        return (f"`{job.id}` {escape(state_words(job))}{extra} · {code(job.server_label)}"
                f" · {by} · {age} ago")
    return _table((line(j) for j in jobs_), "No jobs.")


def images_table(server_name: str, images: Sequence[Image]) -> str:
    """`/image images <server>`: the server's images, newest first."""
    ordered = sorted(images, key=lambda i: i.created_at, reverse=True)
    head = f"*Images of {code(server_name)}* ({len(ordered)})"
    if not ordered:
        return f"{head}\nNo images."
    rows = (f"{code(i.name)} · {user_text(i.status)} · {human_size(i.size)} · "
            f"{user_text(i.created_at or '?')} · id {code(i.id)}"
            f"{' · :lock: protected' if i.protected else ''}" for i in ordered)
    return head + "\n" + _table(rows, "")


def help_payload(text: str) -> dict[str, Any]:
    """Help text as sections of at most 3000 chars each (split on lines)."""
    chunks: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = truncate(raw, SECTION_LIMIT)
        if current and len(current) + 1 + len(line) > SECTION_LIMIT:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return payload(text, [section(c) for c in chunks[:BLOCK_LIMIT]])
