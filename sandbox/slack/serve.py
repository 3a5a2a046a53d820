"""Run the Slack emulator on a loopback port, in-process on the current event loop.

`async with running_slack(workspace) as base_url:` yields `http://127.0.0.1:PORT`; point the bot's
`AsyncWebClient(base_url=base_url + "/api/")` at it. The workspace's `base_url` is set so the
response_urls it hands out point at this server. `serve(host, port)` runs a fresh default
workspace on the wall clock until SIGINT/SIGTERM (for poking at it with curl).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import uvicorn

from sandbox.net import bind, serving, url_of
from sandbox.slack.app import create_app
from sandbox.slack.limits import RateLimiter
from sandbox.slack.model import SlackWorkspace


@asynccontextmanager
async def running_slack(workspace: SlackWorkspace, *, host: str = "127.0.0.1", port: int = 0,
                        bot_token: str = "xoxb-sandbox",
                        log_level: str = "warning") -> AsyncIterator[str]:
    """Serve the emulator for the duration of the block; yields its base URL (no `/api/`)."""
    sock = bind(host, port)
    base_url = url_of(sock)
    workspace.base_url = base_url
    async with serving(create_app(workspace, bot_token=bot_token), sock,
                       name="slack emulator", log_level=log_level):
        yield base_url


def serve(host: str = "127.0.0.1", port: int = 0, *, bot_token: str = "xoxb-sandbox",
          out: TextIO | None = None, rate_scale: float = 1.0, load_channels: int = 0) -> int:
    """Serve a fresh default workspace until SIGINT/SIGTERM; prints the URLs. Returns 0.

    `rate_scale` multiplies Slack's rate limits (to match a bot paced faster for tests);
    `load_channels` adds that many #load-<i> channels with the bot in them."""
    out = out or sys.stdout
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"slack-emu: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    workspace = SlackWorkspace(clock=time.time, rate_limits=RateLimiter(scale=rate_scale))
    workspace.base_url = url_of(sock)
    workspace.add_load_channels(load_channels)
    print(f"slack-emu listening on {workspace.base_url}", file=out)
    print(f"  SLACK_API_URL={workspace.base_url}/api/  token={bot_token}", file=out)
    print(f"  state: {workspace.base_url}/_emu/state", file=out)
    out.flush()
    config = uvicorn.Config(create_app(workspace, bot_token=bot_token), log_level="warning",
                            lifespan="off", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
