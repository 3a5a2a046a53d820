"""Start the whole sandbox and drive it: the interactive prompt or a `--script`.

Everything runs in one process on one event loop: the simulated cloud, the Slack emulator and
the bot each on their own 127.0.0.1 port (signed Slack requests, Web API and cloud over HTTP,
exactly as in production), plus the optional web view. Only `input()` runs in a daemon thread,
so Ctrl-C / Ctrl-D never wait for a blocked read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.store import Store
from sandbox.console.parse import ConsoleSyntaxError, parse_console_line
from sandbox.console.session import Console, settle
from sandbox.system import System, running_system

DEFAULT_SPEED = 20.0
DEFAULT_WEB_PORT = 8790
REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = REPO_ROOT / "examples" / "imagebot.toml"


@dataclass
class Options:
    """What `imagebot sandbox` was asked to do."""

    speed: float = DEFAULT_SPEED
    script: str | None = None  # a path, or "-" for stdin
    web_port: int | None = None  # None: DEFAULT_WEB_PORT interactively, no web view for scripts
    no_web: bool = False
    servers: int = 0
    timeout: float = 60.0
    policy: Path | None = None
    slack_rate: float = 1.0  # multiplies Slack's rate limits (emulator and the bot's pacing)


def script_lines(text: str) -> list[str]:
    """The lines of a script worth running (comments and blank lines dropped), pure."""
    return [line.rstrip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


@contextlib.asynccontextmanager
async def running_sandbox(options: Options, out: TextIO) -> AsyncIterator[System]:
    """The system with the sample policy and, when asked, the web view (printed at start)."""
    policy = options.policy or POLICY
    if not policy.is_file():
        raise FileNotFoundError(f"sample policy not found: {policy}")
    async with running_system(speed=options.speed, extra_servers=options.servers,
                              loopback=True, policy_path=policy,
                              slack_rate_scale=options.slack_rate) as system:
        port = options.web_port
        if port is None and options.script is None:
            port = DEFAULT_WEB_PORT
        if options.no_web or port is None:
            yield system
            return
        from sandbox.web.app import running_web

        async with running_web(system, port=port, fallback_to_free=options.web_port is None) \
                as url:
            system.extras["web_url"] = url
            yield system


def banner(system: System, options: Options) -> str:
    """What is running where, printed once at start."""
    world = system.world
    servers = ", ".join(sorted(s.name for s in world.servers.values())[:8])
    lines = [
        f"imagebot sandbox — simulated cloud at {options.speed:g}x, Slack emulator, the real bot",
        f"  cloud  {system.cloud_url}   (servers: {servers}"
        + (", …" if len(world.servers) > 8 else "") + ")",
        f"  slack  {system.slack_url}   bot request URL {system.bot_url}",
        f"  db     {system.db_path} (thrown away at exit)",
    ]
    if "web_url" in system.extras:
        lines.append(f"  web    {system.extras['web_url']}   (the same workspace in a browser)")
    lines += [
        "  policy: #ops — @alice and @bob may create, @bob approves schedules; "
        "results go to #ops-alerts",
    ]
    return "\n".join(lines)


async def run_script(system: System, lines: Iterable[str], out: TextIO, *,
                     within: float) -> int:
    """Run console lines; each is echoed with its prompt and waited for. 0, or 1 with why."""
    console = Console(system, out, timeout=within, settle_each=True)
    todo = list(lines)
    # Check the whole script first: a typo on line 9 should not cost a minute of jobs.
    for number, line in enumerate(todo, 1):
        try:
            parse_console_line(line)
        except ConsoleSyntaxError as exc:
            print(f"imagebot sandbox: script line {number}: {line.strip()!r}: {exc}",
                  file=sys.stderr)
            return 1
    started = time.monotonic()
    for number, line in enumerate(todo, 1):
        console.say(f"{console.prompt}{line.strip()}")
        outcome = await console.run_line(line)
        if not outcome.ok:
            print(f"imagebot sandbox: script line {number}: {line.strip()!r}: {outcome.reason}",
                  file=sys.stderr)
            console.say(f"!! failed: {outcome.reason}")
            return 1
        if outcome.exit:
            break
    try:
        await settle(system, within)
    except TimeoutError as exc:
        print(f"imagebot sandbox: jobs still running at the end: {exc}", file=sys.stderr)
        return 1
    jobs = await system.runtime.store.run(Store.list_jobs, limit=1000)
    summary = ", ".join(f"{j.id} {j.server_name or j.server_ref} {j.state}"
                        for j in reversed(jobs))
    console.say(f"-- script done in {time.monotonic() - started:.1f}s: "
                f"{len(todo)} lines; jobs: {summary or 'none'}")
    return 0


class _LineReader:
    """`input(prompt)` in a daemon thread, one line per request."""

    def __init__(self) -> None:
        self.requests: queue.Queue[tuple[str, asyncio.Future[str | None],
                                         asyncio.AbstractEventLoop]] = queue.Queue()
        self.waiting = False
        self.prompt = ""
        threading.Thread(target=self._loop, name="sandbox-input", daemon=True).start()

    def _loop(self) -> None:
        while True:
            prompt, future, loop = self.requests.get()
            try:
                line: str | None = input(prompt)
            except EOFError:
                line = None
            except KeyboardInterrupt:  # pragma: no cover - Ctrl-C lands in the main thread
                line = None
            loop.call_soon_threadsafe(_resolve, future, line)

    async def read(self, prompt: str) -> str | None:
        """The next line, or None at end of input."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self.prompt, self.waiting = prompt, True
        self.requests.put((prompt, future, loop))
        try:
            return await future
        finally:
            self.waiting = False


