"""Slack message rendering: pure functions from jobs (and a clock reading) to payloads.

Every payload is `{"text": fallback, "blocks": [...]}` within Block Kit limits: section text
<= 3000 chars, <= 50 blocks, button text <= 75, and `text` <= 4000 so `chat.update` accepts it.
User-supplied text (server names, notes, image names, reasons, cloud messages) always goes
through `user_text` (or `code`, which uses it): it cannot mention anyone, format itself, start
a quote, add a line, or reorder what follows it with bidi controls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
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
from bot.imaging.verify import Verification
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

# --- jobs ----------------------------------------------------------------------------------


def _phase_times(job: Job, now: datetime) -> list[tuple[str, timedelta, bool]]:
    """(label, duration, running) for each phase the job has entered so far."""
    end = job.finished_at or now
    running = job.state not in jobs.TERMINAL
    out: list[tuple[str, timedelta, bool]] = []
    if job.confirmed_at and job.confirmed_at > job.created_at:
        out.append(("waiting for confirmation", job.confirmed_at - job.created_at, False))
    elif job.state == jobs.AWAITING_CONFIRMATION:
        out.append(("waiting for confirmation", now - job.created_at, True))
    if job.snapshot_started_at:
        stop = job.snapshot_ended_at or end
        out.append(("disk copy (quiesce window)", stop - job.snapshot_started_at,
                    running and job.snapshot_ended_at is None))
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
    who = f"Requested by {user(job.requested_by)}"
    if job.confirmed_by and job.confirmed_by != job.requested_by:
        who += f" · started by {user(job.confirmed_by)}"
    if job.schedule_id:
        who += f" · schedule {user_text(job.schedule_id)}"
    head_lines = [f"*{_headline(job)}*", who]
    if job.server_id and job.server_name and job.server_id != job.server_ref:
        head_lines.append(f"Server id {code(job.server_id)}")
    if job.image_name:
        head_lines.append(f"Image name {code(job.image_name)}")
    blocks: list[dict[str, Any]] = [section("\n".join(head_lines))]

    state_line = f"*State:* {_STATE_LABEL.get(job.state, escape(job.state))}"
    phases = _phase_times(job, now)
    if phases:
        state_line += "\n" + " · ".join(
            f"{label} {human_duration(d)}{' (running)' if live else ''}"
            for label, d, live in phases)
    blocks.append(section(state_line))
    if job.state in jobs.TERMINAL:
        blocks.append(section(_outcome_line(job, now)))
    if job.note:
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
    text = f"{_headline(job)}: {job.state.replace('_', ' ')} (requested by {user(job.requested_by)})"
    return payload(text, blocks)


_PHASE_REPLIES = {
    "phase:snapshotting": ":camera: Copying the disk now — keep writes stopped.",
    "phase:pending_upload": ":package: Packaging the image (pending upload).",
    "phase:uploading": (":arrow_up: Uploading the image. This is usually the longest part; "
                        "I will post here when it is done."),
}


def phase_reply(job: Job, event: str, now: datetime) -> dict[str, Any] | None:
    """The thread reply for one engine event, or None when the event needs no reply
    (outcomes are covered by `final_reply`)."""
    if event == "writes_may_resume":
        text = ":unlock: The disk is copied. Writes may resume now."
        if job.snapshot_started_at and job.snapshot_ended_at:
            window = job.snapshot_ended_at - job.snapshot_started_at
            text += f" The quiesce window lasted {human_duration(window)}."
        return payload(text, [section(text)])
    reply = _PHASE_REPLIES.get(event)
    if reply is None:
        return None
    return payload(reply, [section(reply)])


# Each failure cause in plain words; `{task}` and `{server}` are filled in (already escaped).
_FAILURE_TEXT: Mapping[str, str] = {
    FailureCode.BUSY: ("The server was busy (task state {task}), so the cloud refused a new "
                       "image. Try again when its current task is done."),
    FailureCode.KILLED: "The upload failed: the cloud marked the image `killed`.",
    FailureCode.VANISHED: "The image vanished: it was deleted or is gone (404) before it finished.",
    FailureCode.STUCK: "I gave up: the image was stuck in task state {task} past the deadline.",
    FailureCode.DENIED: "Permission denied: the cloud refused to let me do this.",
    FailureCode.UNREACHABLE: "The cloud was unreachable after several retries.",
    FailureCode.NOT_FOUND: "Server {server} was not found.",
    FailureCode.AMBIGUOUS: "Several servers match {server}; use the server id instead.",
    FailureCode.DUPLICATE: ("Another job of mine is already imaging this server, so I did not "
                            "start this one."),
    FailureCode.ORPHANED: ("The image was orphaned: the server stopped working on it but it "
                           "never finished (the compute service probably restarted)."),
    FailureCode.REJECTED: "The cloud rejected the request.",
}


def failure_text(job: Job) -> str:
    """The cause of a failed job in plain words (escaped mrkdwn)."""
    task = user_text(job.task_state or "unknown", mrkdwn=False)
    detail = user_text(job.error) if job.error else ""
    template = _FAILURE_TEXT.get(job.error_code or "", _FAILURE_TEXT[FailureCode.REJECTED])
    text = template.format(task=task, server=code(job.server_ref))
    if detail and detail not in text:
        text += f"\n> {detail}"
    return text


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
        text += "\nIf you stopped writes for this image, you can resume them now."
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
    return f"Job {job.id} is already {job.state.replace('_', ' ')}."


# --- ephemeral answers ------------------------------------------------------------------------

_PHASE_WORDS = {
    jobs.QUEUED: "queued",
    jobs.SUBMITTING: "starting",
    jobs.SNAPSHOTTING: "copying the disk",
    jobs.PENDING_UPLOAD: "packaging",
    jobs.UPLOADING: "uploading",
}


def busy_here(running: Job, now: datetime, *, server: str, channel: str) -> str:
    """Why a new create for `server` is refused: `running` (in flight) is imaging it already.
    Plain text (escape it for mrkdwn). The job is named only to its own channel; elsewhere it is
    "another job" (channels see only their own jobs)."""
    phase = _PHASE_WORDS.get(running.state, running.state.replace("_", " "))
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
    lines = [f"*{_headline(job)}*: {_STATE_LABEL.get(job.state, escape(job.state))}",
             f"Requested by {user(job.requested_by)} {human_duration(now - job.created_at)} ago"]
    phases = _phase_times(job, now)
    if phases:
        lines.append(" · ".join(f"{label} {human_duration(d)}" for label, d, _ in phases))
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
        if job.state == jobs.FAILED and job.error_code:
            extra = f" ({user_text(job.error_code)})"
        elif job.state == jobs.SUCCEEDED and job.image_name:
            extra = f" → {code(job.image_name)}"
        return (f"`{job.id}` {job.state.replace('_', ' ')}{extra} · {code(job.server_label)}"
                f" · {user(job.requested_by)} · {age} ago")
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


# --- restore tests (bot.imaging.verify) -----------------------------------------------------


def _verify_subject(v: Verification) -> str:
    return f"{code(v.image_name or v.image_ref)} ({v.id})"


def verify_started(v: Verification) -> dict[str, Any]:
    """Said when the throw-away server is asked for."""
    where = f", networks {', '.join(code(n) for n in v.networks)}" if v.networks else ""
    wait = f", then wait for {code(v.console_marker)} in its console log" \
        if v.console_marker else ""
    text = (f":test_tube: Restore test of image {_verify_subject(v)}: booting "
            f"{code(v.server_name or '?')} (flavor {code(v.flavor or '?')}{where}){wait}. "
            "It is deleted afterwards.")
    return payload(text, [section(text)])


def verify_result(v: Verification) -> dict[str, Any]:
    """The verdict: booted in N s, console marker seen or not, deleted."""
    passed = v.outcome == "passed"
    parts: list[str] = []
    if v.boot_seconds is not None:
        parts.append(f"booted in {human_duration(v.boot_seconds)}")
    if v.console_marker:
        parts.append({True: f"console showed {code(v.console_marker)}",
                      False: f"{code(v.console_marker)} never appeared in the console",
                      None: "console not available on this cloud"}[v.console_seen]
                     if v.active_at is not None else "console not checked")
    if v.deleted_at is not None:
        parts.append(f"test server {code(v.server_name or '?')} deleted")
    elif v.server_id is not None:
        parts.append(f"test server {code(v.server_name or '?')} *not deleted yet*")
    head = (":white_check_mark: Restore test passed" if passed
            else ":x: Restore test failed")
    text = f"{head} for image {_verify_subject(v)}"
    if parts:
        text += ": " + ", ".join(parts) + "."
    if v.error:
        text += "\n" + user_text(v.error)
    return payload(text, [section(text)])


def verify_status(v: Verification) -> str:
    """One line for a verification (the answer to the command, and `status`)."""
    return (f"Verification {v.id} of image {code(v.image_name or v.image_ref)}: "
            f"{v.state}")
