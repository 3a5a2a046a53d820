"""Issue 14, requests from the internet: through the real HTTP app (EdgeGuard + Starlette +
Bolt) against the Slack emulator. Unverified requests cause no outbound call and no body in the
logs; bodies are capped; only the bot's own workspace and app are served; "starting up" while
auth.test fails; /healthz says ok / not ok and finds a damaged DB; logs cannot be forged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.logs import JsonFormatter, RedactingFilter, TextFormatter, cloud_secrets
from bot.slack.identity import FOREIGN, STARTING_UP
from bot.store import Store
from bot.wiring import http_app
from sandbox.slack.deliver import SOCKET_MODE, Deliverer, sign
from sandbox.slack.model import SlackWorkspace
from sandbox.system import SIGNING_SECRET, running_system


class Listener:
    """A loopback TCP listener that counts every connection (the SSRF target)."""

    def __init__(self) -> None:
        self.hits = 0
        self.url = ""

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.close()


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[Listener]:
    target = Listener()
    server = await asyncio.start_server(target._on, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield target
    finally:
        server.close()
        await server.wait_closed()


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured() -> Iterator[Keep]:
    keep = Keep()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield keep
    finally:
        root.removeHandler(keep)
        root.setLevel(saved)


def bodies(response_url: str) -> dict[str, tuple[str, str]]:
    """The three shapes of a Slack request body, each naming `response_url`."""
    command = {"command": "/image", "text": "create web-1 --now", "team_id": "T0001",
               "user_id": "U0ALICE", "channel_id": "C0OPS", "api_app_id": "A0IMAGEBOT",
               "response_url": response_url, "trigger_id": "1.2.3"}
    payload = {"type": "block_actions", "team": {"id": "T0001"}, "user": {"id": "U0ALICE"},
               "api_app_id": "A0IMAGEBOT", "response_url": response_url,
               "actions": [{"action_id": "job_start", "value": "J1"}]}
    return {"form": (urlencode(command), "application/x-www-form-urlencoded"),
            "payload": (urlencode({"payload": json.dumps(payload)}),
                        "application/x-www-form-urlencoded"),
            "json": (json.dumps({"type": "event_callback", "response_url": response_url,
                                 "team_id": "T0001"}), "application/json")}


def bad_headers(body: str) -> dict[str, dict[str, str]]:
    now = str(int(time.time()))
    return {
        "missing": {},
        "non-numeric timestamp": {"X-Slack-Request-Timestamp": "soon",
                                  "X-Slack-Signature": sign(SIGNING_SECRET, "soon", body)},
        "timestamp only": {"X-Slack-Request-Timestamp": now},
        "malformed signature": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=xyz"},
        "wrong signature": {"X-Slack-Request-Timestamp": now,
                            "X-Slack-Signature": sign("not-the-secret", now, body)},
    }


async def test_no_unverified_request_reaches_its_response_url_or_the_logs() -> None:
    """The SSRF of issue 14: a non-numeric timestamp made slack_sdk's verifier raise and Bolt's
    error handler `respond` to the body's response_url."""
    async with listener() as target, running_system(speed=200) as system:
        app = http_app(system.runtime)
        with captured() as logs:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://bot") as client:
                for shape, (body, ctype) in bodies(target.url).items():
                    for label, headers in bad_headers(body).items():
                        answer = await client.post("/slack/events", content=body.encode(),
                                                   headers={"Content-Type": ctype, **headers})
                        assert answer.status_code == 401, (shape, label, answer.text)
        assert target.hits == 0
        assert await system.runtime.store.run(Store.list_jobs, limit=10) == []
        # auth.test and bots.info are the identity learner's at start-up (bot/slack/identity.py),
        # which may still be under way; any other call would have come from a bad request.
        assert not [c for c in system.workspace.calls()
                    if c.method not in ("auth.test", "bots.info")]
        for record in logs.records:  # nothing of any body in any line
            assert target.url not in record.getMessage()
            assert "web-1" not in record.getMessage()


