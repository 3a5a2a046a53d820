"""The console session: who you are, where you are, and what each console line does.

`Console.run_line(text)` parses a line (`parse_console_line`), executes it against a running
`System` and prints what changed in the current channel. The same object serves the interactive
prompt and `--script` (where `settle_each=True` waits for every job after each line).

Rendering: the channel (as the current user sees it) is split into *units* — one top-level message
with its thread, or one typed command. After each line, and whenever the workspace changes, only
new or changed units are printed, so an edited parent and its thread re-appear as a whole (that is
"updated in place" on a scrolling terminal). `show` prints every unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TextIO

import commands
from bot.imaging import jobs
from bot.store import Store
from sandbox.console.parse import (
    HELP,
    ConsoleCommand,
    ConsoleSyntaxError,
    faults_help,
    parse_console_line,
)
from sandbox.slack.model import ApiError, ButtonRef
from sandbox.slack.render import render_transcript
from sandbox.system import System

# The largest single jump of the bot's clock in `clock +1d`: below the scheduler's catch-up
# window (6 h), so a slot passed on the way runs instead of being reported as skipped.
CLOCK_STEP = timedelta(hours=1)

# Answers of the bot that mean "no": a refusal, a usage error, a warning.
_REFUSALS = re.compile(
    r"^(:warning:|:x:|:no_entry|:lock:)|is not available yet|^You may not|^This channel may not"
    r"|^You can't|^You cannot|^Only ", re.IGNORECASE)


@dataclass
class Outcome:
    """What a console line did: `ok` False with `reason` when it failed; `exit` to stop."""

    ok: bool = True
    reason: str = ""
    exit: bool = False


def answer_is_error(command_text: str, status: int, answer: str) -> bool:
    """Whether the bot's answer to `/image command_text` is a refusal or an error (pure).

    An HTTP error, an answer that starts with a warning emoji or a refusal phrase, or a command
    the grammar rejects (the bot then answers with its usage) all count.
    """
    if status != 200:
        return True
    if _REFUSALS.search(answer.strip()):
        return True
    try:
        commands.parse(command_text)
    except commands.ParseError:
        return True
    return False


async def unresolved_jobs(store: Any) -> list[jobs.Job]:
    """Typed creates waiting for a click whose server the engine has not looked up yet (no
    card posted so far): their card or private answer is still to come."""
    waiting = await store.run(Store.list_jobs, states=[jobs.AWAITING_CONFIRMATION], limit=200)
    return [j for j in waiting if j.announced_at is None]


def waits_on_stuck_task(system: System, job: jobs.Job) -> bool:
    """Whether `job` waits on a task the simulated cloud holds forever (`fault stuck`) and its
    phase deadline on the bot's clock has not come: nothing will happen until `clock` passes
    it, so waiting for it would only hang the console. Past the deadline it counts as running
    again: the bot is about to declare it stuck and post the alert, which is worth waiting for."""
    server = system.world.servers.get(job.server_id or "")
    task = getattr(server, "job", None)
    if server is None or task is None or task.stuck_at != server.task_state:
        return False
    return job.deadline_at is not None and system.clock() <= job.deadline_at


async def busy_reasons(system: System) -> list[str]:
    """What still runs: jobs in flight, queued Slack messages, open scheduled runs ([] = quiet)."""
    store = system.runtime.store
    reasons = []
    in_flight = [j for j in await store.run(Store.in_flight_jobs)
                 if not waits_on_stuck_task(system, j)]
    if in_flight:
        reasons.append("jobs in flight: " + ", ".join(
            f"{j.id} ({j.server_name or j.server_ref}, {j.task_state or j.state})"
            for j in in_flight))
    resolving = await unresolved_jobs(store)
    if resolving:
        reasons.append("jobs being looked up: " + ", ".join(
            f"{j.id} ({j.server_ref})" for j in resolving))
    depth = await store.run(Store.outbox_depth)
    if depth:
        reasons.append(f"{depth} Slack messages queued")
    open_runs = getattr(store, "open_runs", None)
    if open_runs is not None:
        runs = await open_runs()
        if runs:
            reasons.append("scheduled runs open: " + ", ".join(
                f"{r.schedule_id} ({r.result})" for r in runs))
    preparing = await system.runtime.background_work()
    if preparing:
        reasons.append(f"{preparing} answers or approval messages being prepared")
    return reasons


async def settle(system: System, within: float, *, poll: float = 0.02) -> None:
    """Wait until nothing runs (see `busy_reasons`); TimeoutError says what still does."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        reasons = await busy_reasons(system)
        if not reasons:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("; ".join(reasons))
        system.runtime.poke()
        await asyncio.sleep(poll)


