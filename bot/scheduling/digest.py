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

from bot.blocks import code, context, human_duration, payload, plural, section, user_text
from bot.imaging.jobs import Job
from bot.imaging.verify import TERMINAL, Verification, ended
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


def verify_text(v: Verification | None) -> str:
    """A member's restore test (`--verify`) as the digest says it: running, booted in N s, or
    failed and why."""
    if v is None:
        return "restore test queued"
    if v.state not in TERMINAL:
        return "restore test running"
    if v.outcome == "passed":
        took = v.boot_seconds
        return "verified: booted" + (f" in {human_duration(took)}" if took is not None else "")
    return f"restore test failed: {user_text(v.error or 'the server did not boot')}"


def verify_failed(v: Verification | None) -> bool:
    """True when a member's restore test ended and the image did not pass it."""
    return v is not None and v.state in TERMINAL and v.outcome != "passed"


def member_phase(member: FleetMember, job: Job | None, v: Verification | None = None,
                 verify: bool = False) -> str:
    """One server's line on the digest card (with its restore test when `verify`)."""
    if member.result == RunResult.SUCCEEDED:
        name = job.image_name if job is not None and job.image_name else "image"
        deleted = f", retention deleted {member.deleted}" if member.deleted else ""
        if verify and verify_failed(v):
            return f":x: {code(name)} made, {verify_text(v)}{deleted}"
        checked = f", {verify_text(v)}" if verify else ""
        return f":white_check_mark: ready: {code(name)}{checked}{deleted}"
    if member.result == RunResult.FAILED:
        return f":x: failed: {user_text(member.detail or 'failed')}"
    if member.result == RunResult.RETRY_WAIT:
        at = member.next_attempt_at
        return ":hourglass_flowing_sand: server busy, retrying" + (
            f" at {at:%H:%M} UTC" if at is not None else "")
    if job is None:
        return ":white_circle: queued"
    if job.state == JobState.SUCCEEDED:
        if verify and not ended(v):
            return f":test_tube: image ready, {verify_text(v)}"
        return ":broom: image ready, retention next"
    return _PHASES.get(job.state, str(job.state))


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(code(n) for n in names[:MAX_LISTED_SERVERS])
    more = len(names) - MAX_LISTED_SERVERS
    return shown + (f" and {more} more" if more > 0 else "")


def verify_counts(members: Sequence[FleetMember],
                  verify_of: Mapping[str, Verification]) -> tuple[int, int]:
    """(members whose image passed its restore test, members whose image failed it)."""
    found = [verify_of.get(m.job_id or "") for m in members
             if m.result == RunResult.SUCCEEDED]
    return (sum(1 for v in found if v is not None and v.outcome == "passed"
                and v.state in TERMINAL),
            sum(1 for v in found if verify_failed(v)))


def _verified(members: Sequence[FleetMember], verify_of: Mapping[str, Verification]) -> str:
    passed, failed = verify_counts(members, verify_of)
    return f", {passed} verified" + (f", {failed} failed verify" if failed else "")


def digest_card(schedule_id: str, target: str, slot: datetime, fleet: FleetRun,
                members: Sequence[FleetMember], job_of: Mapping[str, Job],
                verify_of: Mapping[str, Verification] | None = None) -> dict[str, Any]:
    """The one card of a fleet run: per server its phase (and, for a `--verify` schedule,
    `verify_of` given, its restore test), and who was skipped or dropped."""
    ready = sum(1 for m in members if m.result == RunResult.SUCCEEDED)
    checks = verify_of or {}
    head = (f"*Scheduled images {schedule_id} of {code(target)}* for {slot:%Y-%m-%d %H:%M} UTC: "
            f"{ready} of {plural(len(members), 'server')} ready"
            + (_verified(members, checks) if verify_of is not None else ""))
    lines = [f"• {code(m.server_name)}: " + member_phase(
                 m, job_of.get(m.job_id or ""), checks.get(m.job_id or ""), verify_of is not None)
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


def summary_text(members: Sequence[FleetMember], retried: int,
                 verify_of: Mapping[str, Verification] | None = None) -> str:
    """"12 of 12 images ready, 1 retried" (", 11 verified, 1 failed verify" with `--verify`)."""
    ready = sum(1 for m in members if m.result == RunResult.SUCCEEDED)
    text = f"{ready} of {plural(len(members), 'image')} ready"
    if retried:
        text += f", {retried} retried"
    if verify_of is not None:
        text += _verified(members, verify_of)
    return text


def run_failed(members: Sequence[FleetMember],
               verify_of: Mapping[str, Verification] | None = None) -> list[FleetMember]:
    """The members that make the run a failed one: no image, or (`--verify`) an image that
    failed its restore test."""
    checks = verify_of or {}
    return [m for m in members if m.result == RunResult.FAILED
            or (verify_of is not None and verify_failed(checks.get(m.job_id or "")))]


def summary_reply(thread_key: str, members: Sequence[FleetMember], fleet: FleetRun,
                  retried: int, mention: str | None,
                  verify_of: Mapping[str, Verification] | None = None) -> dict[str, Any]:
    """The final reply: "12 of 12 images ready, 1 retried" (with `--verify`, `verify_of`
    given: ", 11 verified, 1 failed verify"), failures named (with the policy's ping only
    when something failed; a failed restore test is a failure)."""
    failed = run_failed(members, verify_of)
    checks = verify_of or {}
    text = summary_text(members, retried, verify_of)
    deleted = sum(m.deleted for m in members)
    if deleted:
        text += f"; retention deleted {plural(deleted, 'old image')}"
    lines = [text + "."]
    lines += [f"• {code(m.server_name)} failed: {user_text(m.detail or 'failed')}"
              if m.result == RunResult.FAILED else
              f"• {code(m.server_name)}: {verify_text(checks.get(m.job_id or ''))}"
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
                    protected: Mapping[str, Sequence[str]], *,
                    retention: bool = True) -> list[dict[str, Any]]:
    """The fleet part of an approval message: the servers the target matches today and, per
    server, what retention would delete at the next run (protected images are kept); without
    `retention` (an operation that makes no image) the servers only."""
    blocks = [section(f"*Matches today ({len(matched)}):* "
                      + (_names(matched) if matched else "no server"))]
    if skipped:
        blocks.append(context(f"The channel policy may not image {_names(skipped)}; they "
                              "would be skipped."))
    if not retention:
        return blocks
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
