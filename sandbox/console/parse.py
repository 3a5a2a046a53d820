"""The console's own little language, parsed by one pure function.

`parse_console_line(text)` turns one typed line into a `ConsoleCommand`; it never does I/O. A
line starting with `!` is *expected to fail* (used by `--script` to show refusals): the flag is
kept on the command and the rest of the line is parsed as usual.

    /image create web-1          a signed slash command as the current user
    click 2                      press button [2] of the last rendering
    as bob | in #ops-alerts      switch user | channel
    faults | fault ...           list | inject simulator faults
    clock +1d                    move the bot's clock forward
    show | wait [S] | help | exit
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta

# Fault words a person types, and the simulator's fault kind behind each.
SERVER_FAULTS: dict[str, tuple[str, str]] = {
    "kill-upload": ("upload_fail", "the upload fails: the image goes to `killed`"),
    "vanish": ("image_deleted", "the image is deleted while it uploads (later 404)"),
    "stuck": ("stuck", "the job never leaves a task state (default image_uploading)"),
    "orphan": ("orphan", "nova-compute restarts: the task state is cleared mid-job"),
}
OTHER_FAULTS: dict[str, str] = {
    "<status> <path-regex> [N]": "the next N (default 1) cloud requests matching the path "
                                 "answer HTTP <status> (500, 503, 429, 413, ...)",
    "slow <path-regex> <seconds> [N]": "matching requests are answered after a delay",
    "revoke-tokens": "every token issued so far stops working (the bot must re-authenticate)",
    "clear": "remove all armed and HTTP faults",
}

# First words of /image commands, to suggest the slash when someone forgets it.
_IMAGE_WORDS = {"create", "status", "list", "cancel", "images", "schedule", "schedules",
                "approvals", "approve", "reject"}
_DURATION = re.compile(r"^\+?((?:\d+[dhms])+)$")
_PART = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class ConsoleSyntaxError(ValueError):
    """A console line that cannot be understood; `str()` says why, for the person typing."""


@dataclass(frozen=True)
class ConsoleCommand:
    """One parsed console line.

    `kind` is one of: `slash`, `click`, `as`, `in`, `faults`, `fault`, `clock`, `show`, `wait`,
    `help`, `exit`, `empty`. `args` holds the kind's arguments (strings), `fault` the simulator
    fault (`World.inject` kind plus its parameters) for `fault`, `delta` for `clock`, `seconds`
    for `wait` (None = the default timeout), `button` for `click`.
    """

    kind: str
    args: tuple[str, ...] = ()
    expect_failure: bool = False
    text: str = ""
    button: int | None = None
    delta: timedelta | None = None
    seconds: float | None = None
    fault: tuple[str, dict[str, object]] | None = None
    raw: str = field(default="", compare=False)


def parse_duration(text: str) -> timedelta:
    """`+1d`, `2h`, `+1d12h`, `90m`, `30s` as a timedelta (positive only)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConsoleSyntaxError(f"not a duration: {text!r} (try +1d, +2h, +1d12h, +30m)")
    total = timedelta(0)
    for amount, unit in _PART.findall(match.group(1)):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta(0):
        raise ConsoleSyntaxError("the clock only moves forward")
    return total


def _fault(args: list[str]) -> tuple[str, dict[str, object]]:
    if not args:
        raise ConsoleSyntaxError("which fault? `faults` lists them")
    word, rest = args[0].lower(), args[1:]
    if word in SERVER_FAULTS:
        kind = SERVER_FAULTS[word][0]
        if not rest:
            raise ConsoleSyntaxError(f"`fault {word}` needs a server, e.g. `fault {word} web-1`")
        params: dict[str, object] = {"server": rest[0]}
        if len(rest) > 1:
            params["task_state" if kind == "stuck" else "during"] = rest[1]
        if len(rest) > 2:
            raise ConsoleSyntaxError(f"too many words after `fault {word}`")
        return kind, params
    if word == "clear":
        return "clear", {}
    if word == "revoke-tokens":
        return "revoke_tokens", {}
    if word == "slow":
        if len(rest) not in (2, 3):
            raise ConsoleSyntaxError("usage: fault slow <path-regex> <seconds> [N]")
        _regex(rest[0])
        return "slow", {"path": rest[0], "delay": _number(rest[1], "seconds"),
                        "count": _count(rest[2:])}
    if re.fullmatch(r"[1-5]\d\d", word):
        if len(rest) not in (1, 2):
            raise ConsoleSyntaxError(f"usage: fault {word} <path-regex> [N]")
        _regex(rest[0])
        return "http", {"status": int(word), "path": rest[0], "count": _count(rest[1:])}
    raise ConsoleSyntaxError(f"unknown fault {args[0]!r}; `faults` lists them")