async def test_the_error_handler_never_responds_to_an_unverified_request() -> None:
    """Behind the edge too: the same request handed straight to Bolt is refused (401) by the
    app's one signature check (`SignatureCheckedOnce`: slack_sdk's verifier raises ValueError
    on the timestamp), and the error handler never responds."""
    async with listener() as target, running_system(speed=200) as system:
        body, _ = bodies(target.url)["form"]
        request = AsyncBoltRequest(body=body, headers={
            "content-type": ["application/x-www-form-urlencoded"],
            "x-slack-request-timestamp": ["soon"], "x-slack-signature": ["v0=" + "0" * 64]})
        answer = await system.runtime.app.async_dispatch(request)
        assert answer.status == 401
        assert target.hits == 0


async def test_bodies_are_capped_without_reading_the_rest() -> None:
    async with running_system(speed=200) as system:
        app = http_app(system.runtime)
        now = str(int(time.time()))
        headers = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "a" * 64,
                   "Content-Type": "application/x-www-form-urlencoded"}
        sent = 0

        async def chunked() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(20 * 16):  # 20 MB in 64 KB chunks, no Content-Length
                sent += 1
                yield b"x" * 65536

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bot") as client:
            big = await client.post("/slack/events", content=b"x" * (20 << 20), headers=headers)
            streamed = await client.post("/slack/events", content=chunked(), headers=headers)
        assert big.status_code == 413 and streamed.status_code == 413
        assert sent <= 6  # 256 KB cap: the rest of the 320 chunks were never asked for
        assert await system.runtime.store.run(Store.list_jobs, limit=10) == []


async def test_a_signed_command_from_another_workspace_or_app_creates_nothing() -> None:
    async with running_system(speed=200) as system:
        deliverer = system.deliverer
        other_team = await deliverer.slash_command("alice", "#ops", "create web-1 --now",
                                                   team_id="T0OTHER")
        other_app = await deliverer.slash_command("alice", "#ops", "create web-1 --now",
                                                  api_app_id="A0OTHER")
        assert other_team.text == FOREIGN and other_app.text == FOREIGN
        assert await system.runtime.store.run(Store.list_jobs, limit=10) == []
        ours = await system.command("alice", "#ops", "create web-1 --now")
        assert "J1" in ours.text
        assert [c.status for c in system.workspace.calls("bots.info")] == [200]


async def test_another_workspace_is_refused_over_socket_mode_too() -> None:
    from bot.serve import connect_socket_mode

    async with running_system(speed=200) as system:
        handler = await connect_socket_mode(system.runtime, "xapp-sandbox")
        try:
            await system.workspace.socket_hub.connected.wait()
            over_socket = Deliverer(system.workspace, SOCKET_MODE, SIGNING_SECRET)
            refused = await over_socket.slash_command("alice", "#ops", "create web-1 --now",
                                                      team_id="T0OTHER")
            assert await system.runtime.store.run(Store.list_jobs, limit=10) == []
            accepted = await over_socket.slash_command("alice", "#ops", "create web-1")
        finally:
            await handler.close_async()
        assert FOREIGN in refused.text
        assert "J1" in accepted.json()["text"]


@pytest.mark.parametrize("fault", ["503 outage", "429 storm"])
async def test_commands_hear_starting_up_until_auth_test_succeeds(fault: str) -> None:
    workspace = SlackWorkspace()
    if fault == "503 outage":
        workspace.start_outage(1.5)  # auth.test answers 503 for the first 1.5 s
    else:
        workspace.start_storm(3, retry_after=1)  # the client's own 2 retries are used up
    async with running_system(speed=200, workspace=workspace) as system:
        early = await system.command("alice", "#ops", "create web-1 --now")
        assert early.status_code == 200 and early.text == STARTING_UP
        assert await system.runtime.store.run(Store.list_jobs, limit=10) == []
        identity = system.runtime.identity
        assert identity is not None
        await system.wait_for(lambda: identity.current, within=30)
        later = await system.command("alice", "#ops", "create web-1 --now")
        assert "J1" in later.text
        assert identity.attempts >= 2
        statuses = [c.status for c in workspace.calls("auth.test")]
        assert statuses[0] == (503 if fault == "503 outage" else 429) and statuses[-1] == 200
        assert not any("reinstall" in (e.text or "").lower()
                       for e in workspace.ephemeral_messages)


