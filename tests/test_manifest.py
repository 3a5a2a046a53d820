"""manifest.yml is a valid Slack app manifest (Slack's published JSON schema, slackapi/
manifest-schema 1.0.0, vendored in tests/data/), enables what the bot offers (the Home tab and its
`app_home_opened` event) and requests exactly the scopes of the Web API methods the bot calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sandbox.slack.model import SlackWorkspace
from sandbox.slack.scopes import DEFAULT_BOT_SCOPES, METHOD_SCOPES

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "tests" / "data" / "slack-manifest.schema.1.0.0.json"
SHARED_COPY = ROOT.parent / "shared" / "reference" / "slack-manifest.schema.1.0.0.json"

# Scopes the bot needs beyond what the methods it calls need on their own.
FEATURE_SCOPES = {
    # A slash command (docs.slack.dev/interactivity/implementing-slash-commands).
    "slash_commands": frozenset({"commands"}),
}
# chat.postMessage into public channels the bot was never added to (notify channels, the
# channel a command came from) without joining them (docs.slack.dev/reference/scopes/
# chat.write.public).
POSTS_WHERE_NOT_ADDED = frozenset({"chat:write.public"})
# Conversation methods the bot also calls in DMs: the notifier's crash lookup of a change
# request's DM copy reads the DM's history (bot.slack.direct), which needs `im:history`.
CALLED_IN_DMS = frozenset({"conversations.history"})


def scopes_for(method: str) -> frozenset[str]:
    """What `method` needs where the bot works (public and private channels, and DMs for
    `CALLED_IN_DMS`), by the emulator's table of Slack's required scopes (sandbox.slack.scopes)."""
    rule = METHOD_SCOPES[method]
    if rule is None:
        return frozenset()
    if isinstance(rule, str):
        return frozenset({rule})
    return frozenset({rule["public"], rule["private"],
                      *([rule["im"]] if method in CALLED_IN_DMS else [])})


_CALL = re.compile(r"""_call\(\s*["']([a-z]+(?:\.[A-Za-z]+)+)["']""")
# slack_sdk's method families (`client.api_call` is the generic call `_call` goes through).
_SDK = re.compile(r"\bclient\.((?:apps|auth|bots|chat|conversations|team|usergroups|users|views)"
                  r"(?:_[A-Za-z]+)+)\(")


def manifest() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def methods_the_bot_calls() -> set[str]:
    """Web API method names called anywhere in bot/: `web._call("x.y")` and slack_sdk's
    `client.x_y(...)` (`client.auth_test()` is `auth.test`, `client.chat_postMessage` ...)."""
    found: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        found.update(_CALL.findall(source))
        found.update(name.replace("_", ".") for name in _SDK.findall(source))
    return found


def test_manifest_is_valid_against_slacks_schema() -> None:
    errors = sorted(validator().iter_errors(manifest()), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


@pytest.mark.parametrize("breakage", ["home tab as a word", "unknown feature", "no name",
                                      "event name too long"])
def test_the_schema_rejects_what_slack_would(breakage: str) -> None:
    """The validator is no rubber stamp: each of these is refused."""
    broken = manifest()
    if breakage == "home tab as a word":
        broken["features"]["app_home"]["home_tab_enabled"] = "yes"
    elif breakage == "unknown feature":
        broken["features"]["app_homepage"] = {"home_tab_enabled": True}
    elif breakage == "no name":
        del broken["display_information"]["name"]
    else:
        broken["settings"]["event_subscriptions"]["bot_events"].append("x" * 51)
    assert list(validator().iter_errors(broken))


def test_the_vendored_schema_is_the_shared_reference() -> None:
    if not SHARED_COPY.exists():
        pytest.skip("no shared/ beside this checkout")
    assert SCHEMA_PATH.read_bytes() == SHARED_COPY.read_bytes()


def test_home_tab_is_enabled_and_its_event_subscribed() -> None:
    data = manifest()
    assert data["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in data["settings"]["event_subscriptions"]["bot_events"]
    # Socket Mode by default; HTTP mode needs one request URL per surface, all left commented.
    assert data["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in data["settings"]["event_subscriptions"]
    text = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    assert text.count("# HTTP mode") == 3


def test_scopes_are_exactly_those_of_the_methods_the_bot_calls() -> None:
    called = methods_the_bot_calls()
    assert {"auth.test", "chat.postMessage", "conversations.members"} <= called  # scan works
    unknown = called - METHOD_SCOPES.keys()
    assert not unknown, f"say which scopes {sorted(unknown)} need in sandbox.slack.scopes"
    data = manifest()
    needed: set[str] = set(POSTS_WHERE_NOT_ADDED)
    for method in called:
        needed |= scopes_for(method)
    for feature, scopes in FEATURE_SCOPES.items():
        if data["features"].get(feature):
            needed |= scopes
    requested = set(data["oauth_config"]["scopes"]["bot"])
    assert requested == needed, {"unused": sorted(requested - needed),
                                 "missing": sorted(needed - requested)}


def test_the_emulated_app_is_installed_with_the_manifests_scopes() -> None:
    """So the sandbox answers missing_scope wherever Slack would for this manifest."""
    assert set(DEFAULT_BOT_SCOPES) == set(manifest()["oauth_config"]["scopes"]["bot"])
    assert set(SlackWorkspace().bot_scopes) == set(DEFAULT_BOT_SCOPES)


def http_mode_manifest(text: str, url: str) -> dict[str, Any]:
    """manifest.yml after following its own HTTP-mode comment, line by line: each line marked
    `# HTTP mode` uncommented with `url`, and `socket_mode_enabled: false`."""
    lines = []
    for line in text.splitlines():
        if line.rstrip().endswith("# HTTP mode"):
            body = line.split("# HTTP mode")[0].rstrip()
            line = body.replace("# ", "", 1).replace("https://imagebot.example.com", url)
        elif line.strip() == "socket_mode_enabled: true":
            line = line.replace("true", "false")
        lines.append(line)
    data = yaml.safe_load("\n".join(lines))
    assert isinstance(data, dict)
    return data


def test_the_http_mode_comment_names_every_line_to_change() -> None:
    """Following the comment at the top (and the README, which names the same lines) gives a
    valid manifest in which every surface Slack sends to has the bot's URL: the slash command,
    interactivity, and the event subscriptions (docs.slack.dev/reference/app-manifest: without
    Socket Mode, `url` / `request_url` are where Slack POSTs)."""
    text = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    head = text.split("display_information:")[0]
    assert "socket_mode_enabled to false" in head
    for named in ("`url`", "`request_url`", "event_subscriptions"):
        assert named in head, named
    data = http_mode_manifest(text, "https://bot.example.org")
    errors = list(validator().iter_errors(data))
    assert not errors, [e.message for e in errors]
    assert data["settings"]["socket_mode_enabled"] is False
    events = "https://bot.example.org/slack/events"
    assert [c["url"] for c in data["features"]["slash_commands"]] == [events]
    assert data["settings"]["interactivity"]["request_url"] == events
    assert data["settings"]["event_subscriptions"]["request_url"] == events
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "socket_mode_enabled: false" in readme and "# HTTP mode" in readme