def _regex(text: str) -> None:
    try:
        re.compile(text)
    except re.error as exc:
        raise ConsoleSyntaxError(f"bad path regex {text!r}: {exc}") from None


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConsoleSyntaxError(f"{what} must be a number, not {text!r}") from None
    if value < 0:
        raise ConsoleSyntaxError(f"{what} must not be negative")
    return value


def _count(rest: list[str]) -> int:
    if not rest:
        return 1
    if not rest[0].isdigit() or int(rest[0]) < 1:
        raise ConsoleSyntaxError(f"N must be a positive whole number, not {rest[0]!r}")
    return int(rest[0])


def parse_console_line(text: str) -> ConsoleCommand:
    """Parse one console line (pure). Raises `ConsoleSyntaxError` with a readable reason."""
    raw = text
    line = text.strip()
    expect_failure = line.startswith("!")
    if expect_failure:
        line = line[1:].strip()
    if not line or line.startswith("#"):
        if expect_failure:
            raise ConsoleSyntaxError("`!` needs a command after it")
        return ConsoleCommand("empty", raw=raw)

    def make(kind: str, **kw: object) -> ConsoleCommand:
        return ConsoleCommand(kind, expect_failure=expect_failure, raw=raw, **kw)  # type: ignore[arg-type]

    if line.startswith("/"):
        command, _, rest = line.partition(" ")
        if command != "/image":
            raise ConsoleSyntaxError(f"unknown slash command {command}; this workspace has /image")
        return make("slash", text=rest.strip())
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ConsoleSyntaxError(f"cannot split the line: {exc}") from None
    head, args = words[0].lower(), words[1:]
    if head == "click":
        if len(args) != 1 or not args[0].isdigit():
            raise ConsoleSyntaxError("usage: click <button number>, e.g. `click 1`")
        return make("click", button=int(args[0]), args=tuple(args))
    if head in ("as", "in"):
        if len(args) != 1:
            example = "as bob" if head == "as" else "in #ops-alerts"
            raise ConsoleSyntaxError(f"usage: {example}")
        return make(head, args=(args[0],))
    if head == "faults":
        return make("faults")
    if head == "fault":
        return make("fault", args=tuple(args), fault=_fault(args))
    if head == "clock":
        if len(args) != 1:
            raise ConsoleSyntaxError("usage: clock +1d (or +2h, +30m, +1d12h)")
        return make("clock", delta=parse_duration(args[0]), args=tuple(args))
    if head == "wait":
        if len(args) > 1:
            raise ConsoleSyntaxError("usage: wait [seconds]")
        return make("wait", seconds=_number(args[0], "seconds") if args else None)
    if head in ("show", "help"):
        return make(head, args=tuple(args))
    if head in ("exit", "quit"):
        return make("exit")
    if head == "image" or head in _IMAGE_WORDS:
        suggestion = line.split(None, 1)[1] if head == "image" and args else line
        raise ConsoleSyntaxError(f"unknown console command {words[0]!r}; did you mean "
                                 f"`/image {suggestion}`?")
    raise ConsoleSyntaxError(f"unknown console command {words[0]!r}; type `help`")


HELP = """\
Console commands (anything starting with /image is sent to the bot as a slash command):
  /image <text>          type /image <text> as the current user in the current channel
  click <n>              press button [n] from the last rendering
  as <user>              act as another user (alice requests, bob approves, carol watches)
  in <#channel>          switch channel (#ops, #ops-alerts, #secret)
  show                   render the current channel again
  wait [seconds]         wait until every job has finished and every message is posted
  clock +1d              move the clock forward (+2h, +30m, +1d12h) to reach scheduled runs
  faults                 list the simulator's faults
  fault <what> ...       inject one, e.g. `fault kill-upload web-2`, `fault 500 /servers 2`
  help                   this text
  exit                   stop everything (Ctrl-D too)
In --script files, `#` starts a comment and a leading `!` means the line is expected to fail.
"""


def faults_help() -> str:
    """The `faults` listing."""
    lines = ["Faults of the simulated cloud (`fault <what> ...`):"]
    for word, (_, doc) in SERVER_FAULTS.items():
        lines.append(f"  fault {word} <server>".ljust(40) + doc)
    for usage, doc in OTHER_FAULTS.items():
        lines.append(f"  fault {usage}".ljust(40) + doc)
    return "\n".join(lines)
