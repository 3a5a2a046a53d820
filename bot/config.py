"""Service settings from the environment (the cloud's own settings live in `bot.cloud.config`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import ConfigError

SLACK_DEFAULT_API_URL = "https://slack.com/api/"


# Every environment variable the service reads, with one line each: `imagebot run --help` and
# the README list these, and a test checks that the code reads exactly these names.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("SLACK_BOT_TOKEN", "the bot token (xoxb-...); required"),
    ("SLACK_APP_TOKEN", "the app-level token (xapp-..., scope connections:write): Socket Mode"),
    ("SLACK_SIGNING_SECRET", "the app's signing secret: HTTP mode (--http)"),
    ("SLACK_API_URL", "Slack Web API base URL (default https://slack.com/api/)"),
    ("IMAGEBOT_DB", "the SQLite database file (default ./imagebot.db, created mode 0600)"),
    ("IMAGEBOT_POLICY", "the channel policy file (TOML)"),
    ("IMAGEBOT_LOG_JSON", "1: one JSON object per log line"),
    ("IMAGEBOT_METRICS_PORT", "Socket Mode: serve /metrics and /healthz on this loopback port"),
    ("IMAGEBOT_HEALTH_DETAILS", "1: /healthz shows which check failed"),
    ("IMAGEBOT_HTTP_TIMEOUT", "HTTP mode: seconds to receive a whole request (default 10)"),
    ("IMAGEBOT_HTTP_MAX_BODY", "HTTP mode: request body cap in bytes (default 262144)"),
    ("IMAGEBOT_HTTP_MAX_CONNECTIONS", "HTTP mode: connections held at once (default 256)"),
    ("IMAGEBOT_TICK_SCALE", "test worlds only: multiply the engine's tick (default 1)"),
    ("IMAGEBOT_SLACK_RATE_SCALE", "test worlds only: multiply Slack pacing rates (default 1)"),
    ("OS_CLOUD", "the clouds.yaml cloud to use (or --cloud); OS_* variables as openstack.config"),
    ("OS_CLIENT_CONFIG_FILE", "a clouds.yaml outside the usual places"),
    ("OS_CLIENT_SECURE_FILE", "a secure.yaml outside the usual places"),
    ("RACKSPACE_USERNAME", "Rackspace without clouds.yaml: the account's user name"),
    ("RACKSPACE_API_KEY", "Rackspace without clouds.yaml: the account's API key"),
    ("RACKSPACE_REGION", "Rackspace without clouds.yaml: the region (e.g. DFW)"),
    ("RACKSPACE_AUTH_URL", "Rackspace without clouds.yaml: identity URL (default Rackspace's)"),
)


@dataclass(frozen=True)
class Settings:
    """Everything `imagebot run` needs besides clouds.yaml. Secrets are hidden from repr."""

    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = SLACK_DEFAULT_API_URL
    db_path: Path = Path("imagebot.db")
    policy_path: Path | None = None
    cloud_name: str | None = None
    log_json: bool = False
    metrics_port: int | None = None  # Socket Mode: serve /metrics and /healthz on this port
    # For test worlds that run faster than real time (the simulated cloud, the Slack emulator):
    # the engine's tick is multiplied by `tick_scale`, Slack pacing rates by `slack_rate_scale`.
    tick_scale: float = 1.0
    slack_rate_scale: float = 1.0
    # HTTP mode's edge (bot/slack/edge.py): seconds to receive a whole request (headers and body),
    # the body cap, and how many connections at once.
    http_timeout: float = 10.0
    http_max_body: int = 256 * 1024
    http_max_connections: int = 256
    # /healthz says only ok / not ok unless this is set (details also on the metrics port).
    health_details: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables; missing essentials raise ConfigError."""
        env = os.environ if env is None else env
        token = env.get("SLACK_BOT_TOKEN", "").strip()
        if not token:
            raise ConfigError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-...)",
                              key="SLACK_BOT_TOKEN")
        app_token = env.get("SLACK_APP_TOKEN", "").strip() or None
        _check_prefix("SLACK_BOT_TOKEN", token)
        if app_token is not None:
            _check_prefix("SLACK_APP_TOKEN", app_token)
        api_url = env.get("SLACK_API_URL", "").strip() or SLACK_DEFAULT_API_URL
        if not api_url.endswith("/"):
            api_url += "/"
        policy = env.get("IMAGEBOT_POLICY", "").strip()
        raw_port = env.get("IMAGEBOT_METRICS_PORT", "").strip()
        try:
            metrics_port = int(raw_port) if raw_port else None
        except ValueError:
            raise ConfigError(f"not a port number: {raw_port!r}",
                              key="IMAGEBOT_METRICS_PORT") from None
        scales = {key: _positive(env, key) for key in
                  ("IMAGEBOT_TICK_SCALE", "IMAGEBOT_SLACK_RATE_SCALE")}
        return cls(
            bot_token=token,
            signing_secret=env.get("SLACK_SIGNING_SECRET", "").strip() or None,
            app_token=app_token,
            slack_api_url=api_url,
            db_path=Path(env.get("IMAGEBOT_DB", "").strip() or "imagebot.db"),
            policy_path=Path(policy) if policy else None,
            cloud_name=env.get("OS_CLOUD", "").strip() or None,
            log_json=env.get("IMAGEBOT_LOG_JSON", "").strip().lower() in {"1", "true", "yes"},
            metrics_port=metrics_port,
            tick_scale=scales["IMAGEBOT_TICK_SCALE"],
            slack_rate_scale=scales["IMAGEBOT_SLACK_RATE_SCALE"],
            http_timeout=_positive(env, "IMAGEBOT_HTTP_TIMEOUT", 10.0),
            http_max_body=int(_positive(env, "IMAGEBOT_HTTP_MAX_BODY", 256 * 1024)),
            http_max_connections=int(_positive(env, "IMAGEBOT_HTTP_MAX_CONNECTIONS", 256)),
            health_details=env.get("IMAGEBOT_HEALTH_DETAILS", "").strip().lower()
            in {"1", "true", "yes"},
        )

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or messages."""
        return tuple(s for s in (self.bot_token, self.signing_secret, self.app_token) if s)


# Slack's token types by prefix (docs.slack.dev/authentication/tokens): what each variable
# must hold, and where to find it in the app's settings at api.slack.com/apps.
TOKEN_KINDS = {"xoxb-": "a bot token", "xapp-": "an app-level token", "xoxp-": "a user token",
               "xoxe-": "a refresh token", "xoxc-": "a browser session token"}
EXPECTED_TOKEN = {
    "SLACK_BOT_TOKEN": ("xoxb-", "OAuth & Permissions -> Bot User OAuth Token"),
    "SLACK_APP_TOKEN": ("xapp-", "Basic Information -> App-Level Tokens, scope "
                                 "connections:write"),
}


def _check_prefix(key: str, token: str) -> None:
    """A token of the wrong kind is refused at start with what it is and where the right one is
    (a swapped pair otherwise surfaces later as Slack's bare `not_allowed_token_type`)."""
    prefix, where = EXPECTED_TOKEN[key]
    if token.startswith(prefix):
        return
    kind = next((f"holds {name}" for p, name in TOKEN_KINDS.items() if token.startswith(p)),
                "does not hold a Slack token")
    raise ConfigError(f"must start with {prefix} but {kind}; find the right one in your "
                      f"app's settings at https://api.slack.com/apps: {where}", key=key)


def _positive(env: Mapping[str, str], key: str, default: float = 1.0) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"not a number: {raw!r}", key=key) from None
    if not value > 0:
        raise ConfigError(f"must be greater than 0, got {raw!r}", key=key)
    return value
