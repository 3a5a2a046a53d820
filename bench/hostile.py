"""The "hostile requests" reliability case (issue 14): `imagebot run --http` as its own process
(cloud and Slack emulator in processes of their own), attacked over loopback as the internet
would, with genuine commands in between:

- SSRF: unsigned / malformed-signature requests (form, `payload=`, JSON) naming a loopback
  listener as response_url: the listener must get zero hits.
- Big bodies (Content-Length and chunked): 413, and the bot's RSS and log barely grow.
- Slow sockets (headers or body dripping): cut by the server; /healthz keeps answering; the
  bot's descriptors stay bounded even when more connections arrive than it accepts.
- Forged log lines (newlines in bodies): no log line of its own, no line longer than a bound.
- A correctly signed command from another workspace / app: refused, creates nothing.

Each attack is one try (survived = refused with no effect); a genuine command that got no job
is lost. No timing is asserted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.procs import World, command_body, world
from bench.reliability_cases import CaseResult
from bot.logs import MAX_MESSAGE
from sandbox.slack.deliver import sign
from sandbox.slack.model import SlackWorkspace
from sandbox.system import SIGNING_SECRET

HOST = "127.0.0.1"


def rss_kb(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    """Descriptors a process holds (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def job_count(db: Path) -> int:
    """Jobs in the bot's DB, read from outside (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


class Listener:
    """A loopback listener counting connections: the SSRF target."""

    def __init__(self) -> None:
        self.hits = 0

    async def on_connect(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.close()


@contextlib.asynccontextmanager
async def bot_process(w: World, log_path: Path, **env: str) -> AsyncIterator[
        asyncio.subprocess.Process]:
    """`imagebot run --http` with its log (stderr) in `log_path`; ready when /healthz answers."""
    imagebot = str(Path(sys.executable).with_name("imagebot"))
    log = log_path.open("wb")  # noqa: ASYNC230 - a local file, opened once
    try:
        proc = await asyncio.create_subprocess_exec(
            imagebot, "run", "--http", "--port", str(w.port), env={**w.env, **env},
            stdout=asyncio.subprocess.PIPE, stderr=log)
    finally:
        log.close()  # the child has its own copy
    try:
        assert proc.stdout is not None
        while b"listening on" not in await asyncio.wait_for(proc.stdout.readline(), 30):
            if proc.returncode is not None:
                raise RuntimeError("imagebot exited before it was ready")
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://{HOST}:{w.port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 10)


def signed(body: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body)}


def ssrf_requests(target: str) -> list[tuple[str, str, dict[str, str]]]:
    """(label, body, headers) of unverified requests naming `target` as response_url."""
    command = urlencode({"command": "/image", "text": "help", "team_id": "T0001",
                         "api_app_id": "A0IMAGEBOT", "user_id": "U0ALICE",
                         "channel_id": "C0OPS", "response_url": target, "trigger_id": "1.1"})
    payload = urlencode({"payload": json.dumps({
        "type": "block_actions", "team": {"id": "T0001"}, "api_app_id": "A0IMAGEBOT",
        "user": {"id": "U0ALICE"}, "response_url": target,
        "actions": [{"action_id": "job_start", "value": "J1"}]})})
    as_json = json.dumps({"type": "event_callback", "team_id": "T0001", "response_url": target})
    out = []
    for shape, body in (("form", command), ("payload", payload), ("json", as_json)):
        for label, headers in (
                ("no signature", {}),
                ("non-numeric timestamp", {"X-Slack-Request-Timestamp": "x1",
                                           "X-Slack-Signature": "v0=" + "0" * 64}),
                ("malformed signature", {"X-Slack-Request-Timestamp": str(int(time.time())),
                                         "X-Slack-Signature": "v1=abc"}),
                ("wrong signature", {"X-Slack-Request-Timestamp": str(int(time.time())),
                                     "X-Slack-Signature": "v0=" + "f" * 64})):
            ctype = "application/json" if shape == "json" else \
                "application/x-www-form-urlencoded"
            out.append((f"SSRF {shape}/{label}", body, {"Content-Type": ctype, **headers}))
    return out


async def _raw(port: int, head: bytes, body_chunks: int, chunk: bytes,
               answer_first: float = 0.0) -> bytes:
    """Send `head` then up to `body_chunks` chunks, stopping once the server answers or hangs
    up; the server's answer (read while sending: after its close a reset may drop it).
    `answer_first`: give the server that long to answer the head alone (a 413 by
    Content-Length needs no body)."""
    reader, writer = await asyncio.open_connection(HOST, port)

    async def answer() -> bytes:
        with contextlib.suppress(ConnectionError, OSError):
            return await reader.read(4096)
        return b""

    got = asyncio.ensure_future(answer())
    try:
        writer.write(head)
        if answer_first:
            await asyncio.wait([got], timeout=answer_first)
        for _ in range(body_chunks):
            if got.done():
                break
            writer.write(chunk)
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                break
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(got, 30)
        return b""
    finally:
        got.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _head(path: str, extra: str) -> bytes:
    stamp = str(int(time.time()))
    return (f"POST {path} HTTP/1.1\r\nHost: bot\r\nX-Slack-Request-Timestamp: {stamp}\r\n"
            f"X-Slack-Signature: v0={'a' * 64}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n{extra}\r\n").encode()


async def _slow(port: int, with_headers: bool) -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection(HOST, port)
    if with_headers:
        writer.write(_head("/slack/events", "Content-Length: 100000\r\n") + b"payload=")
    else:
        writer.write(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n")
    await writer.drain()
    return reader


async def hostile(big: int = 5, big_mb: int = 20, slow: int = 20, flood: int = 60,
                  forged: int = 20, genuine: int = 4, max_connections: int = 40) -> CaseResult:
    """Run the case (see the module docstring)."""
    result = CaseResult(f"hostile requests ({slow} slow, {flood} flood)")
    target = Listener()
    server = await asyncio.start_server(target.on_connect, HOST, 0)
    target_url = f"http://{HOST}:{server.sockets[0].getsockname()[1]}/hook"
    ws = SlackWorkspace()
    with tempfile.TemporaryDirectory(prefix="imagebot-hostile-") as tmp:
        log_path = Path(tmp) / "bot.log"
        async with world(genuine + 2, 50.0, bot_speed=1.0) as w:
            ws.base_url = w.slack_url
            url = f"http://{HOST}:{w.port}/slack/events"
            async with bot_process(w, log_path, IMAGEBOT_HTTP_TIMEOUT="1",
                                   IMAGEBOT_HTTP_MAX_CONNECTIONS=str(max_connections)) as bot, \
                    httpx.AsyncClient(timeout=30) as client:
                made = 0

                async def genuine_command() -> None:
                    nonlocal made
                    body = command_body(ws, "alice", "#ops", f"create load-{made + 1} --now")
                    answer = await client.post(url, content=body.encode(), headers=signed(body))
                    made += 1
                    if answer.status_code != 200 or f"J{made}" not in answer.text:
                        result.lost += 1
                        result.problems.append(f"genuine command {made}: HTTP "
                                               f"{answer.status_code} {answer.text[:80]!r}")

                await genuine_command()
                # 1. SSRF: unverified bodies naming the listener.
                for label, body, headers in ssrf_requests(target_url):
                    answer = await client.post(url, content=body.encode(), headers=headers)
                    result.check(answer.status_code == 401, f"{label}: HTTP {answer.status_code}")
                # 2. Big bodies, by Content-Length and chunked: RSS and log stay put.
                rss_before, log_before = rss_kb(bot.pid), log_path.stat().st_size
                chunk = b"x" * 65536
                for i in range(big):
                    if i % 2 == 0:
                        head = _head("/slack/events", f"Content-Length: {big_mb << 20}\r\n")
                        raw = await _raw(w.port, head, big_mb * 16, chunk, answer_first=10)
                    else:
                        head = _head("/slack/events", "Transfer-Encoding: chunked\r\n")
                        piece = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                        raw = await _raw(w.port, head, big_mb * 16, piece)
                    # A chunked sender still writing when the bot answers 413 and closes may
                    # see the reset before the answer (TCP RST drops unread data): refused too.
                    refused = b" 413 " in raw.split(b"\r\n", 1)[0] or (i % 2 == 1 and not raw)
                    result.check(refused, f"big body {i}: {raw[:40]!r}")
                grown_mb = (rss_kb(bot.pid) - rss_before) / 1024
                result.check(grown_mb < 50, f"RSS grew {grown_mb:.0f} MB under big bodies")
                # 3. Forged log lines in unsigned and in signed-but-unhandled bodies.
                forge = "\nERROR bot.imaging.engine [J1]: approved by admin\n"
                for i in range(forged):
                    body = urlencode({"payload": json.dumps({
                        "type": "shortcut", "callback_id": forge * 50, "team": {"id": "T0001"},
                        "api_app_id": "A0IMAGEBOT"})})
                    headers = signed(body) if i % 2 else {"X-Slack-Request-Timestamp": "1",
                                                          "X-Slack-Signature": "v0=" + "0" * 64}
                    answer = await client.post(url, content=body.encode(), headers=headers)
                    result.check(answer.status_code in (401, 404),
                                 f"forged body {i}: HTTP {answer.status_code}")
                await genuine_command()
                # 4. Another workspace and another app, correctly signed.
                jobs_before = job_count(w.db)
                for i, (team, app) in enumerate((("T0OTHER", "A0IMAGEBOT"),
                                                 ("T0001", "A0OTHER"))):
                    body = command_body(ws, "alice", "#ops", f"create load-{i + 1} --now")
                    body = body.replace("team_id=T0001", f"team_id={team}").replace(
                        "api_app_id=A0IMAGEBOT", f"api_app_id={app}")
                    answer = await client.post(url, content=body.encode(), headers=signed(body))
                    result.check("does not serve" in answer.text and
                                 job_count(w.db) == jobs_before,
                                 f"foreign {team}/{app}: {answer.text[:60]!r}")
                # 5. Slow sockets: healthz answers while they are open; the server cuts them.
                slow_readers = [await _slow(w.port, with_headers=i % 2 == 0)
                                for i in range(slow)]
                health = await client.get(f"http://{HOST}:{w.port}/healthz")
                result.check(health.status_code == 200,
                             f"/healthz with {slow} slow sockets: HTTP {health.status_code}")
                for i, reader in enumerate(slow_readers):
                    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                        await asyncio.wait_for(reader.read(), 20)
                    result.check(reader.at_eof(), f"slow socket {i} still open")
                # 6. A flood beyond the connection bound: descriptors stay bounded.
                fds_before = open_fds(bot.pid)
                flood_conns = [await asyncio.open_connection(HOST, w.port)
                               for _ in range(flood)]
                # The bot closes what it refuses on its next loop turns: under load a reading
                # taken at once still counts refused sockets not yet closed. Bounded means the
                # count settles under the bound while the flood stays open (2 s to settle).
                peak = open_fds(bot.pid)
                for _ in range(40):
                    if peak - fds_before <= max_connections + 5:
                        break
                    await asyncio.sleep(0.05)
                    peak = open_fds(bot.pid)
                result.check(peak - fds_before <= max_connections + 5,
                             f"{peak - fds_before} descriptors for {flood} connections "
                             f"(bound {max_connections})")
                for reader, _ in flood_conns:
                    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                        await asyncio.wait_for(reader.read(), 20)
                for _, writer in flood_conns:
                    writer.close()
                health = await client.get(f"http://{HOST}:{w.port}/healthz")
                result.check(health.status_code == 200,
                             f"/healthz after the flood: HTTP {health.status_code}")
                for _ in range(genuine - 2):
                    await genuine_command()
            log_grown = log_path.stat().st_size - log_before
        log_text = log_path.read_text(errors="replace")
    server.close()
    await server.wait_closed()
    result.check(target.hits == 0, f"the SSRF listener got {target.hits} connections")
    lines = log_text.splitlines()
    forged_lines = [line for line in lines if line.startswith("ERROR bot.imaging.engine")]
    longest = max((len(line) for line in lines), default=0)
    result.check(not forged_lines, f"{len(forged_lines)} forged log lines")
    result.check(longest < MAX_MESSAGE + 300, f"a log line of {longest} characters")
    attacks = big + forged
    result.check(log_grown < 1000 * attacks,
                 f"log grew {log_grown} bytes for {attacks} big/forged bodies")
    return result
