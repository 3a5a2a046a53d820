"""`imagebot run`: the service in Socket Mode (default when SLACK_APP_TOKEN is set) or HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import uvicorn
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from starlette.applications import Starlette

from bot.cloud.config import load_cloud_config
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import LearnedSecrets, cloud_secrets, configure_logging
from bot.slack.edge import guarded_protocol
from bot.store.instance import hold_database
from bot.wiring import Runtime, build_runtime, http_app, ops_routes

log = logging.getLogger(__name__)


async def serve_http(settings: Settings, host: str, port: int,
                     learned: LearnedSecrets | None = None) -> None:
    """Serve POST /slack/events and GET /healthz with uvicorn; cloud tokens go to `learned`."""
    if not settings.signing_secret:
        raise ConfigError("HTTP mode needs SLACK_SIGNING_SECRET to verify Slack's requests",
                          key="SLACK_SIGNING_SECRET")
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
    print(f"imagebot listening on http://{host}:{port}/slack/events", flush=True)
    await server.serve()


async def connect_socket_mode(runtime: Runtime, app_token: str) -> AsyncSocketModeHandler:
    """Open the Socket Mode link (apps.connections.open through the runtime's Web API client,
    so SLACK_API_URL decides where) and return the handler; `close_async()` ends it."""
    handler = AsyncSocketModeHandler(runtime.app, app_token)
    await handler.connect_async()
    return handler


async def serve_socket_mode(settings: Settings, learned: LearnedSecrets | None = None) -> None:
    """Connect to Slack over Socket Mode; the Web API base URL comes from SLACK_API_URL."""
    if not settings.app_token:
        raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (xapp-...); or use --http",
                          key="SLACK_APP_TOKEN")
    runtime = await build_runtime(settings, learned=learned)
    runtime.start()
    handler = await connect_socket_mode(runtime, settings.app_token)
    ops: asyncio.Task[None] | None = None
    if settings.metrics_port is not None:
        config = uvicorn.Config(Starlette(routes=ops_routes(runtime, details=True)),
                                host="127.0.0.1",
                                port=settings.metrics_port, log_level="warning")
        ops = asyncio.create_task(uvicorn.Server(config).serve())
        print(f"metrics on http://127.0.0.1:{settings.metrics_port}/metrics", flush=True)
    try:
        print("imagebot connected over Socket Mode", flush=True)
        await asyncio.Event().wait()  # the handler's tasks serve until we are stopped
    finally:
        if ops is not None:
            ops.cancel()
        await handler.close_async()
        await runtime.stop()


def fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the HTTP service when it is installed (uvicorn[standard]: less
    CPU per request than asyncio's); None (asyncio's own) otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(*, http: bool, host: str, port: int) -> int:
    """Entry point for `imagebot run`."""
    settings = Settings.from_env()
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
        if http or not settings.app_token:
            with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
                runner.run(serve_http(settings, host, port, learned))
        else:
            asyncio.run(serve_socket_mode(settings, learned))
    finally:
        instance.release()
    return 0