async def tick_loops(system: System, *, within: float = 5.0) -> None:
    """Let the scheduler (when the runtime has one) finish a full pass at the current time."""
    schedules = getattr(system.runtime, "schedules", None)
    if schedules is None:
        system.runtime.poke()
        await asyncio.sleep(0.05)
        return
    # `ticks` counts passes as they start: two more starts mean one whole pass began after now.
    target = schedules.ticks + 2
    await system.wait_for(lambda: schedules.ticks >= target, within=within, poll=0.005)


async def fast_forward(system: System, delta: timedelta, *, within: float,
                       step: timedelta = CLOCK_STEP) -> None:
    """Move the bot's clock forward by `delta` the way time passes: in steps of at most `step`,
    letting the scheduler look at each moment and every job it starts finish before the next
    step (a job's phase deadlines are on the same clock)."""
    left = delta
    while left > timedelta(0):
        hop = min(step, left)
        system.clock.shift(hop)
        left -= hop
        await tick_loops(system)
        await settle(system, within)


def split_units(text: str) -> list[str]:
    """A rendered channel cut into units: a top-level line plus everything indented under it."""
    units: list[str] = []
    current: list[str] = []
    for line in text.splitlines()[1:]:  # the first line is the channel title
        if line.startswith("[") and current:
            units.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        units.append("\n".join(current))
    return units


def _ack_text(body: bytes) -> str:
    raw = body.strip()
    if not raw:
        return ""
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
    if isinstance(decoded, dict):
        return str(decoded.get("text", ""))
    return str(decoded)


