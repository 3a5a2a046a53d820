"""Operations: /metrics, /healthz, settings from the environment, log redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import (
    JsonFormatter,
    LearnedSecrets,
    RedactingFilter,
    configure_logging,
    redact,
)
from bot.wiring import http_app, ops_routes
from sandbox.system import running_system


async def test_metrics_and_health_report_jobs_cloud_and_slack() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1 --now")
        await system.settle()
        app = http_app(system.runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bot") as client:
            metrics = (await client.get("/metrics")).text
            health = await client.get("/healthz")
        assert 'imagebot_job_transitions_total{state="succeeded"} 1.0' in metrics
        assert 'imagebot_phase_seconds_count{phase="snapshot"} 1.0' in metrics
        assert 'imagebot_cloud_requests_total{method="POST",status="202"} 1.0' in metrics
        assert 'imagebot_slack_calls_total{method="chat.postMessage",outcome="ok"}' in metrics
        assert "imagebot_outbox_depth 0.0" in metrics
        # Nothing learnt from 429s (none came): no workspace limit, no calmed channel.
        assert "imagebot_slack_workspace_post_limit 0.0" in metrics
        assert "imagebot_slack_calmed_channels 0.0" in metrics
        # Public health is ok / not ok only (issue 14: it used to show internal URLs).
        assert health.status_code == 200 and health.json() == {"ok": True}
        detailed = ops_routes(system.runtime, details=True)[0]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(
                app=Starlette(routes=[detailed])), base_url="http://ops") as client:
            body = (await client.get("/healthz")).json()
        assert set(body["checks"]) == {"db", "cloud", "slack", "engine"}
        assert all(check["ok"] for check in body["checks"].values())
        assert "http" not in json.dumps(body)  # no compute / image URLs, even in detail


async def test_health_fails_when_slack_is_down() -> None:
    async with running_system(speed=200) as system:
        system.workspace.start_outage(60)
        app = http_app(system.runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bot") as client:
            health = await client.get("/healthz")
        assert health.status_code == 503 and health.json() == {"ok": False}


def test_settings_from_env_and_clear_errors() -> None:
    settings = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_API_URL": "http://x/api",
                                  "IMAGEBOT_DB": "/tmp/x.db", "IMAGEBOT_METRICS_PORT": "9100"})
    assert settings.slack_api_url == "http://x/api/" and settings.metrics_port == 9100
    assert "xoxb-1" not in repr(settings)
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="IMAGEBOT_METRICS_PORT"):
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "IMAGEBOT_METRICS_PORT": "ninety"})
    fast = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "IMAGEBOT_TICK_SCALE": "0.05",
                              "IMAGEBOT_SLACK_RATE_SCALE": "20"})
    assert (fast.tick_scale, fast.slack_rate_scale) == (0.05, 20.0)
    assert (settings.tick_scale, settings.slack_rate_scale) == (1.0, 1.0)
    assert (settings.http_timeout, settings.http_max_body, settings.http_max_connections,
            settings.health_details) == (10.0, 256 * 1024, 256, False)
    edge = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "IMAGEBOT_HTTP_TIMEOUT": "2.5",
                              "IMAGEBOT_HTTP_MAX_BODY": "1000",
                              "IMAGEBOT_HTTP_MAX_CONNECTIONS": "9",
                              "IMAGEBOT_HEALTH_DETAILS": "1"})
    assert (edge.http_timeout, edge.http_max_body, edge.http_max_connections,
            edge.health_details) == (2.5, 1000, 9, True)
    with pytest.raises(ConfigError, match="IMAGEBOT_HTTP_TIMEOUT"):
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "IMAGEBOT_HTTP_TIMEOUT": "-1"})
    with pytest.raises(ConfigError, match="IMAGEBOT_TICK_SCALE"):
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "IMAGEBOT_TICK_SCALE": "0"})


def test_logs_mask_secrets_and_json_lines_carry_job_ids() -> None:
    record = logging.LogRecord("bot", logging.INFO, __file__, 1, "token %s for %s",
                               ("xoxb-secret-token", "J4"), None)
    record.job_id = "J4"
    assert RedactingFilter(["xoxb-secret-token"]).filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "token *** for J4" and line["job_id"] == "J4"


def test_records_written_inside_a_job_context_carry_its_id() -> None:
    from bot.logs import JobContextFilter, job_context

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    handler.addFilter(JobContextFilter())
    logger = logging.getLogger("imagebot.test.context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with job_context("J7"):
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    assert [(r.getMessage(), r.job_id) for r in seen] == [("inside", "J7"), ("outside", None)]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that calls configure_logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture() -> io.StringIO:
    """Send the handler configure_logging installed to a buffer."""
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def log_everywhere(secret: str) -> None:
    """`secret` in a message, in an argument and in an exception's traceback."""
    log = logging.getLogger("bot.cloud.test")
    log.warning(f"session {secret} ready")
    log.warning("the cloud answered %s", secret)
    try:
        raise RuntimeError(f"refused {secret}")
    except RuntimeError:
        log.exception("login failed")


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_token_learned_at_runtime_is_masked_by_value_everywhere(
        json_lines: bool, root_logging: None) -> None:
    token = "Q7fz0c2Lw9nB4kR1mT"  # no Slack shape and no name before it: patterns miss it
    unlearned = "Zz81unlearnedValue"
    assert redact(f"login gave {token}") == f"login gave {token}"
    learned = configure_logging(json_lines=json_lines)
    stream = capture()
    learned.add(token)  # after the filter is installed, as a login does
    log_everywhere(token)
    log_everywhere(unlearned)
    out = stream.getvalue()
    assert token not in out
    assert unlearned in out  # only what was learned is masked, so the masking is the registry's
    assert out.count("session *** ready") == 1 and out.count("the cloud answered ***") == 1
    assert out.count("RuntimeError: refused ***") == 1 and "Traceback" in out


def test_learned_secrets_keep_the_newest_and_skip_short_values() -> None:
    learned = LearnedSecrets(keep=2)
    for value in ("abc", "token-one", "token-two", "token-one", "token-three"):
        learned.add(value)
    assert learned.values() == ("token-two", "token-three")
    # Longest first, so a secret that contains another is masked whole.
    assert RedactingFilter(["static-secret"], learned).secrets == (
        "static-secret", "token-three", "token-two")


@pytest.mark.parametrize("api", ["openstack", "rackspace-legacy"])
async def test_every_cloud_token_the_runtime_logs_in_with_is_masked(
        api: str, root_logging: None) -> None:
    """Through the wiring: the runtime's clients add each token to the registry the log
    filter reads, the first login's (at start) and the one after a revocation (a 401)."""
    async with running_system(speed=200, api=api) as system:
        configure_logging(json_lines=True, learned=system.runtime.learned)
        stream = capture()
        system.world.inject("revoke_tokens")
        await system.runtime.cloud.default.list_servers()  # 401, then a new login
        tokens = list(system.world.tokens)
        assert len(tokens) >= 2
        for token in tokens:
            assert redact(token) == token  # a uuid4 hex: no pattern knows it
            log_everywhere(token)
    out = stream.getvalue()
    assert out.count("RuntimeError: refused ***") == len(tokens)
    assert not [token for token in tokens if token in out]
