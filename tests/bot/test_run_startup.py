"""`imagebot run` at start-up: the mode it picks and what it says when a setting is missing or
of the wrong kind, the Socket Mode banner, and a Socket Mode link that waits for an unreachable
Slack with back-off and one log line per attempt (no traceback every 10 s)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from bot import cli
from bot.config import Settings
from bot.errors import ConfigError
from bot.serve import banner, choose_mode
from bot.slack.identity import BotIdentity
from bot.slack.socket_link import PatientSocketModeClient, backoff
from bot.slack.web import make_web_client

BOT = "xoxb-1-2-abc"
APP = "xapp-1-A1-2-def"


def settings(**env: str) -> Settings:
    return Settings.from_env({"SLACK_BOT_TOKEN": BOT, **env})


def test_without_an_app_token_socket_mode_says_what_it_needs_not_a_signing_secret() -> None:
    with pytest.raises(ConfigError) as refused:
        choose_mode(settings(), http=False)
    text = str(refused.value)
    assert text.startswith("[SLACK_APP_TOKEN]: Socket Mode (the default) needs SLACK_APP_TOKEN")
    assert "xapp-" in text and "App-Level Tokens" in text and "connections:write" in text
    assert "needs SLACK_SIGNING_SECRET" not in text
    # A signing secret alone does not silently switch modes: it is named as the way to --http.
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is set: for HTTP mode add --http"):
        choose_mode(settings(SLACK_SIGNING_SECRET="s"), http=False)
    assert choose_mode(settings(SLACK_APP_TOKEN=APP), http=False) == "socket"
    assert choose_mode(settings(SLACK_APP_TOKEN=APP, SLACK_SIGNING_SECRET="s"), http=True) == "http"
    with pytest.raises(ConfigError, match=r"\[SLACK_SIGNING_SECRET\]: HTTP mode \(--http\) needs"):
        choose_mode(settings(SLACK_APP_TOKEN=APP), http=True)


def test_imagebot_run_without_an_app_token_is_one_line_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    for key in ("SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
    monkeypatch.setenv("IMAGEBOT_DB", str(tmp_path / "bot.db"))
    assert cli.main(["run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Socket Mode (the default) needs SLACK_APP_TOKEN" in err[0]
    assert not (tmp_path / "bot.db").exists()  # refused before anything was opened


@pytest.mark.parametrize(("key", "value", "said"), [
    ("SLACK_BOT_TOKEN", APP, "must start with xoxb- but holds an app-level token"),
    ("SLACK_BOT_TOKEN", "xoxp-1-2", "must start with xoxb- but holds a user token"),
    ("SLACK_BOT_TOKEN", "hunter2", "must start with xoxb- but does not hold a Slack token"),
    ("SLACK_APP_TOKEN", BOT, "must start with xapp- but holds a bot token"),
])
def test_a_token_of_the_wrong_kind_is_named_with_where_the_right_one_is(
        key: str, value: str, said: str) -> None:
    env = {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP, key: value}
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    text = str(refused.value)
    assert text.startswith(f"[{key}]: {said}")
    assert "api.slack.com/apps" in text
    assert value not in text  # the (possibly secret) value itself is never echoed


def test_the_banner_names_workspace_bot_user_cloud_and_database(tmp_path: Path) -> None:
    who = BotIdentity(team_id="T1", bot_user_id="U9", team_name="Acme", bot_user_name="imagebot")
    text = banner(who, cloud="prod", db_path=tmp_path / "bot.db")
    assert text.splitlines() == [
        "imagebot connected over Socket Mode",
        "  workspace  Acme (T1)",
        "  bot user   @imagebot (U9)",
        "  cloud      prod",
        f"  database   {(tmp_path / 'bot.db').resolve()}"]
    assert "auth.test is being retried" in banner(None, cloud=None, db_path=tmp_path)


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = backoff(1.0, 8.0)
    assert [next(delays) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


async def test_unreachable_slack_is_one_line_per_attempt_with_back_off(
        caplog: pytest.LogCaptureFixture) -> None:
    web = make_web_client(APP, f"http://127.0.0.1:{closed_port()}/api/")
    waits: list[float] = []
    client: PatientSocketModeClient

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            await client.close()  # the operator stops the bot

    client = PatientSocketModeClient(app_token=APP, web_client=web, sleep=sleep,
                                     first_delay=1.0, max_delay=4.0,
                                     logger=logging.getLogger("test.socket"))
    with caplog.at_level(logging.DEBUG):
        await client.connect()
    assert waits == [1.0, 2.0, 4.0, 4.0]
    mine = [r for r in caplog.records if r.name == "bot.slack.socket_link"]
    assert [r.levelname for r in mine] == ["WARNING"] * 4
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)
    assert "cannot connect (ClientConnectorError" in mine[0].getMessage()
    assert mine[2].getMessage().endswith("attempt 3 failed, retrying in 4 s")
    assert not any("Traceback" in r.getMessage() or r.levelno >= logging.ERROR
                   for r in caplog.records)



async def test_slack_going_away_after_connecting_is_retried_the_same_way(
        caplog: pytest.LogCaptureFixture) -> None:
    """Connected to the emulator, which then stops: the SDK's receiver sees the socket close
    and asks to reconnect; the reconnect is this loop (one line per attempt, back-off), not
    the SDK's traceback every `ping_interval`."""
    from sandbox.slack.model import SlackWorkspace
    from sandbox.slack.serve import running_slack

    waits: list[float] = []
    client: PatientSocketModeClient | None = None
    stopped = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3 and client is not None:
            stopped.set()  # first: close() cancels the SDK's receiver, which runs this loop
            await client.close()
        await asyncio.sleep(0)

    with caplog.at_level(logging.INFO):
        async with running_slack(SlackWorkspace()) as url:
            client = PatientSocketModeClient(
                app_token="xapp-sandbox", sleep=sleep, first_delay=0.5, max_delay=2.0,
                web_client=make_web_client("xapp-sandbox", url + "/api/"), ping_interval=0.2,
                logger=logging.getLogger("test.socket"))
            await client.connect()
            assert await client.is_connected()
        await asyncio.wait_for(stopped.wait(), 30)  # TimeoutError: it never reconnected
    assert client.closed
    assert waits == [0.5, 1.0, 2.0]
    mine = [r.getMessage() for r in caplog.records if r.name == "bot.slack.socket_link"]
    assert len(mine) == 3 and all("cannot connect" in m for m in mine), mine
    assert not any(r.exc_info or r.levelno >= logging.ERROR for r in caplog.records), [
        r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
