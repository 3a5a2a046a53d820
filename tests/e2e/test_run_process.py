"""`imagebot run` in Socket Mode as its own process, as an operator starts it: against the Slack
emulator it prints the banner (workspace, bot user, cloud, database) and none of Bolt's warnings
about the token; with Slack unreachable (a closed port) it logs one line per attempt, backing
off, and no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from pathlib import Path

import pytest

from bench.procs import kill, world
from sandbox.slack.model import BOT_NAME, BOT_USER_ID, TEAM_ID, TEAM_NAME

pytestmark = pytest.mark.timeout(180)
IMAGEBOT = str(Path(sys.executable).with_name("imagebot"))


async def run_socket_mode(env: dict[str, str], *, banner_lines: int | None,
                          seconds: float) -> tuple[list[str], str]:
    """Start `imagebot run` (no --http); read stdout until `banner_lines` lines of the banner
    arrived (or for `seconds`), then SIGTERM it; returns stdout lines and all of stderr."""
    proc = await asyncio.create_subprocess_exec(
        IMAGEBOT, "run", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    deadline = time.monotonic() + seconds
    try:
        while banner_lines is None or len(out) < banner_lines:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                line = await asyncio.wait_for(proc.stdout.readline(), left)
                if not line:
                    break
                if out or line.startswith(b"imagebot connected"):
                    out.append(line.decode().rstrip("\n"))
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                await kill(proc)
    return out, err.decode()


async def test_socket_mode_prints_the_banner_and_no_token_warning() -> None:
    async with world(0, 50.0) as w:
        env = dict(w.env, SLACK_APP_TOKEN="xapp-sandbox")
        out, err = await run_socket_mode(env, banner_lines=5, seconds=60)
    assert out == [
        "imagebot connected over Socket Mode",
        f"  workspace  {TEAM_NAME} ({TEAM_ID})",
        f"  bot user   @{BOT_NAME} ({BOT_USER_ID})",
        "  cloud      sandbox",
        f"  database   {w.db.resolve()}"], (out, err)
    # Bolt: "As `installation_store` or `authorize` has been used, `token` (or
    # SLACK_BOT_TOKEN env variable) will be ignored." (slack_bolt/logger/messages.py)
    assert "will be ignored" not in err and "will be unused" not in err, err
    assert "Traceback" not in err and " ERROR " not in err, err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_slack_is_one_line_per_attempt_not_a_traceback() -> None:
    async with world(0, 50.0) as w:
        env = dict(w.env, SLACK_APP_TOKEN="xapp-sandbox",
                   SLACK_API_URL=f"http://127.0.0.1:{closed_port()}/api/")
        out, err = await run_socket_mode(env, banner_lines=None, seconds=14)
    assert out == []  # never connected: no banner
    assert "Traceback" not in err, err
    attempts = [line for line in err.splitlines() if "Slack Socket Mode: cannot connect" in line]
    # Waits of 1, 2, 4, 8 s: a few attempts in 14 s (start-up takes some), not one a second.
    assert 2 <= len(attempts) <= 5, err
    waits = [line.rsplit("retrying in ", 1)[1] for line in attempts]
    assert waits == ["1 s", "2 s", "4 s", "8 s", "16 s"][:len(waits)], attempts
    # Nothing else repeats per attempt: slack_sdk's own retry lines are not added to ours.
    assert "apps.connections.open" not in err, err