@dataclass
class Console:
    """One person at the sandbox's keyboard."""

    system: System
    out: TextIO
    user: str = "alice"
    channel: str = "ops"
    timeout: float = 60.0
    settle_each: bool = False
    buttons: dict[int, ButtonRef] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)
    # Called before printing while a prompt may be on screen (the interactive loop clears it).
    before_print: Callable[[], None] = lambda: None
    after_print: Callable[[], None] = lambda: None

    # --- presentation -------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        """`alice@#ops> `"""
        return f"{self.user}@#{self.channel}> "

    def say(self, text: str) -> None:
        """Print console output (not a transcript)."""
        self.before_print()
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()
        self.after_print()

    def render(self, *, full: bool = False) -> str:
        """New or changed units of the current channel (all of them with `full`); also
        refreshes the button numbering that `click` uses."""
        ws = self.system.workspace
        transcript = render_transcript(ws, self.channel, user=self.user)
        self.buttons = dict(transcript.buttons)
        ws.last_buttons = dict(transcript.buttons)
        units = split_units(transcript.text)
        # Per channel, not per user: switching user prints only what differs for them.
        key = self.channel
        before = self.seen.get(key, set())
        # Accumulated, so units another user saw meanwhile do not count as news.
        self.seen[key] = before | set(units)
        shown = units if full else [u for u in units if u not in before]
        if full and not units:
            return f"#{self.channel} is empty.\n"
        return "".join(u + "\n" for u in shown)

    def show_changes(self, *, full: bool = False) -> bool:
        """Print what changed; True when something was printed."""
        text = self.render(full=full)
        if text:
            self.before_print()
            self.out.write(text)
            self.out.flush()
            self.after_print()
        return bool(text)

    def fingerprint(self) -> tuple[int, ...]:
        """Cheap change detector over the whole workspace (messages, edits, ephemerals)."""
        ws = self.system.workspace
        counts = [len(ws.ephemeral_messages), len(ws.commands)]
        for cid in sorted(ws.messages):
            msgs = ws.messages[cid]
            counts += [len(msgs), sum(len(m.edits) + m.deleted for m in msgs)]
        return tuple(counts)

    async def status_line(self) -> str:
        """One line about jobs in flight, or "" when nothing runs."""
        running = await self.system.runtime.store.run(Store.in_flight_jobs)
        if not running:
            return ""
        parts = [f"{j.id} {j.server_name or j.server_ref}: {j.task_state or j.state}"
                 for j in running[:4]]
        more = f" (+{len(running) - 4} more)" if len(running) > 4 else ""
        return "  … " + " · ".join(parts) + more

    # --- execution ----------------------------------------------------------------------

    async def run_line(self, text: str) -> Outcome:
        """Parse and execute one line; failures come back as `Outcome(ok=False, reason)`."""
        try:
            command = parse_console_line(text)
        except ConsoleSyntaxError as exc:
            return Outcome(False, str(exc))
        return await self.execute(command)

    async def execute(self, cmd: ConsoleCommand) -> Outcome:
        """Do what one parsed line says."""
        handler = getattr(self, f"_do_{cmd.kind.replace('-', '_')}")
        outcome: Outcome = await handler(cmd)
        if cmd.kind not in ("slash", "click"):
            return outcome
        # Only sends to the bot can be expected to fail.
        if cmd.expect_failure and outcome.ok:
            return Outcome(False, f"expected `{cmd.raw.strip()}` to fail, but it did not")
        if cmd.expect_failure:
            return Outcome(True)
        return outcome

    async def _do_empty(self, cmd: ConsoleCommand) -> Outcome:
        return Outcome()

    async def _do_help(self, cmd: ConsoleCommand) -> Outcome:
        self.say(HELP)
        return Outcome()

    async def _do_exit(self, cmd: ConsoleCommand) -> Outcome:
        return Outcome(exit=True)

    async def _do_show(self, cmd: ConsoleCommand) -> Outcome:
        self.show_changes(full=True)
        status = await self.status_line()
        if status:
            self.say(status)
        return Outcome()

    async def _do_as(self, cmd: ConsoleCommand) -> Outcome:
        try:
            user = self.system.workspace.user(cmd.args[0])
        except ApiError:
            names = ", ".join(u.name for u in self.system.workspace.users.values()
                              if not u.is_bot)
            return Outcome(False, f"no user {cmd.args[0]!r} (users: {names})")
        self.user = user.name
        self.say(f"(you are now @{user.name})")
        self.show_changes()
        return Outcome()

    async def _do_in(self, cmd: ConsoleCommand) -> Outcome:
        ws = self.system.workspace
        try:
            channel = ws.channel(cmd.args[0])
        except ApiError:
            names = ", ".join("#" + c.name for c in ws.channels.values() if not c.is_im)
            return Outcome(False, f"no channel {cmd.args[0]!r} (channels: {names})")
        if channel.is_im:
            return Outcome(False, "direct messages are not part of the sandbox console")
        self.channel = channel.name
        self.say(f"(now in #{channel.name})")
        if not self.show_changes():
            empty = not self.seen.get(self.channel)
            self.say(f"(#{channel.name} is empty)" if empty
                     else "(nothing new since you last looked; `show` prints all of it)")
        return Outcome()

    async def _do_faults(self, cmd: ConsoleCommand) -> Outcome:
        lines = [faults_help()]
        world = self.system.world
        active = [f"  http #{f.id}: {f.kind} {f.status if f.kind == 'http' else ''} "
                  f"path ~ {f.path.pattern} ({'forever' if f.remaining is None else f.remaining}"
                  " left)" for f in list(world.http_faults)]
        if active:
            lines += ["Active HTTP faults:", *active]
        self.say("\n".join(lines))
        return Outcome()

    async def _do_fault(self, cmd: ConsoleCommand) -> Outcome:
        assert cmd.fault is not None
        kind, params = cmd.fault
        try:
            result = self.system.world.inject(kind, **params)
        except ValueError as exc:
            return Outcome(False, f"cannot inject {kind}: {exc}")
        if kind in ("upload_fail", "image_deleted", "stuck", "orphan"):
            when = "now, on its running job" if result.get("applies_to") == "running" \
                else "on its next image"
            self.say(f"(fault {cmd.args[0]} armed for {params['server']}: {when})")
        elif kind == "clear":
            self.say("(all faults cleared)")
        else:
            self.say(f"(fault injected: {json.dumps(result, sort_keys=True)})")
        return Outcome()

    async def _do_clock(self, cmd: ConsoleCommand) -> Outcome:
        assert cmd.delta is not None
        try:
            await fast_forward(self.system, cmd.delta, within=self.timeout)
        except TimeoutError as exc:
            self.show_changes()
            return Outcome(False, f"still running after {self.timeout:g}s: {exc}")
        self.say(f"(the bot's clock is now {self.system.clock():%Y-%m-%d %H:%M} UTC, "
                 f"{_human(self.system.clock.offset.total_seconds())} ahead of real time)")
        return await self._after_send()

    async def _do_wait(self, cmd: ConsoleCommand) -> Outcome:
        within = cmd.seconds if cmd.seconds is not None else self.timeout
        try:
            await settle(self.system, within)
        except TimeoutError as exc:
            self.show_changes()
            return Outcome(False, f"still running after {within:g}s: {exc}")
        self.show_changes()
        return Outcome()

    async def _do_slash(self, cmd: ConsoleCommand) -> Outcome:
        response = await self.system.command(self.user, self.channel, cmd.text)
        answer = _ack_text(response.content)
        if response.status_code != 200:
            answer = answer or f"HTTP {response.status_code}"
        outcome = await self._after_send()
        if answer_is_error(cmd.text, response.status_code, answer):
            first = answer.strip().splitlines()[0] if answer.strip() else "(no answer)"
            return Outcome(False, f"/image {cmd.text}: the bot said no: {first}")
        return outcome

    async def _do_click(self, cmd: ConsoleCommand) -> Outcome:
        assert cmd.button is not None
        ref = self.buttons.get(cmd.button)
        if ref is None:
            have = ", ".join(f"[{n} {b.text}]" for n, b in sorted(self.buttons.items()))
            return Outcome(False, f"no button [{cmd.button}] on screen"
                                  + (f" (buttons: {have})" if have else " (there are none)"))
        ws = self.system.workspace
        user_id = ws.user(self.user).id
        before = {e.ts for e in ws.ephemerals(user_id)}
        try:
            response = await self.system.deliverer.press(ref, self.user)
        except LookupError as exc:
            return Outcome(False, f"button [{cmd.button}] is gone: {exc}")
        if response.status_code != 200:
            await self._after_send()
            return Outcome(False, f"click {cmd.button}: the bot answered HTTP "
                                  f"{response.status_code}")
        outcome = await self._after_send()
        fresh = [e for e in ws.ephemerals(user_id) if e.ts not in before]
        refusals = [e.text for e in fresh if _REFUSALS.search(e.text.strip())]
        if refusals:
            return Outcome(False, f"click {cmd.button} ({ref.text}): the bot said no: "
                                  f"{refusals[0].splitlines()[0]}")
        return outcome

    async def _after_send(self) -> Outcome:
        """Wait for the effects of a line (every job, in script mode), then print changes."""
        outcome = Outcome()
        if self.settle_each:
            try:
                await settle(self.system, self.timeout)
            except TimeoutError as exc:
                outcome = Outcome(False, f"still running after {self.timeout:g}s: {exc}")
        else:
            # Interactive: wait for the immediate answers only; the watcher shows the rest.
            with contextlib.suppress(TimeoutError):
                await self.system.wait_for(self._answered, within=2.0)
        self.show_changes()
        return outcome

    async def _answered(self) -> bool:
        """The outbox is empty, every job is looked up, and the answers sent after an ack
        (a click's ephemeral, an images list) are out."""
        store, lazy = self.system.runtime.store, self.system.runtime.lazy
        return (await store.run(Store.outbox_depth) == 0 and not await unresolved_jobs(store)
                and (lazy is None or lazy.pending == 0))

    # --- live view ----------------------------------------------------------------------

    async def watch(self, *, interval: float = 0.25) -> None:
        """Re-render whenever the workspace changes (until cancelled); shows other channels'
        news as a one-line notice and the jobs in flight as a status line."""
        last = self.fingerprint()
        others = self._other_counts()
        last_status = ""
        while True:
            await asyncio.sleep(interval)
            now = self.fingerprint()
            status = await self.status_line()
            if now == last and status == last_status:
                continue
            last = now
            printed = self.show_changes()
            current = self._other_counts()
            for name, count in current.items():
                if count > others.get(name, 0):
                    self.say(f"  (new message in #{name}: `in #{name}` to read it)")
            others = current
            if status and (printed or status != last_status):
                self.say(status)
            last_status = status

    def _other_counts(self) -> dict[str, int]:
        ws = self.system.workspace
        return {c.name: len(ws.all_messages(c.id)) for c in ws.channels.values()
                if not c.is_im and c.name != self.channel}


def _human(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes else ""]
    return "".join(parts) or "0m"

