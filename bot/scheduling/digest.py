"""What a fleet run says in Slack: one digest card in the notification channel, rewritten as
the members go, with its thread replies (one combined "writes may resume" per tick, the final
summary), and the fleet part of an approval message. Pure: rendering only.

Everything here is rendered from committed rows (the members, their jobs, the fleet run), so a
rewrite after a restart shows the same card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.blocks import code, context, payload, plural, section, user_text
from bot.imaging.jobs import Job
from bot.scheduling.messages import MAX_LISTED_IMAGES, alert
from bot.scheduling.retention import RetainableImage
from bot.store import FleetMember, FleetRun
from bot.vocabulary import JobState, RunResult

MAX_LISTED_SERVERS = 40  # a section holds 3000 characters; the rest are counted

_PHASES: Mapping[str, str] = {
    JobState.QUEUED: ":white_circle: queued",
    JobState.SUBMITTING: ":large_blue_circle: starting",
    JobState.SNAPSHOTTING: ":camera: copying the disk (hold writes)",
    JobState.PENDING_UPLOAD: ":arrow_up: uploading (writes may resume)",
    JobState.UPLOADING: ":arrow_up: uploading (writes may resume)",
}


def member_phase(member: FleetMember, job: Job | None) -> str:
    """One server's line on the digest card."""
    if member.result == RunResult.SUCCEEDED:
        name = job.image_name if job is not None and job.image_name else "image"
        deleted = f", retention deleted {member.deleted}" if member.deleted else ""
        return f":white_check_mark: ready: {code(name)}{deleted}"
    if member.result == RunResult.FAILED:
        return f":x: failed: {user_text(member.detail or 'failed')}"
    if member.result == RunResult.RETRY_WAIT:
        at = member.next_attempt_at
        return ":hourglass_flowing_sand: server busy, retrying" + (
            f" at {at:%H:%M} UTC" if at is not None else "")
    if job is None:
        return ":white_circle: queued"
    if job.state == JobState.SUCCEEDED:
        return ":broom: image ready, retention next"
    return _PHASES.get(job.state, str(job.state))


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(code(n) for n in names[:MAX_LISTED_SERVERS])
    more = len(names) - MAX_LISTED_SERVERS
    return shown + (f" and {more} more" if more > 0 else "")


def digest_card(schedule_id: str, target: str, slot: datetime, fleet: FleetRun,
                members: Sequence[FleetMember], job_of: Mapping[str, Job]) -> dict[str, Any]:
    """The one card of a fleet run: per server its phase, and who was skipped or dropped."""
    ready = sum(1 for m in members if m.result == RunResult.SUCCEEDED)
    head = (f"*Scheduled images {schedule_id} of {code(target)}* for {slot:%Y-%m-%d %H:%M} UTC: "
            f"{ready} of {plural(len(members), 'server')} ready")
    lines = [f"• {code(m.server_name)}: {member_phase(m, job_of.get(m.job_id or ''))}"
             for m in members[:MAX_LISTED_SERVERS]]
    if len(members) > MAX_LISTED_SERVERS:
        lines.append(f"• … and {len(members) - MAX_LISTED_SERVERS} more")
    if not members:
        lines.append("The target matches no server this channel may image today.")
    blocks = [section(head), section("\n".join(lines))]
    notes = _notes(fleet)
    if notes:
        blocks.append(context(notes))
    text = f"Scheduled images {schedule_id} of {user_text(target)}: {ready} of {len(members)} ready"
    return payload(text, blocks)


def _notes(fleet: FleetRun) -> str:
    notes: list[str] = []
    if fleet.dropped:
        notes.append(f"Dropped since the last run (no longer matched, or gone): "
                     f"{_names(fleet.dropped)}.")
    if fleet.skipped:
        notes.append(f"Skipped: the channel policy may not image {_names(fleet.skipped)}.")
    return " ".join(notes)


def card_text(card: Mapping[str, Any]) -> str:
    """What identifies a rendering of the card (rewritten only when it changes)."""
    return repr((card.get("text"), card.get("blocks")))


def resume_reply(thread_key: str, names: Sequence[str]) -> dict[str, Any]:
    """One thread reply for all servers whose disk copy ended since the last tick."""
    text = (f":arrow_forward: Writes may resume on {_names(names)}: the disk copy is done "
            "(the upload goes on).")
    return payload(text, [section(text)]) | {"thread_of": thread_key}


def summary_reply(thread_key: str, members: Sequence[FleetMember], fleet: FleetRun,
                  retried: int, mention: str | None) -> dict[str, Any]:
    """The final reply: "12 of 12 images ready, 1 retried", failures named (with the policy's
    ping only when something failed)."""
    ready = [m for m in members if m.result == RunResult.SUCCEEDED]
    failed = [m for m in members if m.result == RunResult.FAILED]
    text = f"{len(ready)} of {plural(len(members), 'image')} ready"
    if retried:
        text += f", {retried} retried"
    deleted = sum(m.deleted for m in members)
    if deleted:
        text += f"; retention deleted {plural(deleted, 'old image')}"
    lines = [text + "."]
    lines += [f"• {code(m.server_name)} failed: {user_text(m.detail or 'failed')}"
              for m in failed[:MAX_LISTED_SERVERS]]
    notes = _notes(fleet)
    if notes:
        lines.append(notes)
    body = "\n".join(lines)
    if failed:
        message = alert(body, mention)
    else:
        body = f":white_check_mark: {body}"
        message = payload(body, [section(body)])
    return message | {"thread_of": thread_key}


def approval_blocks(matched: Sequence[str], skipped: Sequence[str],
                    doomed: Mapping[str, Sequence[RetainableImage]],
                    protected: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The fleet part of an approval message: the servers the target matches today and, per
    server, what retention would delete at the next run (protected images are kept)."""
    blocks = [section(f"*Matches today ({len(matched)}):* "
                      + (_names(matched) if matched else "no server"))]
    if skipped:
        blocks.append(context(f"The channel policy may not image {_names(skipped)}; they "
                              "would be skipped."))
    lines = []
    for name in matched[:MAX_LISTED_SERVERS]:
        gone = doomed.get(name, ())
        if gone:
            listed = ", ".join(code(i.name or i.id) for i in gone[:MAX_LISTED_IMAGES])
            extra = len(gone) - MAX_LISTED_IMAGES
            lines.append(f"• {code(name)}: would delete {listed}"
                         + (f" and {extra} more" if extra > 0 else ""))
        kept = protected.get(name, ())
        if kept:
            lines.append(f"• {code(name)}: keeps protected "
                         + ", ".join(code(n) for n in kept[:MAX_LISTED_IMAGES]))
    if lines:
        blocks.append(section("*Retention at the next run:*\n" + "\n".join(lines)))
    else:
        blocks.append(context("Retention at the next run would delete nothing. Images the bot "
                              "did not make and protected images are never deleted."))
    return blocks
