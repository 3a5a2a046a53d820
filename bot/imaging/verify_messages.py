"""Restore-test messages (`bot.imaging.verify`): pure rendering, like `messages`."""

from __future__ import annotations

from typing import Any

from bot.blocks import code, human_duration, payload, section, user_text
from bot.imaging.verify import Verification

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