def _resolve(future: asyncio.Future[str | None], line: str | None) -> None:
    if not future.done():
        future.set_result(line)


async def run_interactive(system: System, out: TextIO, *, within: float) -> int:
    """The prompt loop with a live view; Ctrl-D or `exit` ends it."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    reader = _LineReader()
    console = Console(system, out, timeout=within)
    tty = out.isatty()

    def clear_prompt() -> None:
        if reader.waiting:
            out.write("\r\033[K" if tty else "\n")

    def restore_prompt() -> None:
        if reader.waiting:
            buffer = ""
            with contextlib.suppress(Exception):
                import readline

                buffer = readline.get_line_buffer()
            out.write(reader.prompt + buffer)
            out.flush()

    console.before_print, console.after_print = clear_prompt, restore_prompt
    console.say("Type `help` for the console commands; try `/image create web-1`, then "
                "`click 1`.")
    console.show_changes(full=False)
    watcher = asyncio.create_task(console.watch())
    try:
        while True:
            line = await reader.read(console.prompt)
            if line is None:
                out.write("\n")
                break
            outcome = await console.run_line(line)
            if outcome.exit:
                break
            if not outcome.ok:
                console.say(f"!! {outcome.reason}")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    console.say("Stopping the bot, the Slack emulator and the simulated cloud…")
    return 0


async def sandbox_main(options: Options, script_text: str | None = None,
                       out: TextIO | None = None) -> int:
    """Start everything, run the script (when given) or the prompt, stop everything."""
    out = out or sys.stdout
    async with running_sandbox(options, out) as system:
        out.write(banner(system, options) + "\n\n")
        out.flush()
        if script_text is not None:
            return await run_script(system, script_lines(script_text), out,
                                    within=options.timeout)
        return await run_interactive(system, out, within=options.timeout)


@contextlib.contextmanager
def _errors_only_logging() -> Iterator[None]:
    """Show only errors while the sandbox runs: the bot logs warnings about the faults the
    person injected on purpose. The root logger is restored afterwards (tests run in-process)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.ERROR)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def read_script(source: str, stdin: TextIO | None = None) -> str:
    """The text of a script file, or of stdin for `-`."""
    if source == "-":
        return (stdin or sys.stdin).read()
    return Path(source).read_text(encoding="utf-8")


def run_sandbox(options: Options, out: TextIO | None = None) -> int:
    """The blocking entry point behind `imagebot sandbox`."""
    script_text: str | None = None
    if options.script is not None:
        try:
            script_text = read_script(options.script)
        except OSError as exc:
            print(f"imagebot sandbox: cannot read {options.script}: {exc}", file=sys.stderr)
            return 2
    try:
        with _errors_only_logging():
            return asyncio.run(sandbox_main(options, script_text, out))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
