"""`imagebot run`: the service in Socket Mode (default when SLACK_APP_TOKEN is set) or HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from starlette.applications import Starlette

from bot.cloud.config import load_cloud_config
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import LearnedSecrets, cloud_secrets, configure_logging
from bot.slack.edge import guarded_protocol
from bot.slack.identity import BotIdentity
from bot.slack.socket_link import PatientSocketModeHandler
from bot.store.instance import hold_database
from bot.wiring import Runtime, build_runtime, http_app, ops_routes

log = logging.getLogger(__name__)

IDENTITY_WAIT = 10.0  # seconds the banner waits for auth.test after the link is up


async def serve_http(settings: Settings, host: str, port: int,
                     learned: LearnedSecrets | None = None) -> None:
    """Serve POST /slack/events and GET /healthz with uvicorn; cloud tokens go to `learned`."""
    choose_mode(settings, http=True)
    runtime = await build_runtime(settings, learned=learned)
    # Bounds for what the internet can hold open (bot/slack/edge.py); a reverse proxy in front is
    # still the place for TLS and real rate limits (README). httptools parses when installed
    # (uvicorn[standard]), h11 otherwise; the guard works on either.
    config = uvicorn.Config(http_app(runtime), host=host, port=port, log_level="warning",
                            lifespan="on",
                            http=guarded_protocol(settings.http_timeout,
                                                  settings.http_max_connections),
                            limit_concurrency=settings.http_max_connections + 16,
                            timeout_keep_alive=5,
                            h11_max_incomplete_event_size=16 * 1024)
    server = uvicorn.Server(config)
    settle_heap()
    print(f"imagebot listening on http://{host}:{port}/slack/events", flush=True)
    await server.serve()


async def connect_socket_mode(runtime: Runtime, app_token: str,
                              **client_options: Any) -> AsyncSocketModeHandler:
    """Open the Socket Mode link (apps.connections.open through the runtime's Web API client,
    so SLACK_API_URL decides where) and return the handler; `close_async()` ends it. While
    Slack cannot be reached this retries with back-off, one log line per attempt."""
    handler = PatientSocketModeHandler(runtime.app, app_token, **client_options)
    await handler.connect_async()
    return handler


def choose_mode(settings: Settings, *, http: bool) -> str:
    """`"http"` or `"socket"` for `imagebot run [--http]`, or a ConfigError saying what the
    chosen mode is missing and where to get it (pure)."""
    if http:
        if not settings.signing_secret:
            raise ConfigError("HTTP mode (--http) needs SLACK_SIGNING_SECRET to verify Slack's "
                              "requests: your app's Basic Information -> App Credentials -> "
                              "Signing Secret", key="SLACK_SIGNING_SECRET")
        return "http"
    if not settings.app_token:
        hint = (" SLACK_SIGNING_SECRET is set: for HTTP mode add --http." if
                settings.signing_secret else " Or serve HTTP with --http and SLACK_SIGNING_SECRET.")
        raise ConfigError("Socket Mode (the default) needs SLACK_APP_TOKEN, an app-level token "
                          "(xapp-...): at https://api.slack.com/apps open your app -> Basic "
                          "Information -> App-Level Tokens -> Generate, with the scope "
                          "connections:write." + hint, key="SLACK_APP_TOKEN")
    return "socket"


def banner(identity: BotIdentity | None, *, cloud: str | None, db_path: Path) -> str:
    """The lines Socket Mode prints once connected: who and where the bot is (pure)."""
    if identity is None:
        workspace = user = "(not known yet: auth.test is being retried)"
    else:
        workspace = f"{identity.team_name or '?'} ({identity.team_id})"
        user = f"@{identity.bot_user_name or '?'} ({identity.bot_user_id or '?'})"
    rows = (("workspace", workspace), ("bot user", user), ("cloud", cloud or "?"),
            ("database", str(db_path.resolve())))
    return "\n".join(["imagebot connected over Socket Mode"]
                     + [f"  {name:<10} {value}" for name, value in rows])


async def serve_socket_mode(settings: Settings, learned: LearnedSecrets | None = None) -> None:
    """Connect to Slack over Socket Mode; the Web API base URL comes from SLACK_API_URL."""
    choose_mode(settings, http=False)
    assert settings.app_token is not None  # choose_mode said so
    runtime = await build_runtime(settings, learned=learned)
    settle_heap()
    runtime.start()
    handler = PatientSocketModeHandler(runtime.app, settings.app_token)
    ops: asyncio.Task[None] | None = None
    try:  # stopped while still waiting for Slack (Ctrl-C): the loops are stopped all the same
        await handler.connect_async()
        known = await runtime.identity.wait(IDENTITY_WAIT) if runtime.identity else None
        print(banner(known, cloud=settings.cloud_name or runtime.cloud.default_name,
                     db_path=settings.db_path), flush=True)
        if settings.metrics_port is not None:
            config = uvicorn.Config(Starlette(routes=ops_routes(runtime, details=True)),
                                    host="127.0.0.1",
                                    port=settings.metrics_port, log_level="warning")
            ops = asyncio.create_task(uvicorn.Server(config).serve())
            print(f"metrics on http://127.0.0.1:{settings.metrics_port}/metrics", flush=True)
        await asyncio.Event().wait()  # the handler's tasks serve until we are stopped
    finally:
        if ops is not None:
            ops.cancel()
        await handler.close_async()
        await runtime.stop()


def settle_heap() -> None:
    """Once everything is imported and wired: move the start-up heap (modules, Bolt, httpx,
    the policy; ~120k objects) out of the cyclic collector's reach (`gc.freeze`). Otherwise
    each full collection walks all of it on the event loop: ~70-100 ms each, measured in the
    ack path under a burst of creates (bench figure 1), far beyond Slack's budget per ack."""
    gc.collect()
    gc.freeze()


def fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the HTTP service when it is installed (uvicorn[standard]: less
    CPU per request than asyncio's); None (asyncio's own) otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(*, http: bool, host: str, port: int, cloud: str | None = None) -> int:
    """Entry point for `imagebot run`; `cloud` (--cloud) overrides OS_CLOUD."""
    settings = Settings.from_env()
    if cloud:
        settings = replace(settings, cloud_name=cloud)
    mode = choose_mode(settings, http=http)  # before logging starts: a config error is one line
    secrets = settings.secrets()
    try:  # the cloud's password / API key / application-credential secret are masked too
        secrets += cloud_secrets(load_cloud_config(settings.cloud_name))
    except Exception:  # noqa: S110 - build_runtime reports a bad cloud config properly
        pass
    # Cloud tokens learned at each login are masked by value too (the clients add them).
    learned = configure_logging(json_lines=settings.log_json, secrets=secrets)
    # Before anything opens the database: a second instance stops here with one line.
    instance = hold_database(settings.db_path)
    try:
        if mode == "http":
            with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
                runner.run(serve_http(settings, host, port, learned))
        else:
            asyncio.run(serve_socket_mode(settings, learned))
    finally:
        instance.release()
    return 0