def damage(db: Path) -> None:
    """Damage the file behind the bot's back, as a failing disk would."""
    with contextlib.closing(sqlite3.connect(db)) as outside:
        outside.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db, "r+b") as raw:
        raw.seek(4096 * 2)
        raw.write(b"\xde\xad" * 4096 * 3)


async def test_public_health_is_ok_or_not_and_finds_a_damaged_database() -> None:
    async with running_system(speed=200) as system:
        app = http_app(system.runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bot") as client:
            # Not ok until auth.test has answered (which it does in the background).
            assert system.runtime.identity is not None
            assert await system.runtime.identity.wait(10) is not None
            assert (await client.get("/healthz")).json() == {"ok": True}
            await system.command("alice", "#ops", "create web-1 --now")
            await system.settle()
            damage(system.db_path)
            health = await client.get("/healthz")
        assert health.status_code == 503 and health.json() == {"ok": False}


def test_log_lines_cannot_be_forged_and_are_bounded() -> None:
    forged = "create x\nERROR bot.imaging.engine [J1]: approved by admin\r\x1b[2J\u202e"
    record = logging.LogRecord("bot.slack", logging.INFO, __file__, 1, "text %s", (forged,),
                               None)
    record.job_id = None
    assert RedactingFilter([]).filter(record)
    text = TextFormatter().format(record)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert "\\nERROR bot.imaging.engine" in text and "\\u202e" in text
    as_json = JsonFormatter().format(record)
    assert "\n" not in as_json and json.loads(as_json)["message"].endswith("\u202e")
    huge = logging.LogRecord("bot", logging.INFO, __file__, 1, "%s", ("y" * 10**6,), None)
    RedactingFilter([]).filter(huge)
    huge.job_id = None
    assert len(TextFormatter().format(huge)) < 5000


def test_cloud_secrets_and_tokens_are_masked_in_args_and_tracebacks() -> None:
    class Config:
        password = "hunter2-cloud"
        api_key = "rax-api-key-123"
        application_credential_secret = "app-cred-secret-xyz"

    secrets = cloud_secrets(Config())
    assert set(secrets) == {"hunter2-cloud", "rax-api-key-123", "app-cred-secret-xyz"}
    try:
        raise RuntimeError("auth failed for password hunter2-cloud with app-cred-secret-xyz")
    except RuntimeError:
        import sys
        exc_info = sys.exc_info()
    record = logging.LogRecord("bot.cloud", logging.ERROR, __file__, 1,
                               "key %s header X-Auth-Token: gAAAAABnot-a-real-token, "
                               '{"token": {"id": "tok-1234567"}} and xoxb-1-2-abcdef',
                               ("rax-api-key-123",), exc_info)
    record.job_id = "J3"
    RedactingFilter(secrets).filter(record)
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        for leaked in ("hunter2-cloud", "rax-api-key-123", "app-cred-secret-xyz",
                       "gAAAAABnot-a-real-token", "tok-1234567", "xoxb-1-2-abcdef"):
            assert leaked not in line, (formatter, leaked)
        assert "RuntimeError" in line


@pytest.mark.parametrize("body", ["create web-1\nERROR bot.imaging.engine [J1]: forged"])
async def test_bolt_never_logs_a_request_body(body: str) -> None:
    """A correctly signed request that Bolt does not handle: Bolt's warning names no body."""
    async with running_system(speed=200) as system:
        app = http_app(system.runtime)
        raw = urlencode({"payload": json.dumps({"type": "shortcut", "callback_id": body,
                                                "team": {"id": "T0001"},
                                                "api_app_id": "A0IMAGEBOT"})})
        now = str(int(time.time()))
        with captured() as logs:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://bot") as client:
                await client.post("/slack/events", content=raw.encode(), headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Slack-Request-Timestamp": now,
                    "X-Slack-Signature": sign(SIGNING_SECRET, now, raw)})
        assert not [r for r in logs.records if "forged" in r.getMessage()]
